"""A run saved by the layout before Structure v2 (main 94faa63) loads and gives the same numbers.

``tests/fixtures/run_94faa63/`` holds a tiny run trained with the code of 94faa63 on the session's
demo fixture (120 tracks of 3 s, seed 0; width 0.0625, one epoch, seed 7), and what that code's
``balanced_inference.py`` and ``model_evaluation.py`` printed for it. Its config names the folders
it was trained on, which do not exist here: the evaluation is given the demo's folders, and the
features are built again from the audio.

The stored numbers come from one machine (AMD EPYC). On another CPU the demo's audio and the
model's sums take other code paths (OpenBLAS's kernels, numpy's SIMD loops, oneDNN's ISA), so
floats are compared with a tolerance measured across the CPUs ``tools/cpu_spread.py`` emulates,
and everything else (genre names, votes, counts, the argmax of each head) exactly, except an order
between two genres whose stored probabilities are closer than that tolerance (a tie at this
precision; the medium head of this barely trained run has one).
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


# tools/cpu_spread.py on an AMD EPYC with AVX-512, the largest shift of any stored float: OpenBLAS's
# SkylakeX kernels (an Intel Xeon's) 1.1e-5 (rtol 3.6e-5; the 0.085445 vs 0.085441 a Xeon saw),
# Sandybridge kernels 4.6e-5, numpy's SSE4 loops 6.8e-5 (rtol 2.6e-4), oneDNN's ISAs (AVX2, AVX512_CORE, off) 0;
# names, votes and counts never changed. RTOL is about 4 times the largest; ATOL is the reports'
# rounding to 6 decimals.
RTOL, ATOL = 1e-3, 1e-6


def close(new: float, old: float) -> bool:
    return bool(np.isclose(new, old, rtol=RTOL, atol=ATOL))


def settle_ties(new: dict, old: dict) -> None:
    """Put back the order of two neighbours of an ``average_confidence`` ranking whose stored
    probabilities are closer than the tolerance; at the top, the argmax fields and the hierarchy
    (derived from it) follow. Every probability is still compared with its stored value after."""
    for key, result in old.items():
        for level, block in result["aggregated_results"].items():
            if "average_confidence" not in block:
                continue
            ranked = block["average_confidence"]
            found = new[key]["aggregated_results"][level]["average_confidence"]
            a, b = ranked["top_k"], found["top_k"]
            for i in range(min(len(a), len(b)) - 1):
                gap = abs(a[i]["probability"] - a[i + 1]["probability"])
                swapped = [x["genre"] for x in b[i : i + 2]] == [a[i + 1]["genre"], a[i]["genre"]]
                if swapped and gap <= 2 * (ATOL + RTOL * a[i]["probability"]):
                    b[i], b[i + 1] = b[i + 1], b[i]
                    if i == 0:
                        found.update({k: ranked[k] for k in ("index", "name", "genre_id", "path")})
                        found["confidence"] = b[0]["probability"]
                        new[key]["hierarchy"] = result["hierarchy"]


def assert_same_numbers(new, old, where="") -> None:
    """Every number of ``old`` is in ``new`` at the same place: floats within the tolerance, the rest equal."""
    if isinstance(old, dict):
        for key, value in old.items():
            assert key in new, f"{where}/{key} missing"
            assert_same_numbers(new[key], value, f"{where}/{key}")
    elif isinstance(old, list):
        assert len(new) == len(old), f"{where}: {len(new)} items, was {len(old)}"
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            assert_same_numbers(a, b, f"{where}[{i}]")
    elif isinstance(old, float):
        assert close(new, old), f"{where}: {new} != {old} (rtol {RTOL}, atol {ATOL})"
    else:
        assert new == old, f"{where}: {new!r} != {old!r}"


@pytest.fixture(scope="module")
def old_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("old_run") / "run"
    shutil.copytree(OLD, run)
    # Its settings name the feature cache of the machine it was trained on (/work/oldrun/features):
    # build the evaluation's beside the copy, not there (shared by every session, on any machine).
    config = json.loads((run / CONFIG).read_text(encoding="utf-8"))
    config["settings"]["cache_dir"] = str(run.parent / "features")
    (run / CONFIG).write_text(json.dumps(config, indent=1), encoding="utf-8")
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
    settle_ties(new, old)
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
