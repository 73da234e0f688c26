"""The balancing study's script (profiles, power of the full profile, --quick end to end and resumed) and the MFCC baseline."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrekit.errors import AudioDecodeError, ConfigError
from genrekit.evaluate.baseline import N_FEATURES, extract_mfcc_features, feature_names, mfcc_statistics

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location(
        "bench_balancing", REPO / "benchmarks" / "bench_balancing.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_wav(path: Path, x: np.ndarray, rate: int) -> Path:
    import soundfile as sf

    sf.write(path, x, rate)
    return path


def test_mfcc_statistics_layout_and_values(tmp_path, rng):
    """140 values in (statistic, coefficient) order; the statistics agree with each other."""
    rate = 22050
    t = np.arange(2 * rate) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(len(t))).astype(np.float32)
    v = mfcc_statistics(write_wav(tmp_path / "a.wav", x, rate), duration=None)
    assert v.shape == (N_FEATURES,) == (len(feature_names()),)
    mean, std, _skew, _kurt, median, vmin, vmax = v.reshape(7, 20)
    assert np.all(vmin <= median) and np.all(median <= vmax)
    assert np.all(vmin <= mean) and np.all(mean <= vmax)
    assert np.all(std >= 0)
    # Resampling: the same signal written at 44.1 kHz gives nearly the same features.
    t2 = np.arange(2 * 44100) / 44100
    x2 = (0.3 * np.sin(2 * np.pi * 440 * t2)).astype(np.float32)
    x1 = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    a = mfcc_statistics(write_wav(tmp_path / "b.wav", x1, rate), duration=None)
    b = mfcc_statistics(write_wav(tmp_path / "c.wav", x2, 44100), duration=None)
    np.testing.assert_allclose(a[:20], b[:20], atol=3.0)  # means of the MFCCs, in dB-like units


def test_mfcc_duration_cap(tmp_path, rng):
    """Only the first ``duration`` seconds count: a loud second half changes nothing."""
    rate = 22050
    quiet = 0.05 * rng.standard_normal(rate)
    loud = np.sin(2 * np.pi * 1000 * np.arange(rate) / rate)
    path = write_wav(tmp_path / "x.wav", np.concatenate([quiet, loud]).astype(np.float32), rate)
    first = write_wav(tmp_path / "first.wav", quiet.astype(np.float32), rate)
    np.testing.assert_allclose(mfcc_statistics(path, duration=1.0), mfcc_statistics(first, duration=None))
    assert not np.allclose(mfcc_statistics(path, duration=None), mfcc_statistics(first, duration=None))


@pytest.mark.parametrize(
    "name, content, match",
    [("empty.mp3", b"", "empty file"), ("junk.mp3", b"not audio at all" * 50, "cannot decode")],
)
def test_mfcc_bad_files_are_named(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioDecodeError, match=match) as info:
        mfcc_statistics(path)
    assert str(path) in str(info.value)


def test_extract_records_failures_without_zero_rows(tmp_path, rng):
    rate = 22050
    good = write_wav(tmp_path / "good.wav", (0.1 * rng.standard_normal(rate)).astype(np.float32), rate)
    (tmp_path / "bad.mp3").write_bytes(b"")
    items = [(5, good), (3, tmp_path / "bad.mp3"), (9, tmp_path / "missing.mp3")]
    feats = extract_mfcc_features(items, workers=1)
    assert feats.track_ids.tolist() == [5]
    assert set(feats.failures) == {3, 9}
    assert "missing.mp3" in feats.failures[9]
    x, found = feats.rows([9, 5])
    assert found.tolist() == [False, True] and x.shape == (1, N_FEATURES)
    feats.save(tmp_path / "f.npz")
    again = type(feats).load(tmp_path / "f.npz")
    np.testing.assert_array_equal(again.features, feats.features)
    assert again.failures == feats.failures


def test_extract_in_worker_processes_equals_the_serial_run(tmp_path, rng):
    """The pool (genrekit.workers.run_pool) gives the in-process values and the same failures."""
    rate = 22050
    items = [
        (i, write_wav(tmp_path / f"{i}.wav", (0.1 * rng.standard_normal(rate)).astype(np.float32), rate))
        for i in (4, 2, 8, 6)
    ]
    (tmp_path / "bad.mp3").write_bytes(b"")
    items.append((3, tmp_path / "bad.mp3"))
    serial = extract_mfcc_features(items, workers=1)
    pooled = extract_mfcc_features(items, workers=2)
    assert pooled.track_ids.tolist() == serial.track_ids.tolist() == [2, 4, 6, 8]
    # float32 STFTs: one BLAS thread per worker sums in another order than this process (~2e-6).
    np.testing.assert_allclose(pooled.features, serial.features, rtol=1e-4, atol=1e-4)
    assert not np.allclose(pooled.features[0], pooled.features[1], rtol=1e-4, atol=1e-4)
    assert pooled.failures == serial.failures and list(pooled.failures) == [3]


def test_unknown_classifier_is_refused():
    from genrekit.evaluate.baseline import make_classifier

    with pytest.raises(ConfigError, match="'tree'"):
        make_classifier("tree")


def test_smallest_classes_skip_genres_without_tracks():
    bench = load_bench()
    assert bench.smallest_classes(np.array([50, 0, 2, 3, 9, 1]), k=3) == [5, 2, 3]


def test_profiles_write_docs_only_in_the_full_profile():
    bench = load_bench()
    quick, full = bench.resolve_args(["--quick"]), bench.resolve_args([])
    assert quick.results is None and quick.folds >= 2
    assert Path(full.results) == REPO / "docs" / "results.md" and full.folds >= 5
    real = bench.resolve_args(["--metadata_dir", "m", "--audio_dir", "a"])
    assert real.folds == 0 and real.max_imbalance is None  # real FMA: the official split


def test_full_profile_dataset_gives_the_five_smallest_genres_15_tracks():
    """The full profile's demo (capped imbalance) tests each of the five smallest top genres >= 15 times."""
    from genrekit.datasets.demo.metadata import make_demo_metadata
    from genrekit.evaluate.study import make_artist_folds

    bench = load_bench()
    p = bench.PROFILES["full"]
    tracks, _ = make_demo_metadata(p["tracks"], seed=bench.DEMO_SEED, max_imbalance=p["max_imbalance"])
    top = tracks["track", "genre_top"].astype(str).to_numpy()
    folds = make_artist_folds(
        tracks.index, tracks["artist", "id"], top, n_folds=p["folds"], seed=bench.FOLD_SEED
    )
    labelled = top != "nan"
    # Every track is tested once, so the pooled test tracks of a genre are all its tracks.
    assert np.all(folds.test_fold >= 0)
    counts = pd.Series(top[labelled]).value_counts()
    assert len(counts) == 16 and counts.nsmallest(5).min() >= bench.MIN_SMALL_TRACKS
    # ... and every fold tests some of each of them.
    for genre in counts.nsmallest(5).index:
        assert len(set(folds.test_fold[top == genre].tolist())) == p["folds"], genre


