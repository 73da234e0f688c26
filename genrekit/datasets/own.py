"""A user's own labelled music as a :class:`~genrekit.datasets.interface.Dataset`: genre folders or a CSV manifest.

:class:`FolderDataset` reads GTZAN's layout, ``ROOT/<genre>/[<sub-genre>/...]<file>``: the nested
folders are the genre hierarchy. :class:`ManifestDataset` reads a CSV with one row per track
(``path``, ``genres`` such as ``Rock/Punk;Electronic``, optional ``artist``, ``split`` and
``track_id``). Both give stable ids (hashes of the relative path and of the genre path, never
listing order), FMA's masking rule (a track whose genres span two roots has no top target) and
the split of :mod:`genrekit.datasets.splitting` unless the source gives one, or published split lists
(:mod:`genrekit.datasets.split_lists`) give it. Nothing is written into the music folder: the feature cache is named from the source (:attr:`OwnDataset.cache_name`).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genrekit.datasets.interface import Dataset, LabelledDataset
from genrekit.datasets.labels import MASKED, GenreTree, Vocabulary
from genrekit.datasets.split_lists import assign_listed, read_split_lists
from genrekit.datasets.splitting import assign_splits
from genrekit.errors import DatasetError
from genrekit.features.audio_files import AUDIO_EXTENSIONS
from genrekit.paths import NAME_ERRORS, name_bytes, shown
from genrekit.settings import SPLITS

log = logging.getLogger(__name__)

# What the decoder (libsndfile) reads: the suffixes of inference's file discovery.
AUDIO_SUFFIXES = AUDIO_EXTENSIONS
MANIFEST_COLUMNS = ("path", "genres")  # required; artist, split and track_id are optional
GENRE_SEPARATOR = ";"  # between a track's genres in a manifest
PATH_SEPARATOR = "/"  # between the levels of one genre path
SPLITS_FILE = "splits.csv"  # the split a run trained on, saved in its run folder
TRACK_ID_BITS = 48  # hashed track ids: exact in int64 and in JSON's doubles
GENRE_ID_BITS = 31
_WARNED: set[str] = set()  # sources whose same-artist leakage was already warned about


def stable_id(text: str, bits: int) -> int:
    """A positive id from the SHA-1 of ``text``: the same text always gives the same id.

    ``text`` is hashed as its exact bytes (:func:`genrekit.paths.name_bytes`), so a file name
    that is not UTF-8 has an id too, and a UTF-8 one the id it always had.
    """
    value = int.from_bytes(hashlib.sha1(name_bytes(text)).digest()[:8], "big") & ((1 << bits) - 1)
    return value or 1


@dataclass(frozen=True)
class TrackEntry:
    """One track as a source lists it, before ids are given."""

    path: Path  # the audio file
    key: str  # what the track id is hashed from (the path relative to the source)
    genres: tuple[tuple[str, ...], ...]  # genre paths, e.g. (("Rock", "Punk"), ("Electronic",))
    where: str  # for messages: the file or the manifest line
    artist: str = ""
    split: str = ""
    track_id: int | None = None


class OwnDataset(Dataset):
    """What both own sources share: ids, the genre tree, the track table and the split.

    Subclasses list their tracks (:meth:`entries`) and say whether artists and a split are known.
    ``split_lists`` (split -> list file, :mod:`genrekit.datasets.split_lists`) gives the split of
    the tracks they list, and leaves the others out.
    """

    kind = ""  # "folder" or "csv": the prefix of the source's spec

    def __init__(
        self,
        source: str | os.PathLike,
        *,
        seed: int = 0,
        split_lists: Mapping[str, str | os.PathLike] | None = None,
    ):
        self.source = Path(source)
        self.seed = int(seed)
        self.split_lists = dict(split_lists or {})
        self.subset = ""
        self.skipped: dict[int, str] = {}
        self._built: tuple[GenreTree, pd.DataFrame, dict[int, Path]] | None = None

    @property
    def spec(self) -> str:
        """The source as ``--dataset`` names it."""
        return f"{self.kind}:{self.source}"

    @property
    def cache_name(self) -> str:
        """The feature cache's folder name: the source's kind, name and a hash of its absolute path."""
        where = str(self.source.resolve())
        return f"{self.kind}-{self.source.resolve().name}-{hashlib.sha1(name_bytes(where)).hexdigest()[:8]}"

    @property
    def tracks_origin(self) -> str:
        return str(self.source)

    @abc.abstractmethod
    def entries(self) -> list[TrackEntry]:
        """The tracks of the source; DatasetError for anything that cannot be read."""

    def load(self, vocabs: Mapping[str, Vocabulary] | None = None) -> LabelledDataset:
        try:
            return super().load(vocabs)
        except DatasetError as exc:
            if "top-level genre(s)" not in str(exc):
                raise
            raise DatasetError(
                f"{self.source}: {exc} (a genre model tells genres apart: give at least two genre "
                "folders, e.g. ROOT/rock/ and ROOT/jazz/, or two genres in the manifest)"
            ) from None

    def genre_tree(self) -> GenreTree:
        return self._build()[0]

    def track_table(self) -> pd.DataFrame:
        return self._build()[1]

    def audio_path(self, track_id: int) -> Path:
        paths = self._build()[2]
        try:
            return paths[int(track_id)]
        except KeyError:
            raise DatasetError(f"{self.source}: no track with id {track_id}") from None

    def splits_table(self) -> pd.DataFrame:
        """track_id, path and split of every track: what a run saves as :data:`SPLITS_FILE`."""
        table, paths = self._build()[1], self._build()[2]
        return pd.DataFrame(
            {"track_id": table.index, "path": [str(paths[t]) for t in table.index], "split": table["split"]}
        )

    def _build(self) -> tuple[GenreTree, pd.DataFrame, dict[int, Path]]:
        if self._built is None:
            entries = self.entries()
            self._built = self._make(self._listed(entries) if self.split_lists else entries)
        return self._built

    def _listed(self, entries: list[TrackEntry]) -> list[TrackEntry]:
        """The entries the split lists name, with their split; the others left out (counted in one line)."""
        if any(e.split for e in entries):
            raise DatasetError(
                f"{self.source} gives a split column and split lists are given too (--split_file): give one"
            )
        splits = assign_listed(
            read_split_lists(self.split_lists), self.audio_dir, [e.path for e in entries], str(self.source)
        )
        kept = [dataclasses.replace(e, split=s) for e, s in zip(entries, splits, strict=True) if s]
        if len(kept) < len(entries):
            unlisted = next(e.key for e, s in zip(entries, splits, strict=True) if not s)
            log.info(
                "%d of the %d tracks of %s are in no split list: left out (e.g. %s)",
                len(entries) - len(kept),
                len(entries),
                self.source,
                unlisted,
            )
        return kept

    def _make(self, entries: list[TrackEntry]) -> tuple[GenreTree, pd.DataFrame, dict[int, Path]]:
        genre_of, tree = self._genre_ids(entries)
        ids = _track_ids(entries)
        track_genres = [tuple(sorted(genre_of[p] for p in e.genres)) for e in entries]
        closures = [tuple(sorted({a for g in gs for a in tree.ancestors(g)})) for gs in track_genres]
        roots = [{tree.root_of[g] for g in gs} for gs in track_genres]
        top = [next(iter(r)) if len(r) == 1 else MASKED for r in roots]
        artists = [stable_id(e.artist, GENRE_ID_BITS) if e.artist else MASKED for e in entries]
        table = pd.DataFrame(
            {
                "split": self._splits(entries),
                "subset": "",
                "artist": np.asarray(artists, dtype=np.int64),
                "genres": track_genres,
                "genres_all": closures,
                "top": np.asarray(top, dtype=np.int64),
            },
            index=pd.Index(np.asarray(ids, dtype=np.int64), name="track_id"),
        ).sort_index()
        paths = {tid: e.path for tid, e in zip(ids, entries, strict=True)}
        return tree, table, paths

    def _genre_ids(self, entries: list[TrackEntry]) -> tuple[dict[tuple[str, ...], int], GenreTree]:
        """Genre path -> genre id (a hash of the path) for every genre and its ancestors, and the tree."""
        genre_of: dict[tuple[str, ...], int] = {}
        for entry in entries:
            for path in entry.genres:
                for depth in range(1, len(path) + 1):
                    genre_of.setdefault(path[:depth], 0)
        by_id: dict[int, tuple[str, ...]] = {}
        for path in sorted(genre_of):
            gid = stable_id(PATH_SEPARATOR.join(path), GENRE_ID_BITS)
            if gid in by_id:
                raise DatasetError(
                    f"{self.source}: genres {'/'.join(by_id[gid])!r} and {'/'.join(path)!r} hash to the "
                    "same id; rename one"
                )
            by_id[gid], genre_of[path] = path, gid
        genres = pd.DataFrame(
            {
                "parent": [genre_of[p[:-1]] if len(p) > 1 else 0 for p in by_id.values()],
                "title": [p[-1] for p in by_id.values()],
                "top_level": [genre_of[p[:1]] for p in by_id.values()],
            },
            index=pd.Index(list(by_id), name="genre_id"),
        )
        return genre_of, GenreTree(genres)

    def _splits(self, entries: list[TrackEntry]) -> list[str]:
        """The split of every entry: the source's own when it gives one for each, else made by
        artist (by track where artists are unknown), stratified by first genre."""
        if all(e.split for e in entries):
            return [e.split for e in entries]
        strata = [PATH_SEPARATOR.join(e.genres[0]) for e in entries]
        groups = [f"artist:{e.artist}" if e.artist else f"track:{e.key}" for e in entries]
        if not all(e.artist for e in entries) and str(self.source) not in _WARNED:
            _WARNED.add(str(self.source))  # once per source and process, not on every read
            log.warning(
                "%s: no artist for %s tracks: they are split track by track, so one artist's tracks "
                "can land in training and test, which inflates the scores (GTZAN repeats artists); "
                "give an artist column in a manifest to split by artist",
                self.source,
                "all" if not any(e.artist for e in entries) else "some",
            )
        return assign_splits(groups, strata, seed=self.seed, where=self._genre_where())

    def _genre_where(self) -> Mapping[str, str]:
        """Genre path -> what names it in messages (a folder); empty when the genre path says it."""
        return {}


def _track_ids(entries: list[TrackEntry]) -> list[int]:
    """Each entry's track id: its own, or a hash of its key; DatasetError when one repeats."""
    ids: list[int] = []
    seen: dict[int, str] = {}
    for entry in entries:
        tid = entry.track_id if entry.track_id is not None else stable_id(entry.key, TRACK_ID_BITS)
        if tid in seen:
            raise DatasetError(f"{entry.where}: track id {tid} repeats that of {seen[tid]}")
        seen[tid] = entry.where
        ids.append(tid)
    return ids


