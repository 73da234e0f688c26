"""A run's effective settings: the package defaults, config.py, a JSON config file, then flags.

The fields of :class:`Settings` are the UPPER_CASE constants of :mod:`genrekit.defaults` and of the
repository's ``config.py`` (read on top of them when it sits beside the package, as in a checkout)
in lower case (derived constants excluded), so adding a constant there adds a setting everywhere. A JSON
config is a flat object of those keys; keys that start with ``_`` are notes and are ignored. A
training config written by the trainer (``balanced_training_config.json``) is accepted too: its
``settings`` section is read. Unknown keys, wrong types and impossible values are refused with
one :class:`~genrekit.errors.ConfigError` naming the key, before anything runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from genrekit import defaults
from genrekit.errors import ConfigError
from genrekit.models.registry import BACKBONES, check_choice, model_kind

# Constants of config.py computed from the others: never settings of their own.
DERIVED = frozenset({"INPUT_SHAPE", "LOSS_WEIGHTS", "DEMO_METADATA_DIR", "DEMO_AUDIO_DIR"})

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
THRESHOLD_MODES = ("absolute", "relative")  # how genrekit.train.balancing.effective_thresholds reads them


# The repository's config.py: the file beside the package folder, never another module named config.
_REPO_CONFIG = Path(__file__).resolve().parent.parent / "config.py"


def repository_config() -> Any | None:
    """The repository's ``config`` module when genrekit runs from its checkout, else None.

    Imported as ``config`` (the module the scripts and a notebook edit), so changes made to it
    at run time are seen; a ``config`` module found elsewhere on the path is not used.
    """
    spec = importlib.util.find_spec("config")
    if spec is None or spec.origin is None or Path(spec.origin).resolve() != _REPO_CONFIG:
        return None
    return importlib.import_module("config")


def _constants(module: Any) -> dict[str, Any]:
    return {
        name.lower(): getattr(module, name)
        for name in dir(module)
        if name.isupper() and not name.startswith("_") and name not in DERIVED
    }


def _config_constants() -> dict[str, Any]:
    """The package defaults, then config.py's settings read now, so edits made in a notebook are seen."""
    values = _constants(defaults)
    repo = repository_config()
    if repo is not None:
        values.update(_constants(repo))
    return values


def default_value(key: str) -> Any:
    """The default of one setting (``key`` in lower case): config.py's in the repository, else the package's."""
    return _config_constants()[key]


_TYPES = {key: type(value) for key, value in _config_constants().items()}

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
    **{key: (lambda v: 0 <= v < 1, "must be in [0, 1)") for key in ("conv_dropout", "dense_dropout")},
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
    "strategy": (lambda v: v in STRATEGIES, f"must be one of {', '.join(STRATEGIES)}"),
    "lr_schedule": (lambda v: v in LR_SCHEDULES, f"must be one of {', '.join(LR_SCHEDULES)}"),
    "monitor": (lambda v: v in MONITORS, f"must be one of {', '.join(MONITORS)}"),
    "backbone": (lambda v: v in BACKBONES, f"must be one of {', '.join(BACKBONES)}"),
    "musicnn_model": (lambda v: v in MUSICNN_MODELS, f"must be one of {', '.join(MUSICNN_MODELS)}"),
    "musicnn_output": (lambda v: v in MUSICNN_OUTPUTS, f"must be one of {', '.join(MUSICNN_OUTPUTS)}"),
    "fine_tune_layers": (lambda v: v in FINE_TUNE_LAYERS, f"must be one of {', '.join(FINE_TUNE_LAYERS)}"),
    "sampling_thresholds": (lambda v: v in THRESHOLD_MODES, f"must be one of {', '.join(THRESHOLD_MODES)}"),
}


def _check_type(key: str, value: Any) -> Any:
    """Return ``value`` as the type of the config.py constant, or raise ConfigError."""
    if key not in _TYPES:
        known = ", ".join(sorted(_TYPES))
        raise ConfigError(f"unknown setting {key!r}; known settings: {known}")
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
    check_choice(values)  # fine_tune_from needs the musicnn backbone (genrekit.models.registry)
    if values["n_fft"] < values["hop_length"]:
        raise ConfigError(f"setting 'n_fft' ({values['n_fft']}) must be >= 'hop_length'")


class _SettingsBase:
    """Methods shared by the generated :class:`Settings` dataclass."""

    @classmethod
    def build(
        cls, config_path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """config.py defaults, then the JSON file at ``config_path``, then ``overrides``.

        ``overrides`` entries whose value is ``None`` are ignored (flags not given).
        """
        values = _config_constants()
        if config_path is not None:
            values.update(read_config_file(config_path))
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = _check_type(key, value)
        _validate(values)
        return cls(**values)

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and checked like any other source."""
        values = dataclasses.asdict(self)
        for key, value in changes.items():
            values[key] = _check_type(key, value)
        _validate(values)
        return type(self)(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.n_mels, self.segment_frames, 1)

    @property
    def frontend(self) -> str:
        """The front end the model kind takes (:data:`genrekit.features.frontends.FRONTENDS`)."""
        return model_kind(self).frontend

    @property
    def loss_weights(self) -> dict[str, float]:
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


Settings = dataclasses.make_dataclass(
    "Settings",
    [(key, kind) for key, kind in _TYPES.items()],
    bases=(_SettingsBase,),
    frozen=True,
)
Settings.__module__ = __name__
Settings.__doc__ = "The effective settings of a run: one field per constant of config.py."


def read_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read and type-check a JSON config file; return its settings as a dict.

    Raises
    ------
    ConfigError
        When the file is missing, is not JSON, or holds an unknown key or a wrong type.
    """
    from genrekit.fileio import read_json

    path = Path(path)
    data = read_json(path, error=ConfigError, what="config file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a JSON object of settings")
    if isinstance(data.get("settings"), dict):  # a training config written by the trainer
        data = data["settings"]
    values = {}
    for key, value in data.items():
        if key.startswith("_"):
            continue
        try:
            values[key] = _check_type(key, value)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return values


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--config`` flag every script takes."""
    parser.add_argument(
        "--config",
        metavar="JSON",
        help="JSON config file overriding config.py (e.g. examples/example_config.json)",
    )


def add_setting_arguments(
    parser: argparse.ArgumentParser, keys: Iterable[str], aliases: Mapping[str, Sequence[str]] | None = None
) -> None:
    """Add one ``--key`` flag per setting, defaulting to None so only given flags override.

    Booleans get ``--key`` / ``--no-key``. ``aliases`` adds other names for a flag, e.g.
    ``{"num_epochs": ["--epochs"]}``.
    """
    aliases = aliases or {}
    for key in keys:
        kind = _TYPES[key]
        default = default_value(key)
        help_text = f"default {default!r} (config.py {key.upper()})"
        names = [*aliases.get(key, ()), f"--{key}"]
        if kind is bool:
            parser.add_argument(
                *names, dest=key, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            parser.add_argument(
                *names, dest=key, type=kind, default=None, metavar=key.upper(), help=help_text
            )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from ``args.config`` and every setting flag present in ``args``."""
    overrides = {key: getattr(args, key) for key in _TYPES if hasattr(args, key)}
    return Settings.build(getattr(args, "config", None), overrides)
