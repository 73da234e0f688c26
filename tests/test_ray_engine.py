"""The Ray engine (genrekit.ray_engine) on a real local Ray instance (2 CPUs, 127.0.0.1): the same
cache and inference report as the local pool on the demo, a worker process killed mid-job, a driver
killed mid-job and resumed, a decoder crash listed, and the one line without the extra."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tomllib

from genrekit.errors import EngineError
from tests.process_helpers import alive, children

REPO = Path(__file__).resolve().parents[1]
GROUP = 30  # demo tracks per Ray build: three builds of different tracks, none cached before
COPIES = 300  # items of the jobs killed mid-way (GROUP's tracks cycled under new ids): ~3 s of work


def _work(item: int) -> int:
    """Module level, so Ray workers import it: -1 kills its worker, -2 hangs, -3 raises."""
    if item == -1:
        os._exit(7)
    if item == -2:
        time.sleep(120)
    if item == -3:
        raise OSError("disk on fire")
    return item * item


# --- Without Ray: the extra's declaration and the message --------------------------------------


def test_the_extra_is_declared_once_in_both_files():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    lines = (REPO / "requirements-ray.txt").read_text().splitlines()
    requirements = [line for line in lines if line.strip() and not line.startswith("#")]
    assert pyproject["project"]["optional-dependencies"]["ray"] == requirements


def test_engine_ray_without_the_extra_is_one_line_saying_what_to_install(
    demo_dataset, tmp_path, capsys, monkeypatch
):
    import balanced_trainer
    from genrekit.engine import get_engine

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when absent
    with pytest.raises(EngineError, match=r"pip install 'genrekit\[ray\]'"):
        get_engine("ray")
    code = balanced_trainer.main(
        [
            "--extract_only",
            "--engine",
            "ray",
            "--metadata",
            str(demo_dataset.metadata_dir),
            "--audio",
            str(demo_dataset.audio_dir),
            "--cache_dir",
            str(tmp_path / "features"),
            "--output_dir",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert (
        err[-1]
        == "error: --engine ray needs Ray: pip install 'genrekit[ray]' (or pip install -r requirements-ray.txt)"
    )


def test_an_unknown_engine_is_refused_by_name():
    from genrekit.errors import ConfigError
    from genrekit.settings import Settings

    with pytest.raises(ConfigError, match="engine.*must be one of local, ray"):
        Settings.build(None, {"engine": "spark"})


# --- On a local Ray instance ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_address():
    """One Ray instance for this file (2 CPUs, no dashboard); its address for other drivers."""
    ray = pytest.importorskip(
        "ray", reason="the Ray extra is not installed (pip install -r requirements-ray.txt)"
    )
    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            # genrekit, and this file (pytest imports it as a top-level module) for _work
            runtime_env={"env_vars": {"PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}},
        )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def local_cache(tiny_run):
    """The demo's feature cache built by the local pool (tiny_run's), its front end and its tracks."""
    from genrekit.datasets.fma import audio_items
    from genrekit.features.cache import FeatureCache
    from genrekit.train.run_config import frontend_of, load_training_config

    config_path = tiny_run / "balanced_training_config.json"
    config = load_training_config(config_path)
    frontend = frontend_of(config, config_path)
    cache = FeatureCache.open(config["data"]["cache_dir"], frontend)
    audio_dir = config["settings"]["audio_dir"]
    items = audio_items(audio_dir, cache.track_ids)
    return {"cache": cache, "frontend": frontend, "items": items, "config_path": config_path}


def _copies(items: list, n: int, first_id: int) -> tuple[list, dict[int, int]]:
    """``n`` items cycling over ``items`` under new track ids, and new id -> the original's.

    A job long enough to be caught mid-way on any machine (a demo clip takes ~10 ms), with the
    local pool's rows as its reference.
    """
    out, original = [], {}
    for k in range(n):
        tid, path = items[k % len(items)]
        out.append((first_id + k, path))
        original[first_id + k] = tid
    return out, original


def _same_as_local(cache_dir: Path, local: dict, items: list, original: dict[int, int] | None = None) -> None:
    """The Ray-built cache holds the local pool's rows for ``items``: status, numbers, failures.

    ``original`` maps the ids of :func:`_copies` to the local cache's.
    """
    from genrekit.features.cache import FeatureCache

    original = original or {tid: tid for tid, _ in items}
    ids = np.array([tid for tid, _ in items])
    theirs_ids = np.array([original[t] for t in ids.tolist()])
    ours = FeatureCache.open(cache_dir, local["frontend"])
    theirs = local["cache"]
    assert ours.status(ids).tolist() == theirs.status(theirs_ids).tolist()
    ok = ids[np.isin(theirs_ids, theirs.available(theirs_ids))]
    assert len(ok) > 0
    assert np.array_equal(ours.read(ok), theirs.read(np.array([original[t] for t in ok.tolist()])))
    wanted = set(theirs_ids.tolist())
    assert {(original[f.track_id], f.status, f.reason) for f in ours.failures} == {
        (f.track_id, f.status, f.reason) for f in theirs.failures if f.track_id in wanted
    }


@pytest.mark.slow
def test_ray_map_reports_a_crash_a_hang_and_an_error_and_does_the_rest(ray_address):
    from genrekit.ray_engine import RayEngine

    items = [1, 2, -1, 3, -2, 4, -3, 5, 6, 7]
    # 5 s: no trivial item of a loaded machine takes that long; the hung one sleeps 120 s.
    outcomes = list(RayEngine().map(_work, items, workers=2, timeout=5, ordered=True))
    assert [o.index for o in outcomes] == list(range(len(items)))
    by_item = {o.item: o for o in outcomes}
    assert (by_item[-1].failure, by_item[-1].reason) == ("crashed", "worker process died (exit code unknown)")
    assert (by_item[-2].failure, by_item[-2].reason) == (
        "timeout",
        "took more than 5 s (hang); worker killed",
    )
    assert (by_item[-3].failure, by_item[-3].reason) == ("error", "unexpected OSError: disk on fire")
    assert {o.item: o.value for o in outcomes if o.ok} == {i: i * i for i in items if i > 0}, [
        (o.item, o.failure, o.reason) for o in outcomes if not o.ok
    ]


def test_ray_cache_equals_the_local_pools(ray_address, local_cache, tmp_path):
    from genrekit.features.cache import ensure_cache

    items = local_cache["items"][:GROUP]
    summary = ensure_cache(
        tmp_path / "c", items, local_cache["frontend"], workers=2, engine="ray", progress=False
    )
    assert summary.pending == 0 and summary.done > 0
    assert sorted(p.name for p in (tmp_path / "c").glob("part-*")) == ["part-s0of1-000"]
    _same_as_local(tmp_path / "c", local_cache, items)
    again = ensure_cache(tmp_path / "c", items, local_cache["frontend"], engine="ray", progress=False)
    assert (again.done, again.cached) == (0, summary.ok)  # nothing computed twice


def _ok_rows(cache_dir: Path, local: dict, ids: np.ndarray) -> int:
    """Rows committed ok so far in a cache being built (0 before its part exists)."""
    from genrekit.errors import CacheError
    from genrekit.features.cache import FeatureCache

    if not (cache_dir / "part-s0of1-000" / "status.npy").exists():
        return 0
    try:
        return int((FeatureCache.open(cache_dir, local["frontend"]).status(ids) == "ok").sum())
    except (CacheError, OSError, ValueError):  # caught between two writes
        return 0


def _our_ray_workers() -> list[int]:
    """Pids of this Ray instance's BatchWorker actors (descendants of this test process)."""
    found, todo = [], children(os.getpid())
    while todo:
        pid = todo.pop()
        todo.extend(children(pid))
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except FileNotFoundError:
            continue
        if title.startswith(b"ray::BatchWorker"):
            found.append(pid)
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_job_loses_nothing_and_the_job_completes(
    ray_address, local_cache, tmp_path, caplog
):
    import threading

    from genrekit.features.cache import ensure_cache

    items, original = _copies(local_cache["items"][GROUP : 2 * GROUP], COPIES, 100_000)
    ids = np.array([tid for tid, _ in items])
    killed: list[int] = []

    def kill_one() -> None:  # once the first rows are committed: the others are still to do
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and _ok_rows(tmp_path / "c", local_cache, ids) < 2:
            time.sleep(0.05)
        pids = _our_ray_workers()
        if pids:
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    killer = threading.Thread(target=kill_one)
    killer.start()
    summary = ensure_cache(
        tmp_path / "c",
        items,
        local_cache["frontend"],
        workers=2,
        engine="ray",
        progress=False,
        commit_seconds=0.2,
    )
    killer.join()
    assert killed, "no Ray worker was found to kill"
    assert "a Ray worker was lost" in caplog.text  # mid-job: its items went to a new worker
    assert summary.pending == 0
    _same_as_local(tmp_path / "c", local_cache, items, original)  # no file blamed for the lost worker


