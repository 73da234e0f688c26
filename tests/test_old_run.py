"""A run saved by the layout before Structure v2 (main 94faa63) loads and gives the same numbers.

``tests/fixtures/run_94faa63/`` holds a tiny run trained with the code of 94faa63 on the session's
demo fixture (120 tracks of 3 s, seed 0; width 0.0625, one epoch, seed 7), and what that code's
``balanced_inference.py`` and ``model_evaluation.py`` printed for it. Its config names the folders
it was trained on, which do not exist here: the evaluation is given the demo's folders, and the
features are built again from the audio.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import balanced_inference
import model_evaluation

OLD = Path(__file__).resolve().parent / "fixtures" / "run_94faa63"
MODEL = "balanced_hierarchical_genre_model.h5"
CONFIG = "balanced_training_config.json"


def assert_same_numbers(new, old, where="") -> None:
    """Every number of ``old`` is in ``new`` at the same place, within float32 round-off."""
    if isinstance(old, dict):
        for key, value in old.items():
            assert key in new, f"{where}/{key} missing"
            assert_same_numbers(new[key], value, f"{where}/{key}")
    elif isinstance(old, list):
        assert len(new) == len(old), f"{where}: {len(new)} items, was {len(old)}"
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            assert_same_numbers(a, b, f"{where}[{i}]")
    elif isinstance(old, float):
        assert np.isclose(new, old, rtol=1e-5, atol=1e-6), f"{where}: {new} != {old}"
    else:
        assert new == old, f"{where}: {new!r} != {old!r}"


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("old_run") / "run"
    shutil.copytree(OLD, run)
    return run


@pytest.mark.slow
def test_old_run_predicts_what_it_predicted(old_run, demo_dataset, tmp_path):
    out = tmp_path / "predictions.json"
    argv = ["--model", str(old_run / MODEL), "--config", str(old_run / CONFIG)]
    argv += ["--folder", str(demo_dataset.audio_dir / "000"), "--output", str(out), "--workers", "1"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert balanced_inference.main(argv) == 0
    new = json.loads(out.read_text(encoding="utf-8"))["results"]
    old = json.loads((OLD / "predictions_94faa63.json").read_text(encoding="utf-8"))["results"]
    assert sorted(new) == sorted(old)
    assert_same_numbers(new, old, "results")


@pytest.mark.slow
def test_old_run_evaluates_to_the_same_report(old_run, demo_dataset, tmp_path):
    out = tmp_path / "evaluation"
    argv = ["--model", str(old_run / MODEL), "--config", str(old_run / CONFIG), "--split", "test"]
    argv += ["--metadata", str(demo_dataset.metadata_dir), "--audio", str(demo_dataset.audio_dir)]
    argv += ["--output_dir", str(out), "--no_plots", "--workers", "1"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert model_evaluation.main(argv) == 0
    new = json.loads((out / "evaluation_report.json").read_text(encoding="utf-8"))
    old = json.loads((OLD / "evaluation_94faa63.json").read_text(encoding="utf-8"))
    old.pop("_note")
    assert_same_numbers(new, old)
