"""Your settings for the scripts in this folder: what you change from genrekit's defaults.

Every setting, its default and what it does: the README's "Configuration reference" (the same
as the fields of ``genrekit.settings.Settings``). To change one for every script, set it here by
its name in upper case, e.g. ``BATCH_SIZE = 64``. The scripts read this file on top of the
defaults; a ``--config`` JSON file overrides it, and flags override both. A name that is not a
setting, or a value of the wrong type, is refused by name before anything runs (names starting
with ``_`` are yours: helpers, not settings). genrekit itself never reads this file: imported
from a notebook or another project, it uses its own defaults.

Uncomment a line to use it; the values below are examples, not the defaults.
"""

# --- Where the data is ---------------------------------------------------------------------------
# METADATA_DIR = "/data/fma/fma_metadata"  # folder holding tracks.csv, genres.csv
# AUDIO_DIR = "/data/fma/fma_large"  # folder holding NNN/NNNNNN.mp3
# DATASET = "folder:/data/my_music"  # your own music: genre folders (or "csv:FILE", a manifest)
# A published split of that collection (README "Reproduce a published protocol"), all three or none:
# SPLIT_FILE_TRAINING = "splits/gtzan/train_filtered.txt"
# SPLIT_FILE_VALIDATION = "splits/gtzan/valid_filtered.txt"
# SPLIT_FILE_TEST = "splits/gtzan/test_filtered.txt"
# SUBSET = "medium"  # the FMA subset the audio folder holds: small, medium or large
# OUTPUT_DIR = "runs/my_run"  # training run folder

# --- Training --------------------------------------------------------------------------------------
# BATCH_SIZE = 64
# NUM_EPOCHS = 30
# BACKBONE = "musicnn"  # heads on pretrained musicnn embeddings instead of the CNN
# WORKERS = 4  # processes decoding audio (0: all CPU cores)
# ENGINE = "ray"  # run feature extraction and folder inference on a Ray cluster (RAY_ADDRESS)
