"""The musicnn session fixtures: the real weights, fetched once, and a tiny heads run on the demo.

Registered by ``tests/conftest.py``, so every test file shares one of each (a fixture imported
into several test modules would be built once per module).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from genrekit.errors import DownloadError
from genrekit.models.musicnn_weights import ensure_musicnn_weights

# Converted weights are kept between sessions: fetched once, then verified by their sha256.
WEIGHTS_CACHE = Path(os.environ.get("GENREKIT_TEST_CACHE", Path.home() / ".cache" / "genrekit")) / "musicnn"


@pytest.fixture(scope="session")
def musicnn_dir() -> Path:
    try:
        return ensure_musicnn_weights(WEIGHTS_CACHE)
    except DownloadError as exc:
        pytest.skip(f"the musicnn wheel cannot be fetched (pip cannot reach the index): {exc}")


@pytest.fixture(scope="session")
def weights(musicnn_dir):
    return str(musicnn_dir)


def musicnn_overrides(demo, out, **extra) -> dict:
    """Tiny settings on musicnn: 2 patches per 3-s demo clip, the test cache's weights.

    The penultimate layer (200 values) unless ``extra`` names another: the tests of these runs
    check its shapes and fine-tune its backend layer (MUSICNN_OUTPUT's default, max_pool, is
    trained by tests/test_quick_start.py and the transfer baseline's tests).
    """
    from tests.conftest import tiny_overrides

    extra = {"musicnn_output": "penultimate", **extra}
    return tiny_overrides(
        demo, out, backbone="musicnn", musicnn_patches=2, pretrained_dir=str(WEIGHTS_CACHE.parent), **extra
    )


@pytest.fixture(scope="session")
def musicnn_run(weights, demo_dataset, tmp_path_factory):
    """Heads trained for 2 epochs on musicnn embeddings of the demo, through balanced_trainer.main."""
    import balanced_trainer

    out = tmp_path_factory.mktemp("musicnn_run") / "run"
    values = musicnn_overrides(demo_dataset, out, head_units=32, learning_rate=1e-3)
    config = out.parent / "config.json"
    config.write_text(json.dumps(values))
    assert balanced_trainer.main(["--config", str(config)]) == 0
    return out
