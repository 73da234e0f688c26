"""A run's effective settings: the package defaults, the values a script passes in, a JSON file, flags.

:class:`Settings` is written out below: every setting with its type, its default and what it does
(the manual's docs/configuration.md is generated from it). A script adds the values of the
repository's ``config.py`` on top of the defaults (:func:`genrekit.cli.config_values`, passed as
``base``); genrekit itself never reads that file, so imported from anywhere it starts from the
defaults written here. A JSON config is a flat object of settings; keys that start with ``_`` are
notes and are ignored. A training config written by the trainer (``balanced_training_config.json``)
is accepted too: its ``settings`` section is read. Unknown keys, wrong types and impossible values
are refused with one :class:`~genrekit.errors.ConfigError` naming the key, before anything runs.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genrekit.engine import ENGINES
from genrekit.errors import ConfigError
from genrekit.fileio import read_json
from genrekit.models.registry import BACKBONES, check_choice, model_kind

SUBSETS = ("small", "medium", "large")
STRATEGIES = ("auto", "default", "mirrored", "multiworker")
LR_SCHEDULES = ("plateau", "cosine")
# Validation figures the trainer computes each epoch (genrekit.train.run.validation_metrics).
MONITORS = (
    "val_score",
    "val_top_balanced_accuracy",
    "val_top_f1_macro",
    "val_medium_balanced_accuracy",
    "val_medium_f1_macro",
    "val_all_lrap",
    "val_all_jaccard",
)
SPLITS = ("training", "validation", "test")
MUSICNN_MODELS = ("MSD_musicnn", "MTT_musicnn")
MUSICNN_OUTPUTS = ("penultimate", "max_pool", "mean_pool", "pools")
FINE_TUNE_LAYERS = ("backend", "midend", "all")  # backbone layers that learn: genrekit.models.finetune
AST_POOLINGS = ("mean", "token")  # genrekit.models.ast.POOLINGS (that module imports Keras)
THRESHOLD_MODES = ("absolute", "relative")  # how genrekit.train.balancing.effective_thresholds reads them


@dataclasses.dataclass(frozen=True)
class Settings:
    """The effective settings of a run: one field per setting, checked when it is made.

    Build one with :meth:`build` (the defaults below, then ``base``, a JSON file and flags) or
    :meth:`replace`; every value is checked for its type and range however it is made. The
    UPPER_CASE name of a field is its name in ``config.py`` and in the README.
    """

    # --- Paths -------------------------------------------------------------------------------------
    data_dir: str = "fma_data"  # where setup_fma_dataset.py downloads and extracts archives
    metadata_dir: str = "fma_data/extracted/metadata/fma_metadata"  # folder holding tracks.csv, genres.csv
    audio_dir: str = "fma_data/extracted/fma_large/fma_large"  # folder holding NNN/NNNNNN.mp3
    # "fma" (the two folders above), "folder:PATH" (ROOT/<genre>/[<sub>/]<file>), "csv:FILE"
    dataset: str = "fma"
    # A folder:/csv: collection's published split (e.g. GTZAN's train_filtered.txt): one list file
    # per split, one audio path a line, relative to the collection's root; tracks listed in none
    # are left out. All three or none ("": the collection's own split, or 80/10/10).
    split_file_training: str = ""
    split_file_validation: str = ""
    split_file_test: str = ""
    demo_dir: str = "fma_data/demo"  # the built-in demo dataset (its own folder, never posing as FMA)
    cache_dir: str = "fma_data/features"  # mel-segment feature caches, one sub-folder per parameter set
    pretrained_dir: str = "fma_data/pretrained"  # pretrained backbones converted by fetch_backbone.py
    output_dir: str = "runs/balanced"  # training run folder: model, config, logs, checkpoints, reports
    subset: str = "large"  # FMA subset: small < medium < large (a subset includes the smaller ones)
    # tracks of the demo dataset (seed 0: 144 test tracks with a top genre; >= 30x imbalance)
    demo_tracks: int = 1800
    # clip length of the demo dataset (FMA's are 30 s; 10 s keeps set-up quick)
    demo_clip_seconds: float = 10.0

    # --- Audio and features ------------------------------------------------------------------------
    sample_rate: int = 22050  # Hz, audio is resampled to this rate before the mel spectrogram
    duration: float = 30.0  # seconds of audio read per FMA clip
    n_mels: int = 128  # mel bands (model input height)
    n_fft: int = 2048  # FFT window length in samples
    hop_length: int = 512  # samples between spectrogram frames
    fmin: float = 0.0  # lowest mel band edge in Hz
    fmax: float = 11025.0  # highest mel band edge in Hz (Nyquist at SAMPLE_RATE)
    num_segments: int = 10  # segments taken per 30 s clip, spread evenly over it
    segment_frames: int = 64  # spectrogram frames per segment (model input width, ~1.5 s)
    min_segments: int = 1  # fewer usable segments than this and the file is rejected as too short
    inference_segment_hop: float = 0.0  # seconds between segments for long files; 0 = NUM_SEGMENTS spread

    # --- Model -------------------------------------------------------------------------------------
    width_factor: float = 1.0  # scales the conv/dense widths; 1.0 = the README's 64/128/256/512 filters
    conv_dropout: float = 0.25  # dropout after each of the first three conv blocks
    dense_dropout: float = 0.5  # dropout after global pooling and after the dense layer
    # --backbone ast (genrekit.models.ast; WIDTH_FACTOR and CONV_DROPOUT are the CNN's only):
    ast_patch: int = 16  # side of its square patches: 16 cuts a 128 x 64 segment into 8 x 4 = 32 tokens
    ast_dim: int = 64  # values per token (a multiple of AST_HEADS)
    ast_depth: int = 3  # transformer encoder blocks
    ast_heads: int = 4  # attention heads per block
    ast_mlp_ratio: int = 2  # width of each block's GELU MLP, in multiples of AST_DIM
    ast_dropout: float = 0.1  # dropout in the encoder (DENSE_DROPOUT is the one before its heads)
    ast_pooling: str = "mean"  # "mean" of the encoded tokens, or "token": a class token's output

    # --- Backbone ----------------------------------------------------------------------------------
    # "cnn": the README's CNN on log-mel segments; "ast": the spectrogram transformer on them;
    # "musicnn": heads on musicnn embeddings
    backbone: str = "cnn"
    # musicnn checkpoint: MSD_musicnn (Million Song Dataset) or MTT_musicnn
    musicnn_model: str = "MSD_musicnn"
    # per 3-s patch: max_pool, mean_pool (753), penultimate (200), pools (1506). max_pool, the layer
    # musicnn's authors transfer from: heads on it beat heads on the penultimate layer by 0.036
    # [0.01, 0.08] top balanced accuracy (docs/results_models.md, rows 9 and 14, 5 artist folds)
    musicnn_output: str = "max_pool"
    musicnn_patches: int = 10  # 3-s patches per track, spread evenly (10 cover a 30-s FMA clip)
    head_units: int = 256  # hidden units of the dense layer shared by the three heads on embeddings
    # a finished --backbone musicnn run: train its heads and musicnn together ("" = off)
    fine_tune_from: str = ""
    fine_tune_layers: str = "midend"  # backbone layers that learn when fine-tuning: backend, midend or all
    fine_tune_learning_rate: float = 1e-5  # Adam learning rate when fine-tuning (LEARNING_RATE is the heads')

    # --- Training ----------------------------------------------------------------------------------
    batch_size: int = 32  # segments per training batch
    learning_rate: float = 1e-4  # Adam learning rate
    num_epochs: int = 100  # maximum epochs
    patience: int = 15  # epochs without validation improvement before early stopping
    lr_patience: int = 5  # epochs without improvement before the learning rate is reduced
    lr_factor: float = 0.5  # factor applied to the learning rate on a plateau
    min_lr: float = 1e-6  # the learning rate is never reduced below this
    clip_norm: float = 1.0  # gradient clipping by global norm (over all variables together)
    # validation figure that drives early stopping, LR and the best checkpoint (below)
    monitor: str = "val_score"
    # "plateau": ReduceLROnPlateau; "cosine": linear warm-up, then cosine decay to MIN_LR
    lr_schedule: str = "plateau"
    warmup_epochs: int = 1  # cosine schedule: epochs of linear warm-up from LEARNING_RATE / 10
    seed: int = 42  # seed for sampling, shuffling and weight initialisation
    mixed_precision: bool = True  # mixed_float16 when a GPU is present (never on a CPU)
    strategy: str = "auto"  # distribution: auto, default, mirrored, multiworker
    # neighbouring tracks read together (one read); 1,024 tracks of such blocks are shuffled together
    shuffle_block: int = 8

    # --- Augmentation (training segments only) -----------------------------------------------------
    # SpecAugment: mask bands of frames and of mel bands (filled with the band means)
    spec_augment: bool = False
    time_masks: int = 2  # time masks per segment
    time_mask_frames: int = 8  # widest time mask in frames (of SEGMENT_FRAMES)
    freq_masks: int = 2  # frequency masks per segment
    freq_mask_bands: int = 16  # widest frequency mask in mel bands (of N_MELS)
    mixup_alpha: float = 0.0  # mixup of segment pairs, lam ~ Beta(alpha, alpha); 0 = off

    # --- Balancing ---------------------------------------------------------------------------------
    use_class_weights: bool = True  # per-output sample weights n_samples / (n_classes * n_per_class)
    use_weighted_sampling: bool = True  # resample tracks per epoch by the thresholds below
    use_focal_loss: bool = True  # focal loss on the softmax heads instead of cross-entropy
    # softmax heads trained on logits + tau * log(class prior) (Menon et al. 2021)
    use_logit_adjustment: bool = False
    oversample_threshold: int = 100  # classes with fewer training tracks are oversampled up to this
    undersample_threshold: int = 5000  # classes with more training tracks are undersampled down to this
    # "relative": the two above are fma_large's, scaled to this training set
    sampling_thresholds: str = "absolute"
    focal_gamma: float = 2.0  # focusing parameter of the focal loss
    # tau of the logit adjustment (1.0: the paper's Bayes-consistent choice)
    logit_adjustment_tau: float = 1.0
    max_class_weight: float = 50.0  # class weights are clipped here so a 1-track class cannot dominate
    top_loss_weight: float = 1.0  # loss weight of the top-genre head
    medium_loss_weight: float = 0.8  # loss weight of the medium-genre head
    all_loss_weight: float = 0.6  # loss weight of the multi-label all-genres head

    # --- Inference and evaluation ------------------------------------------------------------------
    # probability above which a genre of the all-genres head is predicted (when not tuned)
    threshold: float = 0.5
    # all-genres thresholds: one value tuned on the validation split, corrected per genre for its positive weight
    tune_thresholds: bool = True
    top_k: int = 3  # genres listed per head in predictions
    workers: int = 0  # worker processes for decoding and feature extraction; 0 = all CPU cores
    # where the feature/embedding cache, folder inference and the MFCC baseline run their workers:
    # "local" (this machine's cores) or "ray" (a Ray cluster, RAY_ADDRESS; pip install genrekit[ray])
    engine: str = "local"
    inference_batch_size: int = 64  # segments per predict batch
    split: str = "test"  # split evaluated by model_evaluation.py
    calibration_bins: int = 10  # equal-width confidence bins of the expected calibration error
    confusion_max_classes: int = 30  # medium-genre confusion matrix plot: this many most frequent genres

    # --- File names inside a run folder ------------------------------------------------------------
    model_filename: str = "balanced_hierarchical_genre_model.h5"  # the README's name; .keras also works
    training_config_filename: str = "balanced_training_config.json"  # everything inference needs

    def __post_init__(self) -> None:
        for key in _TYPES:
            value = _check_type(key, getattr(self, key))
            if value is not getattr(self, key):  # an integer given for a float setting
                object.__setattr__(self, key, value)
        _validate(vars(self))

    @classmethod
    def build(
        cls,
        config_path: str | os.PathLike | None = None,
        overrides: Mapping[str, Any] | None = None,
        *,
        base: Settings | Mapping[str, Any] | None = None,
    ) -> Settings:
        """The defaults, then ``base``, then the JSON file at ``config_path``, then ``overrides``.

        ``base`` is what a script starts from (config.py's values, :func:`genrekit.cli.config_values`).
        ``overrides`` entries whose value is ``None`` are ignored (flags not given).
        """
        values = checked_settings(base.to_dict() if isinstance(base, Settings) else base or {})
        if config_path is not None:
            values.update(read_config_file(config_path))
        values.update(checked_settings({k: v for k, v in (overrides or {}).items() if v is not None}))
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and checked like any other source."""
        return type(self)(**{**vars(self), **checked_settings(changes)})

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name, in the order saved run configs have always had (:data:`_SAVED_ORDER`)."""
        return {key: getattr(self, key) for key in _SAVED_ORDER}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The model input: mel bands x frames x channel."""
        return (self.n_mels, self.segment_frames, 1)

    @property
    def frontend(self) -> str:
        """The front end the model kind takes (:data:`genrekit.features.frontends.FRONTENDS`)."""
        return model_kind(self).frontend

    @property
    def loss_weights(self) -> dict[str, float]:
        """The loss weight of each head, keyed by output name."""
        return {"top": self.top_loss_weight, "medium": self.medium_loss_weight, "all": self.all_loss_weight}

    @property
    def num_workers(self) -> int:
        """``workers`` with 0 resolved to the number of usable CPU cores."""
        if self.workers:
            return self.workers
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - macOS, Windows
            return os.cpu_count() or 1

    @property
    def demo_metadata_dir(self) -> str:
        """The demo dataset's tracks.csv, genres.csv and checksums."""
        return f"{self.demo_dir}/fma_metadata"

    @property
    def demo_audio_dir(self) -> str:
        """The demo dataset's NNN/NNNNNN.mp3."""
        return f"{self.demo_dir}/fma_demo"


# Each setting's type, from the annotations above, in the order of the fields.
_HINTS = typing.get_type_hints(Settings)
_TYPES: dict[str, type] = {f.name: _HINTS[f.name] for f in dataclasses.fields(Settings)}
# The settings sorted by their UPPER_CASE names (as config.py's were read): the key order of the
# run configs written so far, kept so that a run's files stay the same.
_SAVED_ORDER = tuple(sorted(_TYPES, key=str.upper))


def default_value(key: str) -> Any:
    """The package default of one setting (``key`` in lower case)."""
    _check_name(key)
    return Settings.__dataclass_fields__[key].default


# (predicate, what the value must be): checked for the final settings, whatever their source.
_RULES: dict[str, tuple[Any, str]] = {
    **{
        key: (lambda v: v > 0, "must be > 0")
        for key in (
            "sample_rate",
            "duration",
            "n_mels",
            "n_fft",
            "hop_length",
            "num_segments",
            "segment_frames",
            "min_segments",
            "width_factor",
            "batch_size",
            "learning_rate",
            "num_epochs",
            "lr_factor",
            "clip_norm",
            "focal_gamma",
            "max_class_weight",
            "inference_batch_size",
            "shuffle_block",
            "top_k",
            "musicnn_patches",
            "head_units",
            "fine_tune_learning_rate",
            "ast_patch",
            "ast_dim",
            "ast_depth",
            "ast_heads",
            "ast_mlp_ratio",
        )
    },
    **{
        key: (lambda v: v >= 0, "must be >= 0")
        for key in (
            "patience",
            "lr_patience",
            "min_lr",
            "workers",
            "oversample_threshold",
            "undersample_threshold",
            "top_loss_weight",
            "medium_loss_weight",
            "all_loss_weight",
            "fmin",
            "inference_segment_hop",
            "seed",
            "warmup_epochs",
            "time_masks",
            "time_mask_frames",
            "freq_masks",
            "freq_mask_bands",
            "mixup_alpha",
            "logit_adjustment_tau",
        )
    },
    **{
        key: (lambda v: 0 <= v < 1, "must be in [0, 1)")
        for key in ("conv_dropout", "dense_dropout", "ast_dropout")
    },
    "threshold": (lambda v: 0 < v < 1, "must be in (0, 1)"),
    "demo_tracks": (lambda v: v >= 20, "must be >= 20"),
    "lr_factor": (lambda v: 0 < v < 1, "must be in (0, 1)"),
    "subset": (lambda v: v in SUBSETS, f"must be one of {', '.join(SUBSETS)}"),
    "dataset": (
        lambda v: (
            v == "fma" or v.partition(":")[0] in ("folder", "csv") and bool(v.partition(":")[2].strip())
        ),
        "must be 'fma', 'folder:PATH' (genre folders) or 'csv:FILE' (a manifest)",
    ),
    "split": (lambda v: v in SPLITS, f"must be one of {', '.join(SPLITS)}"),
    "engine": (lambda v: v in ENGINES, f"must be one of {', '.join(ENGINES)}"),
    "strategy": (lambda v: v in STRATEGIES, f"must be one of {', '.join(STRATEGIES)}"),
    "lr_schedule": (lambda v: v in LR_SCHEDULES, f"must be one of {', '.join(LR_SCHEDULES)}"),
    "monitor": (lambda v: v in MONITORS, f"must be one of {', '.join(MONITORS)}"),
    "backbone": (lambda v: v in BACKBONES, f"must be one of {', '.join(BACKBONES)}"),
    "musicnn_model": (lambda v: v in MUSICNN_MODELS, f"must be one of {', '.join(MUSICNN_MODELS)}"),
    "musicnn_output": (lambda v: v in MUSICNN_OUTPUTS, f"must be one of {', '.join(MUSICNN_OUTPUTS)}"),
    "fine_tune_layers": (lambda v: v in FINE_TUNE_LAYERS, f"must be one of {', '.join(FINE_TUNE_LAYERS)}"),
    "sampling_thresholds": (lambda v: v in THRESHOLD_MODES, f"must be one of {', '.join(THRESHOLD_MODES)}"),
    "ast_pooling": (lambda v: v in AST_POOLINGS, f"must be one of {', '.join(AST_POOLINGS)}"),
}


def _check_name(key: str) -> None:
    if key not in _TYPES:
        known = ", ".join(sorted(_TYPES))
        raise ConfigError(f"unknown setting {key!r}; known settings: {known}")


def _check_type(key: str, value: Any) -> Any:
    """Return ``value`` as the type of setting ``key``, or raise ConfigError."""
    _check_name(key)
    expected = _TYPES[key]
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"setting {key!r} must be true or false, got {value!r}")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"setting {key!r} must be an integer, got {value!r}")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"setting {key!r} must be a number, got {value!r}")
        return float(value)
    if not isinstance(value, expected):
        raise ConfigError(f"setting {key!r} must be a {expected.__name__}, got {value!r}")
    return value


