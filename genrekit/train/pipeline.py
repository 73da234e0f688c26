"""The tf.data input pipeline: feature-cache rows to batches of (segment, targets, weights).

Batches must look like random draws of the epoch's segments while reads stay large. An
epoch's tracks (drawn by the weighted sampler, or a permutation) are sorted by cache row (the
k-th draw of an oversampled track in the k-th of several sorted layers, so its repeats never share
a block) and cut into blocks of ``shuffle_block`` neighbouring tracks, one near sequential read
each. The blocks are visited in random order, ``window_tracks`` tracks' worth at a time (1,024 by
default), and the segments of a whole window are permuted before they are cut into batches. A
batch of 32 segments is thus a draw from about a thousand tracks spread over the whole cache, not
from a few neighbouring blocks: FMA's ids run in albums, so the previous pipeline (sorted blocks
mixed in a buffer of four) gave batches of few artists. benchmarks/bench_training.py measures
artists and top genres per batch against a uniform draw, and the read rates.

All randomness (order, augmentation) is drawn with numpy from ``(seed, epoch)``, so a resumed
run sees exactly the batches an uninterrupted run would. TensorFlow is imported inside the
functions, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from genrekit.datasets.labels import EncodedLabels, one_hot
from genrekit.settings import Settings
from genrekit.train.augment import PARAM_KEYS, AugmentPlan, apply_augmentation
from genrekit.train.balancing import EpochSampler

log = logging.getLogger(__name__)

LEVELS = ("top", "medium", "all")
WINDOW_TRACKS = 1024  # tracks whose segments are permuted together before batching (a window)


class FeatureSource(Protocol):
    """What the pipeline needs of a feature cache."""

    def read(self, track_ids: np.ndarray) -> np.ndarray:
        """float16 features (n, num_segments, n_mels, frames) of the given tracks, in that order."""


@dataclass
class TrainingStream:
    """Per-epoch generator of shuffled batches of segments with their targets and sample weights.

    Parameters
    ----------
    source : FeatureSource
        The feature cache.
    labels : EncodedLabels
        Targets of the training tracks (all present in ``source``).
    weights : mapping of level to array (n_classes,)
        Class weight per class for ``top`` and ``medium``; a masked track gets weight 0.
    n_classes : mapping of level to int
        Classes of each head the model has (no ``medium`` entry: no medium targets).
    num_segments : int
        Segments per track in the cache.
    sampler : EpochSampler or None
        Weighted sampling; None draws every track once per epoch in random order.
    shuffle_block : int
        Tracks read together (neighbouring cache rows).
    seed : int
    batch_size : int
        Segments per batch; the last batch of an epoch may be smaller.
    window_tracks : int
        Tracks whose segments are permuted together (whole blocks, at least one).
    augment : AugmentPlan or None
        Draws each batch's augmentation parameters (applied in :func:`training_dataset`).
    """

    source: FeatureSource
    labels: EncodedLabels
    weights: Mapping[str, np.ndarray]
    n_classes: Mapping[str, int]
    num_segments: int
    sampler: EpochSampler | None = None
    shuffle_block: int = 64
    seed: int = 0
    batch_size: int = 32
    window_tracks: int = WINDOW_TRACKS
    augment: AugmentPlan | None = None
    epoch: int = 0  # set by EpochSetter at the start of each epoch (also after a resume)
    realized: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Every training row is checked before the first epoch (free for rows this process has
        # checked, e.g. while building the cache): a damaged row is one clear CacheDamageError
        # naming it here, never a batch, and never an error deep inside tf.data.
        check = getattr(self.source, "check", None)
        if check is not None:
            check(self.labels.track_ids)

    def track_weights(self, level: str, rows: np.ndarray) -> np.ndarray:
        idx = getattr(self.labels, level)[rows]
        w = np.zeros(len(rows), dtype=np.float32)
        known = idx >= 0
        w[known] = np.asarray(self.weights[level], dtype=np.float32)[idx[known]]
        return w

    def epoch_rows(self, epoch: int) -> np.ndarray:
        if self.sampler is not None:
            return self.sampler.epoch(epoch)
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.labels))

    def epoch_tracks(self) -> int:
        return self.sampler.epoch_size() if self.sampler is not None else len(self.labels)

    def steps(self, batch_size: int | None = None) -> int:
        return math.ceil(self.epoch_tracks() * self.num_segments / (batch_size or self.batch_size))

    def epoch_order(self, epoch: int) -> Iterator[np.ndarray]:
        """The training rows of each window of an epoch, in reading order (blocks of sorted rows)."""
        blocks = layered_blocks(self.epoch_rows(epoch), self.shuffle_block)
        rng = np.random.default_rng((self.seed, epoch, 1))
        n_blocks = len(blocks)
        order = rng.permutation(n_blocks)
        per_window = max(1, self.window_tracks // self.shuffle_block)
        for start in range(0, n_blocks, per_window):
            yield np.concatenate([blocks[b] for b in order[start : start + per_window]])

    def segment_rows(self, epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per window: the track rows read, and the permuted (row position, segment) order.

        Yields ``(rows, order)`` where ``order`` indexes the window's flattened segments.
        """
        rng = np.random.default_rng((self.seed, epoch, 2))
        for rows in self.epoch_order(epoch):
            yield rows, rng.permutation(len(rows) * self.num_segments)

    def _window(self, rows: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, dict, dict]:
        """Segments, targets and weights of one window, in the permuted order."""
        # One read for the window: the cache reads its rows sorted, consecutive rows in one go.
        x = self.source.read(self.labels.track_ids[rows])
        x = x.reshape((-1,) + x.shape[2:])[order]
        track = np.repeat(rows, self.num_segments)[order]
        y = {
            "top": one_hot(self.labels.top[track], self.n_classes["top"]),
            "all": self.labels.all[track].astype(np.float32),
        }
        w = {"top": self.track_weights("top", track), "all": np.ones(len(track), dtype=np.float32)}
        if "medium" in self.n_classes:
            y["medium"] = one_hot(self.labels.medium[track], self.n_classes["medium"])
            w["medium"] = self.track_weights("medium", track)
        return x, {k: y[k] for k in self.heads}, {k: w[k] for k in self.heads}

    @property
    def heads(self) -> tuple[str, ...]:
        """The model's outputs the stream feeds: the levels of ``n_classes``, in ``LEVELS`` order."""
        return tuple(level for level in LEVELS if level in self.n_classes)

    def batches(self) -> Iterator[tuple[np.ndarray, dict, dict, dict]]:
        """One epoch of ``(x, y, w, augmentation params)`` batches (the generator behind tf.data)."""
        epoch = self.epoch
        self.epoch += 1  # if nobody sets it, consecutive iterations are consecutive epochs
        if self.sampler is not None:
            counts = self.sampler.realized_counts(self.sampler.epoch(epoch))
            self.realized.append(counts)
            log.info(
                "epoch %d: %d tracks drawn (%d without a top genre); top-genre counts %s",
                epoch + 1,
                self.sampler.epoch_size(),
                len(self.sampler.unlabeled),
                counts.tolist(),
            )
        aug_rng = np.random.default_rng((self.seed, epoch, 3))
        pending: list[tuple[np.ndarray, dict, dict]] = []
        held = 0
        bs = self.batch_size
        for rows, order in self.segment_rows(epoch):
            pending.append(self._window(rows, order))
            held += len(order)
            while held >= bs:
                x, y, w = _concat(pending)
                yield self._with_params(x[:bs], _head(y, bs), _head(w, bs), aug_rng)
                pending = [(x[bs:], _tail(y, bs), _tail(w, bs))]
                held -= bs
        if held:
            x, y, w = _concat(pending)
            yield self._with_params(x, y, w, aug_rng)

    def _with_params(self, x, y, w, rng) -> tuple[np.ndarray, dict, dict, dict]:
        n, n_mels = x.shape[:2]
        frames = x.shape[2] if x.ndim > 2 else 1  # embeddings: one value per "band"
        plan = self.augment or AugmentPlan()
        return x, y, w, plan.draw(rng, n, n_mels, frames)


