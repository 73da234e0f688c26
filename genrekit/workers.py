"""The toolkit's one worker pool (:func:`run_pool`), and what its processes share: one
BLAS/OpenMP thread each, and quiet decoders.

Decoding workers (the feature cache, folder inference) run one per core; a BLAS thread pool per
worker would only oversubscribe the cores. Native decoders (libsndfile's mpg123) print notes on
corrupt frames straight to file descriptor 2 ("Giving up searching valid MPEG header"); every
failure is reported by the toolkit anyway, so :func:`native_stderr_to` keeps them off the
console in every mode (in-process, workers), unless asked for (``--verbose``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import connection
from pathlib import Path
from typing import Any

from genrekit.errors import GenrekitError

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def redirect_native_stderr(path: str | os.PathLike = os.devnull) -> None:
    """From now on, what this process writes on file descriptor 2 is appended to ``path``
    (for a worker process, whose own messages are all reported to its parent)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)


@contextlib.contextmanager
def native_stderr_to(path: str | os.PathLike | None = os.devnull) -> Iterator[None]:
    """While inside, file descriptor 2 (what C libraries print) goes to ``path``; None: unchanged.

    Keep the block short (one file's decoding): Python's own stderr writes inside it go there too.
    """
    if path is None:
        yield
        return
    with contextlib.suppress(ValueError, OSError):
        sys.stderr.flush()
    saved = os.dup(2)
    try:
        redirect_native_stderr(path)
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def one_thread_env() -> Iterator[None]:
    """Children started inside inherit one BLAS/OpenMP thread (read when they import numpy)."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: "1" for k in THREAD_ENV})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- The worker pool ------------------------------------------------------------------------------

_READY = "ready"  # a worker's first message: it started (imported the main module) and waits for work
_PARENT: int | None = None  # in a worker: the pid of the process that started it


class WorkerStartupError(GenrekitError):
    """Worker processes die before they can take any work (e.g. an unguarded main script)."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What became of one item of :func:`run_pool`.

    ``failure`` is None when ``func`` returned ``value``; else ``"error"`` (``func`` raised:
    ``reason`` is ``unexpected <type>: <message>``), ``"crashed"`` (the worker process died on
    this item; ``exitcode``) or ``"timeout"`` (the item took more than ``timeout`` seconds; its
    worker was killed). The pool goes on with a fresh worker after a crash or a timeout.
    """

    index: int  # the item's position in the input
    item: Any
    value: Any = None
    failure: str | None = None
    reason: str = ""
    exitcode: int | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def reason_of(exc: BaseException, path: str | os.PathLike) -> str:
    """An error's cause without the path its message starts with (failures are keyed by file)."""
    text = str(exc)
    for prefix in (f"{path}: ", f"{Path(path)}: "):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


def parent_gone() -> bool:
    """In a pool worker: whether the process that started it has ended (then write nothing more)."""
    return _PARENT is not None and os.getppid() != _PARENT


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def limit_threads() -> None:
    """One BLAS/OpenMP thread in this process, also for libraries already loaded."""
    for key in THREAD_ENV:
        os.environ[key] = "1"
    with contextlib.suppress(Exception):
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)


def one_thread_here() -> Callable[[], contextlib.AbstractContextManager[Any]]:
    """``limit``: ``with limit():`` runs its block on one BLAS/OpenMP thread in this process, as a
    pool worker runs (:func:`limit_threads`), and restores the thread counts after.

    In-process work must compute what a worker computes: OpenBLAS with several threads splits a
    product into per-thread blocks, and some of its CPU kernels (the AVX-512 ones OpenBLAS picks on
    Intel Xeons) round the rows at a block's edge differently, so on a 2-core Xeon ``workers=1``
    and the pool wrote different demo MP3s from the same seed. The native libraries loaded now are
    looked up once here (about 15 ms with TensorFlow loaded); each ``limit()`` then costs
    microseconds.
    """
    try:
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController()
    except Exception:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext
    return lambda: controller.limit(limits=1)


