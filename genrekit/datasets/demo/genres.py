"""The demo's genre tree: a subset of FMA's real one, with FMA's top-genre shares."""

from __future__ import annotations

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


def genre_tables() -> tuple[dict[int, int], dict[int, str], dict[int, int]]:
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


def ancestors(genre: int, parent: dict[int, int]) -> list[int]:
    """The genre, its parent, ... up to its root."""
    out = [genre]
    while parent[out[-1]] != 0:
        out.append(parent[out[-1]])
    return out
