"""FMA's metadata formats, in one place: tracks.csv, genres.csv, audio paths and subsets.

The rules follow the FMA repository's ``utils.load`` and ``get_audio_path`` (two-level column
header with a third ``track_id,,,`` line, Python list literals, ordered subsets, the official
artist-filtered split), rewritten so they work on today's pandas 3 and numpy 2.
"""

from __future__ import annotations

import ast
import csv
import io
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from genrekit.datasets.labels import GenreTree, targets_from_table
from genrekit.errors import DatasetError

log = logging.getLogger(__name__)

SUBSETS = ("small", "medium", "large")  # ordered: a subset includes every smaller one
SPLITS = ("training", "validation", "test")  # FMA's artist-filtered split

GENRE_LIST_COLUMNS = (("track", "genres"), ("track", "genres_all"))
TAG_COLUMNS = (("track", "tags"), ("album", "tags"), ("artist", "tags"))
DATE_COLUMNS = (
    ("track", "date_created"),
    ("track", "date_recorded"),
    ("album", "date_created"),
    ("album", "date_released"),
    ("artist", "date_created"),
    ("artist", "active_year_begin"),
    ("artist", "active_year_end"),
)
CATEGORY_COLUMNS = (
    ("track", "genre_top"),
    ("track", "license"),
    ("album", "type"),
    ("album", "information"),
    ("artist", "bio"),
)
# What the toolkit itself needs: loading only these is ~5x faster and leaner than all 52.
ESSENTIAL_COLUMNS = (
    ("set", "subset"),
    ("set", "split"),
    ("artist", "id"),
    ("track", "title"),
    ("artist", "name"),
    ("track", "genre_top"),
    ("track", "genres"),
    ("track", "genres_all"),
    ("track", "duration"),
)
GENRES_COLUMNS = ("#tracks", "parent", "title", "top_level")
# Every column of tracks.csv, in FMA's order (the demo writes exactly these).
_TRACKS_CSV = {
    "album": "comments date_created date_released engineer favorites id information listens producer tags title "
    "tracks type",
    "artist": "active_year_begin active_year_end associated_labels bio comments date_created favorites id latitude "
    "location longitude members name related_projects tags website wikipedia_page",
    "set": "split subset",
    "track": "bit_rate comments composer date_created date_recorded duration favorites genre_top genres genres_all "
    "information interest language_code license listens lyricist number publisher tags title",
}
TRACKS_CSV_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    (top, sub) for top, subs in _TRACKS_CSV.items() for sub in subs.split()
)


def audio_path(audio_dir: str | os.PathLike, track_id: int) -> Path:
    """Path of a track's MP3: ``audio_dir/NNN/NNNNNN.mp3`` (NNN = first 3 of 6 digits)."""
    tid = f"{int(track_id):06d}"
    return Path(audio_dir) / tid[:3] / f"{tid}.mp3"


