"""Where a dataset comes from: tracks, their labels, their audio and the genre tree, behind one interface.

The interface, :class:`Dataset` and the :class:`LabelledDataset` it loads into (targets at the three
levels and the vocabularies, built once; the trainer, the evaluator, the inspector and the study all
use it), is :mod:`genrekit.datasets.interface`'s, re-exported here. :class:`FMADataset` reads FMA's
metadata (the format rules stay in :mod:`genrekit.datasets.fma`); :class:`DemoDataset` is the
generated demo, which has FMA's layout; :mod:`genrekit.datasets.own` reads a user's genre folders
or manifest. :data:`SOURCES` names the class of each ``DATASET`` spec; a new source is a new
subclass in a new module and an entry there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from genrekit.datasets import fma
from genrekit.datasets.demo.writer import AUDIO_DIRNAME, MARKER_NAME, METADATA_DIRNAME, DemoInfo
from genrekit.datasets.interface import Dataset, LabelledDataset
from genrekit.datasets.labels import GenreTree
from genrekit.datasets.own import FolderDataset, ManifestDataset
from genrekit.errors import ConfigError, DatasetError
from genrekit.paths import SETUP_HINTS, require_dir
from genrekit.settings import Settings, split_files

__all__ = [
    "FMA_SPEC",
    "SOURCES",
    "SPEC_KINDS",
    "Dataset",
    "DemoDataset",
    "FMADataset",
    "LabelledDataset",
    "from_settings",
    "from_spec",
    "parse_spec",
]


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

        require_dir(self.metadata_dir, "metadata", SETUP_HINTS["metadata"])

    def fma_tracks(self) -> pd.DataFrame:
        """The subset's rows of tracks.csv in FMA's two-level layout (read once)."""
        if self._tracks is None:
            self._require_metadata()
            report = fma.TracksLoad(pd.DataFrame())
            self._tracks = fma.select_subset(fma.load_tracks(self.metadata_dir, report=report), self.subset)
            self.skipped = report.skipped
        return self._tracks

    def genres(self) -> pd.DataFrame:
        """genres.csv as :func:`genrekit.datasets.fma.load_genres` reads it."""
        self._require_metadata()
        return fma.load_genres(self.metadata_dir)

    def genre_tree(self) -> GenreTree:
        if self._tree is None:
            self._tree = GenreTree(self.genres())
        return self._tree

    def track_table(self) -> pd.DataFrame:
        tracks = self.fma_tracks()
        return fma.track_table(tracks, self.genre_tree())

    def audio_path(self, track_id: int) -> Path:
        return fma.audio_path(self.audio_dir, track_id)


class DemoDataset(FMADataset):
    """The generated demo dataset (:func:`genrekit.datasets.demo.writer.write_demo_dataset`): FMA's layout in ``root``.

    :attr:`info` is the :class:`~genrekit.datasets.demo.writer.DemoInfo` it was written with (its defective
    tracks, clip length, seed), when the folder holds the generator's record.
    """

    def __init__(self, root: str | os.PathLike, subset: str = "large"):
        self.root = Path(root)
        super().__init__(self.root / METADATA_DIRNAME, self.root / AUDIO_DIRNAME, subset)

    @property
    def info(self) -> DemoInfo:
        """The folder's :class:`~genrekit.datasets.demo.writer.DemoInfo`; DatasetError when it holds no finished demo."""
        marker = self.root / MARKER_NAME
        try:
            stored = json.loads(marker.read_text(encoding="utf-8"))
            return DemoInfo.from_json(stored["info"], self.root)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{marker}: no finished demo dataset record ({exc})") from None


FMA_SPEC = "fma"  # the DATASET setting of FMA (METADATA_DIR and AUDIO_DIR), the default
#: The other sources: DATASET = "KIND:PATH" -> the class that reads PATH, ``cls(path, seed=seed)``.
SOURCES: dict[str, Callable[..., Dataset]] = {"folder": FolderDataset, "csv": ManifestDataset}
SPEC_KINDS = tuple(SOURCES)  # DATASET = "folder:PATH" or "csv:FILE"


def parse_spec(spec: str) -> tuple[str, str]:
    """``(kind, path)`` of a dataset spec: ``("fma", "")``, ``("folder", PATH)`` or ``("csv", FILE)``.

    Raises
    ------
    ConfigError
        Any other spec, naming it.
    """
    if spec.strip() == FMA_SPEC:
        return FMA_SPEC, ""
    kind, sep, path = spec.partition(":")
    if not sep or kind.strip() not in SPEC_KINDS or not path.strip():
        raise ConfigError(
            f"dataset {spec!r} must be 'fma', 'folder:PATH' (genre folders) or 'csv:FILE' (a manifest)"
        )
    return kind.strip(), path.strip()


def from_spec(
    spec: str,
    *,
    seed: int = 0,
    metadata_dir: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
    subset: str = "large",
    split_lists: Mapping[str, str | os.PathLike] | None = None,
) -> Dataset:
    """The dataset a spec names (``--dataset``, config.py ``DATASET``, the JSON key ``dataset``).

    ``fma`` is FMA (or the demo) in ``metadata_dir`` and ``audio_dir``; ``folder:PATH`` genre
    folders (:class:`~genrekit.datasets.own.FolderDataset`); ``csv:FILE`` a manifest
    (:class:`~genrekit.datasets.own.ManifestDataset`): the class :data:`SOURCES` names. ``seed``
    seeds the split of a source that gives none; ``split_lists`` (split -> list file,
    :mod:`genrekit.datasets.split_lists`) give the split of a ``folder:``/``csv:`` source.
    """
    kind, path = parse_spec(spec)
    if kind == FMA_SPEC:
        if split_lists:
            raise ConfigError("split lists are for a folder:/csv: collection; FMA has its own split")
        return FMADataset(metadata_dir, audio_dir, subset=subset)
    return SOURCES[kind](Path(path).expanduser(), seed=seed, split_lists=split_lists)


def from_settings(
    settings: Settings,
    metadata_dir: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
) -> Dataset:
    """The dataset a run's settings name: ``settings.dataset``; for FMA its metadata and audio
    folders (or the two overrides) and subset.

    The demo has FMA's layout, so its folders work here too; :class:`DemoDataset` adds its record.
    Another source (``folder:PATH``, ``csv:FILE``) ignores the FMA folders.
    """
    return from_spec(
        settings.dataset,
        seed=settings.seed,
        metadata_dir=metadata_dir or settings.metadata_dir,
        audio_dir=audio_dir or settings.audio_dir,
        subset=settings.subset,
        split_lists=split_files(settings),
    )