def layered_blocks(rows: np.ndarray, block: int) -> list[np.ndarray]:
    """Blocks of at most ``block`` neighbouring rows; the k-th draw of a row lies in layer k.

    Each layer (first draws, second draws, ...) is sorted and cut into blocks on its own, so an
    oversampled track drawn several times in an epoch never fills a block with its own repeats.
    """
    rows = np.sort(np.asarray(rows))
    occurrence = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    blocks: list[np.ndarray] = []
    for k in range(int(occurrence.max()) + 1 if len(rows) else 0):
        layer = rows[occurrence == k]
        blocks += np.array_split(layer, max(1, math.ceil(len(layer) / block)))
    return blocks


def _concat(parts: list[tuple[np.ndarray, dict, dict]]) -> tuple[np.ndarray, dict, dict]:
    if len(parts) == 1:
        return parts[0]
    x = np.concatenate([p[0] for p in parts])
    y = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    w = {k: np.concatenate([p[2][k] for p in parts]) for k in parts[0][2]}
    return x, y, w


def _head(d: dict, n: int) -> dict:
    return {k: v[:n] for k, v in d.items()}


def _tail(d: dict, n: int) -> dict:
    return {k: v[n:] for k, v in d.items()}


def training_dataset(
    stream: TrainingStream,
    batch_size: int | None = None,
    input_shape: tuple[int, ...] | None = None,
    fill: np.ndarray | None = None,
) -> Any:
    """A ``tf.data.Dataset`` of ``(x, y, sample_weight)`` batches, one pass = one epoch.

    ``input_shape`` is the model's input (default: the front end of the stream's feature cache,
    ``(n_mels, frames, 1)`` for log-mel segments). ``fill`` (n_mels,) is the value SpecAugment
    masks with (the training-set mean of each band).
    """
    from genrekit.backend import tf

    if batch_size is not None:
        stream.batch_size = batch_size
    if input_shape is None:
        input_shape = tuple(stream.source.frontend.input_shape)
    # The cache holds segments; the model input may add a channel axis (log-mel segments do).
    segment_shape = _segment_shape(stream.source, input_shape)
    n_mels = segment_shape[0]  # SpecAugment's frequency axis and its per-band fill
    k_time = stream.augment.time_masks if stream.augment and stream.augment.time_mask_frames else 0
    k_freq = stream.augment.freq_masks if stream.augment and stream.augment.freq_mask_bands else 0
    signature = (
        tf.TensorSpec((None, *segment_shape), tf.float16),
        {k: tf.TensorSpec((None, stream.n_classes[k]), tf.float32) for k in stream.heads},
        {k: tf.TensorSpec((None,), tf.float32) for k in stream.heads},
        {
            "time_start": tf.TensorSpec((None, k_time), tf.int32),
            "time_width": tf.TensorSpec((None, k_time), tf.int32),
            "freq_start": tf.TensorSpec((None, k_freq), tf.int32),
            "freq_width": tf.TensorSpec((None, k_freq), tf.int32),
            "partner": tf.TensorSpec((None,), tf.int32),
            "lam": tf.TensorSpec((None,), tf.float32),
        },
    )
    assert tuple(signature[3]) == PARAM_KEYS
    ds = tf.data.Dataset.from_generator(stream.batches, output_signature=signature)
    plan = stream.augment
    fill_values = np.zeros(n_mels, np.float32) if fill is None else np.asarray(fill, np.float32)

    def finish(x, y, w, params):
        if plan is not None:
            x, y, w = apply_augmentation(x, y, w, params, fill_values, plan)
        return (tf.expand_dims(x, -1) if len(input_shape) > len(segment_shape) else x), y, w

    ds = ds.map(finish, num_parallel_calls=1)
    # The epoch size is known in advance: telling tf.data lets Keras show steps and ETA.
    ds = ds.apply(tf.data.experimental.assert_cardinality(stream.steps()))
    return ds.prefetch(tf.data.AUTOTUNE)


