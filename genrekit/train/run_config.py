"""The training config saved next to a model: its format and version, reading, writing, and the
check that a model belongs to it.

The trainer builds it (:func:`training_config`) and writes it (:func:`write_training_config`);
inference and evaluation read it
(:func:`load_training_config`), rebuild the front end that made the model's input from it
(:func:`frontend_of`) and refuse a model that does not match it (:func:`check_model`).

Versions: 1 had the log-mel parameters in ``features``; 2 adds the ``frontend`` section
(``{"name": ..., "params": {...}}``, :meth:`genrekit.features.frontends.FrontEnd.to_config`) and keeps
``features`` (the same parameters, under the name readers of version 1 know). A version-1
config means the ``mel_segments`` front end with the parameters of its ``features``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrekit.datasets.labels import LEVELS
from genrekit.errors import ConfigError, ModelError
from genrekit.features import frontends
from genrekit.fileio import read_json, write_json_atomic

if TYPE_CHECKING:
    from genrekit.settings import Settings
    from genrekit.train.data import TrainingData

CONFIG_FORMAT = "genrekit-training-config"
CONFIG_VERSION = 2  # raise when a key changes meaning; older versions must still be read
REQUIRED_KEYS = ("settings", "features", "normalization", "vocabularies", "input_shape")
REQUIRED_SINCE = {"frontend": 2}  # sections a version must have, from the version that added them


def load_training_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a training config written by the trainer.

    Raises
    ------
    ModelError
        When the file is missing, not JSON, not a training config, of a newer version than this
        genrekit reads, or lacks a required section.
    """

    path = Path(path)
    config = read_json(path, error=ModelError, what="training config")
    if not isinstance(config, dict) or config.get("format") != CONFIG_FORMAT:
        raise ModelError(f"{path}: not a training config written by balanced_trainer.py (no 'format' key)")
    version = config.get("version", CONFIG_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ModelError(f"{path}: training config version {version!r} must be a positive integer")
    if version > CONFIG_VERSION:
        raise ModelError(
            f"{path}: training config version {version} was written by a newer genrekit "
            f"(this one reads up to version {CONFIG_VERSION}); upgrade genrekit"
        )
    required = REQUIRED_KEYS + tuple(k for k, since in REQUIRED_SINCE.items() if version >= since)
    for key in required:
        if key not in config:
            raise ModelError(f"{path}: training config lacks {key!r}")
    return config


def frontend_of(config: Mapping[str, Any], path: str | os.PathLike = "training config") -> Any:
    """The :class:`~genrekit.features.frontends.FrontEnd` that made a model's input, from its training config.

    Version 2 names it in ``frontend``; a version-1 config (no such section) used log-mel
    segments with the parameters of its ``features``.

    Raises
    ------
    ModelError
        Naming ``path`` when the section is malformed or names an unknown front end.
    """

    section = config.get("frontend")
    if section is None:
        section = {"name": frontends.DEFAULT_FRONTEND, "params": config.get("features")}
    try:
        return frontends.from_config(section)
    except ConfigError as exc:
        raise ModelError(f"{path}: {exc}") from None


def write_training_config(path: str | os.PathLike, config: Mapping[str, Any]) -> Path:
    """Write ``config`` (with its format and version set) atomically; return the path."""

    path = Path(path)
    write_json_atomic(path, {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, **config})
    return path


def read_training_log(path: Path) -> list[dict[str, float]]:
    """The rows of a run's ``training_log.csv`` (``epoch`` an int, the rest floats); [] without one."""
    import pandas as pd

    if not path.is_file():
        return []
    table = pd.read_csv(path)
    return [
        {k: (float(v) if k != "epoch" else int(v)) for k, v in row.items()}
        for row in table.to_dict("records")
    ]


def _balancing_section(settings: Settings, data: TrainingData) -> dict[str, Any]:
    sampler = data.sampler
    return {
        "use_class_weights": settings.use_class_weights,
        "use_weighted_sampling": settings.use_weighted_sampling,
        "use_focal_loss": settings.use_focal_loss,
        "focal_gamma": settings.focal_gamma,
        "use_logit_adjustment": settings.use_logit_adjustment,
        "logit_adjustment_tau": settings.logit_adjustment_tau,
        "oversample_threshold": settings.oversample_threshold,
        "undersample_threshold": settings.undersample_threshold,
        "class_weights": {k: np.round(np.asarray(v, float), 6).tolist() for k, v in data.weights.items()},
        "epoch_top_counts": sampler.planned_counts().tolist() if sampler is not None else None,
        # The training class mix (for logit adjustment, during training or post hoc).
        "priors": {k: np.round(v, 8).tolist() for k, v in data.priors.items()},
    }


def _data_section(settings: Settings, data: TrainingData, splits_file: Path | None) -> dict[str, Any]:
    return {
        "metadata_dir": str(data.processor.metadata_dir),
        "audio_dir": str(data.processor.audio_dir),
        "subset": settings.subset,
        "dataset": settings.dataset,
        **({"splits_file": splits_file.name} if splits_file is not None else {}),
        "cache_dir": str(data.cache.cache_dir),
        "tracks": {s: len(v) for s, v in data.split_labels.items()},
        "left_out": data.left_out,
    }


def _history_section(settings: Settings, per_epoch: list[dict[str, float]], started: float) -> dict[str, Any]:
    monitor = settings.monitor
    best = max(per_epoch, key=lambda row: row.get(monitor, -1)) if per_epoch else {}
    # Distinct epochs: a log from a genrekit before resumes dropped their redone rows has repeats.
    epochs_run = len({row["epoch"] for row in per_epoch})
    return {
        "monitor": monitor,
        "epochs_run": epochs_run,
        "best_epoch": int(best.get("epoch", -1)) + 1 if best else None,
        "best": best,
        "last": per_epoch[-1] if per_epoch else {},
        "stopped_early": epochs_run < settings.num_epochs,
        "seconds": round(time.time() - started, 1),
        "platform": platform.platform(),
    }


def training_config(
    settings: Settings,
    data: TrainingData,
    *,
    model_path: Path,
    thresholds: dict[str, Any],
    device: dict[str, Any],
    splits_file: Path | None,
    started: float,
) -> dict[str, Any]:
    """The training config of a finished training (what :func:`write_training_config` writes).

    ``data`` is the run's :class:`~genrekit.train.data.TrainingData`; ``model_path`` the saved
    model (its folder holds ``training_log.csv``); ``started`` the ``time.time()`` the run began.
    """
    import genrekit

    frontend = data.frontend
    per_epoch = read_training_log(model_path.parent / "training_log.csv")
    return {
        "format": CONFIG_FORMAT,
        "version": CONFIG_VERSION,
        "genrekit_version": genrekit.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_file": model_path.name,
        "input_shape": list(frontend.input_shape),
        "settings": settings.to_dict(),
        "frontend": frontend.to_config(),
        "features": frontend.params(),  # as version 1 wrote it (the front end's parameters)
        "normalization": {**data.norm, "computed_on": f"training split, {len(data.train_labels)} tracks"},
        "left_out_files": [dataclasses.asdict(f) for f in data.cache.failures][:1000],
        "vocabularies": {level: data.processed.vocabs[level].to_dict() for level in LEVELS},
        "heads": list(data.processed.heads),  # the model's outputs (no medium head without sub-genres)
        "threshold": settings.threshold,
        "thresholds": thresholds,
        "top_k": settings.top_k,
        "balancing": _balancing_section(settings, data),
        "data": _data_section(settings, data, splits_file),
        "device": device,
        "history": _history_section(settings, per_epoch, started),
    }


def heads_of_config(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The levels a saved model has a head for: the config's ``heads``, else every level with at
    least two classes in its vocabularies (:func:`genrekit.datasets.labels.heads_of`; runs before ``heads``
    was recorded always had all three).

    Raises
    ------
    ModelError
        When ``heads`` names an unknown level or lacks ``top`` or ``all``.
    """
    heads = config.get("heads")
    if heads is None:
        return tuple(level for level in LEVELS if len(config["vocabularies"][level]["genre_ids"]) >= 2)
    if not isinstance(heads, list) or any(h not in LEVELS for h in heads) or not {"top", "all"} <= set(heads):
        raise ModelError(f"training config: heads={heads!r} must list 'top', 'all' and optionally 'medium'")
    return tuple(level for level in LEVELS if level in heads)


def _output_widths(model: Any) -> dict[str, int]:
    outputs = model.output
    if isinstance(outputs, Mapping):
        return {str(k): int(v.shape[-1]) for k, v in outputs.items()}
    tensors = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {str(name): int(t.shape[-1]) for name, t in zip(model.output_names, tensors, strict=False)}


def _layers_within(model: Any) -> Any:
    """Every layer of ``model``, those of nested models included (a fine-tuned backbone's heads)."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers_within(layer)


def _normalization_problems(model: Any, stats: Mapping[str, Any]) -> list[str]:
    """The model normalizes its own input: its Normalization layer must hold the config's statistics.

    Two trainings on the same vocabularies give models with equal shapes; their statistics differ.
    """
    from genrekit.models.cnn import MIN_NORM_STD

    if "mean" not in stats or "std" not in stats:
        return []
    layer = next((x for x in _layers_within(model) if type(x).__name__ == "Normalization"), None)
    if layer is None:
        return ["the config has normalization statistics but the model has no Normalization layer"]
    mean = np.asarray(stats["mean"], np.float64).ravel()
    std = np.asarray(stats["std"], np.float64).ravel()
    variance = np.where(std < MIN_NORM_STD, 1.0, std) ** 2
    held_mean = np.asarray(layer.mean, np.float64).ravel()
    held_var = np.asarray(layer.variance, np.float64).ravel()
    if held_mean.shape != mean.shape or held_var.shape != variance.shape:
        return [f"the model normalizes {held_mean.size} mel bands, the config's statistics {mean.size}"]
    # float32 storage in the model against float64 JSON in the config: compare loosely.
    if not (
        np.allclose(held_mean, mean, rtol=1e-4, atol=1e-3) and np.allclose(held_var, variance, rtol=1e-3)
    ):
        return [
            "the model's normalization statistics differ from the config's (the config of another training)"
        ]
    return []


def check_model(
    model: Any,
    training_config: Mapping[str, Any],
    model_path: str | os.PathLike,
    config_path: str | os.PathLike,
) -> None:
    """Refuse a model that does not belong to its training config.

    Checks the input shape (against the config's and its front end's), the width of each head
    against its vocabulary, and the normalization statistics built into the model.

    Raises
    ------
    ModelError
        One error naming both files and every difference.
    """
    problems = frontend_of(training_config, config_path).input_problems(
        training_config["input_shape"], model.input_shape
    )
    widths = _output_widths(model)
    heads = heads_of_config(training_config)
    if "medium" not in heads and "medium" in widths:
        problems.append("model has a 'medium' output the config's heads do not list")
    for level in heads:
        size = len(training_config["vocabularies"][level]["genre_ids"])
        if level not in widths:
            problems.append(f"model has no output named {level!r} (outputs: {sorted(widths)})")
        elif widths[level] != size:
            problems.append(
                f"{level} head has {widths[level]} outputs, the config's vocabulary {size} genres"
            )
    problems.extend(_normalization_problems(model, training_config.get("normalization") or {}))
    if problems:
        raise ModelError(
            f"model {model_path} does not match training config {config_path}: " + "; ".join(problems)
        )