@pytest.mark.slow
def test_quick_mode_table_and_resume(tmp_path, capsys):
    """--quick runs end to end, prints and writes both tables; a second run reuses every finished run.

    Rows 1 (trained), 7 (row 1's models adjusted) and 8a/8b (MFCC + SVM): every kind of row, in
    the time the suite has (the other trained rows differ from row 1 only in switches that
    tests/test_training.py trains with).
    """
    bench = load_bench()
    results = tmp_path / "out" / "results.md"
    keys = ("1", "7", "8a", "8b")
    argv = ["--quick", "--work_dir", str(tmp_path / "work"), "--results", str(results), "--rows", *keys]
    assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    text = results.read_text()
    for row in bench.ROWS:
        shown = f"| {row.key} | {row.label}"
        assert (shown in printed) == (shown in text) == (row.key in keys), row.key
    assert "paired difference" in printed.lower() and "synthetic" in text.lower()
    assert (results.parent / "results_recall.png").stat().st_size > 10_000
    (raw_path,) = (tmp_path / "work").glob("*/results.json")
    raw = json.loads(raw_path.read_text())
    assert set(raw["summary"]) == set(keys)
    assert raw["summary"]["1"]["difference"] == {}
    for key, row in raw["summary"].items():
        baseline = key.startswith("8")
        for metric, fig in row["value"].items():
            if baseline and metric.startswith("all_"):
                assert math.isnan(fig["mean"])
                continue
            if not metric.startswith("recall_"):
                # The interval is that of the mean over folds (genrekit.evaluate.study.summarize), not of the pooled figure.
                assert 0.0 <= fig["mean"] <= 1.0 and fig["low"] <= fig["mean"] <= fig["high"], (key, metric)
        for metric, fig in row["difference"].items():
            assert math.isnan(fig["mean"]) or -1.0 <= fig["low"] <= fig["high"] <= 1.0, (key, metric)
    # Row 7 is row 1's model: the same all-genres figures, no training time of its own.
    assert raw["summary"]["7"]["value"]["all_lrap"] == raw["summary"]["1"]["value"]["all_lrap"]
    assert raw["rows"]["7"]["seconds"] == [0.0]
    models = sorted((tmp_path / "work").glob("*/runs/*/balanced_hierarchical_genre_model.h5"))
    assert len(models) == bench.PROFILES["quick"]["folds"]  # row 1's, one per fold
    before = {m: m.stat().st_mtime_ns for m in models}
    assert bench.main(argv) == 0  # resumes: every run and prediction is reused
    assert {m: m.stat().st_mtime_ns for m in models} == before
    again = json.loads(raw_path.read_text())["summary"]
    assert json.dumps(again, sort_keys=True) == json.dumps(raw["summary"], sort_keys=True)  # NaN-safe


