"""The demo dataset's metadata: FMA's tracks and genres tables, synthesized from a seed.

A subset of FMA's real genre tree, its top-genre imbalance, multi-label and multi-root tracks, an
artist-filtered split, the subsets and the defective files real FMA has; and, per track, the sound
parameters (:mod:`genrekit.datasets.demo.synth`) of its genre's family. :mod:`genrekit.datasets.demo.writer` writes it to disk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrekit.datasets import fma
from genrekit.datasets.demo.synth import PARAM_NAMES, PARAMS
from genrekit.datasets.labels import MASKED, medium_genre
from genrekit.errors import ConfigError
from genrekit.fileio import write_bytes_atomic

DEFAULT_N_TRACKS = 600  # smallest default size where the top-genre imbalance reaches FMA's >= 30x
MIN_TRACKS = 20  # fewer and some roots get no track at all
MAX_TRACK_ID = 155320  # FMA's track ids are sparse, up to about this

# (genre_id, parent, title, #tracks in the real genres.csv): a subset of FMA's real tree, with all
# 16 roots and two levels below some of them. The real counts weight the sub-genres.
GENRES: tuple[tuple[int, int, str, int], ...] = (
    (12, 0, "Rock", 32923),
    (25, 12, "Punk", 9261),
    (89, 25, "Post-Punk", 1858),
    (109, 25, "Hardcore", 1419),
    (66, 12, "Indie-Rock", 5432),
    (31, 12, "Metal", 1498),
    (101, 31, "Death-Metal", 196),
    (27, 12, "Lo-Fi", 6041),
    (58, 12, "Psych-Rock", 2502),
    (26, 12, "Post-Rock", 1952),
    (38, 0, "Experimental", 38154),
    (1, 38, "Avant-Garde", 8693),
    (32, 38, "Noise", 7268),
    (41, 38, "Electroacoustic", 6110),
    (47, 38, "Drone", 2546),
    (30, 38, "Field Recordings", 3237),
    (250, 38, "Improv", 4261),
    (15, 0, "Electronic", 34413),
    (42, 15, "Ambient Electronic", 5723),
    (181, 15, "Techno", 2140),
    (182, 15, "House", 1482),
    (400, 182, "Chill-out", 823),
    (236, 15, "IDM", 3472),
    (297, 15, "Chip Music", 2208),
    (240, 297, "Chiptune", 1231),
    (468, 15, "Dubstep", 1144),
    (495, 15, "Downtempo", 2061),
    (21, 0, "Hip-Hop", 8389),
    (539, 21, "Rap", 638),
    (100, 21, "Alternative Hip-Hop", 740),
    (811, 21, "Hip-Hop Beats", 1192),
    (17, 0, "Folk", 12706),
    (103, 17, "Singer-Songwriter", 4162),
    (33, 17, "Psych-Folk", 2267),
    (94, 17, "Freak-Folk", 1289),
    (10, 0, "Pop", 13845),
    (76, 10, "Experimental Pop", 7144),
    (362, 10, "Synth Pop", 1835),
    (1235, 0, "Instrumental", 14938),
    (107, 1235, "Ambient", 7206),
    (18, 1235, "Soundtrack", 5913),
    (2, 0, "International", 5271),
    (46, 2, "Latin America", 573),
    (502, 46, "Cumbia", 67),
    (79, 2, "Reggae - Dub", 880),
    (92, 2, "African", 329),
    (5, 0, "Classical", 4106),
    (659, 5, "Contemporary Classical", 1239),
    (441, 5, "Opera", 161),
    (442, 5, "Chamber Music", 170),
    (8, 0, "Old-Time / Historic", 868),
    (4, 0, "Jazz", 4126),
    (74, 4, "Free-Jazz", 1531),
    (179, 4, "Big Band/Swing", 104),
    (20, 0, "Spoken", 1876),
    (188, 20, "Poetry", 301),
    (65, 20, "Radio", 518),
    (189, 65, "Talk Radio", 26),
    (9, 0, "Country", 1987),
    (63, 9, "Bluegrass", 178),
    (14, 0, "Soul-RnB", 1499),
    (19, 14, "Funk", 773),
    (3, 0, "Blues", 1752),
    (13, 0, "Easy Listening", 730),
    (311, 13, "Lounge", 440),
)

# fma_large's ('track', 'genre_top') counts: the shape of the demo's top-genre distribution.
TOP_COUNTS: dict[int, int] = {
    12: 14182,
    38: 10608,
    15: 9372,
    21: 3552,
    17: 2803,
    10: 2332,
    1235: 2079,
    2: 1389,
    5: 1230,
    8: 554,
    4: 571,
    20: 423,
    9: 194,
    14: 175,
    3: 110,
    13: 24,
}
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

_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "tor", "sha", "el", "dru", "vix", "no", "bel", "cor", "an",
              "ti", "mo", "sun", "ri", "da", "fen", "gol", "har", "is", "jun", "ke", "lum", "ma", "nox",
              "or", "pe", "qua", "ros", "sil", "tam", "ul", "vor", "wen", "yo", "zan", "bri")  # fmt: skip
_WORDS = ("the", "and", "of", "a", "in", "music", "sound", "album", "recorded", "live", "band", "songs",
          "new", "with", "from", "years", "tape", "night", "city", "guitar", "voice", "record", "label",
          "first", "home", "studio", "friends", "release", "tour", "noise", "light", "river", "played",
          "since", "formed", "together", "between", "is", "was", "their", "his", "her", "this", "free",
          "download", "project", "collective", "experimental", "electronic", "folk", "radio", "archive",
          "session", "produced", "mixed", "mastered", "drums", "bass", "keys", "field", "winter", "summer",
          "dreams", "machine", "heart", "ghost", "ocean", "forest", "early", "late", "based")  # fmt: skip
_TAGS = ("indie", "lo-fi", "noise", "experimental", "electronic", "ambient", "folk", "rock", "punk",
         "hip-hop", "instrumental", "live", "field recording", "jazz", "pop", "dance", "soundtrack",
         "netlabel", "free", "psychedelic", "drone", "minimal", "acoustic", "vocal")  # fmt: skip
_PLACES = (("Brooklyn, NY", 40.65, -73.95), ("Berlin, Germany", 52.52, 13.40), ("Portland, OR", 45.52,
           -122.68), ("London, UK", 51.51, -0.13), ("Chicago, IL", 41.88, -87.63), ("Montreal, Canada",
           45.50, -73.57), ("Tokyo, Japan", 35.68, 139.69), ("Mexico City", 19.43, -99.13), ("Lisbon, "
           "Portugal", 38.72, -9.14), ("Melbourne, Australia", -37.81, 144.96))  # fmt: skip
_LICENSES = ("Attribution-NonCommercial-ShareAlike 3.0 International",
             "Attribution-Noncommercial-No Derivative Works 3.0 United States",
             "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0", "Attribution 3.0 International",
             "Attribution-NonCommercial 3.0 International")  # fmt: skip
_BIT_RATES = (320000, 256000, 192000, 128000)
_BIT_RATE_P = (0.55, 0.25, 0.1, 0.1)


def _genre_tables() -> tuple[dict[int, int], dict[int, str], dict[int, int]]:
    """Parent, title and root of every demo genre."""
    parent = {g: p for g, p, _, _ in GENRES}
    title = {g: t for g, _, t, _ in GENRES}
    root = {}
    for g in parent:
        r = g
        while parent[r] != 0:
            r = parent[r]
        root[g] = r
    return parent, title, root


def _ancestors(genre: int, parent: dict[int, int]) -> list[int]:
    out = [genre]
    while parent[out[-1]] != 0:
        out.append(parent[out[-1]])
    return out


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


def _name(rng: np.random.Generator, words: int = 2) -> str:
    parts = []
    for _ in range(words):
        k = int(rng.integers(1, 4))
        parts.append("".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES), k)).capitalize())
    return " ".join(parts)


def _text(rng: np.random.Generator, n_words: int, html: bool = True) -> str:
    """Plausible free text with commas, quotes and line breaks, as FMA's bios and notes have."""
    words = [_WORDS[i] for i in rng.integers(0, len(_WORDS), max(1, n_words))]
    sentences, i = [], 0
    while i < len(words):
        k = int(rng.integers(6, 18))
        s = " ".join(words[i : i + k])
        if k > 9:
            cut = s.find(" ", len(s) // 2)
            s = s[:cut] + "," + s[cut:] if cut > 0 else s
        sentences.append(s.capitalize() + ".")
        i += k
    if rng.random() < 0.3:
        sentences.insert(0, f'"{_name(rng)}" is')
    if not html:
        return " ".join(sentences)
    paras = [" ".join(sentences[j : j + 4]) for j in range(0, len(sentences), 4)]
    return "\r\n".join(f"<p>{p}</p>" for p in paras)


def _dates(rng: np.random.Generator, start: np.ndarray, end: np.datetime64) -> np.ndarray:
    """Random datetimes (to the second) between ``start`` (per item) and ``end``."""
    start = start.astype("datetime64[s]")
    span = (end.astype("datetime64[s]") - start).astype(np.int64)
    return start + (rng.random(len(start)) * np.maximum(span, 1)).astype(np.int64).astype("timedelta64[s]")


@dataclasses.dataclass
class DemoPlan:
    """Everything a seed decides: the metadata, and per track what its audio should sound like."""

    tracks: pd.DataFrame
    genres: pd.DataFrame
    params: np.ndarray  # (n_tracks, len(PARAMS)) synthesis parameters
    defects: dict[str, list[int]]
    sound_genre: np.ndarray  # (n_tracks,) the genre whose variation shaped each track's sound


def plan_demo(
    n_tracks: int, seed: int, long_text: bool = False, max_imbalance: float | None = None
) -> DemoPlan:
    """What a seed decides: the tables of :func:`make_demo_metadata`, each track's sound
    parameters and the ids of each kind of defective file (see :class:`DemoPlan`)."""
    if isinstance(n_tracks, bool) or not isinstance(n_tracks, int) or n_tracks < MIN_TRACKS:
        raise ConfigError(f"n_tracks={n_tracks!r} must be an integer >= {MIN_TRACKS}")
    if max_imbalance is not None and not (isinstance(max_imbalance, (int, float)) and max_imbalance >= 1):
        raise ConfigError(f"max_imbalance={max_imbalance!r} must be a number >= 1 (or None: FMA's shape)")
    rng = np.random.default_rng([seed, 20171023])
    parent, title, root_of = _genre_tables()
    roots = [g for g, p, _, _ in GENRES if p == 0]
    weight = {g: w for g, _, _, w in GENRES}
    subtree = {r: [g for g in parent if root_of[g] == r and g != r] for r in roots}

    floor = max(1, min(3, n_tracks // 40))
    counts = _root_counts(n_tracks, floor, max_imbalance)

    # Artists: each belongs to one root; heavy-tailed sizes like FMA's (~6.5 tracks per artist), smaller
    # in tiny datasets so that their splits are not all-or-nothing.
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
    n_artists = len(artist_root)
    track_root_a = np.array(track_root)
    track_artist_a = np.array(track_artist)
    n = n_tracks

    # Which tracks are multi-root / genre-less: never the first `floor` tracks of a root, so every
    # root keeps some genre_top tracks.
    kind = np.zeros(n, dtype=np.int8)  # 0 single root, 1 multi-root, 2 no genre
    for r in roots:
        idx = np.flatnonzero(track_root_a == r)
        idx = rng.permutation(idx)[floor:]
        k_multi = int(round(MULTI_ROOT_FRACTION * counts[r]))
        k_none = int(rng.binomial(len(idx), NO_GENRE_FRACTION)) if counts[r] > 20 else 0
        kind[idx[:k_multi]] = 1
        kind[idx[k_multi : k_multi + k_none]] = 2

    def pick_genre(r: int) -> int:
        if rng.random() < 0.2 or not subtree[r]:
            return r
        w = np.array([weight[g] for g in subtree[r]], dtype=float)
        return int(subtree[r][rng.choice(len(w), p=w / w.sum())])

    root_w = np.array([TOP_COUNTS[r] for r in roots], dtype=float) ** 0.5
    genres_col, genres_all_col, top_col, variation = [], [], [], []
    second_root = np.full(n, -1)
    for i in range(n):
        r = track_root[i]
        g = pick_genre(r)
        labels = {g}
        if kind[i] != 2 and rng.random() < 0.3:
            labels.add(pick_genre(r))
        if kind[i] == 1:
            w = root_w * (np.array(roots) != r)
            r2 = roots[rng.choice(len(roots), p=w / w.sum())]
            second_root[i] = r2
            labels.add(pick_genre(r2))
        # The track's medium target (labels.medium_genre, the rule the model is trained with) shapes
        # its sound; its root's family leads the mix, so a multi-root track whose medium genre is
        # in its second root sounds mostly like that root.
        medium = medium_genre(labels, parent)
        variation.append(r if medium == MASKED else medium)
        if root_of[variation[-1]] != r:
            second_root[i] = r
        if kind[i] == 2:
            labels = set()
        gl = sorted(labels)
        ga = sorted({a for x in gl for a in _ancestors(x, parent)})
        genres_col.append(gl)
        genres_all_col.append(ga)
        tops = {root_of[x] for x in gl}
        top_col.append(title[tops.pop()] if len(tops) == 1 else np.nan)

    # Artist-filtered split: artists in random order go to the split furthest below its share, of the
    # artist's root and of the whole, so each root is split about 80/10/10 where it has enough artists.
    split_names = list(SPLIT_SHARES)
    shares = np.array(list(SPLIT_SHARES.values()))
    artist_size = np.bincount(track_artist_a, minlength=n_artists)
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
    split = artist_split[track_artist_a]

    # Subsets: small = balanced over FMA's 8 small genres, medium adds more genre_top tracks.
    subset = np.full(n, 2)
    single = kind == 0
    n_small = max(len(SMALL_ROOTS), round(SMALL_SHARE * n))
    per_root = max(1, n_small // len(SMALL_ROOTS))
    for r in SMALL_ROOTS:
        chosen = []
        for s, share in enumerate(shares):
            cand = rng.permutation(np.flatnonzero(single & (track_root_a == r) & (split == s)))
            chosen += list(cand[: max(1, round(share * per_root))])
        subset[np.array(chosen[:per_root], dtype=int)] = 0
    cand = rng.permutation(np.flatnonzero(single & (subset == 2)))
    n_medium = max(0, round(MEDIUM_SHARE * n) - int((subset == 0).sum()))
    subset[cand[:n_medium]] = 1

    # Sparse FMA-like track ids, an artist's tracks close together, artists in random order (ids
    # follow upload time in FMA, not genre).
    artist_rank = rng.permutation(n_artists)[track_artist_a]
    by_upload = np.lexsort((np.arange(n), artist_rank))
    track_ids = np.empty(n, dtype=np.int64)
    track_ids[by_upload] = np.sort(rng.choice(np.arange(2, MAX_TRACK_ID + 1), n, replace=False))

    # Defective files, from the largest roots so no rare genre loses its only track.
    big = [r for r in sorted(roots, key=lambda r: -counts[r])[:3]]
    pool = rng.permutation(np.flatnonzero(np.isin(track_root_a, big) & single))
    per_kind = max(1, round(n * 0.002))
    defects = {k: sorted(int(track_ids[j]) for j in pool[i * per_kind : (i + 1) * per_kind])
               for i, k in enumerate(DEFECT_KINDS)}  # fmt: skip

    variation_a = np.array(variation)
    sound_root = np.array([root_of[int(v)] for v in variation_a])
    params = _track_params(rng, sound_root, track_artist_a, second_root, variation_a, parent)
    meta = _other_columns(rng, n, track_artist_a, n_artists, artist_root, long_text)
    short_ids = set(defects["short"])
    duration = meta.pop(("track", "duration"))
    duration = [max(1, int(d)) for d in duration]
    for j, tid in enumerate(track_ids):
        if int(tid) in short_ids:  # the reason real clips are short: the track itself is
            duration[j] = int(rng.integers(2, 20))

    data: dict[tuple[str, str], Any] = {**meta}
    data[("set", "split")] = [split_names[s] for s in split]
    data[("set", "subset")] = pd.Categorical(
        [("small", "medium", "large")[s] for s in subset],
        categories=["small", "medium", "large"],
        ordered=True,
    )
    data[("track", "duration")] = duration
    data[("track", "genre_top")] = top_col
    data[("track", "genres")] = genres_col
    data[("track", "genres_all")] = genres_all_col
    tracks = pd.DataFrame({c: data[c] for c in COLUMNS}, index=pd.Index(track_ids, name="track_id"))
    tracks.columns = pd.MultiIndex.from_tuples(COLUMNS)
    order = np.argsort(track_ids, kind="stable")
    tracks = tracks.iloc[order]
    params = params[order]
    sound_genre = variation_a[order]

    counts_all: dict[int, int] = {}
    for ga in genres_all_col:
        for g in ga:
            counts_all[g] = counts_all.get(g, 0) + 1
    genres = pd.DataFrame(
        {
            "#tracks": [counts_all.get(g, 0) for g, _, _, _ in GENRES],
            "parent": [p for _, p, _, _ in GENRES],
            "title": [t for _, _, t, _ in GENRES],
            "top_level": [root_of[g] for g, _, _, _ in GENRES],
        },
        index=pd.Index([g for g, _, _, _ in GENRES], name="genre_id"),
    ).sort_index()
    return DemoPlan(tracks=tracks, genres=genres, params=params, defects=defects, sound_genre=sound_genre)


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
        chain = _ancestors(int(variation[i]), parent)[:-1][::-1]
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


def _other_columns(
    rng: np.random.Generator,
    n: int,
    track_artist: np.ndarray,
    n_artists: int,
    artist_root: list[int],
    long_text: bool,
) -> dict[tuple[str, str], Any]:
    """The descriptive columns: names, dates, counts and texts, plausible rather than real."""
    nan = np.nan
    words = (
        (lambda lo, hi: int(rng.integers(lo, hi))) if long_text else (lambda lo, hi: int(rng.integers(4, 12)))
    )
    fma_start = np.datetime64("2008-11-26T01:43:00")
    fma_end = np.datetime64("2017-03-30T15:00:00")

    # Artists.
    a_created = _dates(rng, np.full(n_artists, fma_start), fma_end)
    # Active years are whole years (Jan 1st), as in FMA.
    begin_year = np.where(rng.random(n_artists) < 0.2, rng.integers(1965, 2016, n_artists), 0)
    end_year = np.where(
        (begin_year > 0) & (rng.random(n_artists) < 0.25), begin_year + rng.integers(1, 12, n_artists), 0
    )
    a_begin = [np.datetime64(f"{y}-01-01T00:00:00") if y else np.datetime64("NaT") for y in begin_year]
    a_end = [np.datetime64(f"{y}-01-01T00:00:00") if y else np.datetime64("NaT") for y in end_year]
    places = [_PLACES[i] if rng.random() < 0.45 else None for i in rng.integers(0, len(_PLACES), n_artists)]
    a_names = [_name(rng, int(rng.integers(1, 4))) for _ in range(n_artists)]
    artist = {
        "active_year_begin": np.array(a_begin, dtype="datetime64[s]"),
        "active_year_end": np.array(a_end, dtype="datetime64[s]"),
        "associated_labels": [
            _name(rng) + " Records" if rng.random() < 0.12 else nan for _ in range(n_artists)
        ],
        "bio": [
            _text(rng, words(80, 520)) if rng.random() < (0.75 if long_text else 0.5) else nan
            for _ in range(n_artists)
        ],  # fmt: skip
        "comments": rng.poisson(0.3, n_artists),
        "date_created": a_created,
        "favorites": rng.geometric(0.2, n_artists) - 1,
        "id": np.sort(rng.choice(np.arange(1, 25000), n_artists, replace=False)),
        "latitude": [p[1] + rng.normal(0, 0.05) if p else nan for p in places],
        "location": [p[0] if p else nan for p in places],
        "longitude": [p[2] + rng.normal(0, 0.05) if p else nan for p in places],
        "members": [
            ", ".join(_name(rng) for _ in range(int(rng.integers(2, 5)))) if rng.random() < 0.2 else nan
            for _ in range(n_artists)
        ],  # fmt: skip
        "name": a_names,
        "related_projects": [_name(rng) if rng.random() < 0.1 else nan for _ in range(n_artists)],
        "tags": [
            [_TAGS[i] for i in rng.choice(len(_TAGS), int(rng.integers(1, 4)), replace=False)]
            if rng.random() < 0.3
            else []
            for _ in range(n_artists)
        ],  # fmt: skip
        "website": [
            f"http://www.{a.lower().replace(' ', '')}.com" if rng.random() < 0.4 else nan for a in a_names
        ],
        "wikipedia_page": [
            f"http://en.wikipedia.org/wiki/{a.replace(' ', '_')}" if rng.random() < 0.02 else nan
            for a in a_names
        ],  # fmt: skip
    }

    # Albums: each artist's tracks in albums of up to 12.
    album_of = np.empty(n, dtype=int)
    number = np.empty(n, dtype=int)
    album_artist, album_size = [], []
    for a in range(n_artists):
        idx = np.flatnonzero(track_artist == a)
        start = 0
        while start < len(idx):
            size = min(len(idx) - start, int(rng.integers(1, 13)))
            album_of[idx[start : start + size]] = len(album_artist)
            number[idx[start : start + size]] = np.arange(1, size + 1)
            album_artist.append(a)
            album_size.append(size)
            start += size
    n_albums = len(album_artist)
    al_created = _dates(rng, a_created[album_artist], fma_end)
    released = al_created - (rng.integers(0, 900, n_albums) * 86400).astype("timedelta64[s]")
    released = released.astype("datetime64[D]").astype("datetime64[s]")
    released[rng.random(n_albums) < 0.3] = np.datetime64("NaT")
    album = {
        "comments": rng.poisson(0.2, n_albums),
        "date_created": al_created,
        "date_released": released,
        "engineer": [_name(rng) if rng.random() < 0.1 else nan for _ in range(n_albums)],
        "favorites": rng.geometric(0.4, n_albums) - 1,
        "id": np.sort(
            rng.choice(np.arange(1, 23000 if n_albums < 22000 else 10 * n_albums), n_albums, replace=False)
        ),  # fmt: skip
        "information": [_text(rng, words(30, 220)) if rng.random() < 0.55 else nan for _ in range(n_albums)],
        "listens": (rng.lognormal(8, 1.5, n_albums)).astype(int),
        "producer": [_name(rng) if rng.random() < 0.1 else nan for _ in range(n_albums)],
        "tags": [
            [_TAGS[i] for i in rng.choice(len(_TAGS), int(rng.integers(1, 3)), replace=False)]
            if rng.random() < 0.2
            else []
            for _ in range(n_albums)
        ],  # fmt: skip
        "title": [_name(rng, int(rng.integers(1, 4))) for _ in range(n_albums)],
        "tracks": np.array(album_size),
        "type": [
            t
            for t in rng.choice(
                np.array(["Album", "Single Tracks", "Live Performance", "Radio Program", ""], dtype=object),
                n_albums,
                p=[0.75, 0.1, 0.05, 0.03, 0.07],
            )
        ],  # fmt: skip
    }
    album["type"] = [t if t else nan for t in album["type"]]

    # Tracks.
    t_created = _dates(rng, al_created[album_of], fma_end)
    recorded = t_created - (rng.integers(0, 2000, n) * 86400).astype("timedelta64[s]")
    recorded[rng.random(n) < 0.94] = np.datetime64("NaT")
    listens = rng.lognormal(6.5, 1.6, n).astype(int)
    lang = rng.choice(
        np.array(["en", "fr", "es", "pt", ""], dtype=object), n, p=[0.12, 0.01, 0.01, 0.01, 0.85]
    )
    track = {
        "bit_rate": rng.choice(np.array(_BIT_RATES), n, p=_BIT_RATE_P),
        "comments": rng.poisson(0.05, n),
        "composer": [_name(rng) if rng.random() < 0.03 else nan for _ in range(n)],
        "date_created": t_created,
        "date_recorded": recorded,
        "duration": rng.lognormal(5.4, 0.6, n).astype(int),
        "favorites": rng.geometric(0.5, n) - 1,
        "information": [_text(rng, words(8, 60)) if rng.random() < 0.08 else nan for _ in range(n)],
        "interest": (listens * rng.uniform(1.5, 4.0, n)).astype(int),
        "language_code": [x if x else nan for x in lang],
        "license": [_LICENSES[i] for i in rng.choice(len(_LICENSES), n, p=[0.45, 0.25, 0.15, 0.1, 0.05])],
        "listens": listens,
        "lyricist": [_name(rng) if rng.random() < 0.02 else nan for _ in range(n)],
        "number": number,
        "publisher": [_name(rng) if rng.random() < 0.02 else nan for _ in range(n)],
        "tags": [
            [_TAGS[i] for i in rng.choice(len(_TAGS), int(rng.integers(1, 4)), replace=False)]
            if rng.random() < 0.2
            else []
            for _ in range(n)
        ],  # fmt: skip
        "title": [_name(rng, int(rng.integers(1, 4))) for _ in range(n)],
    }

    out: dict[tuple[str, str], Any] = {}
    for key, value in album.items():
        out[("album", key)] = _take(value, album_of)
    for key, value in artist.items():
        out[("artist", key)] = _take(value, track_artist)
    for key, value in track.items():
        out[("track", key)] = value
    return out


def _take(values: Any, index: np.ndarray) -> Any:
    if isinstance(values, np.ndarray):
        return values[index]
    return [values[i] for i in index]


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
