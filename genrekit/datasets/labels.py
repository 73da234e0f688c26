"""The genre hierarchy and the three label levels a model learns: top, medium and all.

- **top**: FMA's own ``('track', 'genre_top')``, a root genre. Empty when a track's genres span
  several roots (about half of fma_large): such tracks get no top target (masked, index -1) and
  keep their other labels.
- **medium**: one non-root genre per track (:func:`medium_genre`): the deepest non-root genre
  among ``('track', 'genres')``; ties (same depth) go to the genre with the lowest ``genre_id``, so
  the rule is deterministic. Masked when a track has only root genres.
- **all**: multi-label over ``('track', 'genres_all')`` (the genres and all their ancestors).

Vocabularies hold the classes seen in the training split at each level; they are saved with the
model and reused unchanged by inference and evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from genrekit.errors import DatasetError, ModelError

log = logging.getLogger(__name__)

LEVELS = ("top", "medium", "all")
MASKED = -1  # target index of a track with no label at a level


class GenreTree:
    """FMA's genre tree from a genres.csv DataFrame (see :func:`genrekit.datasets.fma.load_genres`)."""

    def __init__(self, genres: pd.DataFrame):
        self.genres = genres
        self.parent: dict[int, int] = {int(g): int(p) for g, p in genres["parent"].items()}
        self.title: dict[int, str] = {int(g): str(t) for g, t in genres["title"].items()}
        self.roots: list[int] = sorted(g for g, p in self.parent.items() if p == 0)
        self.depth: dict[int, int] = {}
        for gid in self.parent:
            self.depth[gid] = self._depth(gid)
        self.root_of: dict[int, int] = {gid: self.ancestors(gid)[-1] for gid in self.parent}
        self.root_by_title: dict[str, int] = {self.title[g]: g for g in self.roots}

    def _depth(self, gid: int) -> int:
        depth, seen = 0, {gid}
        while self.parent[gid] != 0:
            gid = self.parent[gid]
            if gid in seen:
                raise DatasetError(f"genres.csv: genre {gid} is its own ancestor (cycle in parent)")
            seen.add(gid)
            depth += 1
        return depth

    def ancestors(self, gid: int) -> list[int]:
        """``[gid, parent, ..., root]``."""
        chain = [gid]
        while self.parent[chain[-1]] != 0:
            chain.append(self.parent[chain[-1]])
        return chain

    def path(self, gid: int) -> list[str]:
        """Titles from the root down to ``gid``, e.g. ``['Rock', 'Punk']``."""
        return [self.title[g] for g in reversed(self.ancestors(gid))]

    @property
    def non_roots(self) -> list[int]:
        return sorted(g for g, p in self.parent.items() if p != 0)

    def __len__(self) -> int:
        return len(self.parent)


def medium_genre(genre_ids: Iterable[int], tree: GenreTree | Mapping[int, int]) -> int:
    """The medium target of a track: its deepest non-root genre, ties to the lowest genre id.

    The one rule for the medium level: :func:`genrekit.datasets.fma.derive_targets` labels tracks with
    it and the demo generator (:mod:`genrekit.datasets.demo.writer`) gives each track the sound of the
    genre it picks.

    Parameters
    ----------
    genre_ids : iterable of int
        The track's ``('track', 'genres')``; ids missing from the tree are ignored.
    tree : GenreTree or mapping
        The genre tree, or its parent table ``{genre_id: parent_id}`` (0 for a root).

    Returns
    -------
    int
        A genre id, or ``MASKED`` (-1) when the track has no non-root genre.
    """
    parent = tree.parent if isinstance(tree, GenreTree) else tree
    depth = tree.depth if isinstance(tree, GenreTree) else None
    best, best_key = MASKED, (0, 0)
    for g in genre_ids:
        g = int(g)
        if parent.get(g, 0) == 0:
            continue
        d = depth[g] if depth is not None else _depth(g, parent)
        key = (-d, g)
        if best == MASKED or key < best_key:
            best, best_key = g, key
    return best


