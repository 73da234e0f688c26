"""Scaling out for real on one machine: two worker processes on 127.0.0.1 with their own TF_CONFIG
(MultiWorkerMirroredStrategy), a worker killed mid-training, and two --shard feature builds at once
into one cache root, read together afterwards."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
RUN_LIMIT = 420  # seconds a whole two-worker run may take on a busy 2-core machine


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A 40-track demo of 2 s clips, a tiny config, and its feature cache built once."""
    import balanced_trainer
    from genrekit.datasets.demo.writer import write_demo_dataset

    root = tmp_path_factory.mktemp("scale")
    demo = write_demo_dataset(root / "demo", n_tracks=40, clip_seconds=2.0, seed=0, progress=False, workers=2)
    cfg = {
        "metadata_dir": str(demo.metadata_dir),
        "audio_dir": str(demo.audio_dir),
        "cache_dir": str(root / "features"),
        "duration": 2.0,
        "width_factor": 0.0625,
        "num_epochs": 2,
        "batch_size": 16,
        "oversample_threshold": 2,
        "undersample_threshold": 6,
        "shuffle_block": 4,
        "workers": 1,
        "seed": 7,
    }
    path = root / "config.json"
    path.write_text(json.dumps(cfg))
    assert (
        balanced_trainer.main(["--config", str(path), "--extract_only", "--output_dir", str(root / "x")]) == 0
    )
    return {"root": root, "config": path, "cfg": cfg}


class ShardBuilds:
    """The two ``--shard I/2 --extract_only`` processes of the shard test, into one new cache root.

    Started once, by whichever test asks first: the worker-kill test starts them while the chief
    waits for the coordination service to notice the dead worker (seconds of idle CPU).
    """

    def __init__(self, tiny: dict, root: Path):
        self.tiny, self.root, self.procs = tiny, root, []

    def start(self) -> ShardBuilds:
        if not self.procs:
            cmd = [sys.executable, "balanced_trainer.py", "--config", str(self.tiny["config"])]
            cmd += ["--extract_only", "--cache_dir", str(self.root / "features")]
            cmd += ["--output_dir", str(self.root / "x")]
            for i in range(2):  # their output goes to files: nobody reads a pipe until the test
                with open(self.root / f"shard{i}.log", "w") as log:
                    shard = [*cmd, "--workers", "1", "--shard", f"{i}/2"]
                    self.procs.append(subprocess.Popen(shard, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
        return self

    def outputs(self) -> list[str]:
        for proc in self.start().procs:
            proc.wait(timeout=RUN_LIMIT)
        return [(self.root / f"shard{i}.log").read_text() for i in range(2)]


@pytest.fixture(scope="module")
def shard_builds(tiny, tmp_path_factory):
    builds = ShardBuilds(tiny, tmp_path_factory.mktemp("shards"))
    yield builds
    for proc in builds.procs:  # a test that failed early leaves none running
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _start_workers(tiny: dict, out: Path, logs: Path) -> list[tuple[subprocess.Popen, Path]]:
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    procs = []
    for index in range(2):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env.pop("GENREKIT_COLLECTIVE_TIMEOUT", None)  # the heartbeats alone must catch a dead worker
        log = logs / f"worker{index}.log"
        cmd = [sys.executable, "balanced_trainer.py", "--config", str(tiny["config"])]
        cmd += ["--strategy", "multiworker", "--output_dir", str(out)]
        with open(log, "w") as fh:
            procs.append((subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT), log))
    return procs


def _wait(proc: subprocess.Popen, limit: float, log: Path | None = None) -> int:
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        # The worker's own last lines say where it hung (the log is gone with pytest's old tmp dirs).
        tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
        pytest.fail(f"worker {proc.pid} still running after {limit:.0f} s (a hang); its log ends:\n{tail}")


def test_two_workers_train_and_only_the_chief_writes_the_run(tiny, tmp_path):
    out = tmp_path / "run"
    procs = _start_workers(tiny, out, tmp_path)
    codes = [_wait(p, RUN_LIMIT, log) for p, log in procs]
    texts = [log.read_text() for _, log in procs]
    assert codes == [0, 0], texts[0][-3000:] + texts[1][-3000:]
    # The chief (worker 0) wrote the run; both trained the same 2 synchronized epochs.
    config = json.loads((out / "balanced_training_config.json").read_text())
    assert config["history"]["epochs_run"] == 2
    assert (out / "balanced_hierarchical_genre_model.h5").is_file()
    rows = (out / "training_log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # header and two epochs: the other worker appended nothing
    assert (out / "run.log").read_text().count("settings: ") == 1  # one writer of run.log
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["balanced_hierarchical_genre_model.h5", "balanced_training_config.json", "checkpoints"]
        + ["run.log", "run_settings.json", "tensorboard", "training_log.csv"]
    )
    # Worker 1 saved into a temporary folder of its own, removed at the end.
    line = next(s for s in texts[1].splitlines() if s.startswith("model: "))
    own = Path(line.removeprefix("model: ")).parent
    assert own != out and own.name.startswith("genrekit-worker1-") and not own.exists()
    assert "epoch 2 validation" in texts[0] and "epoch 2 validation" in texts[1]


def test_killing_a_worker_is_a_clear_error_on_the_other(tiny, shard_builds, tmp_path):
    out = tmp_path / "run"
    (chief, chief_log), (other, other_log) = _start_workers(tiny, out, tmp_path)
    deadline = time.monotonic() + RUN_LIMIT
    while "Epoch 1/2" not in other_log.read_text():  # training has started on both
        assert other.poll() is None and chief.poll() is None, other_log.read_text()[-3000:]
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.5)
    time.sleep(3)
    other.send_signal(signal.SIGKILL)
    other.wait()
    killed_at = time.monotonic()
    shard_builds.start()  # the next test's builds, in the time the chief needs to notice
    code = _wait(chief, 240, chief_log)
    waited = time.monotonic() - killed_at
    text = chief_log.read_text()
    assert code == 2, text[-3000:]
    last = [s for s in text.splitlines() if s.strip()][-1]
    assert last.startswith("error: multi-worker training stopped: another worker died"), last
    assert not (out / "balanced_hierarchical_genre_model.h5").exists()
    print(f"chief stopped {waited:.0f} s after the other worker was killed")


def test_two_shard_builds_at_once_into_one_cache_root_read_together(tiny, shard_builds):
    from genrekit.features.cache import FeatureCache, cache_folder
    from genrekit.settings import Settings
    from genrekit.train.run import BalancedGenreProcessor

    root = shard_builds.root / "features"
    outputs = shard_builds.outputs()
    assert [p.returncode for p in shard_builds.procs] == [0, 0], outputs
    settings = Settings.build(overrides=tiny["cfg"])
    processor = BalancedGenreProcessor(settings, tiny["cfg"]["metadata_dir"], tiny["cfg"]["audio_dir"])
    params = processor.feature_params()
    folder = cache_folder(root, processor.audio_dir, params)
    reference = cache_folder(tiny["cfg"]["cache_dir"], processor.audio_dir, params)
    assert sorted(p.name for p in folder.glob("part-*")) == ["part-s0of2-000", "part-s1of2-000"]
    with FeatureCache.open(folder, params) as both, FeatureCache.open(reference, params) as whole:
        assert both.track_ids.tolist() == whole.track_ids.tolist() and len(both) > 20
        assert {t % 2 for t in both.parts[0].track_ids} == {0}
        np.testing.assert_array_equal(both.read(whole.track_ids), whole.read(whole.track_ids))
        assert [f.track_id for f in both.failures] == [f.track_id for f in whole.failures]
