"""The resume policy of a run folder: reuse a finished run, resume an interrupted one, or start afresh.

A finished run (a training config, and a model that loads and matches it) is returned as it is;
an interrupted one (``backup/`` and ``run_settings.json``) resumes from its last finished epoch.
Either is refused when it was trained with settings that shape another model
(:func:`settings_differences`); ``--retrain`` removes the earlier run's resume state and logs
first (:func:`start_fresh`). A damaged file is one line naming it and the remedy
(:mod:`genrekit.train.run_folder`); the temporary files of a killed writer are removed.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genrekit.errors import ConfigError, ModelError
from genrekit.fileio import leftover_temporaries
from genrekit.models.registry import kind_only_keys, kind_path_keys, model_kind
from genrekit.settings import SPLIT_FILE_KEYS, Settings
from genrekit.train.run_config import check_model, load_training_config
from genrekit.train.run_folder import (
    BACKUP_DIR,
    BEST_FILE,
    LOG_FILE,
    RETRAIN,
    SETTINGS_FILE,
    WEIGHTS_FILE,
    check_interrupted_run,
    check_run_folder,
    one_line,
    read_run_json,
)

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
    """The training config of a finished run in ``output_dir``, else None (no model or no config).

    A run is finished when its model loads and matches its config (:func:`check_final_model`).

    Raises
    ------
    ConfigError
        When the finished run was trained with other settings (see :func:`settings_differences`).
    ModelError
        When its config or its model is damaged (one line: the file, the cause, ``--retrain``).
    """
    out = Path(output_dir)
    config_path = out / settings.training_config_filename
    model_path = out / settings.model_filename
    if not (config_path.is_file() and model_path.is_file()):
        return None
    try:
        config = load_training_config(config_path)
    except ModelError as exc:
        raise ModelError(f"{exc}; {RETRAIN}") from None
    refuse_other_settings(config.get("settings", {}), settings, out, "holds a finished run")
    check_final_model(model_path, config, config_path)
    return config


def check_final_model(model_path: Path, config: dict[str, Any], config_path: Path) -> None:
    """Load the model of a finished run and check it against its config: a cut or foreign model
    is not a finished run.

    Raises
    ------
    ModelError
        One line: the model, why it cannot be used, and ``--retrain``.
    """
    from genrekit.models.io import load_model

    try:
        check_model(load_model(model_path), config, model_path, config_path)
    except ModelError as exc:
        raise ModelError(
            f"{one_line(exc)}: the run in {model_path.parent} is not finished; {RETRAIN}"
        ) from None


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
    for name in (BACKUP_DIR, BEST_FILE.parent):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    for name in (LOG_FILE, SETTINGS_FILE):
        (out / name).unlink(missing_ok=True)


def remove_leftover_temporaries(out: Path) -> None:
    """Remove the temporary files a writer killed mid-write left in the run folder (never read)."""
    for folder in (out, out / BACKUP_DIR, out / BEST_FILE.parent):
        for path in leftover_temporaries(folder):
            log.info("removing %s, left by a run killed while writing it", path)
            path.unlink(missing_ok=True)


def remove_finished_backup(out: Path, config_path: Path) -> None:
    """Remove the backup a run killed after writing its config left; a newer one (a ``--retrain``
    killed midway) is kept."""
    weights = out / BACKUP_DIR / WEIGHTS_FILE
    if not (out / BACKUP_DIR).is_dir():
        return
    if weights.is_file() and weights.stat().st_mtime_ns > config_path.stat().st_mtime_ns:
        return
    log.info("removing %s, the backup of the finished run", out / BACKUP_DIR)
    shutil.rmtree(out / BACKUP_DIR, ignore_errors=True)


def check_resume_state(settings: Settings, out: Path) -> None:
    """Refuse an interrupted run in ``out`` with other settings or a damaged file, before any work.

    Raises
    ------
    ConfigError
        When it was started with settings that shape another model.
    ModelError
        Naming the first damaged file and the remedy.
    """
    if (out / BACKUP_DIR).is_dir() and (out / SETTINGS_FILE).is_file():
        saved = read_run_json(out / SETTINGS_FILE)
        refuse_other_settings(saved, settings, out, "holds an interrupted run")
    check_interrupted_run(out)


def prepare_run_folder(settings: Settings, out: Path, retrain: bool = False) -> dict[str, Any] | None:
    """Apply the resume policy to ``out``; return the config of a finished run to reuse, else None.

    Raises
    ------
    ConfigError
        For a folder the model kind refuses, or a run in it trained with other settings.
    ModelError
        For a damaged file of the run (one line naming it and the remedy).
    OutputPathError
        For a file at a run file's name that genrekit did not write (:func:`check_run_folder`).
    """
    check_run_folder(settings, out)  # nothing of the user's is overwritten (or removed by --retrain)
    model_kind(settings).check_output_dir(settings, out)
    remove_leftover_temporaries(out)
    if retrain:
        start_fresh(out)
        return None
    done = finished_run(settings, out)
    if done is not None:
        log.info("%s holds a finished run: nothing to do (use --retrain to train again)", out)
        remove_finished_backup(out, out / settings.training_config_filename)
        return done
    check_resume_state(settings, out)
    return None