@pytest.mark.slow
def test_a_driver_killed_mid_job_resumes_with_only_what_is_missing(ray_address, local_cache, tmp_path):
    from genrekit.features.cache import ensure_cache

    items, original = _copies(local_cache["items"][2 * GROUP : 3 * GROUP], COPIES, 200_000)
    spec = tmp_path / "items.json"
    spec.write_text(json.dumps([[tid, str(p)] for tid, p in items]))
    script = (
        "import json, sys; from genrekit.features.cache import ensure_cache;"
        "from genrekit.train.run_config import frontend_of, load_training_config;"
        "c = load_training_config(sys.argv[3]);"
        "ensure_cache(sys.argv[1], json.load(open(sys.argv[2])), frontend_of(c, sys.argv[3]), workers=2,"
        " engine='ray', progress=False, commit_seconds=0.3)"
    )
    config_path = local_cache["config_path"]
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "c"), str(spec), str(config_path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ids = np.array([tid for tid, _ in items])
    try:
        deadline = time.monotonic() + 120
        done = 0
        while time.monotonic() < deadline and driver.poll() is None and done < 3:
            time.sleep(0.1)
            done = _ok_rows(tmp_path / "c", local_cache, ids)
        assert driver.poll() is None, "the driver ended before it could be killed"
        driver.send_signal(signal.SIGKILL)
    finally:
        driver.kill()
        driver.wait(timeout=30)
    assert not alive(driver.pid)
    summary = ensure_cache(
        tmp_path / "c", items, local_cache["frontend"], workers=2, engine="ray", progress=False
    )
    assert summary.cached >= done >= 3 and summary.done > 0  # only the rest was computed
    assert summary.pending == 0
    _same_as_local(tmp_path / "c", local_cache, items, original)


@pytest.mark.slow
def test_ray_folder_inference_equals_the_local_pools(ray_address, tiny_run, local_cache, tmp_path):
    from genrekit.infer.predict import MusicGenreInference

    music = tmp_path / "music"
    music.mkdir()
    for _, path in local_cache["items"][:10]:  # a few good clips and the demo's defective ones
        if Path(path).exists():
            shutil.copy(path, music / Path(path).name)
    (music / "notes.txt").write_text("not music")
    reports = {}
    for engine in ("local", "ray"):
        inference = MusicGenreInference(
            tiny_run / "balanced_hierarchical_genre_model.h5", workers=2, engine=engine
        )
        output = tmp_path / f"{engine}.json"
        reports[engine] = inference.batch_predict(music, output=output)
        assert not output.with_name(output.name + ".partial.jsonl").exists()
    local, ray = reports["local"], reports["ray"]
    assert ray["results"] == local["results"] and ray["errors"] == local["errors"]
    assert ray["skipped"] == local["skipped"] and local["results"]


@pytest.mark.slow
def test_ray_mfcc_baseline_equals_the_local_pools(ray_address, local_cache):
    from genrekit.evaluate.baseline import extract_mfcc_features

    items = local_cache["items"][:8]
    local = extract_mfcc_features(items, duration=3.0, workers=2)
    ray = extract_mfcc_features(items, duration=3.0, workers=2, engine="ray")
    assert ray.track_ids.tolist() == local.track_ids.tolist() and len(local.track_ids) > 0
    assert np.array_equal(ray.features, local.features)
    assert ray.failures == local.failures


@pytest.mark.slow
def test_more_workers_than_the_cluster_can_place_still_finish(ray_address):
    """4 workers asked of 2 CPUs: two actors stay pending, and no batch waits on them."""
    from genrekit.ray_engine import RayEngine

    items = list(range(1, 41))
    outcomes = list(RayEngine().map(_work, items, workers=4, timeout=5))
    assert sorted(o.value for o in outcomes if o.ok) == [i * i for i in items]
