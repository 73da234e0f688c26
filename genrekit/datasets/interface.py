"""What every dataset source gives: :class:`Dataset`, and the :class:`LabelledDataset` it loads into.

A :class:`Dataset` gives a track table (:data:`~genrekit.datasets.labels.TRACK_COLUMNS`: split, subset,
artist, genre ids, top genre per track id), the :class:`~genrekit.datasets.labels.GenreTree` and each
track's audio path. :meth:`Dataset.load` turns it into a :class:`LabelledDataset` (targets at the
three levels and the vocabularies, built once). The sources live beside it: FMA and the demo in
:mod:`genrekit.datasets.base`, a user's folders or manifest in :mod:`genrekit.datasets.own`; both
import this module, and :mod:`genrekit.datasets.base` re-exports its names.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genrekit.datasets.labels import (
    MASKED,
    TRACK_COLUMNS,
    EncodedLabels,
    GenreTree,
    Vocabulary,
    build_vocabularies,
    encode,
    heads_of,
    targets_from_table,
)
from genrekit.errors import DatasetError


class Dataset(abc.ABC):
    """Tracks, their genre labels and audio files, and the genre tree they are labelled in.

    Subclasses implement :meth:`genre_tree`, :meth:`track_table`, :meth:`audio_path` and the
    :attr:`audio_dir` that names the feature cache; rows they had to leave out while reading go
    to :attr:`skipped` (track id -> why).
    """

    #: Track id -> why its row was left out while reading (filled by :meth:`track_table`).
    skipped: dict[int, str]
    #: The folder holding the dataset's labels and genre tree.
    metadata_dir: Path
    #: The part of the dataset used ("small", "medium", "large" for FMA; "" for a source without).
    subset: str

    @property
    @abc.abstractmethod
    def audio_dir(self) -> Path:
        """The folder of the audio files: feature caches are kept apart by its name."""

    @abc.abstractmethod
    def genre_tree(self) -> GenreTree:
        """The genre hierarchy the labels use."""

    @abc.abstractmethod
    def track_table(self) -> pd.DataFrame:
        """Tracks indexed by track_id with the columns of :data:`~genrekit.datasets.labels.TRACK_COLUMNS`."""

    @abc.abstractmethod
    def audio_path(self, track_id: int) -> Path:
        """Path of a track's audio file (which may not exist)."""

    @property
    def tracks_origin(self) -> str:
        """Where the track table comes from, for messages (a file or folder)."""
        return str(self.audio_dir)

    @property
    def genres_origin(self) -> str:
        """Where the genre tree comes from, for messages."""
        return self.tracks_origin

    @property
    def cache_name(self) -> str:
        """The name of the dataset's feature cache folder (:func:`genrekit.features.cache.cache_folder`)."""
        return Path(self.audio_dir).resolve().name

    def audio_items(self, track_ids: Iterable[int]) -> list[tuple[int, Path]]:
        """``(track_id, path)`` pairs for the feature cache, in track-id order."""
        return [(int(t), self.audio_path(int(t))) for t in sorted(int(t) for t in track_ids)]

    def load(self, vocabs: Mapping[str, Vocabulary] | None = None) -> LabelledDataset:
        """Read the dataset and derive its targets; vocabularies from its training split unless given.

        ``vocabs``: a trained model's saved vocabularies (evaluation); classes outside them are
        masked when encoding.

        Raises
        ------
        DatasetError
            Unreadable metadata, or (without ``vocabs``) a training split with fewer than two
            classes at a level.
        """
        table = self.track_table()  # first: a missing tracks file is named before a missing genre tree
        tree = self.genre_tree()
        missing = [c for c in TRACK_COLUMNS if c not in table.columns]
        if missing:
            raise DatasetError(f"{self.tracks_origin}: the dataset's track table lacks {missing}")
        targets = targets_from_table(table, tree)
        vocabs = dict(vocabs) if vocabs is not None else build_vocabularies(targets, tree)
        return LabelledDataset(tree, targets, vocabs, dataset=self, skipped=dict(self.skipped))


@dataclass
class LabelledDataset:
    """A dataset's targets and vocabularies, derived once (:meth:`Dataset.load`).

    ``targets`` is indexed by track_id with columns split, subset, artist, top, medium (genre
    ids, -1 when masked) and all (tuple of genre ids), see :func:`genrekit.datasets.labels.targets_from_table`.
    """

    tree: GenreTree
    targets: pd.DataFrame
    vocabs: dict[str, Vocabulary]
    dataset: Dataset | None = None
    skipped: dict[int, str] = field(default_factory=dict)

    def labels(self, split: str | None, track_ids: np.ndarray | None = None) -> EncodedLabels:
        """Encoded targets of a split (every track for None), optionally restricted to ``track_ids``."""
        targets = self.targets if split is None else self.targets[self.targets["split"] == split]
        if track_ids is not None:
            targets = targets.loc[targets.index.intersection(track_ids)]
        return encode(targets.sort_index(), self.vocabs)

    def split_ids(self, split: str) -> np.ndarray:
        """Sorted track ids of a split."""
        return np.sort(self.targets.index[(self.targets["split"] == split).to_numpy()].to_numpy())

    @property
    def num_classes(self) -> dict[str, int]:
        return {level: len(v) for level, v in self.vocabs.items()}

    @property
    def heads(self) -> tuple[str, ...]:
        """The levels the model has a head for (:func:`genrekit.datasets.labels.heads_of`)."""
        return heads_of(self.vocabs)

    @property
    def head_classes(self) -> dict[str, int]:
        """Classes of each head, keyed like the model's outputs (no ``medium`` when it has no head)."""
        return {level: len(self.vocabs[level]) for level in self.heads}

    @property
    def n_labelled_training(self) -> int:
        """Training tracks with a top-level target in the metadata: what relative thresholds scale by."""
        return int(((self.targets["split"] == "training") & (self.targets["top"] != MASKED)).sum())
