"""The demo dataset's metadata: FMA's tracks and genres tables, synthesized from a seed.

A subset of FMA's real genre tree (:mod:`genrekit.datasets.demo.genres`), its top-genre imbalance,
multi-label and multi-root tracks, an artist-filtered split, the subsets and the defective files
real FMA has; the descriptive columns (:mod:`genrekit.datasets.demo.columns`); and, per track, the
sound parameters (:mod:`genrekit.datasets.demo.synth`) of its genre's family.
:mod:`genrekit.datasets.demo.writer` writes it to disk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrekit.datasets import fma
from genrekit.datasets.demo.columns import other_columns
from genrekit.datasets.demo.genres import GENRES, TOP_COUNTS, ancestors, genre_tables
from genrekit.datasets.demo.synth import PARAM_NAMES, PARAMS
from genrekit.datasets.labels import MASKED, medium_genre
from genrekit.errors import ConfigError
from genrekit.fileio import write_bytes_atomic

DEFAULT_N_TRACKS = 600  # smallest default size where the top-genre imbalance reaches FMA's >= 30x
MIN_TRACKS = 20  # fewer and some roots get no track at all
MAX_TRACK_ID = 155320  # FMA's track ids are sparse, up to about this

SMALL_ROOTS = (21, 10, 17, 38, 12, 2, 15, 1235)  # the 8 balanced genres of fma_small
MULTI_ROOT_FRACTION = 0.3  # tracks whose genres span two roots (genre_top empty); ~half in FMA
NO_GENRE_FRACTION = 0.01  # tracks with no genre at all, as FMA has
SPLIT_SHARES = {"training": 0.8, "validation": 0.1, "test": 0.1}
SMALL_SHARE, MEDIUM_SHARE = 8000 / 106574, 25000 / 106574  # fma_small and fma_medium sizes
DEFECT_KINDS = ("zero_length", "header_only", "truncated", "short", "missing")

# --- Sound families --------------------------------------------------------------------------------
_DEFAULT = np.array([v[0] for v in PARAMS.values()])
_SPREAD = np.array([v[1] for v in PARAMS.values()])
_LOW = np.array([v[2] for v in PARAMS.values()])
_HIGH = np.array([v[3] for v in PARAMS.values()])


# Each root's centre: what differs from the defaults above.
# fmt: off
FAMILIES: dict[int, dict[str, float]] = {
    12: dict(bpm=138, kick=0.7, snare=0.8, hat=0.8, note_rate=2, pitch=50, bright=0.9, even=0.3, decay=0.3,
             drive=4, bass=0.5),  # Rock
    38: dict(bpm=85, kick=0.1, perc=0.25, note_rate=0.7, pitch=64, prange=14, inharm=0.06, noise=0.25,
             tilt=0.6, drive=1, pad=0.3, melody=0.5, cutoff=14),  # Experimental
    15: dict(bpm=126, kick=0.95, snare=0.3, hat=0.9, note_rate=2, pitch=57, bright=1.0, even=0.7,
             attack=0.005, decay=0.2, pad=0.4, bass=0.7, cutoff=14),  # Electronic
    21: dict(bpm=90, swing=0.15, kick=0.8, snare=0.8, hat=0.5, note_rate=0.8, pitch=50, bright=1.8, decay=0.5,
             bass=0.9, speech=0.45, cutoff=10),  # Hip-Hop
    17: dict(bpm=100, perc=0.1, note_rate=2, pitch=58, bright=1.4, attack=0.003, decay=0.6, noise=0.01,
             cutoff=10),  # Folk
    10: dict(bpm=116, kick=0.6, snare=0.7, hat=0.6, note_rate=1.5, pitch=67, bright=1.6, decay=0.35, pad=0.4,
             bass=0.4, speech=0.15),  # Pop
    1235: dict(bpm=78, note_rate=0.7, prange=10, bright=2.0, attack=0.08, decay=1.0, pad=0.7, bass=0.2,
               cutoff=9),  # Instrumental
    2: dict(bpm=104, swing=0.1, kick=0.3, perc=0.8, note_rate=2, pitch=64, bright=1.3, inharm=0.01,
            decay=0.25, cutoff=11),  # International
    5: dict(bpm=80, note_rate=1, pitch=65, prange=14, bright=1.7, even=0.6, attack=0.1, decay=1.2,
            vibrato=0.5, pad=0.3, cutoff=10, noise=0.005),  # Classical
    8: dict(bpm=100, perc=0.2, note_rate=1.5, bright=1.3, crackle=0.6, cutoff=3.5, noise=0.06,
            tilt=0.5),  # Old-Time / Historic
    4: dict(bpm=150, swing=0.25, kick=0.15, snare=0.2, hat=0.7, note_rate=2, prange=12, bright=1.6,
            decay=0.5, bass=0.7, cutoff=10),  # Jazz
    20: dict(melody=0.05, speech=0.95, note_rate=0.5, noise=0.03, cutoff=7, crackle=0.1),  # Spoken
    9: dict(bpm=112, kick=0.4, snare=0.6, hat=0.3, note_rate=2, pitch=62, bright=1.1, even=0.4,
            attack=0.002, decay=0.3, vibrato=0.2, bass=0.4, cutoff=9),  # Country
    14: dict(bpm=96, swing=0.08, kick=0.6, snare=0.7, hat=0.6, note_rate=1, pitch=55, bright=1.9, decay=0.6,
             pad=0.5, bass=0.8, speech=0.2, cutoff=9),  # Soul-RnB
    3: dict(bpm=78, swing=0.22, kick=0.4, snare=0.5, hat=0.4, note_rate=1.2, pitch=52, bright=1.2,
            decay=0.5, drive=1.5, vibrato=0.4, bass=0.5, cutoff=8),  # Blues
    13: dict(bpm=92, kick=0.2, hat=0.3, note_rate=1, pitch=70, bright=2.3, attack=0.05, decay=0.8, pad=0.6,
             bass=0.3, cutoff=8),  # Easy Listening
}
# fmt: on
SUBGENRE_VARIATION = 0.8  # in spreads: how far a sub-genre sits from its root's centre
ARTIST_VARIATION = 0.4  # how far an artist sits from its genre
TRACK_NOISE = 0.6  # per-track variation, the overlap between families
STRAY_FRACTION = 0.1  # tracks that sound half like another root (FMA's labels are noisy too)


# --- Metadata --------------------------------------------------------------------------------------
COLUMNS = fma.TRACKS_CSV_COLUMNS
LIST_COLUMNS = fma.TAG_COLUMNS + fma.GENRE_LIST_COLUMNS
DATE_COLUMNS = fma.DATE_COLUMNS


def _root_counts(n: int, floor: int, max_imbalance: float | None = None) -> dict[int, int]:
    """Tracks per root: FMA's top-genre shares, at least ``floor`` each, summing to ``n``.

    ``max_imbalance``: every root's share is first raised to at least ``1 / max_imbalance`` of the
    largest root's (FMA's shape, capped), so the smallest genres can be made measurable without
    generating tens of thousands of tracks.
    """
    shares = dict(TOP_COUNTS)
    if max_imbalance is not None:
        cap = max(shares.values()) / max_imbalance
        shares = {r: max(float(c), cap) for r, c in shares.items()}
    total = sum(shares.values())
    counts = {r: max(floor, round(n * c / total)) for r, c in shares.items()}
    # The difference goes to (or comes from) the largest roots, where it changes the shape least.
    order = sorted(TOP_COUNTS, key=lambda r: -TOP_COUNTS[r])
    diff, i = n - sum(counts.values()), 0
    while diff != 0:
        r = order[i % 3]
        step = 1 if diff > 0 else -1
        if counts[r] + step >= floor:
            counts[r] += step
            diff -= step
        i += 1
    return counts


@dataclasses.dataclass
class DemoPlan:
    """Everything a seed decides: the metadata, and per track what its audio should sound like."""

    tracks: pd.DataFrame
    genres: pd.DataFrame
    params: np.ndarray  # (n_tracks, len(PARAMS)) synthesis parameters
    defects: dict[str, list[int]]
    sound_genre: np.ndarray  # (n_tracks,) the genre whose variation shaped each track's sound


@dataclasses.dataclass(frozen=True)
class _Tree:
    """The demo's genre tree, in the forms the plan reads it."""

    parent: dict[int, int]
    title: dict[int, str]
    root_of: dict[int, int]
    roots: list[int]
    weight: dict[int, int]  # the real #tracks: how often a sub-genre is picked
    subtree: dict[int, list[int]]  # a root's genres below it


