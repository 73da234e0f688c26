"""Your settings: change a value here and every command run in this folder uses it.

The values below are genrekit's defaults (a test keeps them equal to ``genrekit.settings.Settings``),
grouped as in the README. Any other setting can be added by its name in upper case: every one, with
its default and meaning, is in docs/configuration.md. The commands (``genrekit NAME`` or the
scripts in this folder) read the config.py of the folder they run in on top of the defaults; a
``--config`` JSON file overrides it, and flags override both. A name that is not a setting, or a
value of the wrong type, is refused by name before anything runs (names starting with ``_`` are
yours). genrekit imported from a notebook or another project never reads this file.
"""

# Data paths (python setup_fma_dataset.py --subset all --symlinks makes this layout)
METADATA_DIR = "fma_data/extracted/metadata/fma_metadata"  # folder holding tracks.csv, genres.csv
AUDIO_DIR = "fma_data/extracted/fma_large/fma_large"  # folder holding NNN/NNNNNN.mp3
OUTPUT_DIR = "runs/balanced"  # training run folder: model, config, logs, checkpoints, reports

# Audio parameters
SAMPLE_RATE = 22050  # Hz, audio is resampled to this rate
DURATION = 30.0  # seconds of audio read per clip
N_MELS = 128  # mel bands (model input height)
HOP_LENGTH = 512  # samples between spectrogram frames
NUM_SEGMENTS = 10  # segments per 30 s clip, spread evenly over it

# Training parameters
BATCH_SIZE = 32
LEARNING_RATE = 1e-4
NUM_EPOCHS = 100
PATIENCE = 15  # epochs without validation improvement before early stopping

# Balancing parameters
USE_CLASS_WEIGHTS = True
USE_WEIGHTED_SAMPLING = True
USE_FOCAL_LOSS = True
OVERSAMPLE_THRESHOLD = 100  # top genres with fewer training tracks are drawn up to this many
UNDERSAMPLE_THRESHOLD = 5000  # and those with more are cut to this many, each epoch
FOCAL_GAMMA = 2.0
TOP_LOSS_WEIGHT = 1.0  # loss weights of the three heads
MEDIUM_LOSS_WEIGHT = 0.8
ALL_LOSS_WEIGHT = 0.6

# GPU
MIXED_PRECISION = True  # mixed_float16 on a GPU (never on a CPU)

# Often changed too (uncomment a line to use it; the values are examples, not the defaults):
# DATASET = "folder:/data/my_music"  # your own music: genre folders (or "csv:FILE", a manifest)
# SUBSET = "medium"  # the FMA subset the audio folder holds: small, medium or large
# BACKBONE = "musicnn"  # genre heads on pretrained musicnn embeddings instead of the CNN
# WORKERS = 4  # processes decoding audio (0: all CPU cores)
# ENGINE = "ray"  # feature extraction and folder inference on a Ray cluster (RAY_ADDRESS)
# A published split of your collection (docs/datasets.md), all three or none:
# SPLIT_FILE_TRAINING = "splits/gtzan/train_filtered.txt"
# SPLIT_FILE_VALIDATION = "splits/gtzan/valid_filtered.txt"
# SPLIT_FILE_TEST = "splits/gtzan/test_filtered.txt"
