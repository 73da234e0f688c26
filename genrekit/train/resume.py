"""The resume policy of a run folder: reuse a finished run, resume an interrupted one, or start afresh.

A finished run (model and training config present) is returned as it is; an interrupted one
(``backup/`` and ``run_settings.json``) resumes from its last finished epoch. Either is refused
when it was trained with settings that shape another model (:func:`settings_differences`);
``--retrain`` removes the earlier run's resume state and logs first (:func:`start_fresh`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genrekit.errors import ConfigError
from genrekit.models.registry import kind_only_keys, kind_path_keys, model_kind
from genrekit.settings import SPLIT_FILE_KEYS, Settings
from genrekit.train.run_config import load_training_config

log = logging.getLogger("genrekit.train.run")  # the trainer's log, as when this lived in run.py

# Settings that do not shape the model: a finished run is reused even when these differ.
NOT_SHAPING = frozenset(
    {
        "output_dir", "cache_dir", "data_dir", "demo_dir", "workers", "engine", "strategy", "threshold", "top_k",
        "inference_batch_size", "inference_segment_hop", "split", "calibration_bins",
        "confusion_max_classes", "model_filename", "training_config_filename", "mixed_precision",
    }
)  # fmt: skip
# Compared as resolved paths: the data folders, and the files and folders a model kind names.
PATH_KEYS = frozenset({"metadata_dir", "audio_dir", *SPLIT_FILE_KEYS.values()}) | kind_path_keys()


def finished_run(settings: Settings, output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The training config of a finished run in ``output_dir`` (model and config present), else None.

    Raises
    ------
    ConfigError
        When the finished run was trained with other settings (see :func:`settings_differences`).
    """
    out = Path(output_dir)
    config_path = out / settings.training_config_filename
    if not (config_path.is_file() and (out / settings.model_filename).is_file()):
        return None
    config = load_training_config(config_path)
    refuse_other_settings(config.get("settings", {}), settings, out, "holds a finished run")
    return config


def _kind_keys(values: Mapping[str, Any]) -> frozenset[str]:
    """The settings that shape only the kind of ``values`` (none for a kind this genrekit lacks)."""
    try:
        return frozenset(model_kind(values).settings_keys)
    except ConfigError:
        return frozenset()


def settings_differences(saved: dict[str, Any], requested: Settings) -> list[str]:
    """``key: saved -> requested`` for every setting that shapes a model and differs.

    Settings that do not change what is trained (``NOT_SHAPING``: paths of outputs and caches,
    workers, inference and evaluation settings) are not compared; nor are the settings of a model
    kind neither run trains (the fine-tuning settings of two heads runs,
    :attr:`genrekit.models.registry.ModelKind.settings_keys`); data folders are compared as
    resolved paths.
    """
    wanted = requested.to_dict()
    unused = kind_only_keys() - _kind_keys(saved) - _kind_keys(wanted)
    diffs = []
    for key in sorted(wanted):
        if key in NOT_SHAPING or key in unused or key not in saved:
            continue
        old, new = saved[key], wanted[key]
        if key in PATH_KEYS and old and new:
            old, new = str(Path(old).resolve()), str(Path(new).resolve())
        if isinstance(new, tuple):
            new = list(new)
        if old != new:
            diffs.append(f"{key}: {saved[key]!r} -> {wanted[key]!r}")
    return diffs


def refuse_other_settings(saved: dict[str, Any], settings: Settings, out: Path, what: str) -> None:
    """ConfigError naming every difference when ``saved`` shapes another model than ``settings``."""
    diffs = settings_differences(saved, settings)
    if diffs:
        raise ConfigError(
            f"{out} {what} trained with other settings ({'; '.join(diffs)}): use --retrain to train "
            "again in this folder, or another --output_dir"
        )


def start_fresh(out: Path) -> None:
    """``--retrain``: remove an earlier run's resume state and logs (the model is replaced at the end)."""
    for name in ("backup", "checkpoints"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    for name in ("training_log.csv", "run_settings.json"):
        (out / name).unlink(missing_ok=True)


def prepare_run_folder(settings: Settings, out: Path, retrain: bool = False) -> dict[str, Any] | None:
    """Apply the resume policy to ``out``; return the config of a finished run to reuse, else None.

    Raises
    ------
    ConfigError
        For a folder the model kind refuses, or a run in it trained with other settings.
    """
    model_kind(settings).check_output_dir(settings, out)
    done = None if retrain else finished_run(settings, out)
    if done is not None:
        log.info("%s holds a finished run: nothing to do (use --retrain to train again)", out)
        return done
    if retrain:
        start_fresh(out)
    elif (out / "backup").is_dir() and (out / "run_settings.json").is_file():
        saved = json.loads((out / "run_settings.json").read_text(encoding="utf-8"))
        refuse_other_settings(saved, settings, out, "holds an interrupted run")
    return None
