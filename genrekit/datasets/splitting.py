"""The training / validation / test split of a source that does not give one.

Tracks are split in groups (an artist's tracks, or each track alone when artists are unknown) so
that no group is on two sides, and per genre (stratum) so that every genre reaches every split.
The order is a seeded hash of the group's name, never listing order.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from genrekit.errors import DatasetError
from genrekit.paths import name_bytes

SHARES = {"training": 0.8, "validation": 0.1, "test": 0.1}  # of the tracks of each genre


def _order(group: str, seed: int) -> bytes:
    # The group's exact bytes: it may hold a file name that is not UTF-8.
    return hashlib.sha1(name_bytes(f"{seed}:{group}")).digest()


def assign_splits(
    groups: Sequence[str],
    strata: Sequence[str],
    *,
    seed: int = 0,
    where: Mapping[str, str] | None = None,
) -> list[str]:
    """The split of each track, 80/10/10 of every stratum's tracks, groups never on two sides.

    Parameters
    ----------
    groups : sequence of str
        Per track, the group it must stay with (``"artist:X"``, or a name of its own).
    strata : sequence of str
        Per track, its genre (the path of its first genre). A group spanning several strata is
        placed with the stratum most of its tracks belong to (ties to the first by name).
    seed : int
    where : mapping, optional
        Stratum -> what names it in messages (its folder).

    Returns
    -------
    list of str
        "training", "validation" or "test" per track.

    Raises
    ------
    DatasetError
        A genre whose tracks come from fewer than three groups (one is needed for each split).
    """
    where = where or {}
    groups_of: dict[str, set[str]] = defaultdict(set)
    size: Counter[str] = Counter(groups)
    votes: dict[str, Counter[str]] = defaultdict(Counter)
    for group, stratum in zip(groups, strata, strict=True):
        groups_of[stratum].add(group)
        votes[group][stratum] += 1
    for stratum in sorted(groups_of):
        found = groups_of[stratum]
        if len(found) < len(SHARES):
            n_tracks = sum(1 for s in strata if s == stratum)
            by = "" if all(g.startswith("track:") for g in found) else f" by {len(found)} artist(s)"
            name = where.get(stratum, "")
            raise DatasetError(
                f"genre {stratum!r}{f' ({name})' if name else ''} has {n_tracks} track(s){by}; "
                f"the 80/10/10 split needs at least {len(SHARES)} (one per split)"
            )
    home: dict[str, list[str]] = defaultdict(list)
    for group, counts in votes.items():
        best = max(counts.values())
        home[min(s for s, c in counts.items() if c == best)].append(group)
    split_of: dict[str, str] = {}
    names = list(SHARES)
    for stratum in sorted(home):
        members = sorted(home[stratum], key=lambda g: _order(g, seed))
        total = sum(size[g] for g in members)
        count = dict.fromkeys(names, 0)
        for i, group in enumerate(members):
            if i < len(names):  # one group for each split first
                chosen = names[i]
            else:  # then the split furthest below its share
                chosen = max(names, key=lambda s: (SHARES[s] * total - count[s], -names.index(s)))
            split_of[group] = chosen
            count[chosen] += size[group]
    return [split_of[g] for g in groups]