def _validate(values: Mapping[str, Any]) -> None:
    for key, (ok, rule) in _RULES.items():
        if not ok(values[key]):
            raise ConfigError(f"setting {key!r} {rule}, got {values[key]!r}")
    if values["oversample_threshold"] > values["undersample_threshold"]:
        raise ConfigError(
            f"setting 'oversample_threshold' ({values['oversample_threshold']}) must not exceed "
            f"'undersample_threshold' ({values['undersample_threshold']})"
        )
    if values["fmax"] <= values["fmin"] or values["fmax"] > values["sample_rate"] / 2:
        raise ConfigError(
            f"setting 'fmax' must be above fmin and at most sample_rate / 2 "
            f"({values['sample_rate'] / 2:g}), got {values['fmax']!r}"
        )
    if values["time_mask_frames"] > values["segment_frames"] or values["freq_mask_bands"] > values["n_mels"]:
        raise ConfigError(
            f"setting 'time_mask_frames' ({values['time_mask_frames']}) must be at most 'segment_frames' and "
            f"'freq_mask_bands' ({values['freq_mask_bands']}) at most 'n_mels'"
        )
    if values["ast_dim"] % values["ast_heads"]:
        raise ConfigError(
            f"setting 'ast_dim' ({values['ast_dim']}) must be a multiple of 'ast_heads' ({values['ast_heads']})"
        )
    _check_split_files(values)
    check_choice(values)  # fine_tune_from needs the musicnn backbone (genrekit.models.registry)
    if values["n_fft"] < values["hop_length"]:
        raise ConfigError(f"setting 'n_fft' ({values['n_fft']}) must be >= 'hop_length'")


