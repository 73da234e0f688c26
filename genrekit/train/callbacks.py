"""The callbacks of a training run, and the list :func:`training_callbacks` gives ``model.fit``.

- :class:`EpochSetter` tells the data stream which epoch starts and restarts the dropout masks'
  random stream, so a resumed run draws what an uninterrupted one draws;
- :class:`ValidationMetrics` computes the track-level validation figures each epoch
  (:func:`genrekit.train.validation.validation_metrics`) before anything reads the epoch's logs;
- the deciders (:class:`BestCheckpoint`, early stopping, LR reduction on a plateau) watch the monitor;
- :class:`CallbackState` saves and restores the deciders' state, so a resume goes on exactly;
- :class:`RunBackup`, :class:`EpochLog` (``training_log.csv``) and TensorBoard.

Every file they write is written atomically (see :mod:`genrekit.train.run_folder`).

Only training imports this module; it imports Keras at the top.
"""

from __future__ import annotations

import collections.abc
import csv
import dataclasses
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrekit.backend import keras
from genrekit.fileio import replacing, write_bytes_atomic, write_json_atomic
from genrekit.train.pipeline import predict_segments
from genrekit.train.run_folder import (  # noqa: F401 - STATE_FILE public here too, as before
    BACKUP_DIR,
    BEST_FILE,
    DONE_ATTR,
    EPOCH_ATTR,
    LOG_FILE,
    STATE_FILE,
    WEIGHTS_FILE,
    damaged,
    read_backup,
    read_log,
    read_run_json,
)
from genrekit.train.validation import validation_metrics

if TYPE_CHECKING:
    from genrekit.datasets.labels import EncodedLabels
    from genrekit.settings import Settings
    from genrekit.train.pipeline import FeatureSource, TrainingStream

# The trainer's log: the epoch lines of run.log name it, as they did when these lived in run.py.
log = logging.getLogger("genrekit.train.run")


class EpochSetter(keras.callbacks.Callback):
    """Tells the data stream which epoch starts, and restarts the dropout masks' random stream.

    A resumed run then samples, orders, augments and drops out exactly as an uninterrupted
    one: the stream draws from ``(seed, epoch)``, and each dropout layer's seed generator
    (whose state the backup does not hold) is set to ``(its seed, epoch * 10**6)`` at the start
    of every epoch.
    """

    def __init__(self, stream: TrainingStream):
        super().__init__()
        self.stream = stream

    def on_epoch_begin(self, epoch, logs=None):
        self.stream.epoch = epoch
        for layer in self.model.layers:
            generator = getattr(layer, "seed_generator", None)
            if isinstance(generator, keras.random.SeedGenerator):
                state = keras.ops.convert_to_numpy(generator.state)
                state[1] = epoch * 10**6
                generator.state.assign(state)


class ValidationMetrics(keras.callbacks.Callback):
    """Track-level validation metrics each epoch (balanced accuracy, macro F1 of the top head).

    Runs first in the callback list, so early stopping, LR reduction and checkpoints see
    ``val_top_balanced_accuracy`` in the epoch's logs.
    """

    def __init__(
        self,
        source: FeatureSource,
        labels: EncodedLabels,
        batch_size: int,
        threshold: float,
        loss_weights: dict,
    ):
        super().__init__()
        self.source, self.labels = source, labels
        self.batch_size, self.threshold, self.loss_weights = batch_size, threshold, loss_weights

    def on_epoch_end(self, epoch, logs=None):

        probs, seg_track = predict_segments(
            self.model, self.source, self.labels.track_ids, batch_size=self.batch_size
        )
        metrics = validation_metrics(probs, seg_track, self.labels, self.threshold, self.loss_weights)
        if logs is not None:
            logs.update(metrics)
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        medium = metrics.get("val_medium_balanced_accuracy")
        log.info(
            "epoch %d validation: score %.3f; top balanced accuracy %.3f, top macro F1 %.3f, medium "
            "balanced accuracy %s, all-genres LRAP %.3f, Jaccard %.3f",
            epoch + 1,
            metrics["val_score"],
            metrics["val_top_balanced_accuracy"],
            metrics["val_top_f1_macro"],
            "(no medium head)" if medium is None else f"{medium:.3f}",
            metrics["val_all_lrap"],
            metrics["val_all_jaccard"],
        )


def _plain(value: Any) -> Any:
    """A callback's state value as plain JSON (numpy and Keras scalars become floats or ints)."""
    if isinstance(value, int | float | bool | str) or value is None:
        return value
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()


def _state_name(callback: Any) -> str:
    """The name a decider's state is saved under (BestCheckpoint's is ModelCheckpoint's, as before it)."""
    return getattr(callback, "state_name", type(callback).__name__)


