"""Training of the hierarchical, class-balanced genre model: the model, and a run as named steps.

``BalancedHierarchicalModel`` builds the model of the settings' kind (:mod:`genrekit.models.registry`)
and compiles it with the balanced losses; :func:`train` runs a whole training into a run folder
that holds the model, ``balanced_training_config.json`` (everything inference and evaluation
need), the checkpoints, the backup used to resume, TensorBoard and CSV logs. Its steps, each a
function: the resume policy (:func:`genrekit.train.resume.prepare_run_folder`), the data
(:func:`genrekit.train.data.prepare_data`), the device, the stream, the compiled model, the
callbacks (:func:`genrekit.train.callbacks.training_callbacks`), the fit and the finish.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.datasets.base import Dataset
from genrekit.datasets.own import SPLITS_FILE
from genrekit.device import (
    configure_device,
    fit_on_strategy,
    make_strategy,
    peer_failures_reported,
    release_worker_output_dir,
    split_cpu,
    worker_output_dir,
)
from genrekit.errors import ConfigError
from genrekit.evaluate.thresholds import top_columns
from genrekit.fileio import replacing, write_json_atomic
from genrekit.models.registry import ModelSpec, model_kind
from genrekit.paths import NAME_ERRORS
from genrekit.settings import Settings
from genrekit.train.augment import AugmentPlan
from genrekit.train.data import (  # noqa: F401 - public here too (scripts, tests, benchmarks)
    SOFTMAX_LEVELS,
    BalancedGenreProcessor,
    ProcessedData,
    TrainingData,
    prepare_data,
    softmax_heads,
)
from genrekit.train.pipeline import TrainingStream, training_dataset
from genrekit.train.resume import NOT_SHAPING, finished_run, prepare_run_folder, settings_differences  # noqa: F401
from genrekit.train.run_config import training_config, write_training_config
from genrekit.train.run_folder import BACKUP_DIR, damaged
from genrekit.train.validation import tune_all_thresholds, validation_metrics  # noqa: F401

log = logging.getLogger(__name__)


def _check_head_sizes(num_classes: dict[str, int], class_weights: dict[str, Any] | None) -> None:
    """Refuse head sizes that are not the class weights' sizes, before a model is built.

    The seed's tutorial wrote fma_large's counts (``num_top=16, num_medium=147, num_all=161``) by
    hand; on other data that built a model whose heads do not match its labels and losses, and
    nothing said so until a training step failed on shapes.
    """
    for level, count in num_classes.items():
        if count and class_weights is not None and level in class_weights:
            found = len(class_weights[level])
            if found != count:
                raise ConfigError(
                    f"num_{level}={count} but class_weights[{level!r}] has {found} classes: give the data's "
                    f"class counts (num_{level}=processed_data.num_classes[{level!r}])"
                )


class BalancedHierarchicalModel:
    """The multi-head model of the settings' kind (:func:`genrekit.models.registry.model_kind`)
    with the balanced losses.

    Parameters
    ----------
    input_shape : tuple
        The front end's input shape: the CNN's ``(n_mels, frames, 1)``, the README's ``(128, 64, 1)``.
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
        _check_head_sizes(self.num_classes, class_weights)
        # The model's outputs: every level with classes (a collection without sub-genres has no medium).
        self.heads = tuple(level for level, count in self.num_classes.items() if count)
        self.class_weights = class_weights
        self.settings = settings or Settings.build()
        self.normalization = normalization
        self.model = None

    def build_model(self):
        """The uncompiled model of the settings' kind (:func:`genrekit.models.registry.model_kind`)."""
        spec = ModelSpec(self.input_shape, self.num_classes, self.settings, self.normalization, self.priors)
        self.model = model_kind(self.settings).build(spec)
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


def save_splits(dataset: Dataset, out: Path) -> Path | None:
    """Save the split of a source that makes its own (:mod:`genrekit.datasets.own`) in the run
    folder, so evaluation scores exactly the tracks training never saw; None for FMA's."""
    table = getattr(dataset, "splits_table", None)
    if table is None:
        return None

    path = out / SPLITS_FILE
    with replacing(path) as tmp:
        # A path that is not UTF-8 is written as its exact bytes (genrekit.paths.NAME_ERRORS).
        table().to_csv(tmp, index=False, errors=NAME_ERRORS)
    return path


def base_learning_rate(settings: Settings) -> float:
    """The learning rate the settings' model kind trains at (``learning_rate``; fine-tuning:
    ``fine_tune_learning_rate``)."""
    return model_kind(settings).base_learning_rate(settings)


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


# --- the steps of train() ----------------------------------------------------------------------------


def set_up_device(settings: Settings, logical_cpus: int = 0) -> tuple[dict[str, Any], Any]:
    """Configure the device (before TensorFlow starts: the stream starts it); return it and the strategy."""

    if logical_cpus:
        split_cpu(logical_cpus)
    device = configure_device(settings.mixed_precision)
    log.info("device: %s", device)
    return device, make_strategy(settings.strategy)


def build_stream(settings: Settings, data: TrainingData) -> tuple[Any, Any]:
    """The training stream of the data (sampling, order, augmentation) and its ``tf.data`` dataset."""

    n, frontend = data.n, data.frontend
    sample_weights = {
        level: data.weights[level] if settings.use_class_weights else np.ones(n[level], np.float32)
        for level in softmax_heads(n)
    }
    stream = TrainingStream(
        data.cache,
        data.train_labels,
        sample_weights,
        n,
        frontend.row_shape[0],  # segments (or patches) per track, as the cache holds them
        sampler=data.sampler,
        shuffle_block=settings.shuffle_block,
        seed=settings.seed,
        batch_size=settings.batch_size,
        augment=AugmentPlan.from_settings(settings),
    )
    dataset = training_dataset(stream, settings.batch_size, data.frontend.input_shape, fill=data.norm["mean"])
    return stream, dataset


