"""Training of the hierarchical, class-balanced genre model: data preparation, model, run.

``BalancedGenreProcessor`` turns a dataset (:mod:`genrekit.datasets.base`) into targets, vocabularies
and class weights and builds the feature cache of its front end (:mod:`genrekit.features.frontends`); ``BalancedHierarchicalModel`` builds and compiles the multi-head model
with the balanced losses; :func:`train` runs a whole training into a run folder that holds the
model, ``balanced_training_config.json`` (everything inference and evaluation need), the
checkpoints, the backup used to resume, TensorBoard and CSV logs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import genrekit
from genrekit.datasets import base as datasets
from genrekit.datasets.base import Dataset, LabelledDataset
from genrekit.datasets.fma import derive_targets
from genrekit.datasets.labels import LEVELS, EncodedLabels, GenreTree, build_vocabularies
from genrekit.errors import ConfigError, DatasetError
from genrekit.evaluate.thresholds import top_columns
from genrekit.features import frontends
from genrekit.features.frontends import FrontEnd
from genrekit.fileio import replacing, write_json_atomic
from genrekit.paths import SETUP_HINTS, require_dir
from genrekit.settings import Settings
from genrekit.train import balancing
from genrekit.train.run_config import (
    CONFIG_FORMAT,
    CONFIG_VERSION,
    load_training_config,
    write_training_config,
)

log = logging.getLogger(__name__)

# Settings that do not shape the model: a finished run is reused even when these differ.
NOT_SHAPING = frozenset(
    {
        "output_dir", "cache_dir", "data_dir", "demo_dir", "workers", "strategy", "threshold", "top_k",
        "inference_batch_size", "inference_segment_hop", "split", "calibration_bins",
        "confusion_max_classes", "model_filename", "training_config_filename", "mixed_precision",
    }
)  # fmt: skip
STATE_FILE = "callback_state.json"  # in backup/: the state of the callbacks that decide


# The targets and vocabularies of a dataset: one class for every caller (see genrekit.datasets.base).
ProcessedData = LabelledDataset


class BalancedGenreProcessor:
    """A dataset's targets, class weights and features, as the trainer uses them.

    Parameters
    ----------
    settings : Settings, optional
        Defaults to config.py's settings.
    metadata_dir, audio_dir : path-like, optional
        Override ``settings.metadata_dir`` / ``settings.audio_dir``.
    dataset : Dataset, optional
        Where the tracks come from (:mod:`genrekit.datasets.base`); default FMA's metadata and audio
        folders of the settings (or the two overrides).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        metadata_dir: str | None = None,
        audio_dir: str | None = None,
        *,
        dataset: Dataset | None = None,
    ):
        self.settings = settings or Settings.build()
        self.dataset = dataset or datasets.from_settings(self.settings, metadata_dir, audio_dir)
        self.metadata_dir = Path(
            getattr(self.dataset, "metadata_dir", metadata_dir or self.settings.metadata_dir)
        )
        self.audio_dir = Path(self.dataset.audio_dir)

    @property
    def skipped(self) -> dict[int, str]:
        """Rows of the metadata left out while reading (track id -> why)."""
        return self.dataset.skipped

    def load_dataset(self) -> LabelledDataset:
        """The dataset's targets and the vocabularies of its training split (:meth:`Dataset.load`)."""
        return self.dataset.load()

    def load_fma_metadata(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """``(tracks, genres)`` of the configured subset in FMA's layout (an FMA-layout dataset only)."""
        if not isinstance(self.dataset, datasets.FMADataset):
            raise DatasetError(f"{self.dataset.tracks_origin}: not an FMA dataset; use load_dataset()")
        return self.dataset.fma_tracks(), self.dataset.genres()

    def process_fma_labels(self, tracks: pd.DataFrame, genres: pd.DataFrame) -> LabelledDataset:
        """The three label levels per track and the vocabularies of the training split."""
        tree = GenreTree(genres)
        targets = derive_targets(tracks, tree)
        return LabelledDataset(tree, targets, build_vocabularies(targets, tree), dataset=self.dataset)

    def make_sampler(
        self, labels: EncodedLabels, n_top: int, n_labelled: int | None = None
    ) -> balancing.EpochSampler | None:
        """The epoch sampler; ``n_labelled`` (default: the labelled tracks of ``labels``) sizes
        relative thresholds: ``ProcessedData.n_labelled_training``, as the inspector shows them."""
        s = self.settings
        if not s.use_weighted_sampling:
            return None
        n = int((labels.top >= 0).sum()) if n_labelled is None else n_labelled
        over, under = balancing.effective_thresholds(s, n)
        return balancing.EpochSampler(labels.top, n_top, over, under, s.seed)

    def compute_hierarchical_class_weights(
        self, processed: ProcessedData, labels: EncodedLabels | None = None
    ) -> dict[str, np.ndarray]:
        """Class weights of the top and medium heads and per-label ``pos_weight`` of the all head.

        Computed on the training tracks with ``n_samples / (n_classes * n_c)``; with weighted
        sampling on, the counts are the expected per-epoch counts after sampling, so class
        weights only correct what sampling leaves.
        """
        labels = labels if labels is not None else processed.labels("training")
        counts, rates = self._epoch_counts(processed, labels)
        weights = {
            level: balancing.class_weights(counts[level], self.settings.max_class_weight) for level in counts
        }
        weights["all"] = balancing.head_pos_weights(labels.all, self.settings.max_class_weight, rates)
        return weights

    def _epoch_counts(
        self, processed: ProcessedData, labels: EncodedLabels
    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Expected tracks per class and epoch at the top and medium levels (the softmax heads the
        model has), and the per-track rates."""
        n = processed.num_classes
        sampler = self.make_sampler(labels, n["top"], processed.n_labelled_training)
        rates = sampler.expected_rates() if sampler is not None else np.ones(len(labels))
        counts = {}
        for level in softmax_heads(processed.heads):
            idx = getattr(labels, level)
            known = idx >= 0
            counts[level] = np.bincount(idx[known], weights=rates[known], minlength=n[level])
        return counts, rates

    def class_priors(self, processed: ProcessedData, labels: EncodedLabels) -> dict[str, np.ndarray]:
        """Class priors of the top and medium heads for logit adjustment (``USE_LOGIT_ADJUSTMENT``).

        The class frequencies of the training tracks the loss sees: the expected per-epoch counts
        after weighted sampling when it is on (class weights are not counted in).
        """
        counts, _ = self._epoch_counts(processed, labels)
        return {level: balancing.class_priors(counts[level]) for level in counts}

    def feature_params(self):
        """The log-mel parameters of the settings (see :meth:`frontend` for what the trainer uses)."""
        from genrekit.features.mel import FeatureParams

        return FeatureParams.from_settings(self.settings)

    def frontend(self) -> FrontEnd:
        """What turns the dataset's audio into model input (:func:`genrekit.features.frontends.from_settings`)."""
        return frontends.from_settings(self.settings)

    def extract_features(
        self,
        processed: ProcessedData | None = None,
        track_ids: np.ndarray | None = None,
        cache_dir: str | os.PathLike | None = None,
        shard: tuple[int, int] | None = None,
    ):
        """Build (or complete) the feature cache for the subset's tracks; returns the open cache.

        ``cache_dir`` is the cache root (``settings.cache_dir`` by default); the cache itself is
        :func:`~genrekit.features.cache.cache_folder` of the dataset's audio folder and the front end.
        Defective and missing files are listed in its failures.csv and left out.
        """
        from genrekit.features.cache import FeatureCache, cache_folder, ensure_cache

        require_dir(self.audio_dir, "audio", SETUP_HINTS["audio"])
        if track_ids is None:
            if processed is None:
                raise ConfigError("extract_features needs processed data or track ids")
            track_ids = processed.targets.index.to_numpy()
        frontend = self.frontend()
        folder = cache_folder(cache_dir or self.settings.cache_dir, self.dataset.cache_name, frontend)
        items = self.dataset.audio_items(track_ids)
        summary = ensure_cache(folder, items, frontend, workers=self.settings.num_workers, shard=shard)
        log.debug("feature cache %s: %s", folder, summary)  # ensure_cache logs it at INFO
        return FeatureCache.open(folder, frontend)


class BalancedHierarchicalModel:
    """The multi-head CNN with the balanced losses.

    Parameters
    ----------
    input_shape : tuple
        ``(n_mels, frames, 1)``, the README's ``(128, 64, 1)``.
    num_top, num_medium, num_all : int
        Classes of each head (from the data's vocabularies); ``num_medium=0``: no medium head
        (:func:`genrekit.datasets.labels.heads_of`).
    class_weights : dict, optional
        From ``compute_hierarchical_class_weights``: ``all`` gives the ``pos_weight`` of the
        multi-label head when class weights are on (the top/medium weights are applied as
        per-output sample weights by the data pipeline, since Keras' ``class_weight`` does not
        support multi-output models).
    settings : Settings, optional
    normalization : dict, optional
        ``{"mean": (n_mels,), "std": (n_mels,)}`` training-set statistics built into the model.
    priors : dict, optional
        From ``class_priors``: the class priors of the logit adjustment, used when
        ``settings.use_logit_adjustment`` is on.
    """

    def __init__(
        self,
        input_shape: tuple[int, int, int],
        *,
        num_top: int,
        num_medium: int,
        num_all: int,
        class_weights: dict[str, np.ndarray] | None = None,
        settings: Settings | None = None,
        normalization: dict[str, Any] | None = None,
        priors: dict[str, np.ndarray] | None = None,
    ):
        self.priors = priors
        self.input_shape = tuple(input_shape)
        self.num_classes = {"top": num_top, "medium": num_medium, "all": num_all}
        # The model's outputs: every level with classes (a collection without sub-genres has no medium).
        self.heads = tuple(level for level, count in self.num_classes.items() if count)
        self.class_weights = class_weights
        self.settings = settings or Settings.build()
        self.normalization = normalization
        self.model = None

    def build_model(self):
        from genrekit.models.cnn import build_model

        s = self.settings
        norm = self.normalization or {}
        if s.fine_tune_from:  # musicnn and a run's trained heads, trained together
            self.model = build_fine_tuned_model(s)
            return self.model
        if s.backbone == "musicnn":  # heads on cached embeddings (genrekit.models.heads)
            from genrekit.models.heads import build_heads

            self.model = build_heads(
                self.input_shape,
                num_top=self.num_classes["top"],
                num_medium=self.num_classes["medium"],
                num_all=self.num_classes["all"],
                units=s.head_units,
                dropout=s.dense_dropout,
                norm_mean=norm.get("mean"),
                norm_std=norm.get("std"),
                seed=s.seed,
            )
            return self.model
        self.model = build_model(
            self.input_shape,
            num_top=self.num_classes["top"],
            num_medium=self.num_classes["medium"],
            num_all=self.num_classes["all"],
            width_factor=s.width_factor,
            conv_dropout=s.conv_dropout,
            dense_dropout=s.dense_dropout,
            norm_mean=norm.get("mean"),
            norm_std=norm.get("std"),
            seed=s.seed,
        )
        return self.model

    def losses(self) -> dict[str, Any]:
        """Focal loss (or cross-entropy) on the softmax heads; weighted BCE on the all head.

        Class weights of the softmax heads travel as sample weights (see the class docstring),
        so the losses get no ``alpha`` here.
        """
        from genrekit.models.losses import make_losses

        s = self.settings
        pos_weight = None
        if s.use_class_weights and self.class_weights is not None:
            pos_weight = np.asarray(self.class_weights["all"], np.float32).tolist()
        priors = None
        if s.use_logit_adjustment:
            if self.priors is None:
                raise ConfigError("use_logit_adjustment is on but no class priors were given to the model")
            priors = {
                level: np.asarray(self.priors[level], np.float64).tolist()
                for level in softmax_heads(self.heads)
            }
        return make_losses(
            use_focal_loss=s.use_focal_loss,
            gamma=s.focal_gamma,
            pos_weight=pos_weight,
            priors=priors,
            tau=s.logit_adjustment_tau,
            heads=self.heads,
        )

    def compile_with_balanced_losses(self, learning_rate: Any = None):
        """Compile with Adam (gradients clipped by their global norm) and the balanced losses.

        ``learning_rate`` is a float or a ``keras.optimizers.schedules.LearningRateSchedule``
        (default :func:`base_learning_rate`).
        """
        from genrekit.backend import keras
        from genrekit.models.keras_metrics import MaskedTopKAccuracy

        if self.model is None:
            self.build_model()
        s = self.settings
        self.model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=learning_rate or base_learning_rate(s), global_clipnorm=s.clip_norm
            ),
            loss=self.losses(),
            loss_weights={level: s.loss_weights[level] for level in self.heads},
            # Accuracy over labelled rows only, unweighted (class weights would turn it into a
            # different number); masked rows are skipped by MaskedTopKAccuracy.
            metrics={
                level: [MaskedTopKAccuracy(name="accuracy")]
                if level in SOFTMAX_LEVELS
                else [keras.metrics.AUC(name="auc")]
                for level in self.heads
            },
        )
        return self.model


