"""Smoke test of the balancing study's --quick mode and unit tests of the MFCC baseline."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from genrekit.baseline import N_FEATURES, extract_mfcc_features, feature_names, mfcc_statistics
from genrekit.errors import AudioDecodeError, ConfigError

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


def test_unknown_classifier_is_refused():
    from genrekit.baseline import make_classifier

    with pytest.raises(ConfigError, match="'tree'"):
        make_classifier("tree")


def test_smallest_classes_skip_genres_absent_from_test():
    bench = load_bench()
    assert bench.smallest_classes(np.array([50, 1, 2, 3, 9]), np.array([5, 0, 1, 1, 2])) == [2, 3, 4]


@pytest.mark.slow
def test_quick_mode_table(tmp_path, capsys):
    """The --quick study runs end to end and prints and writes a table with every row, values in [0, 1]."""
    bench = load_bench()
    results = tmp_path / "out" / "results.md"
    assert bench.main(["--quick", "--work-dir", str(tmp_path / "work"), "--results", str(results)]) == 0
    printed = capsys.readouterr().out
    text = results.read_text()
    for row in bench.ROWS:
        assert f"| {row.key} | {row.label}" in printed
        assert f"| {row.key} | {row.label}" in text
    assert "synthetic" in text.lower() and "--metadata-dir" in text
    assert (results.parent / "results_recall.png").stat().st_size > 10_000
    raw = json.loads((tmp_path / "work" / "results.json").read_text())
    assert set(raw["rows"]) == {row.key for row in bench.ROWS}
    for key, row in raw["rows"].items():
        nn = not key.startswith(("6", "7"))
        for metric, values in row["metrics"].items():
            for v in values:
                if v is None:  # only the baselines' medium and all-genres cells are empty
                    assert not nn and not metric.startswith("top"), (key, metric)
                else:
                    assert 0.0 <= v <= 1.0, (key, metric, v)
        for recalls in row["recall"]:
            assert all(r is None or math.isnan(r) or 0.0 <= r <= 1.0 for r in recalls)
        assert all(s >= 0 for s in row["seconds"])
        if nn:
            assert all(row["metrics"][m][0] is not None for m in ("medium_f1_macro", "all_jaccard"))
    # The baselines saw the same test tracks as the model rows (the top-genre test tracks).
    assert raw["baseline_tracks"]["test"] == sum(raw["top_counts"]["test"])
