"""The worker pool (genrekit.workers.run_pool) with real spawned processes: crashes, hangs, order."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrekit.workers import Outcome, WorkerStartupError, run_pool, run_serial
from tests.process_helpers import alive


def _work(item: int, offset: int = 0) -> int:
    """Module level, so spawned workers import it: -1 kills its worker, -2 hangs, -3 raises."""
    if item == -1:
        os._exit(7)
    if item == -2:
        time.sleep(120)
    if item == -3:
        raise OSError("disk on fire")
    return item * item + offset


def _blas_threads(_: object) -> str:
    return os.environ.get("OMP_NUM_THREADS", "unset")


def _ok(outcomes: list[Outcome]) -> dict[int, int]:
    return {o.item: o.value for o in outcomes if o.ok}


def test_results_equal_a_serial_run():
    items = list(range(25))
    serial = [o.value for o in run_serial(_work, items, args=(3,))]
    assert serial == [i * i + 3 for i in items]  # worked out by hand: the serial run is the reference
    ordered = [o.value for o in run_pool(_work, items, workers=2, args=(3,), ordered=True)]
    assert ordered == serial
    unordered = list(run_pool(_work, items, workers=2, args=(3,)))
    assert sorted(o.index for o in unordered) == list(range(25))
    assert all(o.ok and o.value == serial[o.index] for o in unordered)


def test_a_worker_that_dies_is_reported_and_the_others_are_done():
    items = [1, 2, 3, -1, 4, 5, 6, 7]
    outcomes = list(run_pool(_work, items, workers=2, timeout=60))
    assert len(outcomes) == len(items)
    (dead,) = [o for o in outcomes if not o.ok]
    assert (dead.index, dead.item, dead.failure, dead.exitcode) == (3, -1, "crashed", 7)
    assert dead.reason == "worker process died (exit code 7)"
    assert _ok(outcomes) == {i: i * i for i in items if i != -1}


def test_a_hung_item_times_out_and_the_others_are_done():
    items = [1, -2, 2, 3, 4]
    started = time.monotonic()
    # 10 s: ample for a trivial item on a loaded machine, far from the 120 s the hung one sleeps.
    outcomes = list(run_pool(_work, items, workers=2, timeout=10, ordered=True))
    assert time.monotonic() - started < 100  # not the 120 s the item sleeps
    assert [o.index for o in outcomes] == list(range(len(items)))
    hung = outcomes[1]
    assert (hung.failure, hung.reason) == ("timeout", "took more than 10 s (hang); worker killed")
    assert _ok(outcomes) == {1: 1, 2: 4, 3: 9, 4: 16}


def test_an_exception_fails_only_its_item():
    outcomes = list(run_pool(_work, [2, -3, 5], workers=2, ordered=True))
    assert [o.value for o in outcomes] == [4, None, 25]
    assert (outcomes[1].failure, outcomes[1].reason) == ("error", "unexpected OSError: disk on fire")
    assert list(run_serial(_work, [-3]))[0].reason == "unexpected OSError: disk on fire"


def test_workers_run_one_blas_thread():
    assert {o.value for o in run_pool(_blas_threads, range(4), workers=2)} == {"1"}


def _openblas_threads(_: object = None) -> int:
    import numpy  # noqa: F401 - loads the BLAS a spawned worker has not loaded yet
    from threadpoolctl import threadpool_info

    return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_serial_items_run_on_one_blas_thread_as_in_a_worker():
    # A threaded BLAS splits a product into per-thread blocks and rounds their edges its own way:
    # in-process items on the caller's threads wrote other demo MP3s than the pool on a Xeon.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(2):  # what a 2-core machine's process has
        outcomes = run_serial(_openblas_threads, range(2))
        first = next(outcomes)
        between = _openblas_threads()  # the caller's code between items keeps its own threads
        rest = list(outcomes)
        assert [first.value, between, rest[0].value] == [1, 2, 1]
    assert {o.value for o in run_pool(_openblas_threads, range(2), workers=2)} == {1}


def test_stopping_the_iteration_kills_the_workers():
    """A consumer that breaks off (an error, Ctrl-C) leaves no worker running."""
    pool = run_pool(_work, [1, -2, -2, -2], workers=2, timeout=600)
    first = next(pool)
    assert first.value == 1
    import multiprocessing

    children = multiprocessing.active_children()
    assert children
    pool.close()
    deadline = time.monotonic() + 60  # a loaded machine may take a while to reap them
    while any(p.is_alive() for p in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(p.is_alive() for p in children)


class _ExitsWhenLoaded:
    """Unpickled in a worker at its start (with the pool's ``args``): the worker exits there."""

    def __reduce__(self):
        return (os._exit, (5,))


def test_workers_that_die_at_start_stop_the_pool():
    """Workers that die before they can take work (an unguarded main script does) blame no item."""
    with pytest.raises(WorkerStartupError, match=r"before taking any work \(worker exit code 5\)"):
        list(run_pool(_work, [1, 2, 3], workers=2, args=(_ExitsWhenLoaded(),), timeout=60))


def _note_pid_then_hang(item: int, folder: str) -> None:
    Path(folder, f"worker-{os.getpid()}").touch()
    time.sleep(120)


_PARENT_SCRIPT = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
from genrekit.workers import run_pool
from test_workers import _note_pid_then_hang

if __name__ == "__main__":
    for _ in run_pool(_note_pid_then_hang, [1, 2], workers=2, args=({folder!r},), timeout=600):
        pass
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to watch the workers")
def test_workers_end_when_their_parent_is_killed(tmp_path):
    """A parent killed with SIGKILL (OOM, kill -9) leaves no worker running, even one mid-item."""
    tests = Path(__file__).resolve().parent
    script = tmp_path / "parent.py"
    script.write_text(_PARENT_SCRIPT.format(repo=str(tests.parent), tests=str(tests), folder=str(tmp_path)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("worker-*"))) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, "the parent ended early"
            time.sleep(0.05)
        workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        assert len(workers) == 2 and all(alive(pid) for pid in workers)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    deadline = time.monotonic() + 60  # they look for their parent every 0.5 s; slower under load
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)
