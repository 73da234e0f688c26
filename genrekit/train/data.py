"""A run's data: targets, class weights and the feature cache, and the trainer's first step.

``BalancedGenreProcessor`` turns a dataset (:mod:`genrekit.datasets.base`) into targets, vocabularies
and class weights and builds the feature cache of its front end (:mod:`genrekit.features.frontends`);
:func:`prepare_data` is the first step of :func:`genrekit.train.run.train`: everything the stream,
the model and the run config need, as one :class:`TrainingData`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrekit.datasets import base as datasets
from genrekit.datasets.base import Dataset, LabelledDataset
from genrekit.datasets.fma import derive_targets
from genrekit.datasets.labels import EncodedLabels, GenreTree, build_vocabularies
from genrekit.errors import ConfigError, DatasetError
from genrekit.features import frontends
from genrekit.features.cache import FeatureCache, cache_folder, ensure_cache
from genrekit.features.frontends import FrontEnd
from genrekit.features.mel import FeatureParams
from genrekit.models.registry import model_kind
from genrekit.paths import SETUP_HINTS, require_dir
from genrekit.settings import Settings
from genrekit.train import balancing

log = logging.getLogger("genrekit.train.run")  # the trainer's log, as when this lived in run.py

SOFTMAX_LEVELS = ("top", "medium")


def softmax_heads(heads: Any) -> tuple[str, ...]:
    """The single-label levels among ``heads`` (level names, or a dict keyed by them), in order."""
    return tuple(level for level in SOFTMAX_LEVELS if level in heads)


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

        require_dir(self.audio_dir, "audio", SETUP_HINTS["audio"])
        if track_ids is None:
            if processed is None:
                raise ConfigError("extract_features needs processed data or track ids")
            track_ids = processed.targets.index.to_numpy()
        frontend = self.frontend()
        folder = cache_folder(cache_dir or self.settings.cache_dir, self.dataset.cache_name, frontend)
        items = self.dataset.audio_items(track_ids)
        summary = ensure_cache(
            folder, items, frontend, workers=self.settings.workers, shard=shard, engine=self.settings.engine
        )
        log.debug("feature cache %s: %s", folder, summary)  # ensure_cache logs it at INFO
        return FeatureCache.open(folder, frontend)


@dataclasses.dataclass
class TrainingData:
    """What :func:`prepare_data` gives the later steps of a training."""

    processor: BalancedGenreProcessor
    processed: LabelledDataset
    frontend: FrontEnd
    cache: Any  # the open genrekit.features.cache.FeatureCache
    split_labels: dict[str, EncodedLabels]  # training and validation tracks with features
    left_out: dict[str, int]  # tracks of each split left out as defective or missing
    weights: dict[str, np.ndarray]  # class weights (top, medium) and the all head's pos_weight
    priors: dict[str, np.ndarray]
    sampler: balancing.EpochSampler | None
    norm: dict[str, Any]  # the statistics built into the model

    @property
    def n(self) -> dict[str, int]:
        """Classes of each head the model has."""
        return self.processed.head_classes

    @property
    def train_labels(self) -> EncodedLabels:
        return self.split_labels["training"]


def _log_classes(processed: LabelledDataset) -> None:
    n = processed.head_classes  # one entry per head the model has
    log.info(
        "classes per level: top %d, medium %s, all %d",
        n["top"],
        n["medium"] if "medium" in n else f"{processed.num_classes['medium']} (no medium head)",
        n["all"],
    )


def usable_split_labels(
    settings: Settings, processed: LabelledDataset, usable: np.ndarray
) -> tuple[dict[str, EncodedLabels], dict[str, int]]:
    """The training and validation tracks with features, and how many of each split were left out.

    Raises
    ------
    DatasetError
        When a split has no usable track.
    """
    split_labels = {s: processed.labels(s, usable) for s in ("training", "validation")}
    left_out = {s: int((processed.targets["split"] == s).sum()) - len(split_labels[s]) for s in split_labels}
    for split in split_labels:
        if len(split_labels[split]) == 0:
            raise DatasetError(f"no {split} tracks with usable audio in subset {settings.subset!r}")
    log.info(
        "tracks with features: training %d, validation %d (left out as defective or missing: %s)",
        len(split_labels["training"]),
        len(split_labels["validation"]),
        left_out,
    )
    return split_labels, left_out


def prepare_data(
    settings: Settings,
    metadata_dir: str | None = None,
    audio_dir: str | None = None,
    cache_dir: str | None = None,
) -> TrainingData:
    """The dataset, its feature cache, labels per split, class weights, priors, sampler and norm.

    Raises
    ------
    ConfigError, DatasetError, CacheError
        For settings the model kind refuses, or data that cannot train.
    """
    kind = model_kind(settings)
    processor = BalancedGenreProcessor(settings, metadata_dir, audio_dir)
    processed = processor.load_dataset()
    frontend = processor.frontend()
    kind.check_settings(settings)
    _log_classes(processed)
    # A kind that keeps another run's statistics checks that run before features are extracted.
    norm = None if kind.norm_from_cache else kind.source_norm(settings, processed)
    cache = processor.extract_features(processed, cache_dir=cache_dir)
    split_labels, left_out = usable_split_labels(settings, processed, cache.track_ids)
    train_labels = split_labels["training"]
    weights = processor.compute_hierarchical_class_weights(processed, train_labels)
    priors = processor.class_priors(processed, train_labels)
    sampler = processor.make_sampler(
        train_labels, processed.head_classes["top"], processed.n_labelled_training
    )
    if norm is None:
        norm = cache.norm_stats(train_labels.track_ids).to_dict()
    return TrainingData(
        processor, processed, frontend, cache, split_labels, left_out, weights, priors, sampler, norm
    )
