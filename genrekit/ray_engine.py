"""The Ray engine (``--engine ray``): the toolkit's parallel jobs on a Ray cluster, with the local
worker pool's promises (one outcome per item; a file that kills its worker is reported, not retried
forever; a lost worker loses no reported item).

Every worker is a Ray actor that receives the job's function and arguments once (a front end that
runs a backbone loads it once per actor, on a GPU when the cluster has some) and computes batches
of :data:`BATCH_FILES` items per Ray task. The driver hands out batches, replaces actors that die
(their node lost, a decoder crash) and yields each item's :class:`~genrekit.workers.Outcome`; the
jobs write their results as with the local pool. The driver joins the cluster as Ray does
(``RAY_ADDRESS``, else a cluster started on this machine with ``ray start``, else a new local
instance). Ray is imported only here, when the engine is asked for (the ``genrekit[ray]`` extra).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from genrekit.engine import Engine
from genrekit.errors import EngineError
from genrekit.workers import InOrder, Outcome, WorkerStartupError, limit_threads, native_stderr_to

log = logging.getLogger(__name__)

BATCH_FILES = 8  # items per Ray task: its scheduling cost is paid once a batch; a lost worker redoes <= this
STRIKES = 2  # a file whose worker dies this many times is reported as crashed, not sent again
STARTUP_DEATHS = 3  # this many actors in a row dying before they start stop the job
PLACEMENT_SECONDS = 600.0  # a job none of whose workers the cluster could place in this long stops
INSTALL_HINT = "--engine ray needs Ray: pip install 'genrekit[ray]' (or pip install -r requirements-ray.txt)"


def import_ray() -> Any:
    """The ``ray`` module; EngineError saying what to install when it is not there."""
    try:
        import ray
    except ImportError:
        raise EngineError(INSTALL_HINT) from None
    return ray


def connect() -> Any:
    """Join the Ray cluster as ``ray.init()`` finds it (``RAY_ADDRESS``, a local ``ray start``
    cluster, else a new local instance) unless this process already has; return ``ray``.

    Workers import genrekit from this checkout's folder (a filesystem every node sees) or from
    their own installation.
    """
    ray = import_ray()
    if not ray.is_initialized():
        source = str(Path(__file__).resolve().parents[1])
        ray.init(
            include_dashboard=False,
            log_to_driver=False,  # the workers' decoder notes stay in Ray's log folder
            runtime_env={"env_vars": {"PYTHONPATH": source}},
        )
    return ray


class BatchWorker:
    """One Ray actor of a job: ``func`` and ``args`` arrive once; :meth:`run` computes a batch."""

    def __init__(
        self,
        func: Callable[..., Any],
        args: tuple,
        stderr_path: str | None,
        finish: Callable[[], None] | None,
    ) -> None:
        limit_threads()  # one BLAS thread per worker, as in the local pool
        self.func, self.args, self.stderr_path, self.finish = func, args, stderr_path, finish

    def ready(self) -> int:
        return os.getpid()

    def run(self, batch: list[tuple[int, Any]]) -> list[tuple[int, bool, Any]]:
        """``(index, True, func(item, *args))`` or ``(index, False, reason)`` per item, in order."""
        answers = []
        with native_stderr_to(self.stderr_path):
            for index, item in batch:
                try:
                    answers.append((index, True, self.func(item, *self.args)))
                except Exception as exc:  # one odd item must never stop the others
                    answers.append((index, False, f"unexpected {type(exc).__name__}: {exc}"))
        if self.finish is not None:
            self.finish()  # an error here (a disk that cannot sync) stops the job: not the items' fault
        return answers


class RayEngine(Engine):
    """The jobs on a Ray cluster: one actor per worker (one CPU each), batches of items per task."""

    name = "ray"

    def __init__(self, batch_files: int = BATCH_FILES) -> None:
        import_ray()  # without the extra: one line saying what to install, before any work
        self.batch_files = batch_files

    def workers(self, requested: int | None) -> int:
        if requested:
            return requested
        return max(1, int(connect().cluster_resources().get("CPU", 1)))

    def describe(self) -> str:
        ray = connect()
        res = ray.cluster_resources()
        nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
        return f"Ray cluster: {nodes} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"

    def map(
        self,
        func: Callable[..., Any],
        items: Iterable[Any],
        *,
        workers: int,
        args: tuple = (),
        uses_model: bool = False,
        finish: Callable[[], None] | None = None,
        **options: Any,
    ) -> Iterator[Outcome]:
        jobs = [_Job(i, item) for i, item in enumerate(items)]
        if not jobs:
            return
        ray = connect()
        run = _RayRun(ray, jobs, workers, _Spec.of(func, args, finish, uses_model, ray, workers, options))
        yield from run.outcomes(self.batch_files, ordered=bool(options.get("ordered")))


@dataclasses.dataclass
class _Job:
    index: int  # the item's position in the input
    item: Any
    strikes: int = 0  # workers that died while it was in their running batch


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What every actor of a run gets, and the run's limits and words (run_pool's options)."""

    func: Callable[..., Any]
    args: tuple
    finish: Callable[[], None] | None
    stderr_path: str | None
    num_gpus: float
    timeout: float | None
    first_item_allowance: float
    in_flight: int
    tick: Callable[[], None] | None
    crashed_reason: str
    timeout_reason: str

    @classmethod
    def of(cls, func, args, finish, uses_model, ray, workers, options: dict[str, Any]) -> _Spec:  # noqa: ANN001
        gpus = float(ray.cluster_resources().get("GPU", 0)) if uses_model else 0.0
        stderr = options.get("stderr_path", os.devnull)
        return cls(
            func=func,
            args=args,
            finish=finish,
            stderr_path=None if stderr is None else str(stderr),
            num_gpus=min(1.0, gpus / max(1, workers)),
            timeout=options.get("timeout"),
            first_item_allowance=float(options.get("first_item_allowance", 0.0)),
            in_flight=int(options.get("in_flight", 2)),
            tick=options.get("tick"),
            crashed_reason=options.get("crashed_reason", "worker process died (exit code {exitcode})"),
            timeout_reason=options.get(
                "timeout_reason", "took more than {timeout:g} s (hang); worker killed"
            ),
        )