def _depth(gid: int, parent: Mapping[int, int]) -> int:
    depth, seen = 0, {gid}
    while parent[gid] != 0:
        gid = parent[gid]
        if gid in seen:
            raise DatasetError(f"genre {gid} is its own ancestor (cycle in parent)")
        seen.add(gid)
        depth += 1
    return depth


TRACK_COLUMNS = ("split", "subset", "artist", "genres", "genres_all", "top")


def targets_from_table(table: pd.DataFrame, tree: GenreTree) -> pd.DataFrame:
    """Per-track targets at the three levels, as genre ids, from a dataset's track table.

    Parameters
    ----------
    table : pandas.DataFrame
        Indexed by track_id with the columns of :data:`TRACK_COLUMNS` (what every
        :class:`genrekit.datasets.base.Dataset` gives): ``split``, ``subset`` (may be empty),
        ``artist`` (id or -1), ``genres`` (tuple of genre ids), ``genres_all`` (the genres and
        their ancestors; recomputed where it lacks some) and ``top`` (a root genre id, or -1
        when the track has none).
    tree : GenreTree

    Returns
    -------
    pandas.DataFrame
        Indexed by track_id with columns ``split``, ``subset``, ``artist`` (artist id or -1),
        ``top`` and ``medium`` (genre id or -1 when masked), ``all`` (tuple of genre ids).
        Genre ids unknown to the tree are reported once and ignored.
    """
    genres = table["genres"]
    genres_all = table["genres_all"]
    unknown: set[int] = set()

    def known(ids: tuple[int, ...]) -> tuple[int, ...]:
        good = tuple(g for g in ids if g in tree.parent)
        if len(good) != len(ids):
            unknown.update(g for g in ids if g not in tree.parent)
        return good

    medium = [medium_genre(known(ids), tree) for ids in genres]
    all_ids = []
    for ids, base in zip(genres_all, genres, strict=True):
        # genres_all is the closure of genres over ancestors; recompute it if a source lacks it.
        closure = set(known(ids))
        for g in known(base):
            closure.update(tree.ancestors(g))
        all_ids.append(tuple(sorted(closure)))
    top = table["top"].to_numpy(dtype=np.int64)
    not_root = [int(g) for g in top if g != MASKED and tree.parent.get(int(g), -1) != 0]
    if not_root:
        log.warning("top genres that are not root genres, ignored: %s", sorted(set(not_root))[:20])
        top = np.where(np.isin(top, not_root), MASKED, top)
    if unknown:
        log.warning("genre ids not in genres.csv, ignored: %s", sorted(unknown)[:20])
    return pd.DataFrame(
        {
            "split": table["split"].to_numpy(),
            "subset": table["subset"].to_numpy(),
            "artist": table["artist"].to_numpy(dtype=np.int64),
            "top": top,
            "medium": np.asarray(medium, dtype=np.int64),
            "all": all_ids,
        },
        index=table.index,
    )