def _demo_tree() -> _Tree:
    parent, title, root_of = genre_tables()
    roots = [g for g, p, _, _ in GENRES if p == 0]
    return _Tree(
        parent=parent,
        title=title,
        root_of=root_of,
        roots=roots,
        weight={g: w for g, _, _, w in GENRES},
        subtree={r: [g for g in parent if root_of[g] == r and g != r] for r in roots},
    )


@dataclasses.dataclass
class _Labels:
    """Each track's genre columns, and the genres that shape its sound."""

    genres: list[list[int]]
    genres_all: list[list[int]]
    top: list  # a root's title, NaN when the genres span roots
    variation: np.ndarray  # the genre whose variation shapes the sound (the medium target, or the root)
    second_root: np.ndarray  # the root whose family is mixed in, -1 for none


def _check_plan_args(n_tracks: int, max_imbalance: float | None) -> None:
    if isinstance(n_tracks, bool) or not isinstance(n_tracks, int) or n_tracks < MIN_TRACKS:
        raise ConfigError(f"n_tracks={n_tracks!r} must be an integer >= {MIN_TRACKS}")
    if max_imbalance is not None and not (isinstance(max_imbalance, (int, float)) and max_imbalance >= 1):
        raise ConfigError(f"max_imbalance={max_imbalance!r} must be a number >= 1 (or None: FMA's shape)")


