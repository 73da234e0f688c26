"""Shared fixtures: a seeded rng, the genuine FMA files (skipped when absent), headless plots, and
what several test files would otherwise build each on their own, built once per session: the demo
datasets, a tiny run trained on the demo, a tiny model trained on random data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# What genrekit.backend sets before TensorFlow is imported, for tests that import Keras themselves.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

REPO = Path(__file__).resolve().parents[1]
# The genuine FMA files live beside the checkout, never inside it.
FMA_REAL = Path(os.environ.get("GENREKIT_FMA_REAL", REPO.parent / "shared" / "fma-real"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def fma_real() -> Path:
    """The folder of genuine FMA files; skips the test when it is absent."""
    if not (FMA_REAL / "fma_metadata" / "genres.csv").is_file():
        pytest.skip(f"genuine FMA files not found at {FMA_REAL} (set GENREKIT_FMA_REAL)")
    return FMA_REAL


@pytest.fixture(scope="session")
def real_genres_csv(fma_real: Path) -> Path:
    return fma_real / "fma_metadata" / "genres.csv"


@pytest.fixture(scope="session")
def real_clip(fma_real: Path) -> Path:
    path = fma_real / "fma_small" / "000" / "000002.mp3"
    if not path.is_file():
        pytest.skip(f"genuine FMA clip not found at {path}")
    return path


# The whole fma_small/000/ folder: 62 genuine clips (30 s, 44.1 kHz, 60 stereo and 2 mono).
REAL_CLIPS = 62


@pytest.fixture(scope="session")
def real_clips_dir(fma_real: Path) -> Path:
    """``fma_small/000/`` of the genuine files, holding its 62 clips; skips the test when it does not."""
    folder = fma_real / "fma_small" / "000"
    found = len(list(folder.glob("*.mp3")))
    if found != REAL_CLIPS:
        pytest.skip(f"{folder} holds {found} of fma_small's {REAL_CLIPS} clips of 000/ (see its README)")
    return folder


# A small demo dataset shared by the whole session: 120 tracks of 3 s, FMA's layout and defects.
DEMO_TRACKS = 120
DEMO_SECONDS = 3.0


@pytest.fixture(scope="session")
def demo_dataset(tmp_path_factory):
    from genrekit.datasets.demo.writer import write_demo_dataset

    root = tmp_path_factory.mktemp("demo")
    return write_demo_dataset(root, n_tracks=DEMO_TRACKS, clip_seconds=DEMO_SECONDS, seed=0, progress=False)


def tiny_overrides(demo, out_dir, **extra):
    """Settings for a tiny, fast training on the demo fixture."""
    values = {
        "metadata_dir": str(demo.metadata_dir),
        "audio_dir": str(demo.audio_dir),
        "output_dir": str(out_dir),
        "cache_dir": str(out_dir.parent / "features"),
        "duration": DEMO_SECONDS,
        "width_factor": 0.0625,
        "num_epochs": 2,
        "batch_size": 32,
        "oversample_threshold": 4,
        "undersample_threshold": 12,
        "shuffle_block": 8,
        "workers": 2,
        "seed": 7,
    }
    values.update(extra)
    return values


@pytest.fixture(scope="session")
def tiny_run(demo_dataset, tmp_path_factory):
    """A tiny model trained for 2 epochs on the demo fixture through balanced_trainer.main.

    Returns the run folder (model, training config, logs); the feature cache is beside it in
    ``features/``. Shared by the training, inference and evaluation tests: do not modify it.
    """
    import json

    import balanced_trainer

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    config = out.parent / "tiny_config.json"
    config.write_text(json.dumps(tiny_overrides(demo_dataset, out)))
    assert balanced_trainer.main(["--config", str(config)]) == 0
    return out


# The demo of `quick_start.py --smallest` and `examples/tutorial_training.py --small`: 60 tracks of 2 s, seed 0.
SMALLEST_DEMO = {"n_tracks": 60, "clip_seconds": 2.0, "seed": 0}


@pytest.fixture(scope="session")
def smallest_demo(tmp_path_factory):
    """The demo dataset the smallest modes write, written once; read-only (see ``copy_demo``)."""
    from genrekit.datasets.demo.writer import write_demo_dataset

    root = tmp_path_factory.mktemp("smallest_demo")
    return write_demo_dataset(root, **SMALLEST_DEMO, progress=False)


def copy_demo(demo, dest: Path) -> Path:
    """A copy of a session demo dataset at ``dest``, for a test that changes it or writes beside it.

    ``write_demo_dataset`` (and so quick_start's setup step) finds the copy complete and keeps it.
    """
    shutil.copytree(demo.root, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def random_tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """(model, training config) of ``tests.inference_helpers.build_tiny_run``: a tiny model trained a few
    steps on random data, for the inference tests. Shared: do not modify its folder."""
    from tests.inference_helpers import build_tiny_run

    return build_tiny_run(tmp_path_factory.mktemp("random_tiny_run"))


# The musicnn session fixtures (the real weights, a tiny heads run), shared by every file that uses them.
from tests.musicnn_fixtures import musicnn_dir, musicnn_run, weights  # noqa: E402, F401