def build_compiled_model(settings: Settings, data: TrainingData, strategy: Any, steps_per_epoch: int) -> Any:
    """The compiled model, built under ``strategy`` after seeding Keras with ``settings.seed``."""
    from genrekit.backend import keras

    n = data.n
    keras.utils.set_random_seed(settings.seed)
    with strategy.scope():
        builder = BalancedHierarchicalModel(
            data.frontend.input_shape,
            num_top=n["top"],
            num_medium=n.get("medium", 0),
            num_all=n["all"],
            class_weights=data.weights,
            settings=settings,
            normalization=data.norm,
            priors=data.priors,
        )
        builder.build_model()
        builder.compile_with_balanced_losses(learning_rate_schedule(settings, steps_per_epoch))
    model = builder.model
    fit_on_strategy(model, strategy)  # MultiWorkerMirroredStrategy under Keras 3
    return model


def start_run_folder(settings: Settings, data: TrainingData, out: Path) -> Path | None:
    """Create the run folder, write its settings and (for a source that makes its own) its split."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoints").mkdir(exist_ok=True)
    write_json_atomic(out / "run_settings.json", settings.to_dict())
    return save_splits(data.processor.dataset, out)


def _log_start(settings: Settings, out: Path, stream: Any) -> None:
    if (out / "backup").is_dir():
        log.info("resuming the interrupted run in %s from its last finished epoch", out)
    log.info(
        "training: %d epochs max, %d steps of %d segments per epoch, monitor %s, LR %g (%s), weighted "
        "sampling %s, class weights %s, focal loss %s, logit adjustment %s, augmentation %s",
        settings.num_epochs,
        stream.steps(),
        settings.batch_size,
        settings.monitor,
        base_learning_rate(settings),
        settings.lr_schedule,
        settings.use_weighted_sampling,
        settings.use_class_weights,
        settings.use_focal_loss,
        f"tau {settings.logit_adjustment_tau:g}" if settings.use_logit_adjustment else False,
        stream.augment,
    )


def fit(settings: Settings, model: Any, dataset: Any, callbacks: list[Any], strategy: Any) -> None:
    """``model.fit`` over the stream's dataset, a lost worker turned into one clear error."""

    with peer_failures_reported(strategy):  # a lost worker: one clear error, not a hang
        model.fit(dataset, epochs=settings.num_epochs, callbacks=callbacks, verbose=2, shuffle=False)


def load_best_weights(model: Any, best_path: Path) -> None:
    """Load the best epoch's weights (the checkpoint holds the whole model); a damaged one is one line."""
    try:
        model.load_weights(best_path)
    except Exception as exc:  # zipfile, h5py and Keras raise many kinds for a damaged file
        raise damaged(best_path, f"cannot load its weights: {type(exc).__name__}: {exc}") from None


def finish(
    settings: Settings,
    data: TrainingData,
    model: Any,
    out: Path,
    best_path: Path,
    *,
    device: dict[str, Any],
    splits_file: Path | None,
    started: float,
) -> dict[str, Any]:
    """Best weights, thresholds, the saved model and its training config; return the config.

    ``device``, ``splits_file`` and ``started`` (the run's ``time.time()``) go into the config
    (:func:`genrekit.train.run_config.training_config`).
    """
    if best_path.is_file():
        load_best_weights(model, best_path)
    processed = data.processed
    pos_weight = data.weights["all"] if settings.use_class_weights else None
    columns = top_columns(processed.vocabs["top"].genre_ids, processed.vocabs["all"].genre_ids)
    validation = data.split_labels["validation"]
    thresholds = tune_all_thresholds(model, data.cache, validation, settings, pos_weight, columns)
    model_path = out / settings.model_filename
    save_model_atomic(model, model_path)
    config = training_config(
        settings,
        data,
        model_path=model_path,
        thresholds=thresholds,
        device=device,
        splits_file=splits_file,
        started=started,
    )
    write_training_config(out / settings.training_config_filename, config)
    return config


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
    done = prepare_run_folder(settings, out, retrain)
    if done is not None:
        return done
    started = time.time()
    data = prepare_data(settings, metadata_dir, audio_dir, cache_dir)
    device, strategy = set_up_device(settings, logical_cpus)
    run_dir, out = out, worker_output_dir(out)  # non-chief workers write into a temp folder
    stream, dataset = build_stream(settings, data)
    model = build_compiled_model(settings, data, strategy, stream.steps())
    splits_file = start_run_folder(settings, data, out)
    from genrekit.train.callbacks import training_callbacks

    callbacks = training_callbacks(settings, stream, data.cache, data.split_labels["validation"], out)
    _log_start(settings, out, stream)
    fit(settings, model, dataset, callbacks.callbacks, strategy)
    config = finish(
        settings,
        data,
        model,
        out,
        callbacks.best_path,
        device=device,
        splits_file=splits_file,
        started=started,
    )
    # Only now is the run's work safe in its model and config: a kill before this resumes the finish.
    shutil.rmtree(out / BACKUP_DIR, ignore_errors=True)
    release_worker_output_dir(run_dir, out)
    log.info("model: %s", out / settings.model_filename)
    log.info("config: %s", out / settings.training_config_filename)
    return config
