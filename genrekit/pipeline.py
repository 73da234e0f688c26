"""The tf.data input pipeline: feature-cache rows to batches of (segment, targets, weights).

Reads stay large even though epochs are shuffled: an epoch's tracks (drawn by the weighted
sampler, or a permutation) are sorted by cache row, cut into blocks of ``shuffle_block``
neighbouring tracks, and the blocks are visited in random order; each block is one near
sequential read of the memory-mapped cache. A shuffle buffer of several blocks then mixes the
segments of different blocks before batching. Random single-track reads of a cold memmap fall
to ~160 clips/s on a small machine; block reads do not (see benchmarks/bench_training.py).

TensorFlow is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from genrekit.balancing import EpochSampler
from genrekit.labels import EncodedLabels, one_hot

log = logging.getLogger(__name__)


class FeatureSource(Protocol):
    """What the pipeline needs of a feature cache."""

    def read(self, track_ids: np.ndarray) -> np.ndarray:
        """float16 features (n, num_segments, n_mels, frames) of the given tracks, in that order."""


@dataclass
class TrainingStream:
    """Per-epoch generator of blocks of segments with their targets and sample weights.

    Parameters
    ----------
    source : FeatureSource
        The feature cache.
    labels : EncodedLabels
        Targets of the training tracks (all present in ``source``).
    weights : mapping of level to array (n_classes,)
        Class weight per class for ``top`` and ``medium``; a masked track gets weight 0.
    n_classes : mapping of level to int
    sampler : EpochSampler or None
        Weighted sampling; None draws every track once per epoch in random order.
    """

    source: FeatureSource
    labels: EncodedLabels
    weights: Mapping[str, np.ndarray]
    n_classes: Mapping[str, int]
    num_segments: int
    sampler: EpochSampler | None = None
    shuffle_block: int = 64
    seed: int = 0
    epoch: int = 0  # set by EpochSetter at the start of each epoch (also after a resume)
    realized: list[np.ndarray] = field(default_factory=list)

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

    def steps(self, batch_size: int) -> int:
        n = self.sampler.epoch_size() if self.sampler is not None else len(self.labels)
        return math.ceil(n * self.num_segments / batch_size)

    def blocks(self) -> Iterator[tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]]:
        epoch = self.epoch
        self.epoch += 1  # if nobody sets it, consecutive iterations are consecutive epochs
        rows = self.epoch_rows(epoch)
        if self.sampler is not None:
            counts = self.sampler.realized_counts(rows)
            self.realized.append(counts)
            log.info("epoch %d: %d tracks drawn; top-genre counts %s", epoch + 1, len(rows), counts.tolist())
        rng = np.random.default_rng((self.seed, epoch, 1))
        rows = np.sort(rows)
        n_blocks = max(1, math.ceil(len(rows) / self.shuffle_block))
        blocks = np.array_split(rows, n_blocks)
        S = self.num_segments
        for b in rng.permutation(n_blocks):
            block = blocks[b]
            x = self.source.read(self.labels.track_ids[block])
            x = x.reshape((-1,) + x.shape[2:])
            y = {
                "top": np.repeat(one_hot(self.labels.top[block], self.n_classes["top"]), S, axis=0),
                "medium": np.repeat(one_hot(self.labels.medium[block], self.n_classes["medium"]), S, axis=0),
                "all": np.repeat(self.labels.all[block].astype(np.float32), S, axis=0),
            }
            w = {
                "top": np.repeat(self.track_weights("top", block), S),
                "medium": np.repeat(self.track_weights("medium", block), S),
                "all": np.ones(len(block) * S, dtype=np.float32),
            }
            yield x, y, w


def training_dataset(stream: TrainingStream, batch_size: int, input_shape: tuple[int, int, int]) -> Any:
    """A ``tf.data.Dataset`` of ``(x, y, sample_weight)`` batches, one pass = one epoch."""
    import tensorflow as tf

    n_mels, frames, _ = input_shape
    levels = ("top", "medium", "all")
    signature = (
        tf.TensorSpec((None, n_mels, frames), tf.float16),
        {k: tf.TensorSpec((None, stream.n_classes[k]), tf.float32) for k in levels},
        {k: tf.TensorSpec((None,), tf.float32) for k in levels},
    )
    buffer = max(batch_size, 4 * stream.shuffle_block * stream.num_segments)
    ds = tf.data.Dataset.from_generator(stream.blocks, output_signature=signature)
    ds = ds.unbatch().shuffle(buffer, seed=stream.seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y, w: (tf.expand_dims(x, -1), y, w))
    # The epoch size is known in advance: telling tf.data lets Keras show steps and ETA.
    ds = ds.apply(tf.data.experimental.assert_cardinality(stream.steps(batch_size)))
    return ds.prefetch(tf.data.AUTOTUNE)


def iter_segment_batches(
    source: FeatureSource, track_ids: np.ndarray, block_tracks: int = 64
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of segments ``(x (n*S, M, F, 1) float32, track index (n*S,))`` in track order."""
    for start in range(0, len(track_ids), block_tracks):
        ids = track_ids[start : start + block_tracks]
        x = source.read(ids)
        S = x.shape[1]
        index = np.repeat(np.arange(start, start + len(ids)), S)
        yield x.reshape((-1,) + x.shape[2:] + (1,)).astype(np.float32), index


def predict_segments(
    model: Any, source: FeatureSource, track_ids: np.ndarray, batch_size: int = 256
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Segment-level probabilities of every head for the given tracks, and each segment's track.

    Returns ``({"top": (n_seg, C), "medium": ..., "all": ...}, segment_track (n_seg,))`` where
    ``segment_track`` indexes ``track_ids``.
    """
    outputs: dict[str, list[np.ndarray]] = {"top": [], "medium": [], "all": []}
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