def _artists(
    rng: np.random.Generator, roots: list[int], counts: dict[int, int], n_tracks: int
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(root of each track, artist of each track, root of each artist)``.

    Each artist belongs to one root; heavy-tailed sizes like FMA's (~6.5 tracks per artist),
    smaller in tiny datasets so that their splits are not all-or-nothing.
    """
    mean_size = float(np.clip(n_tracks / 100, 1.5, 5.0))
    track_root: list[int] = []
    track_artist: list[int] = []
    artist_root: list[int] = []
    for r in sorted(roots, key=lambda r: -counts[r]):
        left = counts[r]
        while left > 0:
            size = min(left, int(rng.geometric(1 / mean_size)), 40)
            artist_root.append(r)
            track_root += [r] * size
            track_artist += [len(artist_root) - 1] * size
            left -= size
    return np.array(track_root), np.array(track_artist), artist_root


def _kinds(
    rng: np.random.Generator, roots: list[int], track_root: np.ndarray, counts: dict[int, int], floor: int
) -> np.ndarray:
    """0 single root, 1 multi-root, 2 no genre; never for the first ``floor`` tracks of a root, so
    every root keeps some genre_top tracks."""
    kind = np.zeros(len(track_root), dtype=np.int8)
    for r in roots:
        idx = np.flatnonzero(track_root == r)
        idx = rng.permutation(idx)[floor:]
        k_multi = int(round(MULTI_ROOT_FRACTION * counts[r]))
        k_none = int(rng.binomial(len(idx), NO_GENRE_FRACTION)) if counts[r] > 20 else 0
        kind[idx[:k_multi]] = 1
        kind[idx[k_multi : k_multi + k_none]] = 2
    return kind


def _pick_genre(rng: np.random.Generator, tree: _Tree, r: int) -> int:
    """A genre of root ``r``: the root itself one time in five, else a genre below, by real counts."""
    if rng.random() < 0.2 or not tree.subtree[r]:
        return r
    w = np.array([tree.weight[g] for g in tree.subtree[r]], dtype=float)
    return int(tree.subtree[r][rng.choice(len(w), p=w / w.sum())])


def _genre_labels(rng: np.random.Generator, tree: _Tree, track_root: np.ndarray, kind: np.ndarray) -> _Labels:
    """Each track's genres: one or two of its root's, plus one of a second root's for multi-root
    tracks, none for genre-less ones."""
    roots = tree.roots
    root_w = np.array([TOP_COUNTS[r] for r in roots], dtype=float) ** 0.5
    out = _Labels([], [], [], np.empty(0), np.full(len(track_root), -1))
    variation = []
    for i in range(len(track_root)):
        r = int(track_root[i])
        labels = {_pick_genre(rng, tree, r)}
        if kind[i] != 2 and rng.random() < 0.3:
            labels.add(_pick_genre(rng, tree, r))
        if kind[i] == 1:
            w = root_w * (np.array(roots) != r)
            r2 = roots[rng.choice(len(roots), p=w / w.sum())]
            out.second_root[i] = r2
            labels.add(_pick_genre(rng, tree, r2))
        # The track's medium target (labels.medium_genre, the rule the model is trained with) shapes
        # its sound; its root's family leads the mix, so a multi-root track whose medium genre is
        # in its second root sounds mostly like that root.
        medium = medium_genre(labels, tree.parent)
        variation.append(r if medium == MASKED else medium)
        if tree.root_of[variation[-1]] != r:
            out.second_root[i] = r
        gl = sorted(labels) if kind[i] != 2 else []
        out.genres.append(gl)
        out.genres_all.append(sorted({a for x in gl for a in ancestors(x, tree.parent)}))
        tops = {tree.root_of[x] for x in gl}
        out.top.append(tree.title[tops.pop()] if len(tops) == 1 else np.nan)
    out.variation = np.array(variation)
    return out


def _artist_split(
    rng: np.random.Generator,
    roots: list[int],
    counts: dict[int, int],
    track_artist: np.ndarray,
    artist_root: list[int],
) -> np.ndarray:
    """Each track's split (an index into SPLIT_SHARES), filtered by artist.

    Artists in random order go to the split furthest below its share, of the artist's root and of
    the whole, so each root is split about 80/10/10 where it has enough artists.
    """
    n_tracks, n_artists = len(track_artist), len(artist_root)
    shares = np.array(list(SPLIT_SHARES.values()))
    artist_size = np.bincount(track_artist, minlength=n_artists)
    artist_split = np.zeros(n_artists, dtype=int)
    filled = {r: np.zeros(3) for r in roots}
    total = np.zeros(3)
    for a in rng.permutation(n_artists):
        r = artist_root[a]
        deficit = (shares * counts[r] - filled[r]) / counts[r] + (shares * n_tracks - total) / n_tracks
        s = int(np.argmax(deficit))
        artist_split[a] = s
        filled[r][s] += artist_size[a]
        total[s] += artist_size[a]
    # Every split gets some tracks, however small the dataset: a small training artist moves over.
    for s in (1, 2):
        if not (artist_split == s).any():
            cand = np.flatnonzero((artist_split == 0) & (artist_size <= np.median(artist_size)))
            artist_split[cand[np.argmin(artist_size[cand])]] = s
    return artist_split[track_artist]


def _subsets(
    rng: np.random.Generator, single: np.ndarray, track_root: np.ndarray, split: np.ndarray
) -> np.ndarray:
    """Each track's subset (0 small, 1 medium, 2 large): small is balanced over FMA's 8 small
    genres, medium adds more genre_top tracks."""
    n = len(track_root)
    shares = np.array(list(SPLIT_SHARES.values()))
    subset = np.full(n, 2)
    n_small = max(len(SMALL_ROOTS), round(SMALL_SHARE * n))
    per_root = max(1, n_small // len(SMALL_ROOTS))
    for r in SMALL_ROOTS:
        chosen = []
        for s, share in enumerate(shares):
            cand = rng.permutation(np.flatnonzero(single & (track_root == r) & (split == s)))
            chosen += list(cand[: max(1, round(share * per_root))])
        subset[np.array(chosen[:per_root], dtype=int)] = 0
    cand = rng.permutation(np.flatnonzero(single & (subset == 2)))
    n_medium = max(0, round(MEDIUM_SHARE * n) - int((subset == 0).sum()))
    subset[cand[:n_medium]] = 1
    return subset


def _track_ids(rng: np.random.Generator, track_artist: np.ndarray, n_artists: int) -> np.ndarray:
    """Sparse FMA-like track ids, an artist's tracks close together, artists in random order (ids
    follow upload time in FMA, not genre)."""
    n = len(track_artist)
    artist_rank = rng.permutation(n_artists)[track_artist]
    by_upload = np.lexsort((np.arange(n), artist_rank))
    track_ids = np.empty(n, dtype=np.int64)
    track_ids[by_upload] = np.sort(rng.choice(np.arange(2, MAX_TRACK_ID + 1), n, replace=False))
    return track_ids


def _defects(rng: np.random.Generator, candidates: np.ndarray, track_ids: np.ndarray) -> dict[str, list[int]]:
    """The ids of each kind of defective file, drawn from the ``candidates`` (a mask over the tracks)."""
    pool = rng.permutation(np.flatnonzero(candidates))
    per_kind = max(1, round(len(track_ids) * 0.002))
    defects = {k: sorted(int(track_ids[j]) for j in pool[i * per_kind : (i + 1) * per_kind])
               for i, k in enumerate(DEFECT_KINDS)}  # fmt: skip
    return defects


def _durations(rng: np.random.Generator, drawn: Any, track_ids: np.ndarray, short_ids: set[int]) -> list[int]:
    """Track durations in seconds; the short defects' are 2-19 s (the reason real clips are short:
    the track itself is)."""
    duration = [max(1, int(d)) for d in drawn]
    for j, tid in enumerate(track_ids):
        if int(tid) in short_ids:
            duration[j] = int(rng.integers(2, 20))
    return duration


def _tracks_table(
    meta: dict[tuple[str, str], Any],
    labels: _Labels,
    split: np.ndarray,
    subset: np.ndarray,
    duration: list[int],
    track_ids: np.ndarray,
) -> pd.DataFrame:
    """FMA's tracks table (in plan order), from the descriptive columns and the planned ones."""
    split_names = list(SPLIT_SHARES)
    data: dict[tuple[str, str], Any] = {**meta}
    data[("set", "split")] = [split_names[s] for s in split]
    data[("set", "subset")] = pd.Categorical(
        [("small", "medium", "large")[s] for s in subset],
        categories=["small", "medium", "large"],
        ordered=True,
    )
    data[("track", "duration")] = duration
    data[("track", "genre_top")] = labels.top
    data[("track", "genres")] = labels.genres
    data[("track", "genres_all")] = labels.genres_all
    tracks = pd.DataFrame({c: data[c] for c in COLUMNS}, index=pd.Index(track_ids, name="track_id"))
    tracks.columns = pd.MultiIndex.from_tuples(COLUMNS)
    return tracks