def test_ensemble_row_is_the_mean_of_its_members_in_the_global_vocabulary():
    """Row 12's pooling: two members' track probabilities averaged per fold, worked out by hand.

    Member B's all-genres vocabulary lacks genre 30: it counts 0 there, and the threshold of
    genre 30 is member A's alone.
    """
    bench = load_bench()

    class V(types.SimpleNamespace):
        def __len__(self):
            return len(self.genre_ids)

    gvocab = {
        level: V(genre_ids=(10, 20, 30), index={10: 0, 20: 1, 30: 2}) for level in ("top", "medium", "all")
    }
    ids = np.array([5, 7])
    a = {
        "track_ids": ids,
        "top": np.array([[0.6, 0.4, 0.0], [0.2, 0.2, 0.6]]),
        "top_ids": np.array([10, 20, 30]),
        "medium": np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        "medium_ids": np.array([10, 20, 30]),
        "all": np.array([[0.9, 0.1, 0.5], [0.3, 0.7, 0.1]]),
        "all_ids": np.array([10, 20, 30]),
        "thresholds": np.array([0.2, 0.4, 0.6]),
    }
    b = {  # its classes in another order, and no genre 30 in its all-genres head
        "track_ids": ids,
        "top": np.array([[0.0, 0.2, 0.8], [0.5, 0.1, 0.4]]),
        "top_ids": np.array([30, 10, 20]),
        "medium": np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]),
        "medium_ids": np.array([10, 20, 30]),
        "all": np.array([[0.1, 0.3], [0.5, 0.1]]),
        "all_ids": np.array([20, 10]),
        "thresholds": np.array([0.5, 0.3]),
    }
    row = bench.Row("12", "ensemble", "ensemble", members=("5", "9"))
    results = {"5": {0: {"pred": a, "seconds": 3.0}}, "9": {0: {"pred": b, "seconds": 4.0}}}
    out = bench.ensemble_rows([row], results, gvocab)["12"][0]
    # top: b reordered to (10, 20, 30) is [[0.2, 0.8, 0.0], [0.1, 0.4, 0.5]]
    np.testing.assert_allclose(out["pred"]["top"], [[0.4, 0.6, 0.0], [0.15, 0.3, 0.55]])
    np.testing.assert_allclose(out["pred"]["medium"], [[0.75, 0.25, 0.0], [0.0, 0.5, 0.5]])
    # all: b reordered is [[0.3, 0.1, 0], [0.1, 0.5, 0]]
    np.testing.assert_allclose(out["pred"]["all"], [[0.6, 0.1, 0.25], [0.2, 0.6, 0.05]])
    np.testing.assert_allclose(out["pred"]["thresholds"], [0.25, 0.45, 0.6])
    np.testing.assert_array_equal(out["pred"]["top_ids"], [10, 20, 30])
    assert out["seconds"] == 7.0
    b_other = dict(b, track_ids=np.array([5, 8]))
    with pytest.raises(SystemExit, match="row 12.*other tracks in fold 0"):
        bench.ensemble_rows(
            [row], {"5": {0: {"pred": a, "seconds": 1}}, "9": {0: {"pred": b_other, "seconds": 1}}}, gvocab
        )
