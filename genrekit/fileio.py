"""The one atomic writer and the one file hasher of the package, and the free-disk-space check.

A file is written under a temporary name beside its final one, flushed to disk and renamed over
it (:func:`os.replace`), so a reader or a killed run never sees a half-written file; a failed write
leaves no temporary file behind. Files written by a library (a plot, a Keras model, an ``.npz``)
go through :func:`replacing`, which hands out the temporary path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from genrekit.errors import DownloadError
from genrekit.paths import NAME_ERRORS

MiB = 1 << 20
GiB = 1 << 30


def temporary_beside(path: str | os.PathLike) -> Path:
    """A hidden temporary name in ``path``'s folder, unique to this process, same suffixes.

    Every suffix is kept because some writers choose or check the format by them (Keras
    ``.h5``/``.keras`` and ``.weights.h5``, ``np.savez``, matplotlib).
    """
    path = Path(path)
    suffixes = "".join(path.suffixes)
    base = path.name[: len(path.name) - len(suffixes)] if suffixes else path.name
    return path.with_name(f".{base}.{os.getpid()}.tmp{suffixes}")


_TEMPORARY = re.compile(r"\..+\.([0-9]+)\.tmp(\..+)?")  # what temporary_beside names


def leftover_temporaries(folder: str | os.PathLike) -> list[Path]:
    """The files in ``folder`` that :func:`temporary_beside` named for a process no longer running:
    what a writer killed mid-write left (a running writer's file is not listed)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.iterdir()):
        match = _TEMPORARY.fullmatch(path.name)
        if match and path.is_file() and not _running(int(match.group(1))):
            found.append(path)
    return found


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # no signal sent: only asks whether the process exists
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed.

    The parent folder is created. Used where a library writes the file itself, e.g.
    ``with replacing(out) as tmp: fig.savefig(tmp)``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_beside(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (parent folder created); return the path.

    ``fsync=False`` skips flushing to disk before the rename: still never half-written on a
    crash of the process, and much faster for many small files that can be made again.
    """
    path = Path(path)
    with replacing(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    return path


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = True) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; line endings are written as given.

    A file name in ``text`` that is not UTF-8 is written as its exact bytes
    (:data:`genrekit.paths.NAME_ERRORS`), never a UnicodeEncodeError after the work is done.
    """
    return write_bytes_atomic(path, text.encode("utf-8", NAME_ERRORS), fsync=fsync)


def write_json_atomic(
    path: str | os.PathLike,
    data: Any,
    *,
    indent: int | None = 2,
    default: Callable[[Any], Any] | None = None,
    ensure_ascii: bool = True,
    allow_nan: bool = True,
    fsync: bool = True,
) -> Path:
    """Write ``data`` as JSON (``indent`` 2, a final newline) to ``path`` atomically."""
    text = json.dumps(data, indent=indent, default=default, ensure_ascii=ensure_ascii, allow_nan=allow_nan)
    return write_text_atomic(path, text + "\n", fsync=fsync)


def read_json(path: str | os.PathLike, *, error: type[Exception], what: str = "file") -> Any:
    """Read a JSON file; a missing file or bad JSON is one ``error`` naming the path.

    ``what`` names the file in the message (``"<path>: <what> not found"``).
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON ({exc})") from None


def file_digest(
    path: str | os.PathLike, algorithm: str = "sha256", *, progress: bool = False, chunk_size: int = 4 * MiB
) -> str:
    """The hex digest of a file (any :mod:`hashlib` algorithm), read in chunks.

    ``progress`` shows a tqdm bar (for archives of many gigabytes).
    """
    path = Path(path)
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        if not progress:
            while chunk := fh.read(chunk_size):
                hasher.update(chunk)
            return hasher.hexdigest()
        from tqdm.auto import tqdm

        with tqdm(
            total=path.stat().st_size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"{algorithm} {path.name}",
        ) as bar:
            while chunk := fh.read(chunk_size):
                hasher.update(chunk)
                bar.update(len(chunk))
    return hasher.hexdigest()


def sha1_file(path: str | os.PathLike, *, progress: bool = False) -> str:
    """The sha1 of a file (FMA's checksums), read in chunks."""
    return file_digest(path, "sha1", progress=progress)


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units, e.g. ``93.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_free_space(path: str | os.PathLike, needed: float, what: str) -> None:
    """Raise DownloadError unless the file system holding ``path`` has ``needed`` bytes free.

    Parameters
    ----------
    path : path-like
        A folder (it need not exist yet: its nearest existing parent is measured).
    needed : float
        Bytes that must be free.
    what : str
        What the space is for, for the message (e.g. ``"downloading and extracting fma_large.zip"``).
    """
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise DownloadError(
            f"not enough free disk space for {what}: {format_bytes(needed)} needed, "
            f"{format_bytes(free)} free on the disk holding {probe}; free some space or choose "
            f"another --data_dir"
        )
