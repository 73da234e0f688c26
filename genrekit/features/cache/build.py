"""Building a feature cache: :func:`ensure_cache` extracts, in worker processes, what a cache lacks."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from genrekit.engine import Engine, get_engine
from genrekit.errors import AudioDecodeError, CacheError, ConfigError
from genrekit.features.audio_files import decoding_pool
from genrekit.features.cache.parts import (
    DAMAGED,
    DEFECTIVE,
    DTYPE,
    FAILURES,
    FEATURES,
    MISSING,
    OK,
    STATUS_NAMES,
    Damage,
    Part,
    PartWriter,
    add_checksums,
    create_part,
    part_dirs,
)
from genrekit.features.cache.reader import FeatureCache
from genrekit.features.frontends import FrontEnd, as_frontend
from genrekit.features.params import FeatureParams
from genrekit.workers import Outcome, WorkerStartupError, parent_gone, reason_of

log = logging.getLogger(__name__)

DECODE_TIMEOUT = 120.0  # seconds one file may take before its worker is killed (30 s clips: ~30 ms)
COMMIT_SECONDS = 2.0  # finished rows are committed (data synced, then status) this often
_WRITE_FAILED = -1  # a worker's answer when it could not write a row (the build stops)


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
    damaged_found: int = 0  # ok rows of requested tracks found damaged by this run (recomputed or left out)
    damaged: int = 0  # requested tracks left out as damaged (their audio is not there; in failures.csv)

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
            + (f"; {self.damaged_found} damaged rows found" if self.damaged_found else "")
            + (f"; {self.damaged} damaged rows left out" if self.damaged else "")
        )


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` to ``(I, N)`` with ``0 <= I < N``; ConfigError otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"shard {text!r} must look like I/N, e.g. 0/4") from None
    if not 0 <= index < count:
        raise ConfigError(f"shard {text!r} needs 0 <= I < N")
    return index, count


def _write_row(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while len(view):  # pwrite may write less than asked
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


_FDS: dict[str, int] = {}  # in a worker: the features files it has open, by path


def _sync_rows() -> None:
    """In a worker on another machine (Ray): put the rows written so far on the shared disk and
    close their files, before the driver commits them (its own fdatasync covers only its node)."""
    while _FDS:
        _, fd = _FDS.popitem()
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)


def _extract_row(task: tuple, frontend: FrontEnd, parts: dict[str, tuple]) -> tuple[int, str, int]:
    """In a worker: decode one file and write an ok row's features into its part's file itself;
    return (code, reason, crc32 of the row written) ("" when ok; code _WRITE_FAILED when the row
    could not be written). Features that are not finite make the file defective: never cached.

    ``parts`` maps a part name to (features file, data offset, row bytes). Writing here rather than
    sending 160 KiB per clip to the parent keeps the parent idle (it shares the cores with the
    workers); the parent commits (``fdatasync``, then status) only rows a worker reported written.
    """
    part, row, _, path = task
    if not os.path.lexists(path):
        return MISSING, "file not found", 0
    try:
        notes: list[str] = []
        values = frontend.load(path, notes=notes).astype(DTYPE)
        nonfinite = values.size - int(np.count_nonzero(np.isfinite(values)))
        data = values.tobytes()
        answer = (DEFECTIVE, f"features not finite ({nonfinite} NaN or inf values)", 0)
        if not nonfinite:
            answer = (OK, "; ".join(notes), zlib.crc32(data))
    except AudioDecodeError as exc:
        answer = (DEFECTIVE, reason_of(exc, path), 0)
    except Exception as exc:  # one odd file must never stop a build of 100k
        answer = (DEFECTIVE, f"unexpected {type(exc).__name__}: {reason_of(exc, path)}", 0)
    if parent_gone():  # the build was killed: write nothing more (a new build may run)
        os._exit(0)
    if answer[0] == OK:
        features, offset, row_nbytes = parts[part]
        try:
            if len(data) != row_nbytes:
                raise ValueError(f"row of {len(data)} bytes for {row_nbytes}")
            if features not in _FDS:
                _FDS[features] = os.open(features, os.O_WRONLY)
            _write_row(_FDS[features], data, offset + row * row_nbytes)
        except (OSError, ValueError) as exc:  # disk full, I/O error: not the audio file's fault
            answer = (_WRITE_FAILED, f"cannot write features to {features}: {exc}", 0)
    return answer


@dataclasses.dataclass(frozen=True)
class _BuildOptions:
    """How :func:`ensure_cache` runs its workers (its parameters of the same names)."""

    workers: int | None
    progress: bool
    timeout: float
    commit_seconds: float
    engine: Engine


def _periodic_commit(writers: dict[str, PartWriter], every: float) -> Callable[[], None]:
    """A tick for the pool: commit every writer's finished rows once ``every`` seconds have passed."""
    last = time.monotonic()

    def tick() -> None:
        nonlocal last
        if time.monotonic() - last >= every:
            for writer in writers.values():
                writer.commit()
            last = time.monotonic()

    return tick


