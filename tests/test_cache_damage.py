"""Damaged feature cache rows (zeroed, a bit flipped, NaN written on disk) are found, named by track
and never used: by the reader, the cache build, training and evaluation; an intact cache is never
flagged, and a cache written before row checksums gets them once."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from genrekit.errors import CacheDamageError, CacheError
from genrekit.features.cache import FeatureCache, ensure_cache
from genrekit.features.mel import FeatureParams, load_segments
from tests.conftest import copy_demo, tiny_overrides
from tests.features_helpers import write_clip

PARAMS = FeatureParams(duration=3.0, num_segments=4)
MODEL = "balanced_hierarchical_genre_model.h5"
CONFIG = "balanced_training_config.json"


def damage_rows(cache_dir: Path, zero: int, flip: int, nan: int) -> None:
    """On disk, in the cache's features.npy files: zero one track's row, flip one bit (of a
    mantissa: the value stays finite) in another's, write a NaN into a third's."""
    found = set()
    for part in sorted(Path(cache_dir).glob("part-*")):
        ids = np.load(part / "track_ids.npy").tolist()
        rows = np.load(part / "features.npy", mmap_mode="r+")
        if zero in ids:
            rows[ids.index(zero)] = 0
        if flip in ids:
            rows[ids.index(flip)].reshape(-1).view(np.uint16)[1000] ^= 1
        if nan in ids:
            rows[ids.index(nan)].reshape(-1)[777] = np.nan
        rows.flush()
        del rows
        found |= {zero, flip, nan} & set(ids)
    assert found == {zero, flip, nan}


def damage_lines(caplog, cache_dir: Path) -> dict[int, str]:
    """Track id -> the log line naming it as damaged (each must name the cache folder)."""
    lines = {}
    for record in caplog.records:
        message = record.getMessage()
        match = re.search(r"track (\d+) \(row \d+\) is damaged: ", message)
        if match:
            assert str(cache_dir) in message and record.levelno == logging.WARNING, message
            lines[int(match.group(1))] = message
    return lines


@pytest.fixture
def audio(tmp_path) -> dict[int, Path]:
    """Six tracks, each its own short MP3 in a folder of the test (so one can be taken away)."""
    return {
        100 + i: write_clip(tmp_path / "audio" / f"{100 + i}.mp3", seconds=3.0, sr=44100, channels=2, seed=i)
        for i in range(6)
    }


def _expected(paths: dict[int, Path]) -> dict[int, np.ndarray]:
    return {tid: load_segments(path, PARAMS).astype(np.float16) for tid, path in paths.items()}


def test_the_reader_names_each_damaged_row_and_never_returns_it(audio, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    ensure_cache(cache_dir, list(audio.items()), PARAMS, workers=2, progress=False)
    expected = _expected(audio)
    damage_rows(cache_dir, zero=101, flip=102, nan=103)

    cache = FeatureCache.open(cache_dir, PARAMS)
    with caplog.at_level(logging.WARNING), pytest.raises(CacheDamageError) as raised:
        cache.read(sorted(audio))
    assert sorted(d.track_id for d in raised.value.damaged) == [101, 102, 103]
    assert re.search(r"3 rows of the feature cache .* are damaged and were not used", str(raised.value))
    lines = damage_lines(caplog, cache_dir / "part-s0of1-000")
    assert sorted(lines) == [101, 102, 103]
    assert "all zeros" in lines[101]
    assert "checksum mismatch" in lines[102]
    assert "1 values not finite (NaN or inf)" in lines[103]

    # From then on they are not ok; the others read as they were written.
    assert cache.track_ids.tolist() == [100, 104, 105]
    assert cache.status([101, 102, 103, 104]).tolist() == ["damaged"] * 3 + ["ok"]
    assert cache.available(sorted(audio)).tolist() == [100, 104, 105]
    assert {(f.track_id, f.status) for f in cache.failures} == {
        (101, "damaged"),
        (102, "damaged"),
        (103, "damaged"),
    }
    for tid, row in zip([105, 100, 104], cache.read([105, 100, 104]), strict=True):
        np.testing.assert_array_equal(row, expected[tid])
    with pytest.raises(CacheError, match=r"102 \(damaged\)"):
        cache.read([102])
    # Another reader in this process knows as well, and verify() lists them without raising.
    again = FeatureCache.open(cache_dir, PARAMS)
    assert again.track_ids.tolist() == [100, 104, 105]
    assert sorted(d.track_id for d in again.damage()) == [101, 102, 103]


def test_a_build_recomputes_damaged_rows_from_the_audio_and_lists_those_without(audio, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    items = list(audio.items())
    ensure_cache(cache_dir, items, PARAMS, workers=2, progress=False)
    expected = _expected(audio)
    damage_rows(cache_dir, zero=101, flip=102, nan=103)
    kept = tmp_path / "kept.mp3"
    shutil.move(audio[103], kept)  # the NaN row's audio is gone: it cannot be recomputed

    with caplog.at_level(logging.WARNING):
        summary = ensure_cache(cache_dir, items, PARAMS, workers=2, progress=False)
    assert (summary.damaged_found, summary.done, summary.damaged, summary.cached) == (3, 2, 1, 3)
    assert "3 damaged rows found; 1 damaged rows left out" in str(summary)
    lines = damage_lines(caplog, cache_dir / "part-s0of1-000")
    assert sorted(lines) == [101, 102, 103]
    assert lines[101].endswith(f"recomputing it from {audio[101]}")
    assert lines[102].endswith(f"recomputing it from {audio[102]}")
    assert f"left out: its audio {audio[103]} is not there" in lines[103]

    cache = FeatureCache.open(cache_dir, PARAMS)
    assert cache.track_ids.tolist() == [100, 101, 102, 104, 105]
    np.testing.assert_array_equal(cache.read([101, 102]), np.stack([expected[101], expected[102]]))
    assert [(f.track_id, f.status) for f in cache.failures] == [(103, "damaged")]
    assert "values not finite" in cache.failures[0].reason
    assert f"103,{audio[103]},damaged," in (cache_dir / "part-s0of1-000" / "failures.csv").read_text()

    # The audio is back: the next build recomputes the row, and the list is empty again.
    shutil.move(kept, audio[103])
    summary = ensure_cache(cache_dir, items, PARAMS, workers=1, progress=False)
    assert (summary.done, summary.damaged) == (1, 0)
    cache = FeatureCache.open(cache_dir, PARAMS)
    assert cache.failures == [] and len(cache) == 6
    np.testing.assert_array_equal(cache.read(sorted(audio)), np.stack([expected[t] for t in sorted(audio)]))


def test_an_intact_cache_is_never_flagged(audio, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    items = list(audio.items())
    ensure_cache(cache_dir, items[:3], PARAMS, workers=2, progress=False)
    ensure_cache(cache_dir, items, PARAMS, workers=2, progress=False)  # extended: a second part
    with caplog.at_level(logging.WARNING):
        summary = ensure_cache(cache_dir, items, PARAMS, workers=1, progress=False)
        cache = FeatureCache.open(cache_dir, PARAMS)
        assert cache.verify(sorted(audio)) == []
        features = cache.read(sorted(audio))
    assert (summary.damaged_found, summary.cached, summary.done) == (0, 6, 0)
    assert not damage_lines(caplog, cache_dir)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    expected = _expected(audio)
    np.testing.assert_array_equal(features, np.stack([expected[t] for t in sorted(audio)]))


def test_a_cache_without_checksums_gets_them_once_and_its_zeroed_rows_are_recomputed(audio, tmp_path, caplog):
    """A cache written before row checksums (format 1): refused by the reader with the remedy,
    given its checksums by the next build, with a line saying so; an all-zero row is recomputed."""
    cache_dir = tmp_path / "cache"
    items = list(audio.items())
    ensure_cache(cache_dir, items, PARAMS, workers=2, progress=False)
    expected = _expected(audio)
    part = cache_dir / "part-s0of1-000"
    (part / "checksums.npy").unlink()
    manifest = json.loads((part / "manifest.json").read_text())
    manifest["format"] = 1
    del manifest["row_checksum"]
    (part / "manifest.json").write_text(json.dumps(manifest))
    rows = np.load(part / "features.npy", mmap_mode="r+")
    rows[4] = 0  # track 104: a row of a hole in the file, as an interrupted write could leave
    rows.flush()
    del rows

    with pytest.raises(CacheError, match=r"no row checksums .*balanced_trainer.py --extract_only"):
        FeatureCache.open(cache_dir, PARAMS)
    with caplog.at_level(logging.WARNING):
        summary = ensure_cache(cache_dir, items, PARAMS, workers=1, progress=False)
    assert any(f"{part} has no row checksums" in r.getMessage() for r in caplog.records)
    assert "all zeros" in damage_lines(caplog, part)[104]
    assert (summary.damaged_found, summary.done, summary.damaged) == (1, 1, 0)
    assert json.loads((part / "manifest.json").read_text())["format"] == 2
    cache = FeatureCache.open(cache_dir, PARAMS)
    np.testing.assert_array_equal(cache.read(sorted(audio)), np.stack([expected[t] for t in sorted(audio)]))


# --- training and evaluation over a damaged cache -------------------------------------------------


def _demo_copy(demo_dataset, dest: Path):
    copy_demo(demo_dataset, dest)
    root = demo_dataset.root
    return dataclasses.replace(
        demo_dataset,
        root=dest,
        metadata_dir=dest / demo_dataset.metadata_dir.relative_to(root),
        audio_dir=dest / demo_dataset.audio_dir.relative_to(root),
    )


@pytest.mark.slow
def test_training_never_sees_damaged_rows_and_names_them(demo_dataset, tmp_path, caplog):
    """The trainer's real first step (prepare_data: cache build, labels, norm) and its stream."""
    from genrekit.datasets.fma import audio_path
    from genrekit.settings import Settings
    from genrekit.train.data import BalancedGenreProcessor, prepare_data
    from genrekit.train.run import build_stream

    demo = _demo_copy(demo_dataset, tmp_path / "demo")
    settings = Settings.build(None, tiny_overrides(demo, tmp_path / "run"))
    processor = BalancedGenreProcessor(settings)
    processed = processor.load_dataset()
    cache = processor.extract_features(processed)  # as a first training leaves it
    training = np.intersect1d(processed.labels("training").track_ids, cache.track_ids)
    zero, flip, nan = (int(t) for t in training[[3, 10, 17]])
    damage_rows(cache.cache_dir, zero=zero, flip=flip, nan=nan)
    audio_path(demo.audio_dir, nan).unlink()  # its row cannot be recomputed: left out

    with caplog.at_level(logging.WARNING):
        data = prepare_data(settings)
    lines = damage_lines(caplog, cache.cache_dir)
    assert sorted(lines) == sorted([zero, flip, nan])
    assert "recomputing it" in lines[zero] and "recomputing it" in lines[flip] and "left out" in lines[nan]
    used = data.train_labels.track_ids
    assert zero in used and flip in used and nan not in used

    # Every segment the stream delivers in an epoch is one the audio gives (nothing zeroed,
    # flipped or NaN); the left-out track's segments are not among them.
    frontend = processor.frontend()
    expected = {
        tid: frontend.load(audio_path(demo.audio_dir, tid)).astype(np.float16) for tid in used.tolist()
    }
    allowed = {segment.tobytes() for row in expected.values() for segment in row}
    stream, _ = build_stream(settings, data)
    delivered = np.concatenate([x for x, *_ in stream.batches()])
    assert len(delivered) == stream.epoch_tracks() * frontend.row_shape[0]
    assert np.isfinite(delivered.astype(np.float32)).all()
    assert all(segment.tobytes() in allowed for segment in delivered)


