"""The feature cache: build, read, failures, extension, manifest checks, shards, kill -9 and resume."""

from __future__ import annotations

import dataclasses
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

from genrekit.errors import CacheError, ConfigError
from genrekit.features.cache import FeatureCache, ensure_cache, parse_shard
from genrekit.features.cache.build import _shard_lock
from genrekit.features.cache.parts import forget_checks
from genrekit.features.mel import FeatureParams, band_stats, load_segments
from tests.features_helpers import write_clip
from tests.process_helpers import alive, children

REPO = Path(__file__).resolve().parents[1]
PARAMS = FeatureParams(duration=3.0, num_segments=4)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    """Seven distinct short clips: MP3s like FMA's (44.1 kHz stereo), a 22.05 kHz MP3 and WAVs."""
    root = tmp_path_factory.mktemp("clips")
    specs = [(44100, 2, "mp3")] * 4 + [(22050, 1, "mp3"), (22050, 1, "wav"), (48000, 2, "wav")]
    return [
        write_clip(root / f"c{i}.{ext}", seconds=3.0, sr=sr, channels=ch, seed=i)
        for i, (sr, ch, ext) in enumerate(specs)
    ]


@pytest.fixture
def items(clips, tmp_path) -> list[tuple[int, Path]]:
    """Ten tracks: eight good ones, one defective (text), one missing."""
    bad = tmp_path / "bad.mp3"
    bad.write_text("not audio\n")
    good = [(100 + i, clips[i % len(clips)]) for i in range(8)]
    return [*good, (200, bad), (300, tmp_path / "gone.mp3")]


def test_build_read_and_failures(items, tmp_path):
    cache_dir = tmp_path / "cache"
    summary = ensure_cache(cache_dir, items, PARAMS, workers=2, progress=False)
    assert (summary.requested, summary.cached, summary.done) == (10, 0, 8)
    assert (summary.defective, summary.missing, summary.pending) == (1, 1, 0)
    assert "skipped 1 defective, 1 missing" in str(summary)

    cache = FeatureCache.open(cache_dir, PARAMS)
    assert cache.track_ids.tolist() == list(range(100, 108))
    assert cache.status([100, 200, 300, 999]).tolist() == ["ok", "defective", "missing", "absent"]
    assert 105 in cache and 200 not in cache
    assert cache.available([300, 107, 200, 101]).tolist() == [107, 101]
    # Requested order, duplicates included; values are load_segments' rounded to float16.
    features = cache.read([107, 100, 107])
    assert features.dtype == np.float16 and features.shape == (3, 4, 128, 64)
    paths = dict(items)
    for row, tid in zip(features, [107, 100, 107], strict=True):
        np.testing.assert_array_equal(row, load_segments(paths[tid], PARAMS).astype(np.float16))
    with pytest.raises(CacheError, match=r"200 \(defective\), 999 \(absent\)"):
        cache.read([100, 200, 999])

    reasons = {f.track_id: (f.status, f.reason) for f in cache.failures}
    assert reasons == {
        200: ("defective", "not an audio file (plain text)"),
        300: ("missing", "file not found"),
    }
    csv_text = (summary.failures_csv[0]).read_text()
    assert csv_text.splitlines()[0] == "track_id,path,status,reason"
    assert f"200,{paths[200]},defective,not an audio file (plain text)" in csv_text

    stats = cache.norm_stats(cache.track_ids, chunk_rows=3)
    direct = band_stats(cache.read(cache.track_ids))
    np.testing.assert_allclose(stats.mean, direct.mean, rtol=1e-6)
    np.testing.assert_allclose(stats.std, direct.std, rtol=1e-5)

    again = ensure_cache(cache_dir, items, PARAMS, workers=2, progress=False)
    assert (again.cached, again.done, again.defective, again.missing) == (8, 0, 1, 1)


