"""The resume state of a run folder, and the checks that find a damaged file in it.

Every file of a run is written atomically (:mod:`genrekit.fileio`), so a kill at any instant
leaves each one whole: the old version or the new. A file damaged anyway (a disk error, a copy
cut short, a run of a genrekit before these rules) is one :class:`~genrekit.errors.ModelError`
line naming the file and the remedy, found before the data are prepared, never a traceback.

The files: ``backup/latest.weights.h5`` (weights and optimizer after the last finished epoch, with
that epoch and whether ``fit`` ended in its HDF5 attributes, so both change in one rename),
``backup/callback_state.json`` (:class:`genrekit.train.callbacks.CallbackState`),
``checkpoints/best.keras``, ``training_log.csv`` (one row per epoch) and ``run_settings.json``.
"""

from __future__ import annotations

import dataclasses
import re
import zipfile
from pathlib import Path
from typing import Any

from genrekit.errors import ModelError
from genrekit.fileio import OutputKind, check_output_dir, json_kind, prefix_kind, read_json

BACKUP_DIR = "backup"
WEIGHTS_FILE = "latest.weights.h5"  # in backup/
STATE_FILE = "callback_state.json"  # in backup/: the state of the callbacks that decide
KERAS_METADATA = "training_metadata.json"  # in backup/: the epoch, as Keras' BackupAndRestore wrote it
BEST_FILE = Path("checkpoints") / "best.keras"
LOG_FILE = "training_log.csv"
SETTINGS_FILE = "run_settings.json"
EPOCH_ATTR = "genrekit_epoch"  # epochs finished when the backup was written
DONE_ATTR = "genrekit_fit_done"  # fit ended after that epoch (early stop or last epoch)
RETRAIN = "use --retrain to train this run again from its first epoch"

# What an earlier run's file must look like to be resumed or replaced (the output policy of
# genrekit.fileio): a file genrekit did not write at one of these names is refused, never overwritten.
MODEL_KIND = prefix_kind("Keras model saved by genrekit (.h5/.keras)", b"\x89HDF\r\n\x1a\n", b"PK\x03\x04")
CONFIG_KIND = json_kind("genrekit training config (JSON)", "format", "genrekit-training-config")
SETTINGS_KIND = OutputKind("genrekit run settings (JSON)", lambda head: _is_run_settings(head))
LOG_KIND = prefix_kind("genrekit training log (CSV)", b"epoch,", empty=True)
BEST_KIND = prefix_kind("Keras checkpoint saved by genrekit (.keras)", b"PK\x03\x04")


def _is_run_settings(head: bytes) -> bool:
    """A JSON object whose first key is a setting's name (:meth:`Settings.to_dict`, cut or whole)."""
    from genrekit.settings import Settings

    first = re.match(rb'\A\s*\{\s*"(\w+)"\s*:', head)
    return first is not None and first.group(1).decode() in {f.name for f in dataclasses.fields(Settings)}


def run_files(settings: Any) -> dict[str, OutputKind]:
    """The files the trainer writes in its run folder, by relative name, with their kinds."""
    return {
        settings.model_filename: MODEL_KIND,
        settings.training_config_filename: CONFIG_KIND,
        SETTINGS_FILE: SETTINGS_KIND,
        LOG_FILE: LOG_KIND,
        str(BEST_FILE): BEST_KIND,
    }


def check_run_folder(settings: Any, out: str | Path, also: dict[str, OutputKind] | None = None) -> Path:
    """The output policy (:func:`genrekit.fileio.check_output_dir`) for a run folder, before any work:
    OutputPathError for a folder that is not one, or a run file there (and ``also``, e.g. ``run.log``)
    that is a link, not a regular file, audio, or not of the kind the trainer writes. A run folder of
    genrekit's own passes, to be resumed or (``--retrain``) trained again."""
    return check_output_dir(out, {**run_files(settings), **(also or {})})


def one_line(text: object) -> str:
    """``text`` on one line (a library's message may span several)."""
    return " ".join(str(text).split())