def _watch_parent(parent: int) -> None:
    # A worker whose parent was killed (SIGKILL, OOM) must not go on working (or wait) for nobody.
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)


def _worker_main(conn: Any, func: Callable[..., Any], args: tuple, stderr_path: str | None) -> None:
    """A pool worker: answer each ``(key, item)`` with ``(key, True, func(item, *args))`` or
    ``(key, False, reason)``; end on ``None``, when the pipe closes or when the parent dies."""
    global _PARENT
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if stderr_path is not None:  # native decoders' notes: out of the progress bar
        redirect_native_stderr(stderr_path)
    limit_threads()
    _PARENT = os.getppid()
    threading.Thread(target=_watch_parent, args=(_PARENT,), daemon=True).start()
    with contextlib.suppress(OSError):
        conn.send(_READY)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if task is None:
            return
        key, item = task
        try:
            answer = (key, True, func(item, *args))
        except Exception as exc:  # one odd item must never stop the others
            answer = (key, False, f"unexpected {type(exc).__name__}: {exc}")
        try:
            conn.send(answer)
        except OSError:  # the parent is gone
            return
        except Exception as exc:  # a value that does not pickle
            conn.send((key, False, f"unexpected {type(exc).__name__}: {exc}"))


class _Worker:
    def __init__(self, ctx: Any, func: Callable[..., Any], args: tuple, stderr_path: str | None) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, func, args, stderr_path), daemon=True)
        with one_thread_env():
            self.proc.start()
        child.close()
        self.started = time.monotonic()
        self.ready = False  # set by the worker's first message: it started up fine
        self.answered = False  # set by its first result: its first item may load a model
        self.inflight: deque[tuple[int, Any, float]] = deque()  # (index, item, when it may have started)

    def send(self, index: int, item: Any) -> None:
        self.conn.send((index, item))
        self.inflight.append((index, item, time.monotonic()))

    def answer(self, message: tuple[int, bool, Any], now: float) -> Outcome:
        """The outcome of the worker's answer to its oldest item in flight; the next one starts now."""
        key, ok, value = message
        index, item, _ = self.inflight.popleft()
        self.answered = True
        if index != key:
            raise RuntimeError(f"internal: worker answered item {key} for {index}")
        if self.inflight:  # the next item starts now
            self.inflight[0] = (*self.inflight[0][:2], now)
        if ok:
            return Outcome(index, item, value)
        return Outcome(index, item, failure="error", reason=value)

    def stop(self, kill: bool = False) -> None:
        if not kill:
            with contextlib.suppress(OSError, ValueError):
                self.conn.send(None)
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.conn.close()


def run_serial(func: Callable[..., Any], items: Iterable[Any], *, args: tuple = ()) -> Iterator[Outcome]:
    """:func:`run_pool`'s results computed in this process, in order (one worker: no start-up cost).

    Each ``func`` call runs on one BLAS thread, as in a worker (:func:`one_thread_here`), so the
    results are the pool's to the bit on the same machine; the caller's code between items keeps
    its own thread counts.
    """
    limit = one_thread_here()
    for index, item in enumerate(items):
        try:
            with limit():
                value = func(item, *args)
        except Exception as exc:
            yield Outcome(index, item, failure="error", reason=f"unexpected {type(exc).__name__}: {exc}")
            continue
        yield Outcome(index, item, value)