def _suspect(batch: list[_Job]) -> bool:
    return len(batch) == 1 and batch[0].strikes > 0


class _Actor:
    """One live actor, its readiness call and its batches in flight (oldest first: running)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.ready_ref = handle.ready.remote()
        self.ready = False
        self.answered = False  # its first batch may load a model (first_item_allowance)
        self.inflight: deque[list[Any]] = deque()  # [ref, jobs, when the batch may have started]


class _RayRun:
    """The driver's side of one :meth:`RayEngine.map`: batches out, outcomes in, dead actors replaced."""

    def __init__(self, ray: Any, jobs: list[_Job], workers: int, spec: _Spec) -> None:
        self.ray, self.spec = ray, spec
        self.queue: deque[_Job] = deque(jobs)
        self.suspects: deque[_Job] = deque()  # were in a batch whose worker died: sent one by one
        self.deaths = 0  # actors in a row that died before they started
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": 0, "max_task_retries": 0}
        if spec.num_gpus:
            options["num_gpus"] = spec.num_gpus
            options["runtime_env"] = {"env_vars": {"TF_FORCE_GPU_ALLOW_GROWTH": "true"}}
        self.actor_class = ray.remote(**options)(BatchWorker)
        self.actors = [self.new_actor() for _ in range(max(1, min(workers, len(jobs))))]

    def new_actor(self) -> _Actor:
        s = self.spec
        return _Actor(self.actor_class.remote(s.func, s.args, s.stderr_path, s.finish))

    def pending(self) -> bool:
        return bool(self.queue or self.suspects) or any(a.inflight for a in self.actors)

    def outcomes(self, batch_files: int, ordered: bool) -> Iterator[Outcome]:
        # Batches small enough that every actor gets work, at most batch_files items.
        per_batch = max(1, min(batch_files, -(-len(self.queue) // (len(self.actors) * self.spec.in_flight))))
        in_order = InOrder() if ordered else None
        started = time.monotonic()
        try:
            while self.pending():
                if not any(a.ready for a in self.actors) and time.monotonic() - started > PLACEMENT_SECONDS:
                    raise EngineError(
                        f"no Ray worker could start in {PLACEMENT_SECONDS:.0f} s: the cluster has no free "
                        f"CPU{' or GPU' if self.spec.num_gpus else ''} for one (ray status shows what is in use)"
                    )
                self.feed(per_batch)
                for outcome in self.collect():
                    if in_order is None:
                        yield outcome
                    else:
                        yield from in_order.release(outcome)
                if self.spec.tick is not None:
                    self.spec.tick()
        finally:
            for actor in self.actors:
                self.ray.kill(actor.handle, no_restart=True)

    def feed(self, per_batch: int) -> None:
        """Queue batches on every actor up to ``in_flight``.

        A suspect goes alone to an idle actor, and nothing is queued behind it: a worker that
        dies abruptly can take the replies of its finished batches with it, so only a death with
        nothing else in flight says which item killed it.
        """
        for depth in range(1, self.spec.in_flight + 1):  # round robin: every actor gets work first
            for actor in self.actors:
                if not actor.ready:  # not placed yet (the cluster may never have room): nothing waits on it
                    continue
                if len(actor.inflight) >= depth or (actor.inflight and _suspect(actor.inflight[-1][1])):
                    continue
                if self.suspects and not actor.inflight:
                    batch = [self.suspects.popleft()]
                elif self.queue:
                    batch = [self.queue.popleft() for _ in range(min(per_batch, len(self.queue)))]
                else:
                    continue
                ref = actor.handle.run.remote([(job.index, job.item) for job in batch])
                actor.inflight.append([ref, batch, time.monotonic()])

    def collect(self) -> Iterator[Outcome]:
        """Outcomes of the batches that finished within a second; then deal with dead or hung actors."""
        refs = [a.ready_ref for a in self.actors if not a.ready] + [
            b[0] for a in self.actors for b in a.inflight
        ]
        done, rest = self.ray.wait(refs, num_returns=1, timeout=1.0)
        if done and rest:
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            done += more
        done_set = set(done)
        now = time.monotonic()
        for i, actor in enumerate(list(self.actors)):
            try:
                yield from self._answers(actor, done_set, now)
            except self.ray.exceptions.RayTaskError as exc:  # finish() failed: the job cannot go on
                raise EngineError(f"a Ray worker could not finish a batch: {exc.cause}") from None
            except self.ray.exceptions.RayError as exc:  # the actor (or its node) died
                # Died in its constructor (cannot import genrekit, say): a set-up problem.
                startup = bool(getattr(exc, "actor_init_failed", False))
                yield from self._replace(i, actor, hung=False, startup=startup, why=type(exc).__name__)
                continue
            if self._hung(actor, now):
                yield from self._replace(i, actor, hung=True, startup=False, why="hang")

    def _answers(self, actor: _Actor, done: set, now: float) -> Iterator[Outcome]:
        if not actor.ready and actor.ready_ref in done:
            self.ray.get(actor.ready_ref)
            actor.ready, self.deaths = True, 0
            if actor.inflight:  # its first batch starts now, not when it was sent
                actor.inflight[0][2] = now
        while actor.inflight and actor.inflight[0][0] in done:
            ref, batch, _ = actor.inflight[0]
            answers = self.ray.get(ref)
            actor.inflight.popleft()
            actor.answered = True
            if actor.inflight:
                actor.inflight[0][2] = now
            jobs = {job.index: job for job in batch}
            for index, ok, value in answers:
                item = jobs[index].item
                yield (
                    Outcome(index, item, value) if ok else Outcome(index, item, failure="error", reason=value)
                )

    def _hung(self, actor: _Actor, now: float) -> bool:
        s = self.spec
        if s.timeout is None or not actor.ready or not actor.inflight:
            return False
        _, batch, started = actor.inflight[0]
        allowed = s.timeout * len(batch) + (0.0 if actor.answered else s.first_item_allowance)
        return now - started > allowed

    def _replace(self, i: int, actor: _Actor, hung: bool, startup: bool, why: str) -> Iterator[Outcome]:
        """Kill actor ``i``, start another; blame its running batch (a strike per item), requeue
        the batches it had not started; yield the items that are out of chances."""
        self.ray.kill(actor.handle, no_restart=True)
        self.actors[i] = self.new_actor()
        if not startup:
            self.deaths = 0
            log.warning("a Ray worker was lost (%s); its unfinished items go to a new worker", why)
        if not actor.inflight:
            if startup:
                self._count_startup_death(why)
            return
        (_, running, _), *waiting = actor.inflight
        for _, batch, _ in reversed(waiting):
            self.queue.extendleft(reversed(batch))
        if startup:  # never started: not the items' fault
            self.queue.extendleft(reversed(running))
            self._count_startup_death(why)
            return
        s = self.spec
        alone = _suspect(running) and not waiting  # then the death (or hang) is this item's
        for job in running:
            job.strikes += 1
            if hung and alone:
                reason = s.timeout_reason.format(timeout=s.timeout)
                yield Outcome(job.index, job.item, failure="timeout", reason=reason)
            elif alone and job.strikes >= STRIKES:
                reason = s.crashed_reason.format(exitcode="unknown")
                yield Outcome(job.index, job.item, failure="crashed", reason=reason)
            else:
                self.suspects.append(job)

    def _count_startup_death(self, why: str) -> None:
        self.deaths += 1
        if self.deaths >= STARTUP_DEATHS:
            raise WorkerStartupError(
                f"Ray workers die before taking any work ({why}); check that every node can import "
                "genrekit (the same checkout or installation) and read the job's files",
                why,
            )


__all__ = ["BATCH_FILES", "INSTALL_HINT", "RayEngine", "connect", "import_ray"]