def _read_header(path: Path) -> list[tuple[str, str]]:
    """The two-level column names of tracks.csv, read without loading the file."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            top, sub, index_line = next(reader), next(reader), next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: too short for tracks.csv (needs 3 header lines)") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read tracks.csv header ({exc})") from None
    if len(top) != len(sub) or not index_line or index_line[0] != "track_id":
        raise DatasetError(
            f"{path}: not in tracks.csv layout (expected two header lines then 'track_id,,,...')"
        )
    return list(zip(top[1:], sub[1:], strict=True))


_SCAN_BLOCK = 1 << 16  # bytes read at a time when looking back for the last complete row


def _complete_length(path: Path) -> int:
    """Bytes of ``path`` up to the end of its last complete CSV record.

    A record is complete when its line feed lies outside quotes; CSV doubles a quote inside a
    quoted field, so the parity of the quotes before a line feed tells whether it is inside one.
    A file that ends with a line feed outside quotes is whole (the usual case: one pass counting
    quotes); otherwise the last such line feed is searched backwards from the end.
    """
    quotes, size, last = 0, 0, b""
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            quotes += block.count(b'"')
            size += len(block)
            last = block[-1:]
        if last == b"\n" and quotes % 2 == 0:
            return size
        end, after = size, 0  # after: quotes in [end, size)
        while end > 0:
            start = max(0, end - _SCAN_BLOCK)
            fh.seek(start)
            buf = np.frombuffer(fh.read(end - start), np.uint8)
            is_quote = buf == ord('"')
            # quotes strictly after each position, up to the end of the file
            later = np.cumsum(is_quote[::-1])[::-1] - is_quote + after
            ends = np.flatnonzero((buf == ord("\n")) & ((quotes - later) % 2 == 0))
            if len(ends):
                return start + int(ends[-1]) + 1
            after += int(is_quote.sum())
            end = start
    return 0


def _parse_int_lists(series: pd.Series, path: Path, column: tuple[str, str]) -> tuple[pd.Series, list]:
    """Parse ``[21, 76]`` literals into tuples of int; return the bad track ids separately."""
    text = series.fillna("[]").astype(str).str.strip()
    inner = text.str.slice(1, -1)
    well_formed = text.str.startswith("[") & text.str.endswith("]")
    inner_ok = inner.str.fullmatch(r"\s*(\d+\s*(,\s*\d+\s*)*)?")
    good = well_formed & inner_ok
    parsed = pd.Series([()] * len(series), index=series.index, dtype=object)
    nonempty = good & (inner.str.strip() != "")
    parsed[nonempty] = [tuple(int(x) for x in s.split(",")) for s in inner[nonempty]]
    bad = list(series.index[~good])
    for tid in bad[:10]:
        log.warning("%s: track %s: cannot parse %s=%r; track skipped", path, tid, column, series[tid])
    return parsed, bad


@dataclass
class TracksLoad:
    """tracks.csv as loaded, with the tracks that had to be skipped and why."""

    tracks: pd.DataFrame
    skipped: dict[int, str] = field(default_factory=dict)


def load_tracks(
    path: str | os.PathLike,
    columns: Sequence[tuple[str, str]] | str | None = "essential",
    *,
    report: TracksLoad | None = None,
) -> pd.DataFrame:
    """Load FMA's ``tracks.csv``.

    Parameters
    ----------
    path : path-like
        ``tracks.csv`` itself or the metadata folder holding it.
    columns : "essential", "all" or a sequence of (top, sub) column tuples
        ``"essential"`` (default) loads what the toolkit uses (:data:`ESSENTIAL_COLUMNS`),
        ``"all"`` (or None) every column, as FMA's ``utils.load`` does.
    report : TracksLoad, optional
        Receives the ids of tracks skipped because their genre lists could not be parsed.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``track_id`` with two-level columns. Genre lists are tuples of int, tag lists
        are lists, dates are datetimes, ``('set', 'subset')`` is an ordered categorical
        small < medium < large, so ``tracks[tracks['set', 'subset'] <= 'medium']`` is fma_medium.

    Raises
    ------
    DatasetError
        Missing file, a file not in tracks.csv layout, a missing column, or a malformed row.
    """
    path = _tracks_file(path)
    header = _read_header(path)
    wanted = _wanted_columns(path, header, columns)
    tracks = _read_body(path, header, wanted)
    skipped = _convert_columns(tracks, path)
    _check_set_columns(tracks, path)
    if skipped:
        log.warning("%s: %d tracks skipped (unparsable genre lists)", path, len(skipped))
        tracks = tracks.drop(index=list(skipped))
    if report is not None:
        report.tracks = tracks
        report.skipped = skipped
    return tracks


def _tracks_file(path: str | os.PathLike) -> Path:
    """``path`` or the tracks.csv in it; DatasetError when it is missing or cut short."""
    path = Path(path)
    if path.is_dir():
        path = path / "tracks.csv"
    if not path.is_file():
        raise DatasetError(f"{path}: tracks.csv not found")
    complete = _complete_length(path)
    if complete < path.stat().st_size:
        _refuse_cut(path, complete)
    return path


def _wanted_columns(
    path: Path, header: list[tuple[str, str]], columns: Sequence[tuple[str, str]] | str | None
) -> list[tuple[str, str]]:
    """The columns to load (see :func:`load_tracks`); DatasetError naming one the file lacks."""
    if columns is None or columns == "all":
        wanted = header
    else:
        wanted = list(ESSENTIAL_COLUMNS if columns == "essential" else columns)
        missing = [c for c in wanted if c not in header]
        if missing:
            raise DatasetError(f"{path}: column {missing[0]} missing from tracks.csv")
    for required in (("set", "subset"), ("set", "split"), ("track", "genres"), ("track", "genres_all")):
        if required not in header:
            raise DatasetError(f"{path}: column {required} missing from tracks.csv")
    return wanted


def _read_body(path: Path, header: list[tuple[str, str]], wanted: list[tuple[str, str]]) -> pd.DataFrame:
    """The ``wanted`` columns of tracks.csv as text and numbers, indexed by unique integer track ids."""
    positions = [0] + [header.index(c) + 1 for c in wanted]
    # pandas cannot combine usecols with a two-level header: read the body by position and
    # put the two-level names back, which also skips the 50 columns the toolkit never uses.
    text_columns = {header.index(c) + 1: str for c in wanted if c in GENRE_LIST_COLUMNS + TAG_COLUMNS}
    try:
        tracks = pd.read_csv(
            path,
            header=None,
            skiprows=3,
            usecols=positions,
            index_col=0,
            dtype=text_columns or None,
        )
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: malformed tracks.csv ({str(exc).strip()})") from None
    order = sorted(range(len(wanted)), key=lambda i: positions[i + 1])
    tracks.columns = pd.MultiIndex.from_tuples([wanted[i] for i in order])
    tracks.index.name = "track_id"
    if not pd.api.types.is_integer_dtype(tracks.index):
        bad = next((v for v in tracks.index if not str(v).isdigit()), tracks.index[0])
        raise DatasetError(f"{path}: track_id {bad!r} is not an integer")
    if tracks.index.has_duplicates:
        dup = tracks.index[tracks.index.duplicated()][0]
        raise DatasetError(f"{path}: track_id {dup} appears more than once")
    return tracks


def _convert_columns(tracks: pd.DataFrame, path: Path) -> dict[int, str]:
    """Parse genre and tag lists, dates and categories in place; return the tracks whose genre
    lists could not be parsed (track id -> why)."""
    skipped: dict[int, str] = {}
    for column in GENRE_LIST_COLUMNS:
        if column in tracks.columns:
            tracks[column], bad = _parse_int_lists(tracks[column], path, column)
            for tid in bad:
                skipped.setdefault(int(tid), f"cannot parse {column[0]}.{column[1]}")
    for column in TAG_COLUMNS:
        if column in tracks.columns:
            tracks[column] = tracks[column].map(_literal_list)
    for column in DATE_COLUMNS:
        if column in tracks.columns:
            tracks[column] = pd.to_datetime(tracks[column], errors="coerce")
    for column in CATEGORY_COLUMNS:
        if column in tracks.columns:
            tracks[column] = tracks[column].astype("category")
    return skipped


def _check_set_columns(tracks: pd.DataFrame, path: Path) -> None:
    """``('set', 'subset')`` and ``('set', 'split')`` as categories, in place; DatasetError naming
    the first track with a value outside FMA's."""
    subset = tracks["set", "subset"]
    bad_subset = subset.notna() & ~subset.isin(SUBSETS)
    if bad_subset.any():
        tid = tracks.index[bad_subset.to_numpy()][0]
        raise DatasetError(
            f"{path}: track {tid}: set.subset={subset[tid]!r} is not one of {', '.join(SUBSETS)}"
        )
    tracks["set", "subset"] = subset.astype(pd.CategoricalDtype(SUBSETS, ordered=True))
    split = tracks["set", "split"]
    bad_split = ~split.isin(SPLITS)
    if bad_split.any():
        tid = tracks.index[bad_split.to_numpy()][0]
        raise DatasetError(f"{path}: track {tid}: set.split={split[tid]!r} is not one of {', '.join(SPLITS)}")
    tracks["set", "split"] = split.astype(pd.CategoricalDtype(SPLITS))