def test_missing_files_are_retried_and_defective_only_on_request(items, clips, tmp_path):
    cache_dir = tmp_path / "cache"
    ensure_cache(cache_dir, items, PARAMS, workers=1, progress=False)
    paths = dict(items)
    shutil.copy(clips[0], paths[300])  # the missing file arrives
    paths[200].write_bytes(clips[1].read_bytes())  # the defective file is replaced by a good one
    summary = ensure_cache(cache_dir, items, PARAMS, workers=1, progress=False)
    assert (summary.done, summary.defective, summary.missing) == (1, 1, 0)
    cache = FeatureCache.open(cache_dir, PARAMS)
    assert cache.status([300, 200]).tolist() == ["ok", "defective"]
    assert [f.track_id for f in cache.failures] == [200]
    summary = ensure_cache(cache_dir, items, PARAMS, workers=1, progress=False, retry_defective=True)
    assert (summary.done, summary.defective) == (1, 0)
    cache = FeatureCache.open(cache_dir, PARAMS)
    assert cache.failures == [] and len(cache) == 10
    assert "200," not in (cache_dir / "part-s0of1-000" / "failures.csv").read_text()


def test_new_tracks_extend_the_cache_without_touching_finished_rows(clips, tmp_path):
    cache_dir = tmp_path / "cache"
    first = [(i, clips[i % 7]) for i in range(1, 6)]
    ensure_cache(cache_dir, first, PARAMS, workers=1, progress=False)
    part0 = cache_dir / "part-s0of1-000" / "features.npy"
    before = part0.read_bytes()
    more = [(i, clips[i % 7]) for i in range(1, 10)]
    summary = ensure_cache(cache_dir, more, PARAMS, workers=1, progress=False)
    assert (summary.cached, summary.done) == (5, 4)
    assert part0.read_bytes() == before
    assert sorted(p.name for p in cache_dir.glob("part-*")) == ["part-s0of1-000", "part-s0of1-001"]
    cache = FeatureCache.open(cache_dir, PARAMS)
    features = cache.read([9, 2])  # one row from each part
    np.testing.assert_array_equal(features[0], load_segments(clips[2], PARAMS).astype(np.float16))
    np.testing.assert_array_equal(features[1], load_segments(clips[2], PARAMS).astype(np.float16))


def test_other_parameters_or_feature_version_are_refused(clips, tmp_path):
    cache_dir = tmp_path / "cache"
    ensure_cache(cache_dir, [(1, clips[0])], PARAMS, workers=1, progress=False)
    other = dataclasses.replace(PARAMS, n_mels=64)
    with pytest.raises(CacheError, match=r"built with other feature parameters: n_mels=128 \(asked 64\)"):
        ensure_cache(cache_dir, [(1, clips[0])], other, workers=1, progress=False)
    with pytest.raises(CacheError, match=r"n_mels=128 \(asked 64\).*delete .*cache to rebuild it"):
        FeatureCache.open(cache_dir, other)
    manifest_path = cache_dir / "part-s0of1-000" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["feature_version"] = 0
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CacheError, match="feature code version 0"):
        FeatureCache.open(cache_dir, PARAMS)
    with pytest.raises(CacheError, match="no feature cache at"):
        FeatureCache.open(tmp_path / "empty", PARAMS)


def test_shards_build_parts_that_open_together(clips, tmp_path):
    items = [(i, clips[i % 7]) for i in range(20, 32)]
    whole = tmp_path / "whole"
    ensure_cache(whole, items, PARAMS, workers=1, progress=False)
    for index in (0, 1):
        summary = ensure_cache(
            tmp_path / f"m{index}", items, PARAMS, workers=1, shard=(index, 2), progress=False
        )
        assert summary.requested == 6
    merged = tmp_path / "merged"
    merged.mkdir()
    for index in (0, 1):
        for part in (tmp_path / f"m{index}").glob("part-*"):
            shutil.move(part, merged / part.name)
    assert sorted(p.name for p in merged.iterdir()) == ["part-s0of2-000", "part-s1of2-000"]
    a, b = FeatureCache.open(merged, PARAMS), FeatureCache.open(whole, PARAMS)
    assert a.track_ids.tolist() == b.track_ids.tolist() == list(range(20, 32))
    np.testing.assert_array_equal(a.read(a.track_ids), b.read(b.track_ids))
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