def _callbacks_module():
    from genrekit.backend import keras

    class EpochSetter(keras.callbacks.Callback):
        """Tells the data stream which epoch starts, and restarts the dropout masks' random stream.

        A resumed run then samples, orders, augments and drops out exactly as an uninterrupted
        one: the stream draws from ``(seed, epoch)``, and each dropout layer's seed generator
        (whose state the backup does not hold) is set to ``(its seed, epoch * 10**6)`` at the start
        of every epoch.
        """

        def __init__(self, stream):
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
            self, source, labels: EncodedLabels, batch_size: int, threshold: float, loss_weights: dict
        ):
            super().__init__()
            self.source, self.labels = source, labels
            self.batch_size, self.threshold, self.loss_weights = batch_size, threshold, loss_weights

        def on_epoch_end(self, epoch, logs=None):
            from genrekit.train.pipeline import predict_segments

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

    return EpochSetter, ValidationMetrics, CallbackState


SOFTMAX_LEVELS = ("top", "medium")


def softmax_heads(heads: Any) -> tuple[str, ...]:
    """The single-label levels among ``heads`` (level names, or a dict keyed by them), in order."""
    return tuple(level for level in SOFTMAX_LEVELS if level in heads)


def _plain(value: Any) -> Any:
    """A callback's state value as plain JSON (numpy and Keras scalars become floats or ints)."""
    if isinstance(value, int | float | bool) or value is None:
        return value
    array = np.asarray(value)
    return array.item() if array.ndim == 0 else array.tolist()


