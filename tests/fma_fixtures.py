"""Tiny FMA-format metadata written by tests: the real 52-column tracks.csv layout."""

from __future__ import annotations

import csv
from pathlib import Path

GROUPS = {
    "album": "comments date_created date_released engineer favorites id information listens producer tags title tracks type",
    "artist": "active_year_begin active_year_end associated_labels bio comments date_created favorites id latitude "
    "location longitude members name related_projects tags website wikipedia_page",
    "set": "split subset",
    "track": "bit_rate comments composer date_created date_recorded duration favorites genre_top genres genres_all "
    "information interest language_code license listens lyricist number publisher tags title",
}
COLUMNS = [(top, sub) for top, subs in GROUPS.items() for sub in subs.split()]
assert len(COLUMNS) == 52

# A small genre tree in genres.csv format: (genre_id, parent, title); top_level is derived.
TREE = [
    (12, 0, "Rock"),
    (25, 12, "Punk"),
    (26, 12, "Post-Rock"),
    (58, 25, "Hardcore"),
    (15, 0, "Electronic"),
    (181, 15, "Techno"),
    (182, 15, "House"),
    (21, 0, "Hip-Hop"),
    (100, 21, "Trip-Hop"),
    (2, 0, "International"),
]


def write_genres(path: Path, tree=TREE) -> Path:
    parent = {g: p for g, p, _ in tree}

    def root(g):
        while parent[g] != 0:
            g = parent[g]
        return g

    lines = ["genre_id,#tracks,parent,title,top_level"]
    lines += [f"{g},0,{p},{t},{root(g)}" for g, p, t in tree]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_tracks(path: Path, rows: dict[int, dict]) -> Path:
    """rows: track_id -> {(top, sub): value}; unspecified columns are empty."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([""] + [c[0] for c in COLUMNS])
        w.writerow([""] + [c[1] for c in COLUMNS])
        w.writerow(["track_id"] + [""] * len(COLUMNS))
        for tid, values in rows.items():
            w.writerow([tid] + [values.get(c, "") for c in COLUMNS])
    return path


def track(split, subset, genres, genre_top="", genres_all=None, artist=1, title="t"):
    return {
        ("set", "split"): split,
        ("set", "subset"): subset,
        ("track", "genres"): str(list(genres)),
        ("track", "genres_all"): str(list(genres_all if genres_all is not None else genres)),
        ("track", "genre_top"): genre_top,
        ("track", "tags"): "[]",
        ("album", "tags"): "['x', 'y']",
        ("artist", "tags"): "[]",
        ("artist", "id"): artist,
        ("artist", "name"): f"artist {artist}",
        ("track", "title"): title,
        ("track", "duration"): 30,
        ("track", "date_created"): "2008-11-26 01:48:12",
    }


def small_dataset(root: Path) -> Path:
    """A 12-track metadata folder exercising every label rule; returns the folder."""
    root.mkdir(parents=True, exist_ok=True)
    write_genres(root / "genres.csv")
    rows = {
        2: track("training", "small", [25], "Rock", [12, 25], artist=1),
        3: track("training", "small", [58], "Rock", [12, 25, 58], artist=1),
        5: track("training", "medium", [181, 182], "Electronic", [15, 181, 182], artist=2),
        10: track("training", "large", [21], "Hip-Hop", [21], artist=3),
        11: track("training", "large", [100, 25], "", [12, 21, 25, 100], artist=3),  # two roots
        12: track("training", "large", [2], "International", [2], artist=4),
        20: track("validation", "small", [26], "Rock", [12, 26], artist=5),
        21: track("validation", "medium", [182], "Electronic", [15, 182], artist=5),
        30: track("test", "small", [182, 181], "Electronic", [15, 181, 182], artist=6),
        31: track("test", "large", [100], "Hip-Hop", [21, 100], artist=7),
        32: track("test", "large", [12], "Rock", [12], artist=7),
        33: track("training", "large", [26], "Rock", [12, 26], artist=8),
    }
    write_tracks(root / "tracks.csv", rows)
    return root