SPLIT_FILE_KEYS = {split: f"split_file_{split}" for split in SPLITS}  # split -> its list's setting


def _check_split_files(values: Mapping[str, Any]) -> None:
    given = [key for key in SPLIT_FILE_KEYS.values() if values[key]]
    if given and values["dataset"] == "fma":
        raise ConfigError(
            f"setting {given[0]!r} gives a split list, which is for a folder:/csv: collection (--dataset); "
            "FMA has its own split"
        )
    if given and len(given) < len(SPLIT_FILE_KEYS):
        lacking = [key for key in SPLIT_FILE_KEYS.values() if not values[key]]
        raise ConfigError(
            f"split lists are given for {', '.join(given)} but not {', '.join(lacking)}: give all three "
            "(--split_file training=FILE --split_file validation=FILE --split_file test=FILE)"
        )


def split_files(settings: Settings) -> dict[str, str]:
    """Split -> list file of the settings' split lists; empty when none are given."""
    return {split: getattr(settings, key) for split, key in SPLIT_FILE_KEYS.items() if getattr(settings, key)}


def checked_settings(values: Mapping[str, Any], source: str | os.PathLike | None = None) -> dict[str, Any]:
    """``values`` with every name and type checked (ints given for float settings made floats).

    Raises
    ------
    ConfigError
        For an unknown name or a wrong type, naming the key (and ``source``, the file, when given).
    """
    out = {}
    for key, value in values.items():
        try:
            out[key] = _check_type(key, value)
        except ConfigError as exc:
            if source is None:
                raise
            raise ConfigError(f"{source}: {exc}") from None
    return out


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and type-check a JSON config file; return its settings as a dict.

    Raises
    ------
    ConfigError
        When the file is missing, is not JSON, or holds an unknown key or a wrong type.
    """

    path = Path(path)
    data = read_json(path, error=ConfigError, what="config file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a JSON object of settings")
    if isinstance(data.get("settings"), dict):  # a training config written by the trainer
        data = data["settings"]
    return checked_settings({k: v for k, v in data.items() if not k.startswith("_")}, path)