def _record(outcome: Outcome, writers: dict[str, PartWriter]) -> int:
    """Queue one finished task's row in its part's writer; return its status code."""
    part, row, tid, path = outcome.item
    code, reason, checksum = outcome.value if outcome.ok else (DEFECTIVE, outcome.reason, 0)
    if code == _WRITE_FAILED:
        raise CacheError(reason)
    writers[part].put(row, tid, path, code, reason, checksum)
    return code


def _run_pool(
    tasks: deque,
    writers: dict[str, PartWriter],
    frontend: FrontEnd,
    workers: int,
    stderr_path: Path,
    options: _BuildOptions,
) -> int:
    """Process ``tasks`` ((part name, row, track id, path)) in worker processes; return rows done ok.

    A worker that crashes or hangs on a file is killed and replaced; the file is defective.
    """
    from tqdm.auto import tqdm

    parts = {
        name: (str(w.part.path / FEATURES), w.part.data_offset, w.part.row_nbytes)
        for name, w in writers.items()
    }
    bar = tqdm(
        total=len(tasks), unit="clip", disable=not options.progress, smoothing=0.05, dynamic_ncols=True
    )
    done_ok = bad = 0
    try:
        outcomes = decoding_pool(
            _extract_row,
            tasks,
            frontend,
            engine=options.engine,
            finish=_sync_rows,
            workers=workers,
            args=(frontend, parts),
            timeout=options.timeout,
            stderr_path=stderr_path,
            tick=_periodic_commit(writers, options.commit_seconds),
            crashed_reason="decoder crashed (worker exit code {exitcode})",
        )
        for outcome in outcomes:
            if _record(outcome, writers) == OK:
                done_ok += 1
            else:
                bad += 1
                bar.set_postfix(defective_or_missing=bad, refresh=False)
            bar.update(1)
    except WorkerStartupError as exc:
        if options.engine.name != "local":  # the engine's own words (Ray: what each node needs)
            raise CacheError(f"feature cache {stderr_path.parent}: {exc}") from None
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
    engine: str | Engine | None = None,
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
    engine : str or Engine, optional
        Where the workers run (:mod:`genrekit.engine`): ``"local"`` (default, this machine's
        cores) or ``"ray"`` (a Ray cluster whose nodes all see ``cache_dir`` and the audio at the
        same paths; ``workers`` then counts Ray workers, 0 = every CPU of the cluster). The cache
        is the same either way.

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
    shard = _check_shard(shard)
    paths = _shard_paths(items, shard)
    options = _BuildOptions(workers, progress, timeout, commit_seconds, get_engine(engine))
    cache_dir.mkdir(parents=True, exist_ok=True)
    # First a shared lock: readers that find everything built (the workers of a multi-worker
    # training, all opening one cache) do not block each other; work needs the exclusive lock.
    for exclusive in (False, True):
        with _shard_lock(cache_dir, shard, exclusive):
            plan = _plan(cache_dir, frontend, shard, paths, retry_defective, exclusive)
            if plan is None:
                continue  # work to do: again, as the shard's only builder
            done = _extract(cache_dir, frontend, shard, plan, options)
            summary = _summary(cache_dir, frontend, plan, done, time.monotonic() - start)
        break
    log.info("%s in %s", summary, cache_dir)
    if summary.defective or summary.missing or summary.damaged:
        damaged = f" and {summary.damaged} damaged rows" if summary.damaged else ""
        log.warning(
            "%d defective and %d missing files%s are left out; listed in %s",
            summary.defective,
            summary.missing,
            damaged,
            ", ".join(str(c) for c in summary.failures_csv),
        )
    return summary