def test_a_second_build_of_the_same_shard_is_refused(clips, tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    with _shard_lock(cache_dir, (0, 1)), pytest.raises(CacheError, match="another build of shard 0/1"):
        ensure_cache(cache_dir, [(1, clips[0])], PARAMS, workers=1, progress=False)
    # Another shard is not blocked.
    with _shard_lock(cache_dir, (0, 1)):
        ensure_cache(cache_dir, [(1, clips[0])], PARAMS, workers=1, shard=(1, 2), progress=False)


_BUILD = """
import json, sys
from genrekit.features.mel import FeatureParams
from genrekit.features.cache import ensure_cache
spec = json.loads(sys.argv[1])
ensure_cache(spec["cache"], spec["items"], FeatureParams.from_dict(spec["params"]), workers=1,
             progress=False, commit_seconds=0.0)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to watch the build's processes")
def test_build_killed_with_sigkill_resumes_to_the_same_features(clips, tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(os.urandom(5000))
    items = [(i, str(clips[i % 7])) for i in range(1, 601)] + [
        (700, str(bad)),
        (701, str(tmp_path / "no.mp3")),
    ]
    cache_dir = tmp_path / "killed"
    spec = json.dumps({"cache": str(cache_dir), "items": items, "params": PARAMS.to_dict()})
    proc = subprocess.Popen([sys.executable, "-c", _BUILD, spec], cwd=REPO, stderr=subprocess.PIPE)
    status_path = cache_dir / "part-s0of1-000" / "status.npy"
    workers: set[int] = set()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            workers.update(children(proc.pid))
            if status_path.exists() and (np.load(status_path) == 1).sum() >= 30:
                break
            time.sleep(0.005)
        workers.update(children(proc.pid))
        assert proc.poll() is None, f"the build ended before it could be killed: {proc.stderr.read()!r}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    # Orphaned workers see their pipe close and exit: nothing is left running.
    assert workers
    deadline = time.monotonic() + 60  # its own wait: the build may have used most of the first
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)

    ok_at_kill = int((np.load(status_path) == 1).sum())
    assert 30 <= ok_at_kill < 600
    resumed = ensure_cache(cache_dir, items, PARAMS, workers=2, progress=False)
    assert resumed.cached == ok_at_kill
    assert resumed.done == 600 - ok_at_kill
    assert (resumed.defective, resumed.missing, resumed.pending) == (1, 1, 0)

    reference = tmp_path / "uninterrupted"
    ensure_cache(reference, items, PARAMS, workers=2, progress=False)
    a, b = FeatureCache.open(cache_dir, PARAMS), FeatureCache.open(reference, PARAMS)
    assert a.track_ids.tolist() == b.track_ids.tolist() == list(range(1, 601))
    # Every row has its checksum, whenever the kill came: none is flagged (reads check them too).
    forget_checks()
    assert a.verify(a.track_ids) == [] and resumed.damaged_found == 0
    assert np.array_equal(a.read(a.track_ids), b.read(b.track_ids))
    assert [(f.track_id, f.status) for f in a.failures] == [(700, "defective"), (701, "missing")]


def test_workers_that_cannot_start_stop_the_build_without_marking_files(clips, tmp_path):
    """A user script without a __main__ guard: spawned workers die at start-up; no file is blamed."""
    script = tmp_path / "unguarded.py"
    items = [(100 + i, str(c)) for i, c in enumerate(clips[:3])]
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from genrekit.features.mel import FeatureParams\n"
        "from genrekit.features.cache import ensure_cache\n"
        f"ensure_cache({str(tmp_path / 'cache')!r}, {items!r}, FeatureParams(duration=3.0, num_segments=4),"
        " workers=2, progress=False)\n"
    )
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "CacheError" in result.stderr and '__name__ == "__main__"' in result.stderr
    status = np.load(next((tmp_path / "cache").glob("part-*")) / "status.npy")
    assert not status.any()  # every row still pending: nothing was marked defective
