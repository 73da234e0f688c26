"""Watching real processes in tests (Linux /proc): a process's children, and whether one still runs."""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> list[int]:
    """Child processes of ``pid``, started by any of its threads (each thread lists its own)."""
    found = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in path.read_text().split()]
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    return found


def alive(pid: int) -> bool:
    """Running (a zombie, waiting for its parent to reap it, counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")
