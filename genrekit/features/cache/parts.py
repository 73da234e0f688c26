"""A feature cache's parts on disk: the format, the manifest, reading rows, writing them safely.

One part is a folder of a fixed, sorted track list (see :mod:`genrekit.features.cache` for the
layout). :class:`Part` opens and checks one, :func:`create_part` writes a new, empty one whole or
not at all, and :class:`PartWriter` commits finished rows, data, then checksum, then status.

Every ok row has a crc32 of its bytes in ``checksums.npy``, computed by the worker from the row it
wrote and committed before the row's status. :meth:`Part.verify` checks a row against it the first
time this process reads it (:class:`RowChecks`, shared by every :class:`Part` of the same files), so
later reads (the next epochs) cost no checksum. A part written before checksums (format 1) gets
them once from its rows (:func:`add_checksums`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import mmap
import os
import shutil
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

import genrekit
from genrekit.errors import CacheError
from genrekit.features.frontends import FrontEnd, as_frontend
from genrekit.features.params import FeatureParams
from genrekit.fileio import write_bytes_atomic
from genrekit.paths import NAME_ERRORS

CACHE_FORMAT = 2  # 2: a crc32 per row (checksums.npy); 1: none (given them once by ensure_cache)
UPGRADABLE_FORMATS = (1,)
ROW_CHECKSUM = "crc32"  # zlib.crc32 of a row's bytes: ~4-6 GB/s, finds every 1-2 bit flip and burst
PENDING, OK, DEFECTIVE, MISSING, DAMAGED = 0, 1, 2, 3, 4
TRUNCATED = "truncated"  # failures.csv status of an ok row built from the decodable part of a cut file
STATUS_NAMES = {PENDING: "pending", OK: "ok", DEFECTIVE: "defective", MISSING: "missing", DAMAGED: "damaged"}
ABSENT = "absent"  # status of a track no part of the cache holds

MANIFEST = "manifest.json"
TRACKS = "track_ids.npy"
FEATURES = "features.npy"
STATUS = "status.npy"
CHECKSUMS = "checksums.npy"
FAILURES = "failures.csv"
DTYPE = np.dtype(np.float16)


@dataclasses.dataclass(frozen=True)
class Failure:
    """A track without features (``defective``, ``missing``) or built from a cut file (``truncated``)."""

    track_id: int
    path: str
    status: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Damage:
    """An ok row whose bytes are not what was written (zeroed, bits flipped, not finite)."""

    track_id: int
    part: Part
    row: int
    reason: str

    def line(self) -> str:
        """One line for the log: the cache part, the track, what is wrong."""
        return f"feature cache {self.part.path}: track {self.track_id} (row {self.row}) is damaged: {self.reason}"


UNCHECKED, INTACT, BAD = 0, 1, 2  # RowChecks.state: what this process found of a row


@dataclasses.dataclass
class RowChecks:
    """What this process found of one part's rows: each is checked once, then trusted while the
    part's files stay the same (the next epochs read it without a checksum)."""

    state: np.ndarray  # uint8 per row: UNCHECKED, INTACT or BAD
    reasons: dict[int, str]  # row -> what is wrong, for BAD rows


# Keyed by the part's files as they are (path, inodes, sizes, modification times): a part written
# to since (rows committed, a file rebuilt or changed on disk) is a new key, checked afresh.
_CHECKS: dict[tuple, RowChecks] = {}