def damaged(path: str | Path, cause: str, remedy: str = RETRAIN) -> ModelError:
    """The one-line error for a damaged run-folder file: ``<path>: damaged (<cause>); <remedy>``."""
    return ModelError(f"{path}: damaged ({one_line(cause)}); {remedy}")


def read_run_json(path: Path) -> Any:
    """A JSON object the trainer wrote in a run folder; a damaged one is :func:`damaged`."""
    try:
        data = read_json(path, error=ModelError)
    except ModelError as exc:
        raise ModelError(f"{exc}; {RETRAIN}") from None
    if not isinstance(data, dict):
        raise damaged(path, f"a JSON {type(data).__name__}, not an object")
    return data


@dataclasses.dataclass(frozen=True)
class Backup:
    """What ``backup/`` holds: the weights after ``epoch`` finished epochs; ``done``: fit had ended."""

    path: Path
    epoch: int
    done: bool


def read_backup(backup_dir: Path) -> Backup | None:
    """The backup in ``backup_dir`` (only its attributes are read), or None when there is none.

    A backup written by Keras' BackupAndRestore (genrekit before the epoch was kept in the weights
    file) takes its epoch from ``training_metadata.json``.

    Raises
    ------
    ModelError
        When the weights file cannot be opened or records no epoch.
    """
    path = backup_dir / WEIGHTS_FILE
    if not path.is_file():
        return None
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            attrs = {k: fh.attrs[k] for k in (EPOCH_ATTR, DONE_ATTR) if k in fh.attrs}
    except Exception as exc:  # h5py raises OSError and others for a cut or foreign file
        raise damaged(path, f"not a readable HDF5 file: {exc}") from None
    if EPOCH_ATTR in attrs:
        return Backup(path, int(attrs[EPOCH_ATTR]), bool(attrs.get(DONE_ATTR, False)))
    metadata = backup_dir / KERAS_METADATA
    if not metadata.is_file():
        raise damaged(path, "no epoch recorded with the weights")
    epoch = read_run_json(metadata).get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise damaged(metadata, f"epoch {epoch!r} is not a count of epochs")
    return Backup(path, epoch, False)


def check_zip(path: Path) -> None:
    """Refuse a ``.keras`` file (a zip archive) that is cut or fails its members' CRC check."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise damaged(path, f"not a complete .keras archive: {exc}") from None
    if bad is not None:
        raise damaged(path, f"its member {bad} fails its CRC check")


def read_log(path: Path) -> tuple[str | None, list[tuple[int, str]]]:
    """The header line and ``(epoch, line)`` rows of a ``training_log.csv``, lines as written.

    A last line without its line end (a writer of genrekit before the log was written atomically,
    killed mid-row) is left out: the epoch it logged is trained again on resume.

    Raises
    ------
    ModelError
        For a row whose first field is not an epoch number.
    """
    if not path.is_file():
        return None, []
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise damaged(path, f"not UTF-8 text: {exc}") from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    if not lines:
        return None, []
    if not lines[0].startswith("epoch"):
        raise damaged(path, "its first line is not the header 'epoch,...'")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        try:
            rows.append((int(line.split(",", 1)[0]), line))
        except ValueError:
            raise damaged(path, f"line {number} does not start with an epoch number") from None
    return lines[0], rows


def check_interrupted_run(out: Path) -> Backup | None:
    """Check every file an interrupted run in ``out`` resumes from; return its backup (None: none).

    The deciders' state and the best checkpoint matter only when the backup is past epoch 0.

    Raises
    ------
    ModelError
        Naming the first damaged file and the remedy.
    """
    backup = read_backup(out / BACKUP_DIR)
    if backup is not None and backup.epoch > 0:
        if (out / BACKUP_DIR / STATE_FILE).is_file():
            read_run_json(out / BACKUP_DIR / STATE_FILE)
        if (out / BEST_FILE).is_file():
            check_zip(out / BEST_FILE)
    read_log(out / LOG_FILE)
    return backup
