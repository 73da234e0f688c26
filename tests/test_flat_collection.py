"""A flat collection (GTZAN as shipped: ``ROOT/<genre>/<file>``, no sub-genres) trains without a medium head.

The collection is generated: the 10 GTZAN genres of 8 clips each, in mp3, wav, flac, ogg and au.
FMA and the demo keep all three heads (checked on the shared tiny demo run).
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from genrekit.datasets import base as datasets
from genrekit.datasets.labels import LEVELS
from genrekit.errors import DatasetError
from tests import own_fixtures as fx

PER_GENRE = 8


@pytest.fixture(scope="module")
def flat(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("flat")
    root = base / "gtzan"
    written = fx.flat_genre_folders(root, PER_GENRE)
    settings = fx.tiny_settings_file(base)
    return {"base": base, "root": root, "written": written, "settings": settings}


def _predict_folder(model_path: str, folder, output) -> int:
    """balanced_inference on every file of ``folder``, quietly, into ``output``."""
    import balanced_inference

    return balanced_inference.main(
        ["--model", model_path, "--folder", str(folder), "--output", str(output), "--quiet", "--no_progress"]
    )


def test_flat_folders_have_no_medium_head(flat):
    labelled = datasets.from_spec(f"folder:{flat['root']}", seed=42).load()
    assert len(labelled.targets) == 10 * PER_GENRE
    assert (labelled.targets["medium"] == -1).all()
    assert len(labelled.vocabs["medium"]) == 0
    assert labelled.heads == ("top", "all")
    assert labelled.head_classes == {"top": 10, "all": 10}


def test_flat_collection_end_to_end_without_medium(flat, capsys):
    import keras

    import balanced_trainer
    import fma_inspector
    import model_evaluation
    from genrekit.infer.output import format_table

    base, root = flat["base"], flat["root"]
    spec = f"folder:{root}"
    before = fx.snapshot(root)
    assert fma_inspector.main(["--dataset", spec, "--output_dir", str(base / "inspect"), "--no_plots",
                               "--analyze_balance"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "medium level: 0 classes: no medium head" in printed

    run = base / "run"
    argv = ["--dataset", spec, "--config", str(flat["settings"]), "--output_dir", str(run)]
    assert balanced_trainer.main(argv) == 0
    config = json.loads((run / "balanced_training_config.json").read_text())
    assert config["heads"] == ["top", "all"]
    assert config["vocabularies"]["medium"]["genre_ids"] == []
    assert set(config["balancing"]["class_weights"]) == {"top", "all"}
    model = keras.models.load_model(run / "balanced_hierarchical_genre_model.h5", compile=False)
    assert sorted(model.output) == ["all", "top"]
    log = (run / "training_log.csv").read_text().splitlines()[0].split(",")
    assert not [c for c in log if "medium" in c] and "val_top_balanced_accuracy" in log

    model_path = str(run / "balanced_hierarchical_genre_model.h5")
    assert model_evaluation.main(["--model", model_path]) == 0
    printed = capsys.readouterr().out
    assert "top genres" in printed and "medium genres" not in printed
    assert "not checked (the model has no medium head" in printed
    report = json.loads((run / "evaluation" / "evaluation_report.json").read_text())
    assert "medium" not in report and "medium_no_target" not in report["counts"]["excluded"]
    assert report["top"]["track"]["n"] == 10  # one test track per genre folder
    markdown = (run / "evaluation" / "evaluation_report.md").read_text()
    assert "Medium genres" not in markdown and "medium-genre target" not in markdown
    # FMA's folders mean nothing to a model trained on genre folders: one line, not silently ignored.
    assert model_evaluation.main(["--model", model_path, "--metadata", str(base)]) == 2
    assert f"was trained on DATASET 'folder:{root}': leave them out" in capsys.readouterr().err
    plots = {p.name for p in (run / "evaluation" / "plots").iterdir()}
    assert plots and not [p for p in plots if "medium" in p]

    out = base / "predictions.json"
    assert _predict_folder(model_path, root / "jazz", out) == 0
    result = json.loads(out.read_text())
    assert result["summary"]["processed"] == PER_GENRE
    for res in result["results"].values():
        assert res["aggregated_results"]["medium_genre"] is None
        assert res["hierarchy"]["consistent"] is None and res["hierarchy"]["medium_genre"] is None
        assert all(seg["medium_genre"] is None for seg in res["segment_predictions"])
        assert res["aggregated_results"]["top_genre"]["average_confidence"]["name"] in fx.GENRES
    table = format_table(result["results"])
    assert table.splitlines()[0].split() == ["file", "top", "genre", "conf", "labels"]
    assert "(!)" not in table and len(table.splitlines()) == 2 + PER_GENRE
    out_csv = base / "predictions.csv"
    assert _predict_folder(model_path, root / "jazz", out_csv) == 0
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert len(rows) == PER_GENRE
    assert all(
        r["status"] == "ok" and r["medium_genre"] == "" and r["hierarchy_consistent"] == "" for r in rows
    )
    assert fx.snapshot(root) == before  # nothing written into the music folder


def test_quick_start_on_flat_folders(flat, capsys):
    import quick_start

    base, root = flat["base"], flat["root"]
    out = base / "quick"
    code = quick_start.main(
        ["--dataset", f"folder:{root}", "--smallest", "--config", str(flat["settings"]),
         "--output_dir", str(out), "--cache_dir", str(base / "cache")]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "test top genre:" in printed and "medium genre:" not in printed
    config = json.loads((out / "balanced_training_config.json").read_text())
    assert config["heads"] == ["top", "all"]
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["summary"]["processed"] == 10
    assert all(r["aggregated_results"]["medium_genre"] is None for r in predictions["results"].values())


def test_one_genre_is_one_clear_line(tmp_path, capsys):
    import fma_inspector

    music = tmp_path / "music"
    for i in range(4):  # one genre, even with a sub-genre: nothing to tell apart at the top
        fx.write_audio(music / "rock" / f"t{i}.wav", fx.clip(i, 1)[:500])
        fx.write_audio(music / "rock" / "punk" / f"t{i}.wav", fx.clip(i, 2)[:500])
    spec = f"folder:{music}"
    with pytest.raises(
        DatasetError, match=r"music: the training split has 1 top-level genre\(s\); .*two genre folders"
    ):
        datasets.from_spec(spec).load()
    assert fma_inspector.main(["--dataset", spec, "--no_plots", "--output_dir", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "1 top-level genre" in err[0]


def test_model_and_losses_without_medium_head():
    from genrekit.models.cnn import build_model
    from genrekit.models.losses import make_losses

    model = build_model((16, 8, 1), num_top=3, num_medium=0, num_all=4, width_factor=0.0625, seed=1)
    assert sorted(model.output) == ["all", "top"]
    full = build_model((16, 8, 1), num_top=3, num_medium=2, num_all=4, width_factor=0.0625, seed=1)
    assert sorted(full.output) == ["all", "medium", "top"]
    from genrekit.models.heads import build_heads

    heads = build_heads((20,), num_top=3, num_medium=0, num_all=4, units=8, dropout=0.1, seed=1)
    assert sorted(heads.output) == ["all", "top"]
    assert set(make_losses(heads=("top", "all"))) == {"top", "all"}
    assert list(make_losses()) == list(LEVELS)
    adjusted = make_losses(priors={"top": [0.5, 0.5]}, heads=("top", "all"))
    assert set(adjusted) == {"top", "all"}


def test_validation_score_without_medium_by_hand():
    from genrekit.datasets.labels import EncodedLabels
    from genrekit.train.run import validation_metrics

    labels = EncodedLabels(
        np.arange(4), np.array([0, 1, 0, 1]), np.full(4, -1), np.array([[1, 0], [0, 1], [1, 0], [0, 1]])
    )
    probs = {  # one segment per track; top right on 3 of 4 (class 0 both right, class 1 one of two)
        "top": np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]]),
        "all": np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]]),
    }
    out = validation_metrics(probs, np.arange(4), labels, 0.5, {"top": 1.0, "medium": 1.0, "all": 2.0})
    assert "val_medium_balanced_accuracy" not in out
    assert out["val_top_balanced_accuracy"] == pytest.approx(0.75)  # (2/2 + 1/2) / 2
    # LRAP: the true label ranks first for tracks 0-2, second for track 3 (1/2): 3.5 / 4.
    assert out["val_all_lrap"] == pytest.approx(0.875)
    assert out["val_score"] == pytest.approx((1.0 * 0.75 + 2.0 * 0.875) / 3.0)  # medium's weight left out


def test_demo_run_keeps_all_three_heads(tiny_run):
    """FMA layout (the demo): every head as before, recorded as such."""
    import keras

    config = json.loads((tiny_run / "balanced_training_config.json").read_text())
    assert config["heads"] == list(LEVELS)
    model = keras.models.load_model(tiny_run / "balanced_hierarchical_genre_model.h5", compile=False)
    assert sorted(model.output) == sorted(LEVELS)
    header = (tiny_run / "training_log.csv").read_text().splitlines()[0].split(",")
    assert "val_medium_balanced_accuracy" in header and "medium_loss" in header


def test_old_config_without_heads_reads_all_three():
    from genrekit.train.run_config import heads_of_config

    vocab = {"genre_ids": [1, 2]}
    assert heads_of_config({"vocabularies": dict.fromkeys(LEVELS, vocab)}) == LEVELS
    config = {"vocabularies": {"top": vocab, "medium": {"genre_ids": []}, "all": vocab}}
    assert heads_of_config(config) == ("top", "all")
    assert heads_of_config({**config, "heads": ["top", "all"]}) == ("top", "all")