def validation_metrics(
    probs: dict[str, np.ndarray],
    segment_track: np.ndarray,
    labels: EncodedLabels,
    threshold: float,
    loss_weights: dict[str, float] | None = None,
) -> dict[str, float]:
    """Track-level metrics used to steer training (computed with scikit-learn).

    ``val_score`` combines the heads in ``probs``, weighted like their losses: the top and medium heads'
    balanced accuracy and the all-genres head's label ranking average precision (LRAP: threshold-free,
    so the score does not depend on the threshold tuned after training). It is the default
    ``MONITOR``; every figure is logged, and any of them can be monitored instead.
    """
    from sklearn.metrics import (
        balanced_accuracy_score,
        f1_score,
        jaccard_score,
        label_ranking_average_precision_score,
    )

    from genrekit.evaluate.aggregate import track_mean

    n = len(labels)
    out = {}
    for level in softmax_heads(probs):
        target = getattr(labels, level)
        known = target >= 0
        pred = track_mean(probs[level], segment_track, n).argmax(axis=1)
        if known.any():
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
                out[f"val_{level}_balanced_accuracy"] = float(
                    balanced_accuracy_score(target[known], pred[known])
                )
            out[f"val_{level}_f1_macro"] = float(
                f1_score(target[known], pred[known], average="macro", zero_division=0)
            )
        else:
            out[f"val_{level}_balanced_accuracy"] = out[f"val_{level}_f1_macro"] = 0.0
    all_mean = track_mean(probs["all"], segment_track, n)
    all_pred = (all_mean > threshold).astype(np.uint8)  # as evaluation
    out["val_all_jaccard"] = float(jaccard_score(labels.all, all_pred, average="samples", zero_division=0))
    has = labels.all.any(axis=1)
    out["val_all_lrap"] = (
        float(label_ranking_average_precision_score(labels.all[has], all_mean[has])) if has.any() else 0.0
    )
    w = loss_weights or {"top": 1.0, "medium": 1.0, "all": 1.0}
    parts = {level: out[f"val_{level}_balanced_accuracy"] for level in softmax_heads(probs)}
    parts["all"] = out["val_all_lrap"]
    total = sum(w[k] for k in parts)
    out["val_score"] = float(sum(w[k] * v for k, v in parts.items()) / total) if total > 0 else 0.0
    return out