@pytest.mark.slow
def test_evaluation_recomputes_damaged_rows_or_leaves_them_out_and_says_so(
    tiny_run, demo_dataset, tmp_path, caplog
):
    from genrekit.datasets.fma import audio_path
    from genrekit.evaluate.evaluator import RUN_SECTION, evaluate_model

    audio = tmp_path / "fma_copy"
    tracks = json.loads((tiny_run / CONFIG).read_text(encoding="utf-8"))
    for src in Path(demo_dataset.audio_dir).rglob("*.mp3"):
        dst = audio / src.relative_to(demo_dataset.audio_dir)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    tracks["settings"]["cache_dir"] = str(tmp_path / "features")
    (tmp_path / CONFIG).write_text(json.dumps(tracks), encoding="utf-8")

    def evaluate(out: str) -> dict:
        return evaluate_model(
            tiny_run / MODEL,
            tmp_path / CONFIG,
            audio_dir=audio,
            output_dir=tmp_path / out,
            plots=False,
            workers=2,
        )

    intact = evaluate("intact")
    cache_dir = Path(intact[RUN_SECTION]["cache_dir"])
    test_ids = intact[RUN_SECTION]["track_ids"]
    zero, flip, nan = test_ids[1], test_ids[4], test_ids[7]
    damage_rows(cache_dir, zero=zero, flip=flip, nan=nan)
    with caplog.at_level(logging.WARNING):
        recomputed = evaluate("recomputed")
    lines = damage_lines(caplog, cache_dir)
    assert sorted(lines) == sorted([zero, flip, nan])
    assert all("recomputing it from" in line for line in lines.values())
    for section in ("counts", "top", "medium", "all", "hierarchy", "targets"):
        assert recomputed[section] == intact[section], section
    assert recomputed[RUN_SECTION]["track_ids"] == test_ids

    # Damaged again, and one file gone: that track is left out, listed in the report, and said.
    caplog.clear()
    damage_rows(cache_dir, zero=zero, flip=flip, nan=nan)
    audio_path(audio, nan).unlink()
    with caplog.at_level(logging.WARNING):
        partial = evaluate("partial")
    assert "left out: its audio" in damage_lines(caplog, cache_dir)[nan]
    assert partial[RUN_SECTION]["track_ids"] == [t for t in test_ids if t != nan]
    left_out = {f["track_id"]: f for f in partial[RUN_SECTION]["left_out_files"]}
    assert left_out[nan]["status"] == "damaged" and "not finite" in left_out[nan]["reason"]