def _check_shard(shard: tuple[int, int] | None) -> tuple[int, int]:
    index, count = shard or (0, 1)
    if not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count} needs 0 <= I < N")
    return index, count


def _shard_paths(items: Sequence[tuple[int, str | os.PathLike]], shard: tuple[int, int]) -> dict[int, str]:
    """Track id -> audio path of the items in ``shard``; ConfigError for a track given two paths."""
    index, count = shard
    paths: dict[int, str] = {}
    for tid, path in items:
        tid = int(tid)
        if tid % count != index:
            continue
        if tid in paths and paths[tid] != str(path):
            raise ConfigError(f"track {tid} is given twice, with paths {paths[tid]} and {path}")
        paths[tid] = str(path)
    return paths


@dataclasses.dataclass
class _Plan:
    """A build's parts (a new one holds the tracks no part had), requested tracks and rows to do."""

    parts: list[Part]
    wanted: np.ndarray  # sorted ids of the shard's requested tracks
    cached: int  # of those, ok before this build
    tasks: deque  # (part name, row, track id, path) to extract
    damaged_found: int = 0  # ok rows of those found damaged (set aside, recomputed where the audio is)


def _plan(
    cache_dir: Path,
    frontend: FrontEnd,
    shard: tuple[int, int],
    paths: dict[int, str],
    retry_defective: bool,
    exclusive: bool,
) -> _Plan | None:
    """What a build under the shard's lock does; None when there is work but the lock is only shared."""
    prefix = f"part-s{shard[0]}of{shard[1]}-"
    if exclusive:
        for stale in cache_dir.glob(f".tmp-{prefix}*"):  # left by a build killed creating a part
            shutil.rmtree(stale, ignore_errors=True)
    parts = [Part(d, frontend) for d in part_dirs(cache_dir)]
    if any(p.checksums is None for p in parts):
        if not exclusive:
            return None
        parts = _add_checksums(cache_dir, frontend, shard, parts)
    covered = np.concatenate([p.track_ids for p in parts]) if parts else np.zeros(0, np.int64)
    wanted = np.array(sorted(paths), np.int64)
    new_ids = np.setdiff1d(wanted, covered)
    if len(new_ids):
        if not exclusive:
            return None
        numbers = [int(p.name.rsplit("-", 1)[1]) for p in parts if p.name.startswith(prefix)]
        name = f"{prefix}{max(numbers, default=-1) + 1:03d}"
        parts.append(Part(create_part(cache_dir, name, frontend, new_ids, shard), frontend))
    damaged = _check_rows(cache_dir, frontend, shard, parts, paths, exclusive)
    if damaged is None:
        return None
    before = FeatureCache(cache_dir, frontend, parts).status(wanted)
    cached = int((before == "ok").sum())
    tasks = _tasks(parts, shard, paths, retry_defective)
    if tasks and not exclusive:
        return None
    return _Plan(parts, wanted, cached, tasks, len(damaged))


def _add_checksums(
    cache_dir: Path, frontend: FrontEnd, shard: tuple[int, int], parts: list[Part]
) -> list[Part]:
    """Give the parts written before row checksums theirs, once, each under its shard's lock.

    Upgraded, not refused: a cache costs hours of decoding, its rows were committed (synced before
    their status) as now, and one read of them is minutes at most.
    """
    for part in parts:
        if part.checksums is not None:
            continue
        log.warning(
            "feature cache part %s has no row checksums (written by an older genrekit): computing them "
            "once from its %d ok rows; rows damaged before now are found only if all zeros or not finite",
            part.path,
            int((part.status == OK).sum()),
        )
        lock = contextlib.nullcontext() if part.shard == shard else _shard_lock(cache_dir, part.shard)
        with lock:
            add_checksums(part)
    return [Part(p.path, frontend) for p in parts]