def _row_checks(path: Path, rows: int) -> RowChecks:
    try:
        stats = [os.stat(path / name) for name in (FEATURES, CHECKSUMS)]
    except OSError:
        return RowChecks(np.zeros(rows, np.uint8), {})
    key = (str(path.resolve()), rows, *((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in stats))
    return _CHECKS.setdefault(key, RowChecks(np.zeros(rows, np.uint8), {}))


def forget_checks() -> None:
    """Forget which rows this process has verified: the next read checks every row again."""
    _CHECKS.clear()


def implausible(row: np.ndarray) -> str | None:
    """Why a float16 row cannot be a front end's output (all zeros, not finite), or None.

    Works on the raw bits (exponent all ones = inf or NaN): about as fast as the checksum.
    """
    bits = row.reshape(-1).view(np.uint16)
    if not bits.any():
        return "all zeros"
    nonfinite = int(np.count_nonzero((bits & 0x7C00) == 0x7C00))
    return f"{nonfinite} values not finite (NaN or inf)" if nonfinite else None


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _datasync(fd: int) -> None:
    os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)


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
        self.checksums: np.ndarray | None = None  # None: a format-1 part (add_checksums gives them)
        self.checksums_offset = 0
        if self.manifest["format"] not in UPGRADABLE_FORMATS:
            try:
                self.checksums = np.load(path / CHECKSUMS)
                self.checksums_offset = _npy_offset(path / CHECKSUMS)
            except (OSError, ValueError) as exc:
                raise CacheError(
                    f"feature cache part {path}: {CHECKSUMS} is unreadable ({exc}); delete the part"
                ) from None
            if self.checksums.shape != self.track_ids.shape or self.checksums.dtype != np.uint32:
                raise CacheError(
                    f"feature cache part {path} is corrupt ({CHECKSUMS}); delete it to rebuild it"
                )
        self.checks = _row_checks(path, len(self.track_ids))
        self._fd: int | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def codes(self) -> np.ndarray:
        """Each row's status, with the ok rows this process found damaged as DAMAGED."""
        damaged = (self.checks.state == BAD) & (self.status == OK)
        return np.where(damaged, DAMAGED, self.status).astype(np.uint8)

    def verify(self, rows: np.ndarray, data: np.ndarray | None = None) -> dict[int, str]:
        """Check rows, each once per process; return the damaged ones, row -> what is wrong.

        ``data[i]`` holds row ``rows[i]`` as just read; without ``data`` the rows are checked in
        the page cache through a read-only memory map (no copy: the cache build's check of every
        row costs the checksum alone). A row whose checksum matches was finite when written
        (workers refuse non-finite features), so only a mismatch is looked into.
        """
        if self.checksums is None:
            raise CacheError(
                f"feature cache part {self.path} has no row checksums (written by an older genrekit); "
                "build the cache once (python balanced_trainer.py --extract_only, or any training or "
                "evaluation on it) to add them"
            )
        todo = np.flatnonzero(self.checks.state[rows] != INTACT)
        if data is not None:
            return self._check(rows, todo, lambda i: data[i])
        if not len(todo):
            return {}
        with open(self.path / FEATURES, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            with contextlib.suppress(AttributeError, OSError):  # readahead for a cold file, where offered
                mm.madvise(mmap.MADV_SEQUENTIAL)
            view = memoryview(mm)
            try:
                start = self.data_offset + np.asarray(rows, np.int64) * self.row_nbytes
                return self._check(rows, todo, lambda i: view[start[i] : start[i] + self.row_nbytes])
            finally:
                view.release()

    def _check(self, rows: np.ndarray, todo: np.ndarray, row_data: Any) -> dict[int, str]:
        """:meth:`verify` of ``rows[todo]``, ``row_data(i)`` giving row ``rows[i]``'s bytes."""
        state, bad = self.checks.state, {}
        for i in todo:
            row = int(rows[i])
            if state[row] == INTACT:  # a row asked twice, checked at its first copy
                continue
            if state[row] == UNCHECKED:
                got, want = zlib.crc32(row_data(i)), int(self.checksums[row])
                if got == want:
                    state[row] = INTACT
                    continue
                state[row] = BAD
                values = np.frombuffer(row_data(i), DTYPE)
                self.checks.reasons[row] = implausible(values) or (
                    f"checksum mismatch (crc32 {got:08x}, written {want:08x}): its bytes changed on disk"
                )
            bad[row] = self.checks.reasons[row]
        return bad

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
    fmt = manifest.get("format")
    known = fmt in UPGRADABLE_FORMATS or (
        fmt == CACHE_FORMAT and manifest.get("row_checksum") == ROW_CHECKSUM
    )
    if not known or manifest.get("dtype") != DTYPE.name:
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
    np.save(tmp / CHECKSUMS, np.zeros(len(track_ids), np.uint32))
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
        "row_checksum": ROW_CHECKSUM,
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
    """Writes finished rows of one part; commits data, then checksums, then status, so no half row
    and no row without its checksum is ever 'ok'."""

    def __init__(self, part: Part) -> None:
        self.part = part
        self.fd = os.open(part.path / FEATURES, os.O_RDWR)
        self.status_fd = os.open(part.path / STATUS, os.O_RDWR)
        self.sums_fd = os.open(part.path / CHECKSUMS, os.O_RDWR)
        self.failures = part.failures()
        self.queued: list[tuple[int, int, int]] = []  # (row, code, checksum of an ok row)
        self.failures_dirty = False

    def put(self, row: int, track_id: int, path: str, code: int, reason: str, checksum: int = 0) -> None:
        """Queue a finished row's status; an ``ok`` row's features were written by the worker, whose
        crc32 of them is ``checksum``."""
        if code == OK and not reason:
            if self.failures.pop(track_id, None) is not None:
                self.failures_dirty = True
        else:  # a failure, or an ok row with a note (a truncated file used)
            status = TRUNCATED if code == OK else STATUS_NAMES[code]
            self.failures[track_id] = Failure(track_id, path, status, reason)
            self.failures_dirty = True
        self.queued.append((row, code, checksum))

    def set_aside(self, damage: Damage, path: str) -> None:
        """Queue a damaged ok row as ``damaged`` (listed in failures.csv): never read, rebuilt when
        its audio ``path`` is there."""
        self.put(damage.row, damage.track_id, path, DAMAGED, damage.reason)

    def commit(self) -> None:
        if not self.queued and not self.failures_dirty:
            return
        # Syncs the rows the workers wrote too: fdatasync flushes the file's pages, whoever wrote them.
        _datasync(self.fd)
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
        sums = [(row, checksum) for row, code, checksum in self.queued if code == OK]
        for row, checksum in sums:
            os.pwrite(self.sums_fd, np.uint32(checksum).tobytes(), self.part.checksums_offset + 4 * row)
            self.part.checksums[row] = checksum
            self.part.checks.state[row] = UNCHECKED  # a new row: what was found of the old one is void
            self.part.checks.reasons.pop(row, None)
        if sums:
            _datasync(self.sums_fd)
        for row, code, _ in self.queued:
            os.pwrite(self.status_fd, bytes([code]), self.part.status_offset + row)
            self.part.status[row] = code
        _datasync(self.status_fd)
        self.queued.clear()

    def close(self) -> None:
        for fd in (self.fd, self.status_fd, self.sums_fd):
            os.close(fd)


UPGRADE_CHUNK = 64  # rows read at a time while adding checksums to an old part


def add_checksums(part: Part) -> int:
    """Give a part written before row checksums (format 1) its ``checksums.npy``, computed once from
    its rows, then mark it format 2; return how many ok rows are implausible.

    An old part's rows were trusted as they are; a row damaged before today cannot be told from a
    good one, except one that is all zeros or not finite: that row gets a checksum that cannot
    match (its crc32 inverted), so the verification that follows reports it as any damaged row.
    The checksums are written (atomically) before the manifest says they exist: a kill in between
    leaves a format-1 part, done again by the next build.
    """
    sums = np.zeros(len(part.track_ids), np.uint32)
    ok = np.flatnonzero(part.status == OK)
    buf = np.empty((UPGRADE_CHUNK, *part.row_shape), DTYPE)
    suspect = 0
    for start in range(0, len(ok), UPGRADE_CHUNK):
        rows = ok[start : start + UPGRADE_CHUNK]
        part.read_rows(rows, buf[: len(rows)])
        for row, data in zip(rows, buf, strict=False):
            bad = implausible(data) is not None
            sums[row] = zlib.crc32(data) ^ (0xFFFFFFFF if bad else 0)
            suspect += bad
    write_bytes_atomic(part.path / CHECKSUMS, _npy_bytes(sums))
    manifest = {
        **part.manifest,
        "format": CACHE_FORMAT,
        "row_checksum": ROW_CHECKSUM,
        "checksums_added": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_bytes_atomic(part.path / MANIFEST, json.dumps(manifest, indent=1).encode())
    part.close()
    return suspect