def save_model_atomic(model, path: Path) -> None:
    """Save through a temp name with the same extension, then rename: never a half-written model."""
    # .h5 is the README's name; Keras warns (through absl) that it is legacy, but saves it fully.
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with replacing(path) as tmp:
            model.save(tmp)
    finally:
        absl.setLevel(level)


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
    _refuse_other_settings(config.get("settings", {}), settings, out, "holds a finished run")
    return config


FINE_TUNING = ("fine_tune_from", "fine_tune_layers", "fine_tune_learning_rate")


def settings_differences(saved: dict[str, Any], requested: Settings) -> list[str]:
    """``key: saved -> requested`` for every setting that shapes a model and differs.

    Settings that do not change what is trained (``NOT_SHAPING``: paths of outputs and caches,
    workers, inference and evaluation settings) are not compared; data folders are compared as
    resolved paths.
    """
    wanted = requested.to_dict()
    # The fine-tuning settings shape only a fine-tuning run (a heads run is the same without them).
    unused = set(FINE_TUNING) if not (saved.get("fine_tune_from") or wanted["fine_tune_from"]) else set()
    diffs = []
    for key in sorted(wanted):
        if key in NOT_SHAPING or key in unused or key not in saved:
            continue
        old, new = saved[key], wanted[key]
        if key in ("metadata_dir", "audio_dir", "fine_tune_from") and old and new:
            old, new = str(Path(old).resolve()), str(Path(new).resolve())
        if isinstance(new, tuple):
            new = list(new)
        if old != new:
            diffs.append(f"{key}: {saved[key]!r} -> {wanted[key]!r}")
    return diffs