def _audio_files(folder: Path) -> list[Path]:
    """Audio files under ``folder`` (hidden files and folders skipped), sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath) / f
            for f in sorted(filenames)
            if not f.startswith(".") and Path(f).suffix.lower() in AUDIO_SUFFIXES
        )
    return found


class FolderDataset(OwnDataset):
    """Genre folders as GTZAN ships them: ``ROOT/<genre>/[<sub-genre>/...]<file>``.

    ``ROOT/Rock/Punk/x.mp3`` is Punk under Rock (top Rock, medium Punk, all {Rock, Punk}). Track
    ids are hashes of the path relative to ``ROOT``, genre ids of the genre path, so adding files
    or genres changes no other id. Artists are unknown: the split is track by track.
    """

    kind = "folder"

    @property
    def metadata_dir(self) -> Path:
        return self.source

    @property
    def audio_dir(self) -> Path:
        return self.source

    def _genre_where(self) -> Mapping[str, str]:
        return {"": str(self.source)} | {
            PATH_SEPARATOR.join(p.parts): str(self.source / Path(*p.parts)) for p in self._genre_dirs()
        }

    def _genre_dirs(self) -> list[Path]:
        return [
            Path(d).relative_to(self.source)
            for d, _, _ in os.walk(self.source)
            if Path(d) != self.source
            and not any(part.startswith(".") for part in Path(d).relative_to(self.source).parts)
        ]

    def entries(self) -> list[TrackEntry]:
        root = self.source
        if not root.is_dir():
            state = "is not a folder" if root.exists() else "does not exist"
            raise DatasetError(f"dataset folder {root} {state}")
        files = _audio_files(root)
        if not files:
            raise DatasetError(
                f"dataset folder {root} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) "
                "in genre folders"
            )
        with_audio = {f.parent.relative_to(root) for f in files}
        for rel in sorted(self._genre_dirs()):
            if not any(rel == d or rel in d.parents for d in with_audio):
                raise DatasetError(f"genre folder {root / rel} holds no audio files")
        entries = []
        for path in files:
            rel = path.relative_to(root)
            if len(rel.parts) < 2:
                raise DatasetError(
                    f"{path}: an audio file outside any genre folder (put it in ROOT/<genre>/)"
                )
            entries.append(TrackEntry(path, rel.as_posix(), (rel.parts[:-1],), str(path)))
        return entries


class ManifestDataset(OwnDataset):
    """A CSV manifest: one row per track with ``path`` and ``genres``; ``artist``, ``split`` and
    ``track_id`` optional.

    ``path`` is relative to the manifest's folder or absolute; ``genres`` holds genre paths
    separated by ``;`` (``Rock/Punk;Electronic``). A given ``split`` (training, validation,
    test) is used as it is; otherwise tracks are split by artist when every row names one.
    """

    kind = "csv"

    @property
    def metadata_dir(self) -> Path:
        return self.source.parent

    @property
    def audio_dir(self) -> Path:
        return self.source.parent

    def entries(self) -> list[TrackEntry]:
        rows = _read_manifest(self.source)
        first_line: dict[Path, int] = {}
        return [
            _manifest_entry(self.source, rows, i, row, first_line)
            for i, row in enumerate(rows.to_dict("records"))
        ]


def _read_manifest(manifest: Path) -> pd.DataFrame:
    """The manifest's rows as text; DatasetError when it is missing, unreadable, empty or lacks a column."""
    if not manifest.is_file():
        state = "is a folder, not a file" if manifest.is_dir() else "does not exist"
        raise DatasetError(f"manifest {manifest} {state}")
    try:
        # A path may name a file whose name is not UTF-8: its bytes are kept (NAME_ERRORS).
        rows = pd.read_csv(
            manifest, dtype=str, keep_default_na=False, skipinitialspace=True, encoding_errors=NAME_ERRORS
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DatasetError(f"manifest {manifest}: not a readable CSV ({exc})") from None
    rows.columns = [str(c).strip() for c in rows.columns]
    for column in MANIFEST_COLUMNS:
        if column not in rows.columns:
            raise DatasetError(
                f"manifest {manifest} lacks the column {column!r} (it has: {', '.join(rows.columns)})"
            )
    if rows.empty:
        raise DatasetError(f"manifest {manifest} has no rows")
    return rows


def _manifest_entry(
    manifest: Path, rows: pd.DataFrame, i: int, row: dict[str, str], first_line: dict[Path, int]
) -> TrackEntry:
    """Row ``i`` of the manifest as a track (``first_line``: the line of each path seen so far)."""
    line = i + 2  # the header is line 1
    where = f"{manifest} line {line}"
    text = row["path"].strip()
    if not text:
        raise DatasetError(f"{where}: empty path")
    path = Path(text) if Path(text).is_absolute() else manifest.parent / text
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise DatasetError(f"{where}: audio file {text} {state} ({path})")
    resolved = path.resolve()
    if resolved in first_line:
        raise DatasetError(f"{where}: path {text} repeats line {first_line[resolved]}")
    first_line[resolved] = line
    genres = _genre_paths(_utf8(row["genres"], "genres", where), where)
    has_split = "split" in rows.columns
    split = row["split"].strip() if has_split else ""
    if has_split and split not in SPLITS:
        raise DatasetError(f"{where}: split {split!r} must be one of {', '.join(SPLITS)}")
    track_id = _manifest_track_id(row["track_id"], where) if "track_id" in rows.columns else None
    artist = _utf8(row["artist"], "artist", where).strip() if "artist" in rows.columns else ""
    return TrackEntry(
        path, Path(text).as_posix(), genres, where, artist=artist, split=split, track_id=track_id
    )


def _utf8(text: str, column: str, where: str) -> str:
    """``text`` when it is UTF-8; DatasetError otherwise. Only paths may hold other bytes (a file
    name is whatever the disk holds); a label in another encoding would be a wrong label."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise DatasetError(
            f"{where}: {column} '{shown(text)}' is not UTF-8 text; save the manifest as UTF-8"
        ) from None
    return text


def _genre_paths(text: str, where: str) -> tuple[tuple[str, ...], ...]:
    """``Rock/Punk;Electronic`` as genre paths; DatasetError for an empty level or no genre."""
    genres = []
    for part in text.split(GENRE_SEPARATOR):
        if not part.strip():
            continue
        levels = tuple(level.strip() for level in part.split(PATH_SEPARATOR))
        if not all(levels):
            raise DatasetError(f"{where}: genre path {part.strip()!r} has an empty level")
        genres.append(levels)
    if not genres:
        raise DatasetError(f"{where}: no genres (give e.g. Rock/Punk;Electronic)")
    return tuple(genres)


def _manifest_track_id(text: str, where: str) -> int:
    try:
        track_id = int(text)
    except ValueError:
        track_id = -1
    if track_id <= 0:
        raise DatasetError(f"{where}: track_id {text!r} must be a positive integer")
    return track_id


def read_splits_table(path: str | os.PathLike) -> pd.DataFrame:
    """A run's :data:`SPLITS_FILE` (track_id, path, split); paths that are not UTF-8 as they were."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: the run's split file is missing (it is written by the trainer)")
    return pd.read_csv(
        path, dtype={"track_id": np.int64, "path": str, "split": str}, encoding_errors=NAME_ERRORS
    )


def read_saved_splits(path: str | os.PathLike) -> dict[int, str]:
    """track_id -> split from a run's :data:`SPLITS_FILE`."""
    table = read_splits_table(path)
    return dict(zip(table["track_id"].tolist(), table["split"].tolist(), strict=True))


def apply_saved_splits(labelled: LabelledDataset, path: str | os.PathLike) -> None:
    """Give ``labelled``'s tracks the split a run saved; tracks the run never listed get no split.

    The split is remade from the source on every read; a track added since training, or a
    change that moved a track, must not put a training track into the test split.
    """
    saved = read_saved_splits(path)
    targets = labelled.targets
    new = targets.index.map(lambda t: saved.get(int(t), "")).to_numpy()
    unlisted = int((new == "").sum())
    if unlisted:
        log.info(
            "%d tracks are not in the run's split file %s (added since training): not scored", unlisted, path
        )
    labelled.targets = targets.assign(split=new)