@dataclass(frozen=True)
class Vocabulary:
    """The classes of one level: index i of the model's output is ``genre_ids[i]``."""

    level: str
    genre_ids: tuple[int, ...]
    names: tuple[str, ...]
    parent_ids: tuple[int, ...]
    root_ids: tuple[int, ...]
    paths: tuple[str, ...]  # e.g. "Rock > Punk"

    def __len__(self) -> int:
        return len(self.genre_ids)

    @property
    def index(self) -> dict[int, int]:
        return {g: i for i, g in enumerate(self.genre_ids)}

    @classmethod
    def from_ids(cls, level: str, ids: list[int], tree: GenreTree) -> Vocabulary:
        ids = sorted(int(g) for g in ids)
        return cls(
            level=level,
            genre_ids=tuple(ids),
            names=tuple(tree.title[g] for g in ids),
            parent_ids=tuple(tree.parent[g] for g in ids),
            root_ids=tuple(tree.root_of[g] for g in ids),
            paths=tuple(" > ".join(tree.path(g)) for g in ids),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "genre_ids": list(self.genre_ids),
            "names": list(self.names),
            "parent_ids": list(self.parent_ids),
            "root_ids": list(self.root_ids),
            "paths": list(self.paths),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Vocabulary:
        try:
            return cls(**{k: data[k] if k == "level" else tuple(data[k]) for k in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise ModelError(f"vocabulary in the training config is incomplete ({exc})") from None


def build_vocabularies(targets: pd.DataFrame, tree: GenreTree) -> dict[str, Vocabulary]:
    """Vocabularies of the three levels from the *training* tracks' targets."""
    train = targets[targets["split"] == "training"]
    if train.empty:
        raise DatasetError("no training tracks: cannot build vocabularies (check the subset and split)")
    top_ids = sorted(set(train["top"][train["top"] != MASKED].tolist()))
    medium_ids = sorted(set(train["medium"][train["medium"] != MASKED].tolist()))
    all_ids = sorted({g for ids in train["all"] for g in ids})
    # The medium head is optional (a flat collection such as GTZAN has no sub-genres); see heads_of.
    for level, ids in (("top", top_ids), ("all", all_ids)):
        if len(ids) < 2:
            raise DatasetError(f"the training split has {len(ids)} {level}-level genre(s); at least 2 needed")
    return {
        "top": Vocabulary.from_ids("top", top_ids, tree),
        "medium": Vocabulary.from_ids("medium", medium_ids, tree),
        "all": Vocabulary.from_ids("all", all_ids, tree),
    }


def heads_of(vocabs: Mapping[str, Vocabulary]) -> tuple[str, ...]:
    """The levels a model has a head for: every level with at least two classes, in ``LEVELS`` order.

    ``top`` and ``all`` always qualify (:func:`build_vocabularies` refuses fewer); ``medium`` has no
    head when the training split has fewer than two medium genres (a flat collection, GTZAN's
    ``ROOT/<genre>/<file>``): it is left out of the model, the losses, the metrics and the results.
    """
    return tuple(level for level in LEVELS if len(vocabs[level].genre_ids) >= 2)


@dataclass
class EncodedLabels:
    """Class indices per track for a fixed set of vocabularies (-1 = masked)."""

    track_ids: np.ndarray  # (n,) int64
    top: np.ndarray  # (n,) int64, -1 masked
    medium: np.ndarray  # (n,) int64, -1 masked
    all: np.ndarray  # (n, n_all) uint8 multi-hot

    def __len__(self) -> int:
        return len(self.track_ids)

    def subset(self, rows: np.ndarray) -> EncodedLabels:
        return EncodedLabels(self.track_ids[rows], self.top[rows], self.medium[rows], self.all[rows])

    def one_hot(self, level: str, n_classes: int) -> np.ndarray:
        return one_hot(getattr(self, level), n_classes)


def one_hot(indices: np.ndarray, n_classes: int) -> np.ndarray:
    """float32 one-hot targets; a masked index (-1) is an all-zero row, so it adds zero loss."""
    out = np.zeros((len(indices), n_classes), dtype=np.float32)
    rows = np.flatnonzero(np.asarray(indices) >= 0)
    out[rows, np.asarray(indices)[rows]] = 1.0
    return out


def encode(targets: pd.DataFrame, vocabs: Mapping[str, Vocabulary]) -> EncodedLabels:
    """Encode genre-id targets with fixed vocabularies; classes outside them become masked."""
    top_index, medium_index, all_index = (vocabs[level].index for level in LEVELS)
    top = np.array([top_index.get(int(g), MASKED) for g in targets["top"]], dtype=np.int64)
    medium = np.array([medium_index.get(int(g), MASKED) for g in targets["medium"]], dtype=np.int64)
    multi = np.zeros((len(targets), len(all_index)), dtype=np.uint8)
    for row, ids in enumerate(targets["all"]):
        cols = [all_index[g] for g in ids if g in all_index]
        multi[row, cols] = 1
    return EncodedLabels(targets.index.to_numpy(dtype=np.int64), top, medium, multi)


def check_artist_filtered(targets: pd.DataFrame) -> list[int]:
    """Artist ids found in more than one split (empty for FMA's artist-filtered split)."""
    known = targets[targets["artist"] >= 0]
    per_artist = known.groupby("artist", observed=True)["split"].nunique()
    return sorted(int(a) for a in per_artist.index[per_artist > 1])
