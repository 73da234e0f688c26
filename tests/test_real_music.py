"""Genuine music through every path: the 62 fma_small clips of ``../shared/fma-real/fma_small/000/``.

The feature cache and the musicnn embedding cache are built once per session over all 62 clips
and compared row by row with each file's own features, computed here with the single-file
functions; folder inference (a CNN run and a musicnn-heads run) must give a result for every
clip with no warning of any kind; ``--tags`` must give musicnn's own tags. Their genres are not
known here (no ``tracks.csv``): nothing is scored. Skipped with a reason when the folder is absent.
The last test (no clips needed) pins the one TensorFlow warning the scripts drop to get there.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from genrekit.features.cache import FeatureCache, ensure_cache
from genrekit.features.cache.parts import FAILURES, part_dirs
from genrekit.features.frontends import MelSegments
from genrekit.features.mel import load_segments
from genrekit.features.params import FeatureParams
from tests.conftest import REAL_CLIPS

# musicnn patches per clip in the embedding cache: 2 of the 10 that cover a 30-s clip keep the
# session's build and its reference at ~0.06 s per clip (10 patches: ~0.36 s, ~45 s for both);
# the code path (decode, front end, forward, cache rows) is the same for any count.
MUSICNN_PATCHES = 2


def _items(folder: Path) -> list[tuple[int, Path]]:
    """(FMA track id, file) of every clip: the ids are the file names, as in FMA's layout."""
    return [(int(p.stem), p) for p in sorted(folder.glob("*.mp3"))]


@pytest.fixture(scope="session")
def real_mel_cache(real_clips_dir, tmp_path_factory):
    """The log-mel feature cache (training's default parameters) of the 62 clips, built once."""
    frontend = MelSegments(FeatureParams())
    cache_dir = tmp_path_factory.mktemp("real_mel")
    summary = ensure_cache(cache_dir, _items(real_clips_dir), frontend, workers=2, progress=False)
    return cache_dir, frontend, summary


@pytest.fixture(scope="session")
def real_musicnn_cache(real_clips_dir, musicnn_dir, tmp_path_factory):
    """The musicnn embedding cache of the 62 clips on MUSICNN_OUTPUT's default layer, built once."""
    from genrekit.features.musicnn import MusicnnEmbeddings
    from genrekit.settings import default_value

    output = default_value("musicnn_output")  # max_pool: 753 values a patch
    frontend = MusicnnEmbeddings(output=output, patches=MUSICNN_PATCHES, weights_dir=str(musicnn_dir))
    cache_dir = tmp_path_factory.mktemp("real_musicnn")
    summary = ensure_cache(cache_dir, _items(real_clips_dir), frontend, workers=2, progress=False)
    return cache_dir, frontend, summary


def _check_built(cache_dir: Path, frontend, summary, items) -> np.ndarray:
    """Every clip extracted, nothing defective, missing or truncated; the rows in track-id order."""
    assert (summary.requested, summary.done, summary.ok) == (REAL_CLIPS, REAL_CLIPS, REAL_CLIPS), summary
    assert (summary.defective, summary.missing, summary.pending, summary.truncated) == (0, 0, 0, 0), summary
    for part in part_dirs(cache_dir):  # no failures.csv (written only when a file fails), or its header
        listed = (part / FAILURES).read_text().splitlines() if (part / FAILURES).exists() else []
        assert len(listed) <= 1, listed
    with FeatureCache.open(cache_dir, frontend) as cache:
        assert cache.failures == [] and cache.truncated == []
        rows = cache.read([tid for tid, _ in items])
    assert rows.shape == (REAL_CLIPS, *frontend.row_shape)
    return rows.astype(np.float32)


@pytest.mark.slow
def test_feature_cache_of_the_real_clips_matches_each_files_own_segments(real_mel_cache, real_clips_dir):
    cache_dir, frontend, summary = real_mel_cache
    items = _items(real_clips_dir)
    rows = _check_built(cache_dir, frontend, summary, items)
    for (tid, path), row in zip(items, rows, strict=True):
        reference = load_segments(path, frontend.features)  # this process, this one file
        # The cache stores float16: within one float16 step (2**-10 relative) of the float32
        # reference; dB values near 0 get an absolute floor. A row of another clip is off by dBs.
        np.testing.assert_allclose(row, reference, rtol=2**-10, atol=1e-3, err_msg=f"track {tid} ({path})")
    # The rows are those of different music: no two clips' features coincide.
    assert len({row.tobytes() for row in rows.astype(np.float16)}) == REAL_CLIPS


@pytest.mark.slow
def test_musicnn_cache_of_the_real_clips_matches_each_files_own_embeddings(
    real_musicnn_cache, real_clips_dir
):
    cache_dir, frontend, summary = real_musicnn_cache
    items = _items(real_clips_dir)
    rows = _check_built(cache_dir, frontend, summary, items)
    assert rows.shape[1:] == (MUSICNN_PATCHES, 753)
    for (tid, path), row in zip(items, rows, strict=True):
        reference = frontend.embed(frontend.patches_of(path))  # front end + model, this one file
        # float16 rows of float32 embeddings computed in a worker (its own thread count, so its own
        # summation order): one float16 step relative, and an absolute floor for values near 0
        # (a ReLU layer: many are exactly 0).
        np.testing.assert_allclose(row, reference, rtol=2**-10, atol=2e-3, err_msg=f"track {tid} ({path})")
    assert len({row.tobytes() for row in rows.astype(np.float16)}) == REAL_CLIPS