def _refuse_cut(path: Path, complete: int) -> None:
    """Raise the one-line error for a tracks.csv that ends inside a row (a cut download)."""
    with open(path, "rb") as fh:
        head = fh.read(complete)
        rest = fh.read(32)
    rows = len(list(csv.reader(io.StringIO(head.decode("utf-8", errors="replace")))))
    tid = rest.split(b",", 1)[0].decode("utf-8", errors="replace")
    which = f" (track_id {tid})" if tid.isdigit() and b"," in rest else ""
    if rows < 3:
        raise DatasetError(f"{path}: file ends inside its header lines (cut short?); download it again")
    raise DatasetError(
        f"{path}: file ends inside row {rows - 2}{which} after {rows - 3} complete rows (cut short?); "
        "download it again (python setup_fma_dataset.py --subset metadata)"
    )


def _literal_list(value: object) -> list:
    if not isinstance(value, str):
        return []
    try:
        parsed = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return []
    return list(parsed) if isinstance(parsed, (list, tuple)) else []


def load_genres(path: str | os.PathLike) -> pd.DataFrame:
    """Load FMA's ``genres.csv`` (``genre_id,#tracks,parent,title,top_level``).

    ``path`` is the file or the metadata folder holding it. Raises DatasetError when the file
    is missing, a column is missing, or a parent / top_level refers to an unknown genre.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "genres.csv"
    if not path.is_file():
        raise DatasetError(f"{path}: genres.csv not found")
    try:
        genres = pd.read_csv(path, index_col=0)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: malformed genres.csv ({str(exc).strip()})") from None
    if genres.index.name != "genre_id":
        raise DatasetError(f"{path}: first column must be genre_id, found {genres.index.name!r}")
    for column in GENRES_COLUMNS:
        if column not in genres.columns:
            raise DatasetError(f"{path}: column {column!r} missing from genres.csv")
    for column in ("#tracks", "parent", "top_level"):
        if not pd.api.types.is_integer_dtype(genres[column]):
            row = genres.index[pd.to_numeric(genres[column], errors="coerce").isna()]
            where = f" (genre {row[0]})" if len(row) else ""
            raise DatasetError(f"{path}: column {column!r} must hold integers{where}")
    known = set(genres.index) | {0}
    for column in ("parent", "top_level"):
        unknown = genres.index[~genres[column].isin(known)]
        if len(unknown):
            gid = unknown[0]
            raise DatasetError(
                f"{path}: genre {gid}: {column} {genres.at[gid, column]} is not a genre_id in the file"
            )
    return genres


def select_subset(tracks: pd.DataFrame, subset: str) -> pd.DataFrame:
    """Tracks of an FMA subset: ``small`` < ``medium`` < ``large``, so fma_large is everything."""
    if subset not in SUBSETS:
        raise DatasetError(f"subset {subset!r} is not one of {', '.join(SUBSETS)}")
    return tracks[tracks["set", "subset"] <= subset]


def subset_split_counts(tracks: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    """Tracks per subset and split, labeled both ways FMA's ``('set', 'subset')`` can be read.

    ``inclusive`` counts a subset as :func:`select_subset` loads it (fma_medium holds the small
    tracks too); ``exact_value`` counts the tracks whose column holds that value (the smallest
    subset a track belongs to). Subsets above the largest value present are left out.
    """
    subset = tracks["set", "subset"].astype(pd.CategoricalDtype(SUBSETS, ordered=True))
    split = tracks["set", "split"].astype(str)
    present = [s for s in SUBSETS if (subset == s).any()]
    upto = SUBSETS[: SUBSETS.index(present[-1]) + 1] if present else ()

    def count(mask: pd.Series) -> dict[str, int]:
        return {sp: int(((split == sp) & mask).sum()) for sp in SPLITS}

    return {
        "inclusive": {s: count(subset <= s) for s in upto},
        "exact_value": {s: count(subset == s) for s in upto},
    }


def split_ids(tracks: pd.DataFrame, split: str) -> np.ndarray:
    """Track ids of one of FMA's splits (training, validation, test), sorted."""
    if split not in SPLITS:
        raise DatasetError(f"split {split!r} is not one of {', '.join(SPLITS)}")
    return np.sort(tracks.index[(tracks["set", "split"] == split).to_numpy()].to_numpy())


