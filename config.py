"""Every default of the toolkit in one place.

Edit the constants here to change a default for every script. A JSON file given with
``--config`` overrides them (keys are these names in lower case, e.g. ``"batch_size": 64``),
and command-line flags override both. Derived values are computed below, never repeated.
"""

# --- Paths -------------------------------------------------------------------------------------
DATA_DIR = "fma_data"  # where setup_fma_dataset.py downloads and extracts archives
METADATA_DIR = "fma_data/extracted/metadata/fma_metadata"  # folder holding tracks.csv, genres.csv
AUDIO_DIR = "fma_data/extracted/fma_large/fma_large"  # folder holding NNN/NNNNNN.mp3
DATASET = "fma"  # "fma" (the two folders above), "folder:PATH" (ROOT/<genre>/[<sub>/]<file>), "csv:FILE"
DEMO_DIR = "fma_data/demo"  # the built-in demo dataset (its own folder, never posing as FMA)
CACHE_DIR = "fma_data/features"  # mel-segment feature caches, one sub-folder per parameter set
PRETRAINED_DIR = "fma_data/pretrained"  # pretrained backbones converted by fetch_backbone.py
OUTPUT_DIR = "runs/balanced"  # training run folder: model, config, logs, checkpoints, reports
SUBSET = "large"  # FMA subset: small < medium < large (a subset includes the smaller ones)
DEMO_TRACKS = 1800  # tracks of the demo dataset (seed 0: 144 test tracks with a top genre; >= 30x imbalance)
DEMO_CLIP_SECONDS = 10.0  # clip length of the demo dataset (FMA's are 30 s; 10 s keeps set-up quick)

# --- Audio and features ------------------------------------------------------------------------
SAMPLE_RATE = 22050  # Hz, audio is resampled to this rate before the mel spectrogram
DURATION = 30.0  # seconds of audio read per FMA clip
N_MELS = 128  # mel bands (model input height)
N_FFT = 2048  # FFT window length in samples
HOP_LENGTH = 512  # samples between spectrogram frames
FMIN = 0.0  # lowest mel band edge in Hz
FMAX = 11025.0  # highest mel band edge in Hz (Nyquist at SAMPLE_RATE)
NUM_SEGMENTS = 10  # segments taken per 30 s clip, spread evenly over it
SEGMENT_FRAMES = 64  # spectrogram frames per segment (model input width, ~1.5 s)
MIN_SEGMENTS = 1  # fewer usable segments than this and the file is rejected as too short
INFERENCE_SEGMENT_HOP = 0.0  # seconds between segments for long files; 0 = NUM_SEGMENTS spread

# --- Model ---------------------------------------------------------------------------------------
WIDTH_FACTOR = 1.0  # scales the conv/dense widths; 1.0 = the README's 64/128/256/512 filters
CONV_DROPOUT = 0.25  # dropout after each of the first three conv blocks
DENSE_DROPOUT = 0.5  # dropout after global pooling and after the dense layer

# --- Backbone ------------------------------------------------------------------------------------------
BACKBONE = "cnn"  # "cnn": the README's CNN on log-mel segments; "musicnn": heads on musicnn embeddings
MUSICNN_MODEL = "MSD_musicnn"  # musicnn checkpoint: MSD_musicnn (Million Song Dataset) or MTT_musicnn
MUSICNN_OUTPUT = "penultimate"  # per 3-s patch: penultimate (200), max_pool, mean_pool (753), pools (1506)
MUSICNN_PATCHES = 10  # 3-s patches per track, spread evenly (10 cover a 30-s FMA clip)
HEAD_UNITS = 256  # hidden units of the dense layer shared by the three heads on embeddings
FINE_TUNE_FROM = ""  # a finished --backbone musicnn run: train its heads and musicnn together ("" = off)
FINE_TUNE_LAYERS = "midend"  # backbone layers that learn when fine-tuning: backend, midend or all
FINE_TUNE_LEARNING_RATE = 1e-5  # Adam learning rate when fine-tuning (LEARNING_RATE is the heads')

