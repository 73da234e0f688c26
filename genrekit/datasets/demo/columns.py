"""The demo's descriptive columns: artist, album and track names, dates, counts and free texts.

Plausible rather than real, and drawn from the plan's random generator after the labels and the
sound parameters (:func:`genrekit.datasets.demo.metadata.plan_demo`), in a fixed order: the same
seed gives the same tables.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

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


FMA_START = np.datetime64("2008-11-26T01:43:00")
FMA_END = np.datetime64("2017-03-30T15:00:00")
NAN = np.nan
WordCount = Callable[[int, int], int]


def _word_count(rng: np.random.Generator, long_text: bool) -> WordCount:
    """Words in a free text: between the two bounds (FMA's lengths), or 4 to 11 when short."""
    if long_text:
        return lambda lo, hi: int(rng.integers(lo, hi))
    return lambda lo, hi: int(rng.integers(4, 12))


def _maybe_names(rng: np.random.Generator, count: int, p: float) -> list:
    """``count`` entries, each a name with probability ``p``, else NaN."""
    return [_name(rng) if rng.random() < p else NAN for _ in range(count)]


def _maybe_texts(rng: np.random.Generator, count: int, p: float, words: WordCount, lo: int, hi: int) -> list:
    """``count`` entries, each a free text of ``words(lo, hi)`` words with probability ``p``, else NaN."""
    return [_text(rng, words(lo, hi)) if rng.random() < p else NAN for _ in range(count)]


def _titles(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` names of one to three words."""
    return [_name(rng, int(rng.integers(1, 4))) for _ in range(count)]


def _tags(rng: np.random.Generator, count: int, p: float, most: int) -> list[list[str]]:
    """``count`` tag lists: with probability ``p`` one to ``most - 1`` distinct tags, else none."""
    return [
        [_TAGS[i] for i in rng.choice(len(_TAGS), int(rng.integers(1, most)), replace=False)]
        if rng.random() < p
        else []
        for _ in range(count)
    ]


def _active_years(rng: np.random.Generator, n_artists: int) -> tuple[np.ndarray, np.ndarray]:
    """Artists' active years as whole years (Jan 1st), as in FMA; NaT where unknown."""
    begin_year = np.where(rng.random(n_artists) < 0.2, rng.integers(1965, 2016, n_artists), 0)
    end_year = np.where(
        (begin_year > 0) & (rng.random(n_artists) < 0.25), begin_year + rng.integers(1, 12, n_artists), 0
    )
    a_begin = [np.datetime64(f"{y}-01-01T00:00:00") if y else np.datetime64("NaT") for y in begin_year]
    a_end = [np.datetime64(f"{y}-01-01T00:00:00") if y else np.datetime64("NaT") for y in end_year]
    return np.array(a_begin, dtype="datetime64[s]"), np.array(a_end, dtype="datetime64[s]")


def _artist_columns(
    rng: np.random.Generator, n_artists: int, words: WordCount, long_text: bool
) -> tuple[dict[str, Any], np.ndarray]:
    """The artist columns, one row per artist, and the artists' creation dates."""
    a_created = _dates(rng, np.full(n_artists, FMA_START), FMA_END)
    a_begin, a_end = _active_years(rng, n_artists)
    places = [_PLACES[i] if rng.random() < 0.45 else None for i in rng.integers(0, len(_PLACES), n_artists)]
    a_names = _titles(rng, n_artists)
    artist = {
        "active_year_begin": a_begin,
        "active_year_end": a_end,
        "associated_labels": [
            _name(rng) + " Records" if rng.random() < 0.12 else NAN for _ in range(n_artists)
        ],
        "bio": _maybe_texts(rng, n_artists, 0.75 if long_text else 0.5, words, 80, 520),
        "comments": rng.poisson(0.3, n_artists),
        "date_created": a_created,
        "favorites": rng.geometric(0.2, n_artists) - 1,
        "id": np.sort(rng.choice(np.arange(1, 25000), n_artists, replace=False)),
        "latitude": [p[1] + rng.normal(0, 0.05) if p else NAN for p in places],
        "location": [p[0] if p else NAN for p in places],
        "longitude": [p[2] + rng.normal(0, 0.05) if p else NAN for p in places],
        "members": [
            ", ".join(_name(rng) for _ in range(int(rng.integers(2, 5)))) if rng.random() < 0.2 else NAN
            for _ in range(n_artists)
        ],  # fmt: skip
        "name": a_names,
        "related_projects": _maybe_names(rng, n_artists, 0.1),
        "tags": _tags(rng, n_artists, 0.3, 4),
        "website": [
            f"http://www.{a.lower().replace(' ', '')}.com" if rng.random() < 0.4 else NAN for a in a_names
        ],
        "wikipedia_page": [
            f"http://en.wikipedia.org/wiki/{a.replace(' ', '_')}" if rng.random() < 0.02 else NAN
            for a in a_names
        ],  # fmt: skip
    }
    return artist, a_created


def _albums(
    rng: np.random.Generator, track_artist: np.ndarray, n_artists: int
) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """Each artist's tracks in albums of up to 12: ``(album of each track, its number on the album,
    the artist of each album, the size of each album)``."""
    n = len(track_artist)
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
    return album_of, number, album_artist, album_size


def _album_columns(
    rng: np.random.Generator,
    a_created: np.ndarray,
    album_artist: list[int],
    album_size: list[int],
    words: WordCount,
) -> tuple[dict[str, Any], np.ndarray]:
    """The album columns, one row per album, and the albums' creation dates."""
    n_albums = len(album_artist)
    al_created = _dates(rng, a_created[album_artist], FMA_END)
    released = al_created - (rng.integers(0, 900, n_albums) * 86400).astype("timedelta64[s]")
    released = released.astype("datetime64[D]").astype("datetime64[s]")
    released[rng.random(n_albums) < 0.3] = np.datetime64("NaT")
    album = {
        "comments": rng.poisson(0.2, n_albums),
        "date_created": al_created,
        "date_released": released,
        "engineer": _maybe_names(rng, n_albums, 0.1),
        "favorites": rng.geometric(0.4, n_albums) - 1,
        "id": np.sort(
            rng.choice(np.arange(1, 23000 if n_albums < 22000 else 10 * n_albums), n_albums, replace=False)
        ),  # fmt: skip
        "information": _maybe_texts(rng, n_albums, 0.55, words, 30, 220),
        "listens": (rng.lognormal(8, 1.5, n_albums)).astype(int),
        "producer": _maybe_names(rng, n_albums, 0.1),
        "tags": _tags(rng, n_albums, 0.2, 3),
        "title": _titles(rng, n_albums),
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
    album["type"] = [t if t else NAN for t in album["type"]]
    return album, al_created


def _track_columns(
    rng: np.random.Generator,
    al_created: np.ndarray,
    album_of: np.ndarray,
    number: np.ndarray,
    words: WordCount,
) -> dict[str, Any]:
    """The track columns, one row per track."""
    n = len(album_of)
    t_created = _dates(rng, al_created[album_of], FMA_END)
    recorded = t_created - (rng.integers(0, 2000, n) * 86400).astype("timedelta64[s]")
    recorded[rng.random(n) < 0.94] = np.datetime64("NaT")
    listens = rng.lognormal(6.5, 1.6, n).astype(int)
    lang = rng.choice(
        np.array(["en", "fr", "es", "pt", ""], dtype=object), n, p=[0.12, 0.01, 0.01, 0.01, 0.85]
    )
    return {
        "bit_rate": rng.choice(np.array(_BIT_RATES), n, p=_BIT_RATE_P),
        "comments": rng.poisson(0.05, n),
        "composer": _maybe_names(rng, n, 0.03),
        "date_created": t_created,
        "date_recorded": recorded,
        "duration": rng.lognormal(5.4, 0.6, n).astype(int),
        "favorites": rng.geometric(0.5, n) - 1,
        "information": _maybe_texts(rng, n, 0.08, words, 8, 60),
        "interest": (listens * rng.uniform(1.5, 4.0, n)).astype(int),
        "language_code": [x if x else NAN for x in lang],
        "license": [_LICENSES[i] for i in rng.choice(len(_LICENSES), n, p=[0.45, 0.25, 0.15, 0.1, 0.05])],
        "listens": listens,
        "lyricist": _maybe_names(rng, n, 0.02),
        "number": number,
        "publisher": _maybe_names(rng, n, 0.02),
        "tags": _tags(rng, n, 0.2, 4),
        "title": _titles(rng, n),
    }


def other_columns(
    rng: np.random.Generator, track_artist: np.ndarray, n_artists: int, long_text: bool
) -> dict[tuple[str, str], Any]:
    """The descriptive columns of every track (artist, album and track names, dates, counts and
    texts), plausible rather than real, keyed by FMA's two-level column names."""
    words = _word_count(rng, long_text)
    artist, a_created = _artist_columns(rng, n_artists, words, long_text)
    album_of, number, album_artist, album_size = _albums(rng, track_artist, n_artists)
    album, al_created = _album_columns(rng, a_created, album_artist, album_size, words)
    track = _track_columns(rng, al_created, album_of, number, words)
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