def _check_rows(
    cache_dir: Path,
    frontend: FrontEnd,
    shard: tuple[int, int],
    parts: list[Part],
    paths: dict[int, str],
    exclusive: bool,
) -> list[Damage] | None:
    """Verify the requested tracks' ok rows (each once per process) and set the damaged ones aside.

    A damaged row of the shard's own parts becomes ``damaged`` on disk, listed in failures.csv
    (recomputed by this build when its audio is there); one of another shard's part is left out of
    this run. Each is logged: cache part, track, what is wrong, what is done. None when that needs
    the exclusive lock.
    """
    cache = FeatureCache(cache_dir, frontend, parts)
    cache.verify(np.array(sorted(paths), np.int64))
    damaged = [d for d in cache.damage() if d.track_id in paths]
    own = [d for d in damaged if d.part.shard == shard]
    if own and not exclusive:
        return None
    for part in {id(d.part): d.part for d in own}.values():
        writer = PartWriter(part)
        try:
            for d in own:
                if d.part is part:
                    writer.set_aside(d, paths[d.track_id])
            writer.commit()
        finally:
            writer.close()
    for d in damaged:
        audio = paths[d.track_id]
        if d.part.shard != shard:
            what = f"left out of this run: shard {d.part.shard[0]}/{d.part.shard[1]}'s build recomputes it"
        elif os.path.lexists(audio):
            what = f"recomputing it from {audio}"
        else:
            what = f"left out: its audio {audio} is not there (listed in {d.part.path / FAILURES})"
        log.warning("%s; %s", d.line(), what)
    return damaged


def _tasks(parts: list[Part], shard: tuple[int, int], paths: dict[int, str], retry_defective: bool) -> deque:
    """The rows of the shard's parts still to extract: pending, missing files now present, damaged
    rows whose file is there, and defective ones when ``retry_defective``."""
    redo = {"pending", "missing", "damaged"} | ({"defective"} if retry_defective else set())
    tasks: deque = deque()
    for part in parts:
        if part.shard != shard:
            continue  # another shard's part: its builder owns it
        todo = np.isin(part.status, [c for c, n in STATUS_NAMES.items() if n in redo])
        for row in np.flatnonzero(todo):
            tid = int(part.track_ids[row])
            if tid not in paths:
                continue
            if part.status[row] in (MISSING, DAMAGED) and not os.path.lexists(paths[tid]):
                continue  # still absent: stays as it is, without a worker started for it
            tasks.append((part.name, int(row), tid, paths[tid]))
    return tasks


def _extract(
    cache_dir: Path, frontend: FrontEnd, shard: tuple[int, int], plan: _Plan, options: _BuildOptions
) -> int:
    """Extract the plan's tasks into the shard's parts; return the rows done ok."""
    writers = {p.name: PartWriter(p) for p in plan.parts if p.shard == shard}
    try:
        if not plan.tasks:
            return 0
        frontend.prepare()  # e.g. a backbone's weights, fetched once, not by every worker
        n_workers = options.engine.workers(options.workers)
        log.info(
            "extracting features of %d tracks (%d already cached) with %d workers (%s) into %s",
            len(plan.tasks),
            plan.cached,
            n_workers,
            options.engine.describe(),
            cache_dir,
        )
        stderr_path = cache_dir / f"decoder-s{shard[0]}of{shard[1]}.log"
        return _run_pool(plan.tasks, writers, frontend, n_workers, stderr_path, options)
    finally:
        for writer in writers.values():
            writer.close()


def _summary(cache_dir: Path, frontend: FrontEnd, plan: _Plan, done: int, seconds: float) -> CacheSummary:
    cache = FeatureCache(cache_dir, frontend, plan.parts)
    after = cache.status(plan.wanted)
    return CacheSummary(
        requested=len(plan.wanted),
        cached=plan.cached,
        done=done,
        defective=int((after == "defective").sum()),
        missing=int((after == "missing").sum()),
        pending=int((after == "pending").sum()),
        seconds=seconds,
        failures_csv=[p.path / FAILURES for p in plan.parts if (p.path / FAILURES).is_file()],
        truncated=int(np.isin([f.track_id for f in cache.truncated], plan.wanted).sum()),
        damaged_found=plan.damaged_found,
        damaged=int((after == "damaged").sum()),
    )