class BestCheckpoint(keras.callbacks.Callback):
    """The model of the best epoch so far (``monitor``, higher is better), saved atomically.

    Decides as Keras' ``ModelCheckpoint(mode="max", save_best_only=True)`` (the first epoch always
    saves; a NaN never improves), but saves to a temporary name renamed over ``path``: Keras writes
    the checkpoint in place, and a run killed during that save kept a cut ``best.keras``.
    """

    state_name = "ModelCheckpoint"  # the key of its state in callback_state.json

    def __init__(self, path: Path, monitor: str):
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.best = None

    def on_epoch_end(self, epoch, logs=None):
        current = (logs or {}).get(self.monitor)
        if current is None:
            log.warning(
                "epoch %d: no %s in the logs, the best checkpoint is not updated", epoch + 1, self.monitor
            )
            return
        if self.best is None or current > self.best:
            self.best = current
            with replacing(self.path) as tmp:
                self.model.save(tmp)


class CallbackState(keras.callbacks.Callback):
    """Saves and restores the state of the callbacks that decide, so a resumed run goes on exactly.

    The backup brings back weights, optimizer and epoch, but early stopping's patience
    count and best score, the LR reduction's, and the best checkpoint's score start afresh,
    so a worse epoch could overwrite the best model. This callback writes their state after
    every epoch (before the backup is written: it must sit after them and before
    :class:`RunBackup` in the callback list) and restores it when the first epoch of a resumed
    run begins. The state of the last two epochs is kept, so a run killed between this write
    and the backup's resumes with the state of the epoch the backup holds. Each state also keeps
    the epoch's log row: a run killed between the backup and the CSV row gets it back (:class:`EpochLog`).
    """

    FIELDS = {
        "EarlyStopping": ("wait", "best", "stopped_epoch", "best_epoch"),
        "ReduceLROnPlateau": ("wait", "best", "cooldown_counter"),
        "ModelCheckpoint": ("best",),
    }

    def __init__(self, path: Path, deciders: list):
        super().__init__()
        self.path, self.deciders = path, deciders
        self.first = True
        self.states: dict | None = None  # read when first needed: a fresh run never reads the file

    def _states(self) -> dict:
        if self.states is None:
            self.states = read_run_json(self.path) if self.path.is_file() else {}
        return self.states

    def row(self, epoch: int) -> dict | None:
        """The log row of ``epoch`` (0-based) kept with the state after it, or None."""
        return self._states().get(str(epoch + 1), {}).get("row")

    def on_epoch_begin(self, epoch, logs=None):
        if not self.first:
            return
        self.first = False
        if epoch == 0:
            self.states = {}  # a fresh start: what an earlier attempt left is not this run's
            return
        state = self._states().get(str(epoch))
        if state is None:
            return
        for cb in self.deciders:
            for name, value in state.get(_state_name(cb), {}).items():
                setattr(cb, name, value)
        log.info(
            "restored the state of early stopping, LR reduction and the best checkpoint at epoch %d",
            epoch,
        )

    def on_epoch_end(self, epoch, logs=None):
        states = self._states()
        states[str(epoch + 1)] = {
            _state_name(cb): {f: _plain(getattr(cb, f)) for f in self.FIELDS[_state_name(cb)]}
            for cb in self.deciders
        }
        states[str(epoch + 1)]["row"] = {k: _plain(v) for k, v in (logs or {}).items()}
        self.states = {k: states[k] for k in sorted(states, key=int)[-2:]}
        write_json_atomic(self.path, self.states)


class RunBackup(keras.callbacks.Callback):
    """The backup a killed run resumes from: weights and optimizer after every epoch, written atomically.

    Keras' BackupAndRestore writes the weights in place and the epoch in a second file, and removes
    the backup when ``fit`` ends, before the model is saved. Here the epoch and whether ``fit``
    ended travel in the weights file's attributes (:mod:`genrekit.train.run_folder`), committed by
    one rename; the trainer removes ``backup/`` once the run's model and config are written.
    A backup of a finished ``fit`` resumes past its last epoch: only the finish is done again.
    """

    def __init__(self, backup_dir: Path):
        super().__init__()
        self.dir = Path(backup_dir)
        self.epoch = 0  # the epoch training resumed at (0: a fresh start)

    def on_train_begin(self, logs=None):
        backup = read_backup(self.dir)
        if backup is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)  # its variables are in the backup
        try:
            self.model.load_weights(backup.path)
        except Exception as exc:  # h5py and Keras raise many kinds for a damaged file
            raise damaged(backup.path, f"cannot load its weights: {type(exc).__name__}: {exc}") from None
        self.epoch = backup.epoch
        # As BackupAndRestore does: fit starts at this epoch.
        self.model._initial_epoch = self.params["epochs"] if backup.done else backup.epoch

    def on_epoch_end(self, epoch, logs=None):
        import h5py

        done = bool(self.model.stop_training) or epoch + 1 >= self.params["epochs"]
        with replacing(self.dir / WEIGHTS_FILE) as tmp:
            self.model.save_weights(tmp)
            with h5py.File(tmp, "a") as fh:
                fh.attrs[EPOCH_ATTR] = epoch + 1
                fh.attrs[DONE_ATTR] = done


