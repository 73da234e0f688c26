"""Path checks shared by the library and the scripts: clear messages before any work, and file
names that are not UTF-8.

A missing folder names the command that creates it (:data:`SETUP_HINTS`); a file that cannot be
read or written says why in a few words. A file name the operating system gives may hold bytes
that are not UTF-8 (``caf\\xe9.mp3`` from a Latin-1 disk): Python keeps them as lone surrogates in
the ``str`` (:func:`os.fsdecode`), so :func:`name_bytes` gives the exact bytes back,
:func:`native_path` is what a C library (libsndfile) opens, and :func:`shown` is the name for a
person to read.
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


# How text that may hold a file name is encoded where bytes are needed (hashes, CSV files): UTF-8,
# with the surrogates Python decodes a non-UTF-8 byte to turned back into that byte.
NAME_ERRORS = "surrogateescape"


def name_bytes(text: str | os.PathLike) -> bytes:
    """The exact bytes of a name or path: UTF-8 where it is UTF-8, the original bytes elsewhere.

    Equal to :func:`os.fsencode` on a UTF-8 file system, but the same on every platform, so an id
    hashed from a name does not change with the locale.
    """
    text = os.fspath(text)
    try:
        return text.encode("utf-8", NAME_ERRORS)
    except UnicodeEncodeError:  # a lone surrogate a Windows name may hold: kept as its code unit
        return text.encode("utf-8", "surrogatepass")


def native_path(path: str | os.PathLike) -> str | bytes:
    """``path`` as a C library opens it: its exact bytes on POSIX (a ``str`` holding surrogates
    cannot be encoded as UTF-8), the ``str`` on Windows (its wide-character API)."""
    path = os.fspath(path)
    return path if os.name == "nt" else os.fsencode(path)


def shown(path: str | os.PathLike) -> str:
    """``path`` for a message: as it is when it is valid text, bytes that are not UTF-8 escaped
    (``caf\\xe9.mp3``), so printing or logging it never fails."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    return name_bytes(text).decode("utf-8", "backslashreplace")


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