def run_pool(
    func: Callable[..., Any],
    items: Iterable[Any],
    *,
    workers: int,
    args: tuple = (),
    timeout: float | None = None,
    stderr_path: str | os.PathLike | None = os.devnull,
    ordered: bool = False,
    in_flight: int = 2,
    tick: Callable[[], None] | None = None,
    startup_deaths: int = 3,
    first_item_allowance: float = 0.0,
    crashed_reason: str = "worker process died (exit code {exitcode})",
    timeout_reason: str = "took more than {timeout:g} s (hang); worker killed",
) -> Iterator[Outcome]:
    """Compute ``func(item, *args)`` for every item in ``workers`` spawned processes.

    The toolkit's one worker pool (the feature cache, folder inference, the MFCC baseline, the
    demo dataset). Workers are spawned, never forked (the parent may hold TensorFlow's threads,
    which do not survive a fork), run one BLAS/OpenMP thread each, ignore Ctrl-C (the parent
    handles it) and exit when the parent dies. Each item yields one :class:`Outcome`: a worker
    that dies on an item (a decoder crash) or takes more than ``timeout`` seconds on it is
    killed, the item is reported, and a fresh worker takes over the rest.

    Parameters
    ----------
    func : callable
        A module-level function (workers import it by name); ``args`` are sent to each worker once.
    items : iterable
        The work; each item is pickled to a worker.
    workers : int
        Processes (at most one per item).
    timeout : float, optional
        Seconds one item may take; None: no limit.
    stderr_path : path-like or None
        Where the workers' file descriptor 2 goes (native decoders' notes); None: unchanged.
    ordered : bool
        Yield in the items' order (else as they finish).
    in_flight : int
        Items queued per worker, so a worker never waits for the parent.
    tick : callable, optional
        Called at least once a second while the pool runs (e.g. to commit finished work).
    startup_deaths : int
        This many workers in a row dying before they start stop the pool with
        :class:`WorkerStartupError`; their items are not blamed.
    first_item_allowance : float
        Seconds a worker's first item may take beyond ``timeout`` (a model loaded on first use).
    crashed_reason, timeout_reason : str
        The ``reason`` of an item whose worker died (``{exitcode}`` is filled in) or hung
        (``{timeout}``), in the caller's words.

    Breaking off the iteration (an exception in the consumer, Ctrl-C) kills the workers.
    """
    tasks: deque[tuple[int, Any]] = deque(enumerate(items))
    if not tasks:
        return
    limits = _Limits(timeout, first_item_allowance, startup_deaths, crashed_reason, timeout_reason)
    stderr = None if stderr_path is None else str(stderr_path)
    pool = _Pool(multiprocessing.get_context("spawn"), (func, args, stderr), tasks, workers, limits)
    in_order = InOrder() if ordered else None
    try:
        while pool.busy():
            pool.feed(in_flight)
            pool.wait()
            for outcome in pool.outcomes():
                if in_order is None:
                    yield outcome
                else:
                    yield from in_order.release(outcome)
            if tick is not None:
                tick()
    finally:
        pool.stop()


@dataclasses.dataclass(frozen=True)
class _Limits:
    """When :func:`run_pool` gives up on an item or on starting workers, and what it says then."""

    timeout: float | None
    first_item_allowance: float
    startup_deaths: int
    crashed_reason: str
    timeout_reason: str


class InOrder:
    """Outcomes held back until every earlier item's outcome is out (``run_pool(ordered=True)``)."""

    def __init__(self) -> None:
        self.waiting: dict[int, Outcome] = {}
        self.next_index = 0

    def release(self, outcome: Outcome) -> Iterator[Outcome]:
        self.waiting[outcome.index] = outcome
        while self.next_index in self.waiting:
            yield self.waiting.pop(self.next_index)
            self.next_index += 1


