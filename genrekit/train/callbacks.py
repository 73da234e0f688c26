"""The callbacks of a training run, and the list :func:`training_callbacks` gives ``model.fit``.

- :class:`EpochSetter` tells the data stream which epoch starts and restarts the dropout masks'
  random stream, so a resumed run draws what an uninterrupted one draws;
- :class:`ValidationMetrics` computes the track-level validation figures each epoch
  (:func:`genrekit.train.validation.validation_metrics`) before anything reads the epoch's logs;
- the deciders (best checkpoint, early stopping, LR reduction on a plateau) watch the monitor;
- :class:`CallbackState` saves and restores the deciders' state, so a resume goes on exactly;
- BackupAndRestore, the CSV log and TensorBoard.

Only training imports this module; it imports Keras at the top.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrekit.backend import keras
from genrekit.fileio import write_json_atomic
from genrekit.train.pipeline import predict_segments
from genrekit.train.validation import validation_metrics

if TYPE_CHECKING:
    from genrekit.datasets.labels import EncodedLabels
    from genrekit.settings import Settings
    from genrekit.train.pipeline import FeatureSource, TrainingStream

# The trainer's log: the epoch lines of run.log name it, as they did when these lived in run.py.
log = logging.getLogger("genrekit.train.run")

STATE_FILE = "callback_state.json"  # in backup/: the state of the callbacks that decide


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
    if isinstance(value, int | float | bool) or value is None:
        return value
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()


class CallbackState(keras.callbacks.Callback):
    """Saves and restores the state of the callbacks that decide, so a resumed run goes on exactly.

    BackupAndRestore brings back weights, optimizer and epoch, but early stopping's patience
    count and best score, the LR reduction's, and the best checkpoint's score start afresh,
    so a worse epoch could overwrite the best model. This callback writes their state after
    every epoch (before the backup is written: it must sit after them and before
    BackupAndRestore in the callback list) and restores it when the first epoch of a resumed
    run begins. The state of the last two epochs is kept, so a run killed between this write
    and the backup's resumes with the state of the epoch the backup holds.
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

    def _states(self) -> dict:
        if not self.path.is_file():
            return {}
        return json.loads(self.path.read_text(encoding="utf-8"))

    def on_epoch_begin(self, epoch, logs=None):
        if not self.first:
            return
        self.first = False
        state = self._states().get(str(epoch))
        if epoch == 0 or state is None:
            return
        for cb in self.deciders:
            for name, value in state.get(type(cb).__name__, {}).items():
                setattr(cb, name, value)
        log.info(
            "restored the state of early stopping, LR reduction and the best checkpoint at epoch %d",
            epoch,
        )

    def on_epoch_end(self, epoch, logs=None):
        states = self._states()
        states[str(epoch + 1)] = {
            type(cb).__name__: {f: _plain(getattr(cb, f)) for f in self.FIELDS[type(cb).__name__]}
            for cb in self.deciders
        }
        keep = sorted(states, key=int)[-2:]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.path, {k: states[k] for k in keep})


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
        keras.callbacks.ModelCheckpoint(best_path, monitor=monitor, mode="max", save_best_only=True),
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
    best_path = out / "checkpoints" / "best.keras"
    decide = deciders(settings, best_path)
    callbacks = [
        EpochSetter(stream),
        ValidationMetrics(
            source, validation, settings.inference_batch_size, settings.threshold, settings.loss_weights
        ),
        *decide,
        CallbackState(out / "backup" / STATE_FILE, decide),
        # The backup is written before the CSV row, so a run killed once a row is visible
        # resumes after that epoch and never logs an epoch twice.
        keras.callbacks.BackupAndRestore(backup_dir=str(out / "backup")),
        keras.callbacks.CSVLogger(str(out / "training_log.csv"), append=True),
        keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard")),
    ]
    return TrainingCallbacks(callbacks, decide, settings.monitor, best_path)
