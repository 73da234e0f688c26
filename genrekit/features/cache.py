"""The feature cache: every track's log-mel segments in memory-mapped float16 files, built in parallel.

Layout of a cache folder (one folder per front end and parameter set, :func:`cache_folder`)::

    cache_dir/
        part-s0of1-000/          one part: a fixed list of tracks, built by one shard
            manifest.json        front end, its parameters and version, shape, shard, track-list sha1
            track_ids.npy        int64 (rows,), sorted: row r holds track track_ids[r]
            features.npy         float16 (rows, *frontend.row_shape), e.g. (rows, num_segments, n_mels, frames)
            status.npy           uint8 (rows,): 0 pending, 1 ok, 2 defective, 3 missing
            failures.csv         track_id,path,status,reason of every defective or missing track,
                                 and of every truncated track whose decodable part is used
        decoder-s0of1.log        what libsndfile/mpg123 printed while decoding

Building (:func:`ensure_cache`) is resumable: a row's status is written only after its features
are on disk (``fdatasync``), so a build killed at any moment (Ctrl-C, ``kill -9``, power loss)
keeps every finished row and the next run does only the rest. Workers are separate processes
(one BLAS/OpenMP thread each) that write their rows' features themselves and report only a
status, so the parent stays idle; a worker that crashes or hangs on a file (more than
``timeout`` seconds) is killed and replaced, and the file is recorded as defective.

Truncated files (a cut download: decoding stops well before the length the header declares)
follow :mod:`genrekit.features.mel`'s rule, the same in training, evaluation and inference: the part
that decodes is used when it holds ``min_segments`` whole segments (the row is ok, and
failures.csv lists it with status ``truncated``); a shorter part makes the track defective.

Tracks: a part is created for the tracks it was asked for. Asking later for tracks the cache does
not have (a larger subset, new files) **extends** the cache with a new part holding only those;
tracks already present are never recomputed. A missing file is remembered as missing while it
is absent and tried again by the first build that finds it in place; defective files are tried
again only with ``retry_defective=True``. A cache whose manifest disagrees with the
requested front end (:class:`~genrekit.features.frontends.FrontEnd`: another one, other parameters or an older
feature version) is refused with a :class:`~genrekit.errors.CacheError` naming the differences:
features are never mixed. The front end decides what a row holds; the cache only stores rows.

Sharding over several machines: ``ensure_cache(..., shard=(i, n))`` (``--shard i/n``) takes the
tracks whose ``track_id % n == i`` and builds them into parts named ``part-s{i}of{n}-*``. Run
shard ``0/n`` ... ``n-1/n`` on n machines (each into a local cache folder of the same name, or
one shared folder), then put all ``part-*`` folders into one folder (``rsync -a``):
:meth:`FeatureCache.open` reads every part of a folder together. Two builds of the same shard on
one folder at once are refused (a lock file; local file systems only).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import genrekit
from genrekit.errors import AudioDecodeError, CacheError, ConfigError
from genrekit.features.frontends import FrontEnd, as_frontend
from genrekit.features.mel import FeatureParams, NormStats
from genrekit.fileio import write_bytes_atomic
from genrekit.workers import WorkerStartupError, parent_gone, reason_of, run_pool

log = logging.getLogger(__name__)

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

DECODE_TIMEOUT = 120.0  # seconds one file may take before its worker is killed (30 s clips: ~30 ms)
COMMIT_SECONDS = 2.0  # finished rows are committed (data synced, then status) this often
_IN_FLIGHT = 2  # files queued per worker, so a worker never waits for the parent
_WRITE_FAILED = -1  # a worker's answer when it could not write a row (the build stops)


@dataclasses.dataclass(frozen=True)
class Failure:
    """A track without features (``defective``, ``missing``) or built from a cut file (``truncated``)."""

    track_id: int
    path: str
    status: str
    reason: str


@dataclasses.dataclass
class CacheSummary:
    """What :func:`ensure_cache` found and did, for the tracks of its shard."""

    requested: int  # tracks of this shard asked for
    cached: int  # already ok before this run
    done: int  # extracted by this run
    defective: int  # requested tracks that are defective (listed in failures.csv)
    missing: int  # requested tracks whose file does not exist (listed in failures.csv)
    pending: int  # requested but not finished (interrupted, or in another shard's unfinished part)
    seconds: float
    failures_csv: list[Path]
    truncated: int = 0  # ok tracks built from the decodable part of a cut file (in failures.csv)

    @property
    def ok(self) -> int:
        return self.cached + self.done

    def __str__(self) -> str:
        rate = f" ({self.done / self.seconds:.1f} clips/s)" if self.done and self.seconds > 0 else ""
        return (
            f"features: {self.ok} of {self.requested} tracks ready ({self.cached} cached, {self.done} "
            f"extracted now in {self.seconds:.1f} s{rate}); skipped {self.defective} defective, "
            f"{self.missing} missing; {self.pending} pending"
            + (f"; {self.truncated} truncated files used" if self.truncated else "")
        )


def cache_folder(
    cache_root: str | os.PathLike, audio_dir: str | os.PathLike, frontend: FrontEnd | FeatureParams
) -> Path:
    """One cache per audio folder and front end: ``<cache_root>/<audio folder>/<frontend.cache_name()>``.

    Demo and FMA track ids overlap, so caches of different audio folders are kept apart.
    ``frontend`` may be plain :class:`~genrekit.features.mel.FeatureParams` (log-mel segments).
    """
    return Path(cache_root) / Path(audio_dir).resolve().name / as_frontend(frontend).cache_name()


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` to ``(I, N)`` with ``0 <= I < N``; ConfigError otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"shard {text!r} must look like I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise ConfigError(f"shard {text!r} needs 0 <= I < N")
    return index, count


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


class _Part:
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
        with open(path, newline="", encoding="utf-8") as fh:
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


def _part_dirs(cache_dir: Path) -> list[Path]:
    if not cache_dir.is_dir():
        return []
    return sorted(p for p in cache_dir.iterdir() if p.is_dir() and p.name.startswith("part-"))


class FeatureCache:
    """Read access to a built (or partly built) cache folder: every part, checked against ``frontend``.

    Use :meth:`open`; then :meth:`read` features, :meth:`status` of tracks, :attr:`failures`.
    """

    def __init__(self, cache_dir: Path, frontend: FrontEnd | FeatureParams, parts: list[_Part]) -> None:
        self.cache_dir = cache_dir
        self.frontend = as_frontend(frontend)
        self.parts = parts
        # Track id -> (part, row); an ok row wins over another part's non-ok row of the same track.
        ids = [p.track_ids for p in parts]
        part_of = [np.full(len(p.track_ids), k, np.int32) for k, p in enumerate(parts)]
        rows = [np.arange(len(p.track_ids), dtype=np.int64) for p in parts]
        codes = [p.status for p in parts]
        if parts:
            all_ids, all_parts = np.concatenate(ids), np.concatenate(part_of)
            all_rows, all_codes = np.concatenate(rows), np.concatenate(codes)
        else:
            all_ids = all_parts = all_rows = all_codes = np.zeros(0, np.int64)
        order = np.lexsort((all_codes != OK, all_ids))
        all_ids, all_parts, all_rows, all_codes = (
            a[order] for a in (all_ids, all_parts, all_rows, all_codes)
        )
        first = np.ones(len(all_ids), bool)
        first[1:] = all_ids[1:] != all_ids[:-1]
        self._ids = all_ids[first].astype(np.int64)
        self._part = all_parts[first].astype(np.int32)
        self._row = all_rows[first].astype(np.int64)
        self._code = all_codes[first].astype(np.uint8)

    @classmethod
    def open(cls, cache_dir: str | os.PathLike, frontend: FrontEnd | FeatureParams) -> FeatureCache:
        """Open every part of ``cache_dir``, checked against ``frontend`` (or plain FeatureParams).

        Raises
        ------
        CacheError
            When the folder holds no cache, or a part was built with other parameters.
        """
        cache_dir = Path(cache_dir)
        dirs = _part_dirs(cache_dir)
        if not dirs:
            raise CacheError(
                f"no feature cache at {cache_dir}; build it first (python balanced_trainer.py --extract_only)"
            )
        frontend = as_frontend(frontend)
        return cls(cache_dir, frontend, [_Part(d, frontend) for d in dirs])

    @property
    def track_ids(self) -> np.ndarray:
        """Sorted ids of every track whose features are ready."""
        return self._ids[self._code == OK]

    def __len__(self) -> int:
        return int((self._code == OK).sum())

    def __contains__(self, track_id: object) -> bool:
        i = np.searchsorted(self._ids, track_id)
        return bool(i < len(self._ids) and self._ids[i] == track_id and self._code[i] == OK)

    def _lookup(self, track_ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        idx = np.searchsorted(self._ids, ids)
        idx_c = np.minimum(idx, max(len(self._ids) - 1, 0))
        if not len(self._ids):
            return idx_c, np.zeros(len(ids), bool)
        found = (idx < len(self._ids)) & (self._ids[idx_c] == ids)
        return idx_c, found

    def status(self, track_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Each track's status: ``ok``, ``defective``, ``missing``, ``pending`` or ``absent`` (in no part)."""
        idx, found = self._lookup(track_ids)
        names = np.array([STATUS_NAMES[c] for c in range(4)] + [ABSENT], dtype=object)
        codes = np.where(found, self._code[idx] if len(self._ids) else 4, 4)
        return names[codes]

    def available(self, track_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The ids among ``track_ids`` whose features are ready, in the given order."""
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        idx, found = self._lookup(ids)
        ok = found & (self._code[idx] == OK) if len(self._ids) else found
        return ids[ok]

    @property
    def failures(self) -> list[Failure]:
        """Defective and missing tracks of every part, with their reasons (from the parts' failures.csv)."""
        merged: dict[int, Failure] = {}
        for part in self.parts:
            merged.update(part.failures())
        return [f for tid, f in sorted(merged.items()) if tid not in self]

    @property
    def truncated(self) -> list[Failure]:
        """Tracks whose features come from the decodable part of a cut file (status ``truncated``)."""
        merged: dict[int, Failure] = {}
        for part in self.parts:
            merged.update(part.failures())
        return [f for tid, f in sorted(merged.items()) if tid in self and f.status == TRUNCATED]

    def read(self, track_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Features of ``track_ids`` in their order, float16 ``(n, *frontend.row_shape)``.

        Rows are read sorted by position (consecutive rows in one read), which keeps reads large
        when the cache does not fit in the page cache; ask for blocks of tracks, not one at a time.

        Raises
        ------
        CacheError
            When a track has no features (not ok), naming it and its status.
        """
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        idx, found = self._lookup(ids)
        bad = ~found | (self._code[idx] != OK) if len(self._ids) else ~found
        if bad.any():
            status = self.status(ids[bad][:5])
            which = ", ".join(f"{t} ({s})" for t, s in zip(ids[bad][:5].tolist(), status, strict=True))
            raise CacheError(
                f"{int(bad.sum())} requested tracks have no features in {self.cache_dir}: {which}"
                f"{' ...' if bad.sum() > 5 else ''}; filter with FeatureCache.available() or extend the cache"
            )
        out = np.empty((len(ids), *self.parts[0].row_shape) if self.parts else (0,), DTYPE)
        parts, rows = self._part[idx], self._row[idx]
        order = np.lexsort((rows, parts))
        sorted_out = np.empty_like(out)
        start = 0
        for k in np.unique(parts):
            n = int((parts == k).sum())
            self.parts[k].read_rows(rows[order[start : start + n]], sorted_out[start : start + n])
            start += n
        out[order] = sorted_out
        return out

    def iter_chunks(
        self, track_ids: Sequence[int] | np.ndarray, chunk_rows: int = 128
    ) -> Iterator[np.ndarray]:
        """:meth:`read` over ``track_ids`` in chunks of ``chunk_rows`` tracks."""
        ids = np.asarray(track_ids, np.int64).reshape(-1)
        for i in range(0, len(ids), chunk_rows):
            yield self.read(ids[i : i + chunk_rows])

    def norm_stats(self, track_ids: Sequence[int] | np.ndarray, chunk_rows: int = 128) -> NormStats:
        """The front end's normalization statistics over these tracks (the training split), streamed
        in chunks: per-mel-band mean and std for log-mel segments."""
        return self.frontend.norm_stats(
            self.iter_chunks(np.sort(np.asarray(track_ids, np.int64)), chunk_rows)
        )

    def close(self) -> None:
        for part in self.parts:
            part.close()

    def __enter__(self) -> FeatureCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- Building ------------------------------------------------------------------------------------


def _create_part(cache_dir: Path, name: str, frontend: FrontEnd, track_ids: np.ndarray, shard) -> Path:
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


class _Writer:
    """Writes finished rows of one part; commits data before status, so no half row is ever 'ok'."""

    def __init__(self, part: _Part) -> None:
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
            write_bytes_atomic(self.part.path / FAILURES, text.getvalue().encode("utf-8"))
            self.failures_dirty = False
        for row, code in self.queued:
            os.pwrite(self.status_fd, bytes([code]), self.part.status_offset + row)
            self.part.status[row] = code
        os.fdatasync(self.status_fd) if hasattr(os, "fdatasync") else os.fsync(self.status_fd)
        self.queued.clear()

    def close(self) -> None:
        os.close(self.fd)
        os.close(self.status_fd)


def _write_row(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while len(view):  # pwrite may write less than asked
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


_FDS: dict[str, int] = {}  # in a worker: the features files it has open, by part


def _extract_row(task: tuple, frontend: FrontEnd, parts: dict[str, tuple]) -> tuple[int, str]:
    """In a worker: decode one file and write an ok row's features into its part's file itself;
    return (code, reason) ("" when ok; code _WRITE_FAILED when the row could not be written).

    ``parts`` maps a part name to (features file, data offset, row bytes). Writing here rather than
    sending 160 KiB per clip to the parent keeps the parent idle (it shares the cores with the
    workers); the parent commits (``fdatasync``, then status) only rows a worker reported written.
    """
    part, row, _, path = task
    if not os.path.lexists(path):
        return MISSING, "file not found"
    try:
        notes: list[str] = []
        data = frontend.load(path, notes=notes).astype(DTYPE).tobytes()
        answer = (OK, "; ".join(notes))
    except AudioDecodeError as exc:
        answer = (DEFECTIVE, reason_of(exc, path))
    except Exception as exc:  # one odd file must never stop a build of 100k
        answer = (DEFECTIVE, f"unexpected {type(exc).__name__}: {reason_of(exc, path)}")
    if parent_gone():  # the build was killed: write nothing more (a new build may run)
        os._exit(0)
    if answer[0] == OK:
        features, offset, row_nbytes = parts[part]
        try:
            if len(data) != row_nbytes:
                raise ValueError(f"row of {len(data)} bytes for {row_nbytes}")
            if part not in _FDS:
                _FDS[part] = os.open(features, os.O_WRONLY)
            _write_row(_FDS[part], data, offset + row * row_nbytes)
        except (OSError, ValueError) as exc:  # disk full, I/O error: not the audio file's fault
            answer = (_WRITE_FAILED, f"cannot write features to {features}: {exc}")
    return answer


def _resolve_workers(workers: int | None) -> int:
    if workers:
        return workers
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _run_pool(
    tasks: deque,
    writers: dict[str, _Writer],
    frontend: FrontEnd,
    workers: int,
    stderr_path: Path,
    progress: bool,
    timeout: float,
    commit_seconds: float,
) -> int:
    """Process ``tasks`` ((part name, row, track id, path)) in worker processes; return rows done ok.

    A worker that crashes or hangs on a file is killed and replaced; the file is defective.
    """
    from tqdm.auto import tqdm

    parts = {
        name: (str(w.part.path / FEATURES), w.part.data_offset, w.part.row_nbytes)
        for name, w in writers.items()
    }
    bar = tqdm(total=len(tasks), unit="clip", disable=not progress, smoothing=0.05, dynamic_ncols=True)
    done_ok = bad = 0
    last_commit = time.monotonic()

    def commit_now_and_then() -> None:
        nonlocal last_commit
        if time.monotonic() - last_commit >= commit_seconds:
            for writer in writers.values():
                writer.commit()
            last_commit = time.monotonic()

    try:
        outcomes = run_pool(
            _extract_row,
            tasks,
            workers=workers,
            args=(frontend, parts),
            timeout=timeout,
            stderr_path=stderr_path,
            in_flight=_IN_FLIGHT,
            tick=commit_now_and_then,
            first_item_allowance=float(getattr(frontend, "startup_seconds", 0.0)),  # may load a model
            crashed_reason="decoder crashed (worker exit code {exitcode})",
            timeout_reason="decoding took more than {timeout:g} s (hang); worker killed",
        )
        for outcome in outcomes:
            part, row, tid, path = outcome.item
            code, reason = outcome.value if outcome.ok else (DEFECTIVE, outcome.reason)
            if code == _WRITE_FAILED:
                raise CacheError(reason)
            writers[part].put(row, tid, path, code, reason)
            if code == OK:
                done_ok += 1
            else:
                bad += 1
                bar.set_postfix(defective_or_missing=bad, refresh=False)
            bar.update(1)
    except WorkerStartupError as exc:
        raise CacheError(
            f"feature worker processes die before decoding anything ({exc.why}); if you build the "
            'cache from your own script, put its code under `if __name__ == "__main__":` '
            f"(workers are spawned and import the main script); details in {stderr_path}"
        ) from None
    finally:
        for writer in writers.values():
            writer.commit()
        bar.close()
    return done_ok


@contextlib.contextmanager
def _shard_lock(cache_dir: Path, shard: tuple[int, int], exclusive: bool = True) -> Iterator[None]:
    """Hold a shard's build lock: exclusive to build, shared to only check that all is built."""
    path = cache_dir / f".build-s{shard[0]}of{shard[1]}.lock"
    fh = open(path, "a+")
    try:
        try:
            import fcntl

            mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            fcntl.flock(fh.fileno(), mode | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - Windows: no lock
            pass
        except OSError:
            raise CacheError(
                f"another build of shard {shard[0]}/{shard[1]} is running on {cache_dir}; wait for it to end"
            ) from None
        yield
    finally:
        fh.close()


def ensure_cache(
    cache_dir: str | os.PathLike,
    items: Sequence[tuple[int, str | os.PathLike]],
    frontend: FrontEnd | FeatureParams,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    retry_defective: bool = False,
    timeout: float = DECODE_TIMEOUT,
    commit_seconds: float = COMMIT_SECONDS,
) -> CacheSummary:
    """Build the features of ``items`` that the cache does not have yet; keep everything else.

    Parameters
    ----------
    cache_dir : str or PathLike
        The cache folder (created if needed); one folder per parameter set.
    items : sequence of (int, path)
        Track ids and their audio files (e.g. ``(tid, fma.audio_path(audio_dir, tid))``).
    frontend : FrontEnd or FeatureParams
        What turns audio into features (plain FeatureParams: log-mel segments); a cache built by
        another front end or with other parameters is refused.
    workers : int, optional
        Worker processes; ``None`` or 0 = every usable CPU core (``settings.num_workers``).
    shard : (int, int), optional
        ``(i, n)``: only the tracks with ``track_id % n == i``, into parts of their own.
    progress : bool
        Show a tqdm bar (clips/s, ETA).
    retry_defective : bool
        Try files recorded as defective again (missing files are tried again once they exist).
    timeout : float
        Seconds one file may take before its worker is killed and the file marked defective.
    commit_seconds : float
        Finished rows are committed (features synced to disk, then their status) this often; a
        killed build loses at most this much work.

    Returns
    -------
    CacheSummary
        Counts for the requested tracks; also logged, with the failures CSVs.

    Raises
    ------
    CacheError
        When the folder holds a cache of other parameters, or another build of the shard runs.
    """
    start = time.monotonic()
    frontend = as_frontend(frontend)
    cache_dir = Path(cache_dir)
    index, count = shard or (0, 1)
    if not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count} needs 0 <= I < N")
    shard = (index, count)
    paths: dict[int, str] = {}
    for tid, path in items:
        tid = int(tid)
        if tid % count != index:
            continue
        if tid in paths and paths[tid] != str(path):
            raise ConfigError(f"track {tid} is given twice, with paths {paths[tid]} and {path}")
        paths[tid] = str(path)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # First a shared lock: readers that find everything built (the workers of a multi-worker
    # training, all opening one cache) do not block each other; work needs the exclusive lock.
    for exclusive in (False, True):
        with _shard_lock(cache_dir, shard, exclusive):
            prefix = f"part-s{index}of{count}-"
            if exclusive:
                for stale in cache_dir.glob(f".tmp-{prefix}*"):  # left by a build killed creating a part
                    shutil.rmtree(stale, ignore_errors=True)
            parts = [_Part(d, frontend) for d in _part_dirs(cache_dir)]
            covered = np.concatenate([p.track_ids for p in parts]) if parts else np.zeros(0, np.int64)
            wanted = np.array(sorted(paths), np.int64)
            new_ids = np.setdiff1d(wanted, covered)
            if len(new_ids):
                if not exclusive:
                    continue  # work to do: again, as the shard's only builder
                numbers = [int(p.name.rsplit("-", 1)[1]) for p in parts if p.name.startswith(prefix)]
                name = f"{prefix}{max(numbers, default=-1) + 1:03d}"
                parts.append(_Part(_create_part(cache_dir, name, frontend, new_ids, shard), frontend))

            cache_before = FeatureCache(cache_dir, frontend, parts)
            before = cache_before.status(wanted)
            cached = int((before == "ok").sum())
            redo = {"pending", "missing"} | ({"defective"} if retry_defective else set())
            tasks: deque = deque()
            for part in parts:
                if part.shard != shard:
                    continue  # another shard's part: its builder owns it
                todo = np.isin(part.status, [c for c, n in STATUS_NAMES.items() if n in redo])
                for row in np.flatnonzero(todo):
                    tid = int(part.track_ids[row])
                    if tid not in paths:
                        continue
                    if part.status[row] == MISSING and not os.path.lexists(paths[tid]):
                        continue  # still absent: stays missing, without a worker started for it
                    tasks.append((part.name, int(row), tid, paths[tid]))
            if tasks and not exclusive:
                continue
            writers = {p.name: _Writer(p) for p in parts if p.shard == shard}
            done = 0
            try:
                if tasks:
                    frontend.prepare()  # e.g. a backbone's weights, fetched once, not by every worker
                    n_workers = _resolve_workers(workers)
                    log.info(
                        "extracting features of %d tracks (%d already cached) with %d workers into %s",
                        len(tasks),
                        cached,
                        n_workers,
                        cache_dir,
                    )
                    stderr_path = cache_dir / f"decoder-s{index}of{count}.log"
                    done = _run_pool(
                        tasks, writers, frontend, n_workers, stderr_path, progress, timeout, commit_seconds
                    )
            finally:
                for writer in writers.values():
                    writer.close()
            after = FeatureCache(cache_dir, frontend, parts).status(wanted)
            csvs = [p.path / FAILURES for p in parts if (p.path / FAILURES).is_file()]
            cut = FeatureCache(cache_dir, frontend, parts).truncated
            summary = CacheSummary(
                requested=len(wanted),
                cached=cached,
                done=done,
                defective=int((after == "defective").sum()),
                missing=int((after == "missing").sum()),
                pending=int((after == "pending").sum()),
                seconds=time.monotonic() - start,
                failures_csv=csvs,
                truncated=int(np.isin([f.track_id for f in cut], wanted).sum()),
            )
        break
    log.info("%s in %s", summary, cache_dir)
    if summary.defective or summary.missing:
        log.warning(
            "%d defective and %d missing files are left out; listed in %s",
            summary.defective,
            summary.missing,
            ", ".join(str(c) for c in csvs),
        )
    return summary