def track_table(tracks: pd.DataFrame, tree: GenreTree) -> pd.DataFrame:
    """FMA's two-level ``tracks`` table as a dataset's track table
    (:data:`genrekit.datasets.labels.TRACK_COLUMNS`).

    FMA's rules: ``('track', 'genres_all')`` may be absent (then ``genres`` stands in and the
    closure is recomputed), ``('track', 'genre_top')`` is a root genre's *title* (empty when the
    track's genres span several roots), ``('artist', 'id')`` may be missing (-1).
    ``tree`` is the :class:`~genrekit.datasets.labels.GenreTree` the titles are looked up in.
    """
    genres = tracks["track", "genres"]
    genres_all = tracks["track", "genres_all"] if ("track", "genres_all") in tracks.columns else genres
    top = np.full(len(tracks), -1, dtype=np.int64)
    if ("track", "genre_top") in tracks.columns:
        titles = tracks["track", "genre_top"].astype(object)
        bad_titles = set()
        for i, title in enumerate(titles):
            if isinstance(title, str) and title:
                gid = tree.root_by_title.get(title)
                if gid is None:
                    bad_titles.add(title)
                else:
                    top[i] = gid
        if bad_titles:
            log.warning("genre_top values that are not root genres, ignored: %s", sorted(bad_titles))
    artist = (
        tracks["artist", "id"].fillna(-1).astype(np.int64).to_numpy()
        if ("artist", "id") in tracks.columns
        else np.full(len(tracks), -1)
    )
    return pd.DataFrame(
        {
            "split": tracks["set", "split"].to_numpy(),
            "subset": tracks["set", "subset"].to_numpy(),
            "artist": artist,
            "genres": genres.to_numpy(),
            "genres_all": genres_all.to_numpy(),
            "top": top,
        },
        index=tracks.index,
    )