def _genres_table(genres_all: list[list[int]], root_of: dict[int, int]) -> pd.DataFrame:
    """FMA's genres table, ``#tracks`` counted over the tracks' genres and their ancestors."""
    counts_all: dict[int, int] = {}
    for ga in genres_all:
        for g in ga:
            counts_all[g] = counts_all.get(g, 0) + 1
    return pd.DataFrame(
        {
            "#tracks": [counts_all.get(g, 0) for g, _, _, _ in GENRES],
            "parent": [p for _, p, _, _ in GENRES],
            "title": [t for _, _, t, _ in GENRES],
            "top_level": [root_of[g] for g, _, _, _ in GENRES],
        },
        index=pd.Index([g for g, _, _, _ in GENRES], name="genre_id"),
    ).sort_index()


def plan_demo(
    n_tracks: int, seed: int, long_text: bool = False, max_imbalance: float | None = None
) -> DemoPlan:
    """What a seed decides: the tables of :func:`make_demo_metadata`, each track's sound
    parameters and the ids of each kind of defective file (see :class:`DemoPlan`).

    The steps draw from one random generator in a fixed order: the same seed gives the same plan.
    """
    _check_plan_args(n_tracks, max_imbalance)
    rng = np.random.default_rng([seed, 20171023])
    tree = _demo_tree()
    floor = max(1, min(3, n_tracks // 40))
    counts = _root_counts(n_tracks, floor, max_imbalance)
    track_root, track_artist, artist_root = _artists(rng, tree.roots, counts, n_tracks)
    kind = _kinds(rng, tree.roots, track_root, counts, floor)
    labels = _genre_labels(rng, tree, track_root, kind)
    split = _artist_split(rng, tree.roots, counts, track_artist, artist_root)
    single = kind == 0
    subset = _subsets(rng, single, track_root, split)
    track_ids = _track_ids(rng, track_artist, len(artist_root))
    big = sorted(tree.roots, key=lambda r: -counts[r])[:3]  # no rare genre loses its only track
    defects = _defects(rng, np.isin(track_root, big) & single, track_ids)
    sound_root = np.array([tree.root_of[int(v)] for v in labels.variation])
    params = _track_params(rng, sound_root, track_artist, labels.second_root, labels.variation, tree.parent)
    meta = other_columns(rng, track_artist, len(artist_root), long_text)
    duration = _durations(rng, meta.pop(("track", "duration")), track_ids, set(defects["short"]))
    tracks = _tracks_table(meta, labels, split, subset, duration, track_ids)
    order = np.argsort(track_ids, kind="stable")
    return DemoPlan(
        tracks=tracks.iloc[order],
        genres=_genres_table(labels.genres_all, tree.root_of),
        params=params[order],
        defects=defects,
        sound_genre=labels.variation[order],
    )


def _unit(key: Sequence[int]) -> np.ndarray:
    """A fixed direction in parameter space for a genre or an artist, in [-1, 1] per parameter."""
    return np.random.default_rng(list(key)).uniform(-1, 1, len(PARAMS))


def _family(root: int) -> np.ndarray:
    centre = _DEFAULT.copy()
    for name, value in FAMILIES[root].items():
        centre[PARAM_NAMES.index(name)] = value
    return centre


def _track_params(
    rng: np.random.Generator,
    track_root: np.ndarray,
    track_artist: np.ndarray,
    second_root: np.ndarray,
    variation: np.ndarray,
    parent: dict[int, int],
) -> np.ndarray:
    """Per-track synthesis parameters: root family + sub-genre + artist + track noise."""
    n = len(track_root)
    out = np.empty((n, len(PARAMS)))
    seed_key = int(rng.integers(2**31))
    for i in range(n):
        r = int(track_root[i])
        p = _family(r)
        # Sub-genres move away from the root; a sub-sub-genre moves a bit further from its parent.
        chain = ancestors(int(variation[i]), parent)[:-1][::-1]
        for depth, g in enumerate(chain):
            p += SUBGENRE_VARIATION * _SPREAD * _unit([7, g]) * (0.5 if depth else 1.0)
        p += ARTIST_VARIATION * _SPREAD * _unit([seed_key, 11, int(track_artist[i])])
        p += TRACK_NOISE * _SPREAD * rng.standard_normal(len(PARAMS))
        other = int(second_root[i])
        if other < 0 and rng.random() < STRAY_FRACTION:
            other = int(rng.choice([x for x in FAMILIES if x != r]))
        if other >= 0:
            w = rng.uniform(0.55, 0.8)
            p = w * p + (1 - w) * (_family(other) + TRACK_NOISE * _SPREAD * rng.standard_normal(len(PARAMS)))
        out[i] = np.clip(p, _LOW, _HIGH)
    return out


def make_demo_metadata(
    n_tracks: int = DEFAULT_N_TRACKS,
    seed: int = 0,
    long_text: bool = False,
    max_imbalance: float | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The demo's tracks and genres tables, without audio.

    Parameters
    ----------
    n_tracks : int
        Rows of the tracks table (>= 20). 106,574 gives fma_large's size.
    seed : int
        The same seed gives the same tables.
    long_text : bool
        Give the free-text columns (artist bio, album information ...) FMA's typical lengths, so a
        tracks.csv written from the table is about as large per row as the real one (~2.3 kB).
    max_imbalance : float, optional
        Cap FMA's top-genre imbalance: no root gets a share below ``1 / max_imbalance`` of the
        largest root's (None: FMA's shape, ~590x in fma_large).

    Returns
    -------
    tracks : DataFrame
        Indexed by ``track_id`` with FMA's 52 two-level columns, as ``genrekit.datasets.fma.load_tracks``
        returns them: list columns hold lists, the seven date columns are datetimes and
        ``('set', 'subset')`` is an ordered category small < medium < large.
    genres : DataFrame
        Indexed by ``genre_id`` with columns ``#tracks, parent, title, top_level``.
    """
    plan = plan_demo(n_tracks, seed, long_text, max_imbalance)
    return plan.tracks, plan.genres


def write_tracks_csv(tracks: pd.DataFrame, path: str | Path) -> None:
    """Write a tracks table in the real tracks.csv format (atomically).

    Three header lines (top level, sub level, ``track_id,,,...``), Python list literals in the
    list columns and dates as ``2008-11-26 01:48:12``.
    """
    out = tracks.copy()
    for col in LIST_COLUMNS:
        out[col] = [str(list(v)) for v in out[col]]
    for col in DATE_COLUMNS:
        values = pd.to_datetime(out[col])
        out[col] = values.dt.strftime("%Y-%m-%d %H:%M:%S").where(values.notna(), np.nan)
    out[("set", "subset")] = out[("set", "subset")].astype(str)
    write_bytes_atomic(Path(path), out.to_csv(lineterminator="\n").encode("utf-8"), fsync=False)


def write_genres_csv(genres: pd.DataFrame, path: str | Path) -> None:
    """Write a genres table as FMA's genres.csv: ``genre_id,#tracks,parent,title,top_level``."""
    write_bytes_atomic(Path(path), genres.to_csv(lineterminator="\n").encode("utf-8"), fsync=False)