def _folder_inference(run: Path, folder: Path, out: Path, caplog, *extra: str) -> dict:
    """balanced_inference.py --folder over the clips, every Python warning and log warning recorded."""
    import balanced_inference

    args = ["--model", str(run), "--folder", str(folder), "--output", str(out), *extra]
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        assert balanced_inference.main([*args, "--quiet", "--no_progress"]) == 0
    logged = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.WARNING]
    assert logged == [], logged
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    return json.loads(out.read_text())


def _check_every_clip(report: dict, folder: Path, segments: int) -> None:
    names = {p.name for p in folder.glob("*.mp3")}
    assert report["errors"] == {} and set(report["results"]) == names
    assert report["summary"]["with_warnings"] == 0
    for name, result in report["results"].items():
        assert result["warnings"] == [], (name, result["warnings"])
        assert result["num_segments"] == segments and result["sample_rate"] == 44100
        assert 29.9 <= result["duration_seconds"] <= 30.1, name
        assert result["aggregated_results"]["top_genre"]["average_confidence"]["name"]
    mono = {n for n, r in report["results"].items() if r["channels"] == 1}
    assert mono == {"000666.mp3", "000667.mp3"}  # fma_small/000's two mono clips (README)


@pytest.mark.slow
def test_cnn_folder_inference_gives_every_real_clip_a_result_and_no_warning(
    tiny_run, real_clips_dir, tmp_path, caplog
):
    report = _folder_inference(tiny_run, real_clips_dir, tmp_path / "cnn.json", caplog, "--workers", "2")
    saved = json.loads((tiny_run / "balanced_training_config.json").read_text())["settings"]
    _check_every_clip(report, real_clips_dir, saved["num_segments"])


@pytest.mark.slow
def test_musicnn_folder_inference_and_tags_give_every_real_clip_a_result_and_no_warning(
    musicnn_run, real_clips_dir, tmp_path, caplog, capsys
):
    # One process decodes (--workers 1): the musicnn front end in worker processes is the
    # embedding cache's path above; this keeps the suite's time to ~0.1 s per clip.
    args = ("--workers", "1", "--tags", "--top_k", "3")
    report = _folder_inference(musicnn_run, real_clips_dir, tmp_path / "musicnn.json", caplog, *args)
    saved = json.loads((musicnn_run / "balanced_training_config.json").read_text())["settings"]
    _check_every_clip(report, real_clips_dir, saved["musicnn_patches"])
    from genrekit.models.musicnn_weights import musicnn_tags

    known = set(musicnn_tags("MSD_musicnn", saved_weights(saved)))
    printed = capsys.readouterr().out
    lines = printed[printed.index("MSD_musicnn tags, the 3 most likely") :].splitlines()[1:]
    assert [line.split()[0] for line in lines] == sorted(report["results"])  # one line per clip
    for line in lines:
        tags = [part.rsplit(" ", 1) for part in line.split(None, 1)[1].split(", ")]
        assert len(tags) == 3 and {tag for tag, _ in tags} <= known, line
        probs = [float(p) for _, p in tags]
        assert probs == sorted(probs, reverse=True) and 0.0 <= probs[-1] <= probs[0] <= 1.0, line

    # --file --tags on a mono clip: all 50 of musicnn's tags, its top 3 those of the folder's line.
    import balanced_inference

    mono = real_clips_dir / "000666.mp3"
    assert (
        balanced_inference.main(["--model", str(musicnn_run), "--file", str(mono), "--tags", "--quiet"]) == 0
    )
    printed = capsys.readouterr().out
    full = printed[printed.index("MSD_musicnn tags of") :].splitlines()[1:]
    assert sorted(line.split(None, 1)[1] for line in full) == sorted(known)
    (folder_line,) = [line for line in lines if line.split()[0] == mono.name]
    top3 = [part.rsplit(" ", 1)[0] for part in folder_line.split(None, 1)[1].split(", ")]
    assert [line.split(None, 1)[1] for line in full[:3]] == top3


def saved_weights(settings: dict) -> Path:
    """The musicnn weights folder a run's settings name."""
    return Path(settings["pretrained_dir"]) / "musicnn"


def test_scripts_drop_tensorflows_retracing_warning_and_keep_its_others(caplog):
    """TensorFlow counts the predict-step traces of every model in a process together, so a run
    that loads several models (this session, an ensemble) is warned about each model's first
    traces; the scripts' logging drops that one message, nothing else of TensorFlow's."""
    from genrekit.cli import setup_logging, teardown_logging

    setup_logging()
    try:
        tensorflow = logging.getLogger("tensorflow")
        with caplog.at_level(logging.WARNING):
            tensorflow.warning(
                "5 out of the last 16 calls to <function one_step_on_data_distributed at 0x1> triggered "
                "tf.function retracing. Tracing is expensive ..."
            )
            tensorflow.warning("a warning of TensorFlow's own")
        assert [r.getMessage() for r in caplog.records] == ["a warning of TensorFlow's own"]
    finally:
        teardown_logging()