def _refuse_other_settings(saved: dict[str, Any], settings: Settings, out: Path, what: str) -> None:
    diffs = settings_differences(saved, settings)
    if diffs:
        raise ConfigError(
            f"{out} {what} trained with other settings ({'; '.join(diffs)}): use --retrain to train "
            "again in this folder, or another --output_dir"
        )


def _start_fresh(out: Path) -> None:
    """``--retrain``: remove an earlier run's resume state and logs (the model is replaced at the end)."""
    import shutil

    for name in ("backup", "checkpoints"):
        if (out / name).is_dir():
            shutil.rmtree(out / name)
    for name in ("training_log.csv", "run_settings.json"):
        (out / name).unlink(missing_ok=True)


def train(
    settings: Settings,
    output_dir: str | os.PathLike | None = None,
    metadata_dir: str | None = None,
    audio_dir: str | None = None,
    cache_dir: str | None = None,
    logical_cpus: int = 0,
    retrain: bool = False,
) -> dict[str, Any]:
    """Run a whole training; return the training config that was written next to the model.

    A finished run in ``output_dir`` is returned as it is unless ``retrain``; an interrupted one
    resumes from its last finished epoch (``backup/``), with the state of early stopping, LR
    reduction and the best checkpoint. Either is refused when it was started with other settings.

    Raises
    ------
    ConfigError, DatasetError, CacheError
        Before any training starts, for settings or data that cannot work.
    """
    out = Path(output_dir or settings.output_dir)
    if settings.fine_tune_from and Path(settings.fine_tune_from).resolve() in (
        out.resolve(),
        out.resolve() / settings.model_filename,
    ):
        raise ConfigError(
            f"fine_tune_from {settings.fine_tune_from} is the output folder itself: fine-tune into another "
            "--output_dir (the heads run is kept)"
        )
    done = None if retrain else finished_run(settings, out)
    if done is not None:
        log.info("%s holds a finished run: nothing to do (use --retrain to train again)", out)
        return done
    if retrain:
        _start_fresh(out)
    elif (out / "backup").is_dir() and (out / "run_settings.json").is_file():
        saved = json.loads((out / "run_settings.json").read_text(encoding="utf-8"))
        _refuse_other_settings(saved, settings, out, "holds an interrupted run")
    started = time.time()
    processor = BalancedGenreProcessor(settings, metadata_dir, audio_dir)
    processed = processor.load_dataset()
    frontend = processor.frontend()
    if settings.backbone != "cnn" and settings.spec_augment:
        raise ConfigError(
            f"spec_augment masks mel bands and frames: not for the {settings.backbone} backbone"
        )
    n = processed.head_classes  # one entry per head the model has
    log.info(
        "classes per level: top %d, medium %s, all %d",
        n["top"],
        n["medium"] if "medium" in n else f"{processed.num_classes['medium']} (no medium head)",
        n["all"],
    )

    if settings.fine_tune_from:  # checked before the patches are extracted
        norm = check_fine_tune_source(settings, processed)
    cache = processor.extract_features(processed, cache_dir=cache_dir)
    usable = cache.track_ids
    split_labels = {s: processed.labels(s, usable) for s in ("training", "validation")}
    left_out = {s: int((processed.targets["split"] == s).sum()) - len(split_labels[s]) for s in split_labels}
    if len(split_labels["training"]) == 0:
        raise DatasetError(f"no training tracks with usable audio in subset {settings.subset!r}")
    if len(split_labels["validation"]) == 0:
        raise DatasetError(f"no validation tracks with usable audio in subset {settings.subset!r}")
    log.info(
        "tracks with features: training %d, validation %d (left out as defective or missing: %s)",
        len(split_labels["training"]),
        len(split_labels["validation"]),
        left_out,
    )

    train_labels = split_labels["training"]
    weights = processor.compute_hierarchical_class_weights(processed, train_labels)
    priors = processor.class_priors(processed, train_labels)
    sampler = processor.make_sampler(train_labels, n["top"], processed.n_labelled_training)
    if not settings.fine_tune_from:  # fine-tuned heads keep the statistics of their embeddings (above)
        norm = cache.norm_stats(train_labels.track_ids).to_dict()

    from genrekit.device import configure_device, make_strategy, split_cpu

    if logical_cpus:
        split_cpu(logical_cpus)
    device = configure_device(settings.mixed_precision)
    log.info("device: %s", device)
    strategy = make_strategy(settings.strategy)
    from genrekit.device import release_worker_output_dir, worker_output_dir

    run_dir, out = out, worker_output_dir(out)  # non-chief workers write into a temp folder

    from genrekit.backend import keras
    from genrekit.train.augment import AugmentPlan
    from genrekit.train.pipeline import TrainingStream, training_dataset

    sample_weights = {
        level: weights[level] if settings.use_class_weights else np.ones(n[level], np.float32)
        for level in softmax_heads(n)
    }
    stream = TrainingStream(
        cache,
        train_labels,
        sample_weights,
        n,
        frontend.row_shape[0],  # segments (or patches) per track, as the cache holds them
        sampler=sampler,
        shuffle_block=settings.shuffle_block,
        seed=settings.seed,
        batch_size=settings.batch_size,
        augment=AugmentPlan.from_settings(settings),
    )
    dataset = training_dataset(stream, settings.batch_size, frontend.input_shape, fill=norm["mean"])
    steps = stream.steps()

    keras.utils.set_random_seed(settings.seed)
    with strategy.scope():
        builder = BalancedHierarchicalModel(
            frontend.input_shape,
            num_top=n["top"],
            num_medium=n.get("medium", 0),
            num_all=n["all"],
            class_weights=weights,
            settings=settings,
            normalization=norm,
            priors=priors,
        )
        builder.build_model()
        builder.compile_with_balanced_losses(learning_rate_schedule(settings, steps))
    model = builder.model
    from genrekit.device import fit_on_strategy

    fit_on_strategy(model, strategy)  # MultiWorkerMirroredStrategy under Keras 3

    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    write_json_atomic(out / "run_settings.json", settings.to_dict())
    splits_file = save_splits(processor.dataset, out)
    monitor = settings.monitor
    EpochSetter, ValidationMetrics, CallbackState = _callbacks_module()
    best_path = out / "checkpoints" / "best.keras"
    deciders = [
        keras.callbacks.ModelCheckpoint(best_path, monitor=monitor, mode="max", save_best_only=True),
        # The best weights are loaded from the checkpoint after training (also after a resume).
        keras.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=settings.patience),
    ]
    if settings.lr_schedule == "plateau":
        deciders.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor,
                mode="max",
                factor=settings.lr_factor,
                patience=settings.lr_patience,
                min_lr=settings.min_lr,
            )
        )
    callbacks = [
        EpochSetter(stream),
        ValidationMetrics(
            cache,
            split_labels["validation"],
            settings.inference_batch_size,
            settings.threshold,
            settings.loss_weights,
        ),
        *deciders,
        CallbackState(out / "backup" / STATE_FILE, deciders),
        # The backup is written before the CSV row, so a run killed once a row is visible
        # resumes after that epoch and never logs an epoch twice.
        keras.callbacks.BackupAndRestore(backup_dir=str(out / "backup")),
        keras.callbacks.CSVLogger(str(out / "training_log.csv"), append=True),
        keras.callbacks.TensorBoard(log_dir=str(out / "tensorboard")),
    ]
    if (out / "backup").is_dir():
        log.info("resuming the interrupted run in %s from its last finished epoch", out)
    log.info(
        "training: %d epochs max, %d steps of %d segments per epoch, monitor %s, LR %g (%s), weighted "
        "sampling %s, class weights %s, focal loss %s, logit adjustment %s, augmentation %s",
        settings.num_epochs,
        steps,
        settings.batch_size,
        monitor,
        base_learning_rate(settings),
        settings.lr_schedule,
        settings.use_weighted_sampling,
        settings.use_class_weights,
        settings.use_focal_loss,
        f"tau {settings.logit_adjustment_tau:g}" if settings.use_logit_adjustment else False,
        stream.augment,
    )
    from genrekit.device import peer_failures_reported

    with peer_failures_reported(strategy):  # a lost worker: one clear error, not a hang
        history = model.fit(
            dataset, epochs=settings.num_epochs, callbacks=callbacks, verbose=2, shuffle=False
        )
    if best_path.is_file():
        model.load_weights(best_path)  # the best epoch's weights (the checkpoint holds the whole model)

    pos_weight = weights["all"] if settings.use_class_weights else None
    columns = top_columns(processed.vocabs["top"].genre_ids, processed.vocabs["all"].genre_ids)
    thresholds = tune_all_thresholds(model, cache, split_labels["validation"], settings, pos_weight, columns)
    model_path = out / settings.model_filename
    save_model_atomic(model, model_path)
    per_epoch = _read_training_log(out / "training_log.csv")
    best = max(per_epoch, key=lambda row: row.get(monitor, -1)) if per_epoch else {}
    config = {
        "format": CONFIG_FORMAT,
        "version": CONFIG_VERSION,
        "genrekit_version": genrekit.__version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model_file": model_path.name,
        "input_shape": list(frontend.input_shape),
        "settings": settings.to_dict(),
        "frontend": frontend.to_config(),
        "features": frontend.params(),  # as version 1 wrote it (the front end's parameters)
        "normalization": {**norm, "computed_on": f"training split, {len(train_labels)} tracks"},
        "left_out_files": [dataclasses.asdict(f) for f in cache.failures][:1000],
        "vocabularies": {level: processed.vocabs[level].to_dict() for level in LEVELS},
        "heads": list(processed.heads),  # the model's outputs (no medium head without sub-genres)
        "threshold": settings.threshold,
        "thresholds": thresholds,
        "top_k": settings.top_k,
        "balancing": {
            "use_class_weights": settings.use_class_weights,
            "use_weighted_sampling": settings.use_weighted_sampling,
            "use_focal_loss": settings.use_focal_loss,
            "focal_gamma": settings.focal_gamma,
            "use_logit_adjustment": settings.use_logit_adjustment,
            "logit_adjustment_tau": settings.logit_adjustment_tau,
            "oversample_threshold": settings.oversample_threshold,
            "undersample_threshold": settings.undersample_threshold,
            "class_weights": {k: np.round(np.asarray(v, float), 6).tolist() for k, v in weights.items()},
            "epoch_top_counts": sampler.planned_counts().tolist() if sampler is not None else None,
            # The training class mix (for logit adjustment, during training or post hoc).
            "priors": {k: np.round(v, 8).tolist() for k, v in priors.items()},
        },
        "data": {
            "metadata_dir": str(processor.metadata_dir),
            "audio_dir": str(processor.audio_dir),
            "subset": settings.subset,
            "dataset": settings.dataset,
            **({"splits_file": splits_file.name} if splits_file is not None else {}),
            "cache_dir": str(cache.cache_dir),
            "tracks": {s: len(v) for s, v in split_labels.items()},
            "left_out": left_out,
        },
        "device": device,
        "history": {
            "monitor": monitor,
            "epochs_run": len(per_epoch),
            "best_epoch": int(best.get("epoch", -1)) + 1 if best else None,
            "best": best,
            "last": per_epoch[-1] if per_epoch else {},
            "stopped_early": len(per_epoch) < settings.num_epochs,
            "seconds": round(time.time() - started, 1),
            "platform": platform.platform(),
        },
    }
    del history
    write_training_config(out / settings.training_config_filename, config)
    release_worker_output_dir(run_dir, out)
    log.info("model: %s", model_path)
    log.info("config: %s", out / settings.training_config_filename)
    return config