def derive_targets(tracks: pd.DataFrame, tree: GenreTree) -> pd.DataFrame:
    """Per-track targets at the three levels from FMA's two-level ``tracks`` table.

    FMA's columns are read by :func:`track_table`; the rules are
    :func:`genrekit.datasets.labels.targets_from_table`'s.
    """
    return targets_from_table(track_table(tracks, tree), tree)


def audio_items(audio_dir: str | os.PathLike, track_ids: Iterable[int]) -> list[tuple[int, Path]]:
    """``(track_id, path)`` pairs for the feature cache, in track-id order."""
    return [(int(t), audio_path(audio_dir, t)) for t in sorted(int(t) for t in track_ids)]


def write_tracks_with_split(
    source: str | os.PathLike, destination: str | os.PathLike, split: Mapping[int, str]
) -> int:
    """Copy tracks.csv with ``('set', 'split')`` rewritten for the tracks in ``split``.

    Every other cell is copied as it is (the file is read and written as CSV records, not parsed
    into a table), so the copy loads exactly like the original except for the split. Used for
    cross-validation folds; FMA's own artist-filtered split stays the default everywhere else.

    Parameters
    ----------
    source : path-like
        ``tracks.csv`` or the metadata folder holding it.
    destination : path-like
        The new ``tracks.csv`` (written through a temp file, then renamed).
    split : mapping of int to str
        Track id -> ``training``, ``validation`` or ``test``; tracks not in it keep their split.

    Returns
    -------
    int
        The number of rows whose split was set from ``split``.

    Raises
    ------
    DatasetError
        A source not in tracks.csv layout, or a split name that is not one of :data:`SPLITS`.
    """
    source, destination = Path(source), Path(destination)
    if source.is_dir():
        source = source / "tracks.csv"
    bad = sorted({s for s in split.values() if s not in SPLITS})
    if bad:
        raise DatasetError(f"split {bad[0]!r} is not one of {', '.join(SPLITS)}")
    header = _read_header(source)
    if ("set", "split") not in header:
        raise DatasetError(f"{source}: column ('set', 'split') missing from tracks.csv")
    column = header.index(("set", "split")) + 1
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.tmp")
    changed = 0
    try:
        with (
            open(source, newline="", encoding="utf-8") as fin,
            open(tmp, "w", newline="", encoding="utf-8") as fout,
        ):
            reader, writer = csv.reader(fin), csv.writer(fout, lineterminator="\n")
            for i, record in enumerate(reader):
                if i >= 3 and record:
                    try:
                        new = split.get(int(record[0]))
                    except ValueError:
                        raise DatasetError(f"{source}: track_id {record[0]!r} is not an integer") from None
                    if new is not None:
                        record[column] = new
                        changed += 1
                writer.writerow(record)
        os.replace(tmp, destination)
    finally:
        tmp.unlink(missing_ok=True)
    return changed