class EpochLog(keras.callbacks.Callback):
    """``training_log.csv``: one row per epoch, as Keras' CSVLogger writes it, the file rewritten atomically.

    When training resumes at epoch ``e``, rows of epochs ``e`` and later (logged by a run killed
    before its backup) are dropped, and the row of epoch ``e - 1`` is taken from the deciders'
    state when a kill came between the backup and the row; a kill never leaves half a line.
    """

    def __init__(self, path: Path, backup: RunBackup, state: CallbackState):
        super().__init__()
        self.path, self.backup, self.state = Path(path), backup, state
        self.header: str | None = None
        self.lines: list[str] = []

    def on_train_begin(self, logs=None):
        header, rows = read_log(self.path)
        start = self.backup.epoch
        kept = [(epoch, line) for epoch, line in rows if epoch < start]
        if start and header and (not kept or kept[-1][0] != start - 1):
            row = self.state.row(start - 1)
            if row is not None:
                kept.append((start - 1, self._line(header, start - 1, row)))
        self.header, self.lines = header, [line for _, line in kept]
        if header is not None:
            self._write()  # also drops a half last line a genrekit before this one left

    @staticmethod
    def _line(header: str, epoch: int, logs: dict) -> str:
        keys = next(csv.reader([header]))[1:]
        return _csv_line([epoch, *(_csv_value(logs.get(key, "NA")) for key in keys)])

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.header is None:
            self.header = _csv_line(["epoch", *sorted(logs)])
        self.lines.append(self._line(self.header, epoch, logs))
        self._write()

    def _write(self) -> None:
        text = "".join([self.header or "", *self.lines])
        write_bytes_atomic(self.path, text.encode("utf-8"), fsync=False)


def _csv_line(values: list[Any]) -> str:
    """One CSV line as Keras' CSVLogger writes it (the excel dialect: commas, CRLF)."""
    buffer = io.StringIO()
    csv.writer(buffer, dialect=csv.excel).writerow(values)
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    """A log value as Keras' CSVLogger writes it (an array as a quoted list)."""
    if isinstance(value, str) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value
    if isinstance(value, collections.abc.Iterable):
        return f'"[{", ".join(map(str, value))}]"'
    return value


@dataclasses.dataclass(frozen=True)
class TrainingCallbacks:
    """What :func:`training_callbacks` gives the trainer: the list for ``model.fit`` and its parts."""

    callbacks: list[Any]  # in the order they must run
    deciders: list[Any]  # checkpoint, early stopping, LR reduction: they watch ``monitor``
    monitor: str
    best_path: Path  # the best epoch's model, loaded after training


def deciders(settings: Settings, best_path: Path) -> list[Any]:
    """The callbacks that decide from ``settings.monitor``: best checkpoint, early stopping, LR plateau."""
    monitor = settings.monitor
    chosen = [
        BestCheckpoint(best_path, monitor),
        # The best weights are loaded from the checkpoint after training (also after a resume).
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=settings.patience),
    ]
    if settings.lr_schedule == "plateau":
        chosen.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                mode="max",
                factor=settings.lr_factor,
                patience=settings.lr_patience,
                min_lr=settings.min_lr,
            )
        )
    return chosen


def training_callbacks(
    settings: Settings,
    stream: TrainingStream,
    source: FeatureSource,
    validation: EncodedLabels,
    out: Path,
) -> TrainingCallbacks:
    """The callbacks of a run writing into ``out``, validated on the ``validation`` tracks of ``source``."""
    best_path = out / BEST_FILE
    decide = deciders(settings, best_path)
    state = CallbackState(out / BACKUP_DIR / STATE_FILE, decide)
    backup = RunBackup(out / BACKUP_DIR)
    callbacks = [
        EpochSetter(stream),
        ValidationMetrics(
            source, validation, settings.inference_batch_size, settings.threshold, settings.loss_weights
        ),
        *decide,
        state,
        # The backup is written before the CSV row, so a run killed once a row is visible
        # resumes after that epoch; a row lost to a kill between them comes back from the state.
        backup,
        EpochLog(out / LOG_FILE, backup, state),
        keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard")),
    ]
    return TrainingCallbacks(callbacks, decide, settings.monitor, best_path)