def save_splits(dataset: Dataset, out: Path) -> Path | None:
    """Save the split of a source that makes its own (:mod:`genrekit.datasets.own`) in the run
    folder, so evaluation scores exactly the tracks training never saw; None for FMA's."""
    table = getattr(dataset, "splits_table", None)
    if table is None:
        return None
    from genrekit.datasets.own import SPLITS_FILE

    path = out / SPLITS_FILE
    with replacing(path) as tmp:
        table().to_csv(tmp, index=False)
    return path


def base_learning_rate(settings: Settings) -> float:
    """``learning_rate``, or ``fine_tune_learning_rate`` when the run fine-tunes a backbone."""
    return settings.fine_tune_learning_rate if settings.fine_tune_from else settings.learning_rate


def learning_rate_schedule(settings: Settings, steps_per_epoch: int) -> Any:
    """The optimizer's learning rate: a float (``plateau``) or a warm-up + cosine schedule (``cosine``).

    ``cosine``: linear warm-up from a tenth of the rate (:func:`base_learning_rate`) to the rate
    over ``warmup_epochs``, then cosine decay to ``min_lr`` at ``num_epochs`` (Keras' ``CosineDecay``).
    """
    rate = base_learning_rate(settings)
    if settings.lr_schedule != "cosine":
        return rate
    from genrekit.backend import keras

    total = max(1, settings.num_epochs * steps_per_epoch)
    warmup = min(total - 1, settings.warmup_epochs * steps_per_epoch)
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=rate / 10 if warmup else rate,
        decay_steps=max(1, total - warmup),
        alpha=min(1.0, settings.min_lr / rate),
        warmup_target=rate if warmup else None,
        warmup_steps=warmup,
    )


