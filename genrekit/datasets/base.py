"""Where a dataset comes from: tracks, their labels, their audio and the genre tree, behind one interface.

A :class:`Dataset` gives a track table (:data:`~genrekit.datasets.labels.TRACK_COLUMNS`: split, subset,
artist, genre ids, top genre per track id), the :class:`~genrekit.datasets.labels.GenreTree` and each
track's audio path. :meth:`Dataset.load` turns it into a :class:`LabelledDataset` (targets at the
three levels and the vocabularies, built once), which the trainer, the evaluator, the inspector
and the study all use. :class:`FMADataset` reads FMA's metadata (the format rules stay in
:mod:`genrekit.datasets.fma`); :class:`DemoDataset` is the generated demo, which has FMA's layout. A new
source (a user's folders with a labels file) is a new subclass in a new module.
"""

from __future__ import annotations

import abc
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class FMADataset(Dataset):
    """FMA: ``tracks.csv`` and ``genres.csv`` in a metadata folder, audio in ``NNN/NNNNNN.mp3``.

    Parameters
    ----------
    metadata_dir, audio_dir : path-like
    subset : {"small", "medium", "large"}
        FMA's subsets are nested: ``medium`` holds the small tracks too.
    """

    def __init__(self, metadata_dir: str | os.PathLike, audio_dir: str | os.PathLike, subset: str = "large"):
        self.metadata_dir = Path(metadata_dir)
        self._audio_dir = Path(audio_dir)
        self.subset = subset
        self.skipped = {}
        self._tree: GenreTree | None = None
        self._tracks: pd.DataFrame | None = None

    @property
    def audio_dir(self) -> Path:
        return self._audio_dir

    @property
    def tracks_origin(self) -> str:
        return str(self.metadata_dir / "tracks.csv")

    @property
    def genres_origin(self) -> str:
        return str(self.metadata_dir / "genres.csv")

    def _require_metadata(self) -> None:
        from genrekit.paths import SETUP_HINTS, require_dir

        require_dir(self.metadata_dir, "metadata", SETUP_HINTS["metadata"])

    def fma_tracks(self) -> pd.DataFrame:
        """The subset's rows of tracks.csv in FMA's two-level layout (read once)."""
        if self._tracks is None:
            from genrekit.datasets import fma

            self._require_metadata()
            report = fma.TracksLoad(pd.DataFrame())
            self._tracks = fma.select_subset(fma.load_tracks(self.metadata_dir, report=report), self.subset)
            self.skipped = report.skipped
        return self._tracks

    def genres(self) -> pd.DataFrame:
        """genres.csv as :func:`genrekit.datasets.fma.load_genres` reads it."""
        from genrekit.datasets import fma

        self._require_metadata()
        return fma.load_genres(self.metadata_dir)

    def genre_tree(self) -> GenreTree:
        if self._tree is None:
            self._tree = GenreTree(self.genres())
        return self._tree

    def track_table(self) -> pd.DataFrame:
        from genrekit.datasets import fma

        tracks = self.fma_tracks()
        return fma.track_table(tracks, self.genre_tree())

    def audio_path(self, track_id: int) -> Path:
        from genrekit.datasets import fma

        return fma.audio_path(self.audio_dir, track_id)


class DemoDataset(FMADataset):
    """The generated demo dataset (:func:`genrekit.datasets.demo.writer.write_demo_dataset`): FMA's layout in ``root``.

    :attr:`info` is the :class:`~genrekit.datasets.demo.writer.DemoInfo` it was written with (its defective
    tracks, clip length, seed), when the folder holds the generator's record.
    """

    def __init__(self, root: str | os.PathLike, subset: str = "large"):
        from genrekit.datasets.demo.writer import AUDIO_DIRNAME, METADATA_DIRNAME

        self.root = Path(root)
        super().__init__(self.root / METADATA_DIRNAME, self.root / AUDIO_DIRNAME, subset)

    @property
    def info(self) -> Any:
        """The folder's :class:`~genrekit.datasets.demo.writer.DemoInfo`; DatasetError when it holds no finished demo."""
        from genrekit.datasets.demo.writer import MARKER_NAME, DemoInfo

        marker = self.root / MARKER_NAME
        try:
            stored = json.loads(marker.read_text(encoding="utf-8"))
            return DemoInfo.from_json(stored["info"], self.root)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{marker}: no finished demo dataset record ({exc})") from None


FMA_SPEC = "fma"  # the DATASET setting of FMA (METADATA_DIR and AUDIO_DIR), the default
SPEC_KINDS = ("folder", "csv")  # DATASET = "folder:PATH" or "csv:FILE"


def parse_spec(spec: str) -> tuple[str, str]:
    """``(kind, path)`` of a dataset spec: ``("fma", "")``, ``("folder", PATH)`` or ``("csv", FILE)``.

    Raises
    ------
    ConfigError
        Any other spec, naming it.
    """
    from genrekit.errors import ConfigError

    if spec.strip() == FMA_SPEC:
        return FMA_SPEC, ""
    kind, sep, path = spec.partition(":")
    if not sep or kind.strip() not in SPEC_KINDS or not path.strip():
        raise ConfigError(
            f"dataset {spec!r} must be 'fma', 'folder:PATH' (genre folders) or 'csv:FILE' (a manifest)"
        )
    return kind.strip(), path.strip()


def from_spec(
    spec: str, *, seed: int = 0, metadata_dir: Any = None, audio_dir: Any = None, subset: str = "large"
) -> Dataset:
    """The dataset a spec names (``--dataset``, config.py ``DATASET``, the JSON key ``dataset``).

    ``fma`` is FMA (or the demo) in ``metadata_dir`` and ``audio_dir``; ``folder:PATH`` genre
    folders (:class:`~genrekit.datasets.own.FolderDataset`); ``csv:FILE`` a manifest
    (:class:`~genrekit.datasets.own.ManifestDataset`). ``seed`` seeds the split of a source
    that gives none.
    """
    kind, path = parse_spec(spec)
    if kind == FMA_SPEC:
        return FMADataset(metadata_dir, audio_dir, subset=subset)
    from genrekit.datasets.own import FolderDataset, ManifestDataset

    return (FolderDataset if kind == "folder" else ManifestDataset)(Path(path).expanduser(), seed=seed)


def from_settings(
    settings: Any, metadata_dir: str | os.PathLike | None = None, audio_dir: str | os.PathLike | None = None
) -> Dataset:
    """The dataset a run's settings name: ``settings.dataset``; for FMA its metadata and audio
    folders (or the two overrides) and subset.

    The demo has FMA's layout, so its folders work here too; :class:`DemoDataset` adds its record.
    Another source (``folder:PATH``, ``csv:FILE``) ignores the FMA folders.
    """
    return from_spec(
        getattr(settings, "dataset", FMA_SPEC),
        seed=settings.seed,
        metadata_dir=metadata_dir or settings.metadata_dir,
        audio_dir=audio_dir or settings.audio_dir,
        subset=settings.subset,
    )