# --- Training --------------------------------------------------------------------------------------
BATCH_SIZE = 32  # segments per training batch
LEARNING_RATE = 1e-4  # Adam learning rate
NUM_EPOCHS = 100  # maximum epochs
PATIENCE = 15  # epochs without validation improvement before early stopping
LR_PATIENCE = 5  # epochs without improvement before the learning rate is reduced
LR_FACTOR = 0.5  # factor applied to the learning rate on a plateau
MIN_LR = 1e-6  # the learning rate is never reduced below this
CLIP_NORM = 1.0  # gradient clipping by global norm (over all variables together)
MONITOR = "val_score"  # validation figure that drives early stopping, LR and the best checkpoint (below)
LR_SCHEDULE = "plateau"  # "plateau": ReduceLROnPlateau; "cosine": linear warm-up, then cosine decay to MIN_LR
WARMUP_EPOCHS = 1  # cosine schedule: epochs of linear warm-up from LEARNING_RATE / 10
SEED = 42  # seed for sampling, shuffling and weight initialisation
MIXED_PRECISION = True  # mixed_float16 when a GPU is present (never on a CPU)
STRATEGY = "auto"  # distribution: auto, default, mirrored, multiworker
SHUFFLE_BLOCK = 8  # neighbouring tracks read together (one read); 1,024 tracks of such blocks are shuffled together

# --- Augmentation (training segments only) ------------------------------------------------------------
SPEC_AUGMENT = False  # SpecAugment: mask bands of frames and of mel bands (filled with the band means)
TIME_MASKS = 2  # time masks per segment
TIME_MASK_FRAMES = 8  # widest time mask in frames (of SEGMENT_FRAMES)
FREQ_MASKS = 2  # frequency masks per segment
FREQ_MASK_BANDS = 16  # widest frequency mask in mel bands (of N_MELS)
MIXUP_ALPHA = 0.0  # mixup of segment pairs, lam ~ Beta(alpha, alpha); 0 = off

# --- Balancing -------------------------------------------------------------------------------------
USE_CLASS_WEIGHTS = True  # per-output sample weights n_samples / (n_classes * n_per_class)
USE_WEIGHTED_SAMPLING = True  # resample tracks per epoch by the thresholds below
USE_FOCAL_LOSS = True  # focal loss on the softmax heads instead of cross-entropy
USE_LOGIT_ADJUSTMENT = False  # softmax heads trained on logits + tau * log(class prior) (Menon et al. 2021)
OVERSAMPLE_THRESHOLD = 100  # classes with fewer training tracks are oversampled up to this
UNDERSAMPLE_THRESHOLD = 5000  # classes with more training tracks are undersampled down to this
SAMPLING_THRESHOLDS = "absolute"  # "relative": the two above are fma_large's, scaled to this training set
FOCAL_GAMMA = 2.0  # focusing parameter of the focal loss
LOGIT_ADJUSTMENT_TAU = 1.0  # tau of the logit adjustment (1.0: the paper's Bayes-consistent choice)
MAX_CLASS_WEIGHT = 50.0  # class weights are clipped here so a 1-track class cannot dominate
TOP_LOSS_WEIGHT = 1.0  # loss weight of the top-genre head
MEDIUM_LOSS_WEIGHT = 0.8  # loss weight of the medium-genre head
ALL_LOSS_WEIGHT = 0.6  # loss weight of the multi-label all-genres head

# --- Inference and evaluation ----------------------------------------------------------------------
THRESHOLD = 0.5  # probability above which a genre of the all-genres head is predicted (when not tuned)
TUNE_THRESHOLDS = True  # all-genres thresholds: one value tuned on the validation split, corrected per genre for its positive weight
TOP_K = 3  # genres listed per head in predictions
WORKERS = 0  # worker processes for decoding and feature extraction; 0 = all CPU cores
INFERENCE_BATCH_SIZE = 64  # segments per predict batch
SPLIT = "test"  # split evaluated by model_evaluation.py
CALIBRATION_BINS = 10  # equal-width confidence bins of the expected calibration error
CONFUSION_MAX_CLASSES = 30  # medium-genre confusion matrix plot: this many most frequent genres

# --- File names inside a run folder ------------------------------------------------------------------
MODEL_FILENAME = "balanced_hierarchical_genre_model.h5"  # the README's name; .keras also works
TRAINING_CONFIG_FILENAME = "balanced_training_config.json"  # everything inference needs

# --- Derived values (computed, not repeated) ------------------------------------------------------
INPUT_SHAPE = (N_MELS, SEGMENT_FRAMES, 1)  # model input: mel bands x frames x channel
LOSS_WEIGHTS = {"top": TOP_LOSS_WEIGHT, "medium": MEDIUM_LOSS_WEIGHT, "all": ALL_LOSS_WEIGHT}  # per head
DEMO_METADATA_DIR = DEMO_DIR + "/fma_metadata"  # demo tracks.csv, genres.csv, checksums
DEMO_AUDIO_DIR = DEMO_DIR + "/fma_demo"  # demo NNN/NNNNNN.mp3
