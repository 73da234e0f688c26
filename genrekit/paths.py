"""Path checks shared by the library and the scripts: clear messages before any work.

A missing folder names the command that creates it (:data:`SETUP_HINTS`); a file that cannot be
read or written says why in a few words.
"""

from __future__ import annotations

import os
from pathlib import Path

from genrekit.errors import DatasetError

# Which command creates a configured path when it is missing.
SETUP_HINTS = {
    "metadata": "python setup_fma_dataset.py --subset metadata --symlinks",
    "audio": "python setup_fma_dataset.py --subset fma_large --symlinks",
    "demo": "python setup_fma_dataset.py --subset demo",
}


def require_dir(path: str | Path, what: str, hint: str | None = None) -> Path:
    """Return ``path`` if it is a folder, else raise DatasetError saying how to create it."""
    path = Path(path)
    if path.is_dir():
        return path
    fix = f"; create it with: {hint}" if hint else ""
    if path.exists():
        state = "is not a folder"
    elif os.path.lexists(path):
        state = "is a link that cannot be resolved (dangling or a symlink loop)"
    else:
        state = "does not exist"
    raise DatasetError(f"{what} folder {path} {state}{fix}")


def resolved(path: str | os.PathLike) -> Path:
    """``path`` made absolute and resolved as far as possible; never raises (a symlink loop or a
    dangling link is kept as written, made absolute), for reports that name a file."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(os.path.abspath(path))


def not_a_file(path: str | os.PathLike) -> str:
    """Why ``path`` is not a readable file, in a few words ("not found", "is a folder"...)."""
    path = Path(path)
    if path.is_dir():
        return "is a folder, not a file"
    if os.path.lexists(path) and not path.exists():
        return "is a link that cannot be resolved (dangling or a symlink loop)"
    if path.exists():
        return "is not a regular file"
    return "not found"
