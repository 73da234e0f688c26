"""Published split lists for a user's own collection: one text file per split, one audio path a line.

A benchmark's split comes as lists such as GTZAN's fault-filtered ``train_filtered.txt``,
``valid_filtered.txt`` and ``test_filtered.txt`` (lines like ``blues/blues.00029.wav``). Lines are
paths relative to the collection's root (the genre folders of ``folder:ROOT``, the manifest's
folder of ``csv:FILE``); blank lines and ``#`` comments are skipped. A listed path that names no
track of the collection is one warning line (list file, line, path) and the run goes on; a path
listed twice is refused. A line whose file is there under another suffix (``.wav`` listed,
``.au`` on disk, as GTZAN's original archive ships) names that file when it is the only one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from genrekit.errors import DatasetError

log = logging.getLogger(__name__)

COMMENT = "#"
MISSING_SHOWN = 20  # missing files named one line each; the rest are counted in one line


@dataclass(frozen=True)
class Listed:
    """One line of a split list."""

    split: str
    text: str  # the path as the line writes it
    where: str  # "LIST line N", for messages


def read_split_lists(lists: Mapping[str, str | os.PathLike]) -> list[Listed]:
    """The lines of every split's list, in order; DatasetError for a list that is missing or empty."""
    listed: list[Listed] = []
    for split, path in lists.items():
        path = Path(path).expanduser()
        try:
            text = path.read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise DatasetError(f"split list {path} ({split}) does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"split list {path} ({split}) cannot be read ({exc})") from None
        lines = [
            Listed(split, line.strip(), f"{path} line {number}")
            for number, line in enumerate(text.splitlines(), start=1)
            if line.strip() and not line.strip().startswith(COMMENT)
        ]
        if not lines:
            raise DatasetError(f"split list {path} ({split}) lists no files")
        listed.extend(lines)
    return listed


def _key(path: Path) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def assign_listed(listed: Sequence[Listed], root: Path, tracks: Sequence[Path], source: str) -> list[str]:
    """The split of each of ``tracks`` by the lists ("" for a track no list names).

    Parameters
    ----------
    listed : sequence of Listed
        The lines of :func:`read_split_lists`.
    root : Path
        What the lines are relative to.
    tracks : sequence of Path
        The collection's audio files.
    source : str
        The collection, for messages.

    Raises
    ------
    DatasetError
        A track listed twice (naming both lines), or no listed line naming a track.
    """
    index = {_key(path): i for i, path in enumerate(tracks)}
    by_stem: dict[str, list[int]] = {}
    for key, i in index.items():
        by_stem.setdefault(os.path.splitext(key)[0], []).append(i)
    splits = [""] * len(tracks)
    first: dict[int, Listed] = {}
    missing: list[Listed] = []
    other_suffix = 0
    for line in listed:
        key = _key(root / line.text)
        i = index.get(key)
        if i is None and len(by_stem.get(os.path.splitext(key)[0], [])) == 1:
            i, other_suffix = by_stem[os.path.splitext(key)[0]][0], other_suffix + 1
        if i is None:
            missing.append(line)
            continue
        if i in first:
            raise DatasetError(
                f"{line.where}: {line.text} is listed already ({first[i].where}, {first[i].split}); "
                "a track belongs to one split"
            )
        first[i], splits[i] = line, line.split
    if not first:
        raise DatasetError(
            f"none of the {len(listed)} files the split lists name is a track of {source} (lines are paths "
            f"relative to {root}, e.g. {listed[0].text!r} for {root / listed[0].text}: {listed[0].where})"
        )
    _report(missing, other_suffix, root)
    return splits


def _report(missing: Sequence[Listed], other_suffix: int, root: Path) -> None:
    """One warning line per listed file that is not there (the first :data:`MISSING_SHOWN`), and counts."""
    for line in missing[:MISSING_SHOWN]:
        path = root / line.text
        state = "is not an audio file of the collection" if path.exists() else "does not exist"
        log.warning(
            "%s: listed file %s %s (%s); left out of the %s split",
            line.where,
            line.text,
            state,
            path,
            line.split,
        )
    if len(missing) > MISSING_SHOWN:
        log.warning("... and %d more listed files that are not there; left out", len(missing) - MISSING_SHOWN)
    if other_suffix:
        log.info("%d listed files were found under another suffix (e.g. .au for a listed .wav)", other_suffix)