def _segment_shape(source: Any, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of one cached segment: the front end's, else the model input without its channel axis."""
    frontend = getattr(source, "frontend", None)
    if frontend is not None:
        return tuple(frontend.row_shape[1:])
    return tuple(input_shape[:-1])


def iter_segment_batches(
    source: FeatureSource, track_ids: np.ndarray, *, block_tracks: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of model inputs ``(x (n*S, *input_shape) float32, track index (n*S,))`` in track order.

    ``input_shape`` is the source's front end's (``(M, F, 1)`` for log-mel segments); a source
    without one gets a channel axis added to its segments.
    """
    frontend = getattr(source, "frontend", None)
    for start in range(0, len(track_ids), block_tracks):
        ids = track_ids[start : start + block_tracks]
        x = source.read(ids)
        S = x.shape[1]
        index = np.repeat(np.arange(start, start + len(ids)), S)
        shape = tuple(frontend.input_shape) if frontend is not None else x.shape[2:] + (1,)
        yield x.reshape((-1, *shape)).astype(np.float32), index


def predict_segments(
    model: Any,
    source: FeatureSource,
    track_ids: np.ndarray,
    *,
    batch_size: int = Settings.inference_batch_size,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Segment-level probabilities of every head for the given tracks, and each segment's track.

    Returns ``({"top": (n_seg, C), "medium": ..., "all": ...}, segment_track (n_seg,))`` where
    ``segment_track`` indexes ``track_ids``; a model without a medium head gives no ``medium``.
    """
    names = getattr(model, "output_names", None) or LEVELS
    outputs: dict[str, list[np.ndarray]] = {k: [] for k in LEVELS if k in names}  # the model's heads
    index = []
    for x, idx in iter_segment_batches(source, np.asarray(track_ids)):
        # predict (not predict_on_batch): it splits batches correctly under a distribution strategy.
        pred = model.predict(x, batch_size=batch_size, verbose=0)
        for key in outputs:
            outputs[key].append(np.asarray(pred[key], dtype=np.float32))
        index.append(idx)
    if not index:
        return {k: np.zeros((0, 0), np.float32) for k in outputs}, np.zeros(0, np.int64)
    return {k: np.concatenate(v) for k, v in outputs.items()}, np.concatenate(index)
