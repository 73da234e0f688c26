"""A feature cache's parts on disk: the format, the manifest, reading rows, writing them safely.

One part is a folder of a fixed, sorted track list (see :mod:`genrekit.features.cache` for the
layout). :class:`Part` opens and checks one, :func:`create_part` writes a new, empty one whole or
not at all, and :class:`PartWriter` commits finished rows, data before status.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

import genrekit
from genrekit.errors import CacheError
from genrekit.features.frontends import FrontEnd, as_frontend
from genrekit.features.params import FeatureParams
from genrekit.fileio import write_bytes_atomic
from genrekit.paths import NAME_ERRORS

CACHE_FORMAT = 1
PENDING, OK, DEFECTIVE, MISSING = 0, 1, 2, 3
TRUNCATED = "truncated"  # failures.csv status of an ok row built from the decodable part of a cut file
STATUS_NAMES = {PENDING: "pending", OK: "ok", DEFECTIVE: "defective", MISSING: "missing"}
ABSENT = "absent"  # status of a track no part of the cache holds

MANIFEST = "manifest.json"
TRACKS = "track_ids.npy"
FEATURES = "features.npy"
STATUS = "status.npy"
FAILURES = "failures.csv"
DTYPE = np.dtype(np.float16)


@dataclasses.dataclass(frozen=True)
class Failure:
    """A track without features (``defective``, ``missing``) or built from a cut file (``truncated``)."""

    track_id: int
    path: str
    status: str
    reason: str


def cache_folder(
    cache_root: str | os.PathLike, audio_dir: str | os.PathLike, frontend: FrontEnd | FeatureParams
) -> Path:
    """One cache per audio folder and front end: ``<cache_root>/<audio folder>/<frontend.cache_name()>``.

    Demo and FMA track ids overlap, so caches of different audio folders are kept apart.
    ``frontend`` may be plain :class:`~genrekit.features.mel.FeatureParams` (log-mel segments).
    """
    return Path(cache_root) / Path(audio_dir).resolve().name / as_frontend(frontend).cache_name()


def _npy_offset(path: Path) -> int:
    """Byte offset of the data in a ``.npy`` file."""
    with open(path, "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        if major == 1:
            np.lib.format.read_array_header_1_0(fh)
        else:
            np.lib.format.read_array_header_2_0(fh)
        return fh.tell()


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not possible on every platform; best effort
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _software() -> dict[str, str]:
    """Versions that could change decoded samples; recorded for the record, not checked."""
    import soundfile
    import soxr

    return {
        "genrekit": genrekit.__version__,
        "libsndfile": soundfile.__libsndfile_version__,
        "soxr": soxr.__version__,
        "numpy": np.__version__,
    }


class Part:
    """One part of a cache: a fixed, sorted list of tracks and their rows."""

    def __init__(self, path: Path, frontend: FrontEnd) -> None:
        self.path = path
        try:
            self.manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
            self.track_ids = np.load(path / TRACKS)
            self.status = np.load(path / STATUS)
        except (OSError, ValueError) as exc:
            raise CacheError(f"feature cache part {path} is unreadable ({exc}); delete it") from None
        _check_manifest(path, self.manifest, frontend)
        if hashlib.sha1(self.track_ids.tobytes()).hexdigest() != self.manifest.get("tracks_sha1") or len(
            self.status
        ) != len(self.track_ids):
            raise CacheError(f"feature cache part {path} is corrupt (track list); delete it to rebuild it")
        self.shard = tuple(self.manifest["shard"])
        self.row_shape = tuple(frontend.row_shape)
        self.row_nbytes = int(np.prod(self.row_shape)) * DTYPE.itemsize
        self.data_offset = _npy_offset(path / FEATURES)
        self.status_offset = _npy_offset(path / STATUS)
        self._fd: int | None = None

    @property
    def name(self) -> str:
        return self.path.name

    def failures(self) -> dict[int, Failure]:
        path = self.path / FAILURES
        if not path.is_file():
            return {}
        with open(path, newline="", encoding="utf-8", errors=NAME_ERRORS) as fh:
            return {
                int(row["track_id"]): Failure(int(row["track_id"]), row["path"], row["status"], row["reason"])
                for row in csv.DictReader(fh)
            }

    def read_rows(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Read sorted ``rows`` into ``out`` (C-contiguous, float16), one read per run of rows."""
        if self._fd is None:
            self._fd = os.open(self.path / FEATURES, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        buf = memoryview(out.reshape(-1).view(np.uint8))
        i = 0
        while i < len(rows):
            j = i + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            view = buf[i * self.row_nbytes : j * self.row_nbytes]
            offset = self.data_offset + int(rows[i]) * self.row_nbytes
            while len(view):  # pread may return less than asked
                n = os.preadv(self._fd, [view], offset)
                if n <= 0:
                    raise CacheError(f"feature cache part {self.path}: {FEATURES} is shorter than its rows")
                view, offset = view[n:], offset + n
            i = j

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _check_manifest(path: Path, manifest: dict[str, Any], frontend: FrontEnd) -> None:
    """The storage format is the cache's to check; the features' origin is the front end's."""
    if manifest.get("format") != CACHE_FORMAT or manifest.get("dtype") != DTYPE.name:
        raise CacheError(
            f"feature cache part {path} has another storage format ({manifest.get('format')}); "
            "delete the cache folder to rebuild it"
        )
    frontend.check_manifest(path, manifest)


def part_dirs(cache_dir: Path) -> list[Path]:
    if not cache_dir.is_dir():
        return []
    return sorted(p for p in cache_dir.iterdir() if p.is_dir() and p.name.startswith("part-"))


def create_part(
    cache_dir: Path, name: str, frontend: FrontEnd, track_ids: np.ndarray, shard: tuple[int, int]
) -> Path:
    """Write a new, empty part in a temp folder, then rename it into place: it exists whole or not at all."""
    tmp = cache_dir / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / TRACKS, track_ids.astype(np.int64))
    np.save(tmp / STATUS, np.zeros(len(track_ids), np.uint8))
    # A sparse file: 17.5 GB for fma_large cost no disk until rows are written.
    mm = np.lib.format.open_memmap(
        tmp / FEATURES,
        mode="w+",
        dtype=DTYPE,
        shape=(len(track_ids), *frontend.row_shape),
    )
    del mm
    manifest = {
        "format": CACHE_FORMAT,
        "frontend": frontend.name,
        "feature_version": frontend.version,
        "params": frontend.params(),
        "dtype": DTYPE.name,
        "rows": len(track_ids),
        "shard": list(shard),
        "tracks_sha1": hashlib.sha1(track_ids.astype(np.int64).tobytes()).hexdigest(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "software": _software(),
    }
    write_bytes_atomic(tmp / MANIFEST, json.dumps(manifest, indent=1).encode())
    final = cache_dir / name
    os.replace(tmp, final)
    _fsync_dir(cache_dir)
    return final


class PartWriter:
    """Writes finished rows of one part; commits data before status, so no half row is ever 'ok'."""

    def __init__(self, part: Part) -> None:
        self.part = part
        self.fd = os.open(part.path / FEATURES, os.O_RDWR)
        self.status_fd = os.open(part.path / STATUS, os.O_RDWR)
        self.failures = part.failures()
        self.queued: list[tuple[int, int]] = []
        self.failures_dirty = False

    def put(self, row: int, track_id: int, path: str, code: int, reason: str) -> None:
        """Queue a finished row's status; an ``ok`` row's features were written by the worker."""
        if code == OK and not reason:
            if self.failures.pop(track_id, None) is not None:
                self.failures_dirty = True
        else:  # a failure, or an ok row with a note (a truncated file used)
            status = TRUNCATED if code == OK else STATUS_NAMES[code]
            self.failures[track_id] = Failure(track_id, path, status, reason)
            self.failures_dirty = True
        self.queued.append((row, code))

    def commit(self) -> None:
        if not self.queued and not self.failures_dirty:
            return
        # Syncs the rows the workers wrote too: fdatasync flushes the file's pages, whoever wrote them.
        os.fdatasync(self.fd) if hasattr(os, "fdatasync") else os.fsync(self.fd)
        if self.failures_dirty:
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(["track_id", "path", "status", "reason"])
            for tid in sorted(self.failures):
                f = self.failures[tid]
                writer.writerow([f.track_id, f.path, f.status, f.reason])
            # A path that is not UTF-8 is kept as its exact bytes (read back the same way).
            write_bytes_atomic(self.part.path / FAILURES, text.getvalue().encode("utf-8", NAME_ERRORS))
            self.failures_dirty = False
        for row, code in self.queued:
            os.pwrite(self.status_fd, bytes([code]), self.part.status_offset + row)
            self.part.status[row] = code
        os.fdatasync(self.status_fd) if hasattr(os, "fdatasync") else os.fsync(self.status_fd)
        self.queued.clear()

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.status_fd)