def build_fine_tuned_model(settings: Settings) -> Any:
    """musicnn (pretrained) and the heads of the run ``settings.fine_tune_from``, as one model."""
    from genrekit.models.finetune import build_fine_tuned, heads_run
    from genrekit.models.io import load_model
    from genrekit.models.musicnn_weights import load_musicnn

    config, model_path = heads_run(settings.fine_tune_from, settings.training_config_filename)
    heads = load_model(model_path, configure=False)  # the run's float policy stays (mixed on a GPU)
    backbone = load_musicnn(settings.musicnn_model, Path(settings.pretrained_dir) / "musicnn")
    output = config["frontend"]["params"]["output"]
    model = build_fine_tuned(backbone, heads, output=output, layers=settings.fine_tune_layers)
    learning = [layer.name for layer in backbone.layers if layer.trainable and layer.weights]
    log.info(
        "fine-tuning %s (%s) from the heads of %s: backbone layers that learn: %s",
        settings.musicnn_model,
        output,
        settings.fine_tune_from,
        ", ".join(learning),
    )
    return model


def check_fine_tune_source(settings: Settings, processed: Any) -> dict[str, Any]:
    """The heads run's normalization, after checking it fits this run (checkpoint, vocabularies).

    Raises
    ------
    ConfigError
        Naming the run and every difference.
    """
    from genrekit.models.finetune import heads_run, learning_layers

    config, _ = heads_run(settings.fine_tune_from, settings.training_config_filename)
    params = config["frontend"]["params"]
    learning_layers(settings.fine_tune_layers, params["output"])
    problems = []
    if params["model"] != settings.musicnn_model:
        problems.append(
            f"its heads take {params['model']}, this run asks musicnn_model {settings.musicnn_model}"
        )
    for level in LEVELS:
        theirs = config["vocabularies"][level]["genre_ids"]
        if list(theirs) != list(processed.vocabs[level].genre_ids):
            problems.append(f"its {level} vocabulary ({len(theirs)} genres) differs from this dataset's")
    if problems:
        raise ConfigError(f"fine_tune_from {settings.fine_tune_from}: " + "; ".join(problems))
    norm = config.get("normalization") or {}
    return {"mean": norm["mean"], "std": norm["std"]}