class _Pool:
    """:func:`run_pool`'s worker processes and the items not sent yet (``tasks``)."""

    def __init__(
        self,
        ctx: Any,
        spec: tuple[Callable[..., Any], tuple, str | None],
        tasks: deque,
        workers: int,
        limits: _Limits,
    ) -> None:
        self.ctx, self.spec = ctx, spec  # spec: (func, args, stderr path) of every worker
        self.tasks = tasks
        self.limits = limits
        self.deaths = 0  # workers in a row that died before they started
        self.workers = [self.new_worker() for _ in range(max(1, min(workers, len(tasks))))]

    def new_worker(self) -> _Worker | None:
        return _Worker(self.ctx, *self.spec) if self.tasks else None

    def busy(self) -> bool:
        return bool(self.tasks) or any(w is not None and w.inflight for w in self.workers)

    def feed(self, in_flight: int) -> None:
        """Replace idle workers that ended; queue up to ``in_flight`` items per worker."""
        for i, w in enumerate(self.workers):
            if w is not None and not w.inflight and not w.proc.is_alive():
                self.workers[i] = self.new_worker()
        for depth in range(1, in_flight + 1):  # round robin: every worker gets work first
            for w in self.workers:
                if w is not None and self.tasks and len(w.inflight) < depth:
                    w.send(*self.tasks.popleft())

    def wait(self) -> None:
        """Until a worker says something or ends, or a second has passed."""
        live = [w for w in self.workers if w is not None]
        connection.wait([w.conn for w in live] + [w.proc.sentinel for w in live], timeout=1.0)

    def outcomes(self) -> Iterator[Outcome]:
        """Every worker's answers so far, then the item of each worker that died or hung."""
        now = time.monotonic()
        for i, w in enumerate(self.workers):
            if w is None:
                continue
            yield from self._answers(w, now)
            lost = self._lost_item(i, w, now)
            if lost is not None:
                yield lost

    def _answers(self, w: _Worker, now: float) -> Iterator[Outcome]:
        with contextlib.suppress(EOFError, OSError):  # read all it said before it died
            while w.conn.poll():
                message = w.conn.recv()
                if message == _READY:
                    w.ready, self.deaths = True, 0
                    if w.inflight:  # its first item starts now, not at the spawn
                        w.inflight[0] = (*w.inflight[0][:2], now)
                    continue
                yield w.answer(message, now)

    def _lost_item(self, i: int, w: _Worker, now: float) -> Outcome | None:
        """When worker ``i`` died or hangs: kill it, start another, and report its current item
        (its other items go back to the queue); None while it is fine."""
        if not w.inflight:
            return None
        limits = self.limits
        dead = not w.proc.is_alive()
        allowance = 0.0 if w.answered else limits.first_item_allowance
        allowed = None if limits.timeout is None else limits.timeout + allowance
        hung = allowed is not None and now - w.inflight[0][2] > allowed
        if not (dead or hung):
            return None
        w.stop(kill=True)
        code = w.proc.exitcode
        if not w.ready:  # it never started: a set-up problem, not the items' fault
            self._count_startup_death(dead, code)
            self.tasks.extend((index, item) for index, item, _ in w.inflight)  # retried last
            self.workers[i] = self.new_worker()
            return None
        (index, item, _), *rest = w.inflight
        self.tasks.extendleft((j, it) for j, it, _ in reversed(rest))
        self.workers[i] = self.new_worker()
        if dead:
            reason = limits.crashed_reason.format(exitcode=code)
            return Outcome(index, item, failure="crashed", reason=reason, exitcode=code)
        return Outcome(
            index, item, failure="timeout", reason=limits.timeout_reason.format(timeout=limits.timeout)
        )

    def _count_startup_death(self, dead: bool, code: int | None) -> None:
        self.deaths += 1
        if self.deaths >= self.limits.startup_deaths:
            why = f"worker exit code {code}" if dead else f"no start within {self.limits.timeout:g} s"
            raise WorkerStartupError(
                f"worker processes die before taking any work ({why}); if you run this "
                'from your own script, put its code under `if __name__ == "__main__":` '
                "(workers are spawned and import the main script)",
                why,
            )

    def stop(self) -> None:
        """Stop every worker: ask them to end when all work is done, kill them when not."""
        busy = self.busy()
        for w in self.workers:
            if w is not None:
                w.stop(kill=busy)