def tune_all_thresholds(
    model: Any,
    cache: Any,
    labels: EncodedLabels,
    settings: Settings,
    pos_weight: np.ndarray | None = None,
    columns: np.ndarray | None = None,
) -> dict[str, Any]:
    """Thresholds of the all-genres head, chosen on the validation split's tracks.

    Returns the ``thresholds`` section of the training config (see
    :func:`genrekit.evaluate.thresholds.choose_thresholds`; ``pos_weight`` is what the head was trained
    with, None without class weights; ``columns`` (:func:`genrekit.evaluate.thresholds.top_columns`) lets
    it try ``include_top``); with ``TUNE_THRESHOLDS`` off, every genre gets ``settings.threshold``.
    """
    from genrekit.evaluate.aggregate import track_mean
    from genrekit.evaluate.thresholds import choose_thresholds, fixed_thresholds
    from genrekit.train.pipeline import predict_segments

    n_all = labels.all.shape[1]
    if not settings.tune_thresholds:
        return fixed_thresholds(n_all, settings.threshold)
    probs, seg_track = predict_segments(model, cache, labels.track_ids, batch_size=settings.inference_batch_size)
    mean = track_mean(probs["all"], seg_track, len(labels))
    top_class = None
    if columns is not None:
        top_class = np.argmax(np.nan_to_num(track_mean(probs["top"], seg_track, len(labels))), axis=1)
    result = choose_thresholds(
        labels.all,
        mean,
        pos_weight=pos_weight,
        default=settings.threshold,
        top_class=top_class,
        columns=columns,
    )
    nan = float("nan")
    log.info(
        "all-genres thresholds chosen on %d validation tracks: t %.2f, corrected for each genre's "
        "positive weight (%.2f to %.3f)%s; validation Jaccard %.3f (thresholds alone %.3f; at %.2f: %.3f)",
        result["n_tracks"],
        result["t"],
        min(result["all"]),
        max(result["all"]),
        ", plus the top head's genre" if result["include_top"] else "",
        nan if result["jaccard"] is None else result["jaccard"],
        nan if result["jaccard_thresholds_only"] is None else result["jaccard_thresholds_only"],
        settings.threshold,
        nan if result["jaccard_at_default"] is None else result["jaccard_at_default"],
    )
    return result


def _read_training_log(path: Path) -> list[dict[str, float]]:
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    return [
        {k: (float(v) if k != "epoch" else int(v)) for k, v in row.items()}
        for row in table.to_dict("records")
    ]
