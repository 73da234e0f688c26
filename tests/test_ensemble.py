"""Ensembles of tiny real runs: the weighted mean of the members' own probabilities, worked out here
from each member alone; members that do not agree refused in one line; reports naming them."""

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
from genrekit.errors import ConfigError
from genrekit.evaluate.ensemble import Ensemble, ensemble_probabilities
from genrekit.evaluate.evaluator import evaluate_model, predict_split
from genrekit.evaluate.report import REPORT_JSON, REPORT_MD
from tests.conftest import tiny_overrides

MODEL = "balanced_hierarchical_genre_model.h5"
CONFIG = "balanced_training_config.json"
HEADS = ("top", "medium", "all")


def _train(demo, out: Path, **extra) -> Path:
    import balanced_trainer

    config = out.parent / f"{out.name}_config.json"
    config.write_text(json.dumps(tiny_overrides(demo, out, **extra)))
    assert balanced_trainer.main(["--config", str(config)]) == 0
    return out


@pytest.fixture(scope="module")
def run_b(tiny_run, demo_dataset, tmp_path_factory):
    """A second tiny run, of another seed and width, reading the same feature cache as tiny_run."""
    out = tmp_path_factory.mktemp("ensemble") / "run_b"
    return _train(demo_dataset, out, seed=8, width_factor=0.125, cache_dir=str(tiny_run.parent / "features"))


@pytest.fixture(scope="module")
def run_c(demo_dataset, tmp_path_factory):
    """A tiny run whose front end cuts other segments (4 per clip): its own features, its own cache."""
    out = tmp_path_factory.mktemp("ensemble_c") / "run_c"
    return _train(demo_dataset, out, seed=9, num_segments=4)


def _config(run: Path) -> dict:
    return json.loads((run / CONFIG).read_text(encoding="utf-8"))


def _member_track_probs(run: Path, track_ids: np.ndarray) -> dict[str, np.ndarray]:
    """One member on its own: its model on its own cached features (whatever its front end), each
    track's segments averaged."""
    import keras

    import genrekit.models.keras_metrics  # noqa: F401
    import genrekit.models.losses  # noqa: F401
    from genrekit.features.cache import FeatureCache
    from genrekit.train.run_config import frontend_of

    cfg = _config(run)
    model = keras.models.load_model(run / MODEL, compile=False)
    with FeatureCache.open(cfg["data"]["cache_dir"], frontend_of(cfg)) as cache:
        x = cache.read(track_ids).astype(np.float32)
    n, segments = x.shape[:2]
    rows = x.reshape((n * segments, *x.shape[2:]))
    if len(model.input_shape) == rows.ndim + 1:  # log-mel segments take a channel axis
        rows = rows[..., None]
    out = model.predict(rows, verbose=0)
    return {h: np.asarray(out[h], np.float64).reshape(n, segments, -1).mean(axis=1) for h in HEADS}


def _by_hand(runs_weights, track_ids) -> dict[str, np.ndarray]:
    total = sum(w for _, w in runs_weights)
    own = [(_member_track_probs(run, track_ids), w / total) for run, w in runs_weights]
    return {h: sum(w * p[h] for p, w in own) for h in HEADS}


def _track_means(probs, segment_track, n) -> dict[str, np.ndarray]:
    from genrekit.evaluate.aggregate import track_averages

    return {h: a.mean for h, a in track_averages(probs, segment_track, n).items()}


# --- the mean ---------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("other", ["run_b", "run_c", "musicnn_run"])
def test_the_ensemble_is_the_weighted_mean_of_each_members_own_probabilities(other, tiny_run, request):
    """Same segments (run_b shares tiny_run's cache), other segments (run_c cuts 4 per clip) or
    another front end (heads on musicnn embeddings): the track probabilities are 2/3 of tiny_run's
    plus 1/3 of the other's, per track and per head."""
    second = request.getfixturevalue(other)
    assert Ensemble.from_args([str(tiny_run), f"{second}:2"]).weights.tolist() == pytest.approx(
        [1 / 3, 2 / 3]
    )
    ensemble = Ensemble.from_args([str(tiny_run), str(second)], ["2", "1"])
    assert ensemble.weights.tolist() == pytest.approx([2 / 3, 1 / 3])
    preds = [predict_split(m.model_path, m.config_path, None, None, "test", None) for m in ensemble.members]
    probs, segment_track, track_ids, how = ensemble_probabilities(ensemble, preds)
    expected = _by_hand([(tiny_run, 2), (second, 1)], track_ids)
    got = _track_means(probs, segment_track, len(track_ids))
    for head in HEADS:
        assert got[head].shape == expected[head].shape
        np.testing.assert_allclose(got[head], expected[head], rtol=1e-5, atol=1e-6)
    # The mean is not either member's: the test would fail if one member were dropped.
    alone = _member_track_probs(tiny_run, track_ids)
    assert not np.allclose(alone["top"], expected["top"], atol=1e-4)
    if other == "run_b":
        assert "same segments" in how and len(segment_track) == 10 * len(track_ids)
    else:
        assert "one row per track" in how and np.array_equal(segment_track, np.arange(len(track_ids)))


@pytest.mark.slow
def test_the_report_scores_the_mean_and_names_the_members(tiny_run, run_b, tmp_path, capsys):
    from sklearn.metrics import accuracy_score, label_ranking_average_precision_score

    out = tmp_path / "report"
    argv = ["--model", str(tiny_run), "--model", f"{run_b}:3", "--output_dir", str(out), "--no_plots"]
    assert model_evaluation.main(argv) == 0
    report = json.loads((out / REPORT_JSON).read_text(encoding="utf-8"))
    run = report["run"]
    members = run["ensemble"]["members"]
    assert [m["model"] for m in members] == [str((r / MODEL).resolve()) for r in (tiny_run, run_b)]
    assert [m["weight"] for m in members] == [1.0, 3.0]
    assert [m["normalized_weight"] for m in members] == pytest.approx([0.25, 0.75])
    assert "model" not in run and "ensemble" in run
    # The figures are those of the mean, recomputed here from each member's own probabilities.
    ids = np.array(run["track_ids"])
    mean = _by_hand([(tiny_run, 1), (run_b, 3)], ids)
    single = evaluate_model(tiny_run / MODEL, output_dir=tmp_path / "single", plots=False)
    top_targets = _targets_of(single, ids)
    known = top_targets >= 0
    assert report["top"]["track"]["accuracy"] == pytest.approx(
        accuracy_score(top_targets[known], mean["top"][known].argmax(axis=1))
    )
    labels = _all_targets(tiny_run, ids)
    has = labels.any(axis=1)
    assert report["all"]["track"]["lrap"] == pytest.approx(
        label_ranking_average_precision_score(labels[has], mean["all"][has]), rel=1e-5
    )
    # Thresholds: the weighted mean of the members' saved ones, said so in the report.
    assert "weighted mean" in report["settings"]["thresholds"]
    markdown = (out / REPORT_MD).read_text(encoding="utf-8")
    assert markdown.startswith("# Evaluation of an ensemble of 2 models on the test split")
    for run_dir, weight in ((tiny_run, "0.250"), (run_b, "0.750")):
        assert str((run_dir / MODEL).resolve()) in markdown
        assert f"| {weight} |" in markdown
    console = capsys.readouterr().out
    assert "an ensemble of 2 models on the test split" in console
    assert str((run_b / MODEL).resolve()) in console


def _targets_of(single_report: dict, ids: np.ndarray) -> np.ndarray:
    """The top-genre targets of ``ids``, from the demo's tracks.csv (by genre name)."""
    import pandas as pd

    cfg_names = single_report["top"]["names"]
    tracks = pd.read_csv(
        Path(single_report["run"]["metadata_dir"]) / "tracks.csv", index_col=0, header=[0, 1]
    )
    top = tracks.loc[ids][("track", "genre_top")]
    return np.array([cfg_names.index(t) if isinstance(t, str) and t in cfg_names else -1 for t in top])


def _all_targets(run: Path, ids: np.ndarray) -> np.ndarray:
    import ast

    import pandas as pd

    cfg = _config(run)
    tracks = pd.read_csv(Path(cfg["data"]["metadata_dir"]) / "tracks.csv", index_col=0, header=[0, 1])
    all_ids = list(cfg["vocabularies"]["all"]["genre_ids"])
    out = np.zeros((len(ids), len(all_ids)), dtype=int)
    for row, text in enumerate(tracks.loc[ids][("track", "genres_all")]):
        for g in ast.literal_eval(text):
            if g in all_ids:
                out[row, all_ids.index(g)] = 1
    return out


@pytest.mark.slow
def test_inference_averages_each_members_own_file_prediction(tiny_run, run_c, demo_dataset, tmp_path):
    """Each member predicts the file alone (its own decoding); the ensemble's probabilities are the
    weighted mean of theirs, and the inference JSON records the members."""
    from genrekit.infer.predict import MusicGenreInference

    files = sorted(Path(demo_dataset.audio_dir).rglob("*.mp3"))[:40]
    folder = tmp_path / "music"
    folder.mkdir()
    for f in files:
        shutil.copy(f, folder / f.name)
    n_top = len(_config(tiny_run)["vocabularies"]["top"]["genre_ids"])
    output = tmp_path / "ensemble.json"
    argv = ["--model", str(tiny_run / MODEL), "--model", f"{run_c / MODEL}:3", "--folder", str(folder)]
    argv += ["--output", str(output), "--top_k", str(n_top), "--quiet", "--no_progress", "--workers", "1"]
    assert balanced_inference.main(argv) == 0
    report = json.loads(output.read_text(encoding="utf-8"))
    members = report["run"]["ensemble"]["members"]
    assert [m["model"] for m in members] == [str((r / MODEL).resolve()) for r in (tiny_run, run_c)]
    assert [m["normalized_weight"] for m in members] == pytest.approx([0.25, 0.75])
    alone = [MusicGenreInference(r / MODEL, top_k=n_top, workers=1) for r in (tiny_run, run_c)]
    assert report["results"], report["errors"]
    for key, result in report["results"].items():
        own = [m.predict_file(folder / key)["aggregated_results"]["top_genre"] for m in alone]
        expected = {}
        for res, w in zip(own, (0.25, 0.75), strict=True):
            for t in res["average_confidence"]["top_k"]:
                expected[t["genre"]] = expected.get(t["genre"], 0.0) + w * t["probability"]
        got = {
            t["genre"]: t["probability"]
            for t in result["aggregated_results"]["top_genre"]["average_confidence"]["top_k"]
        }
        assert got == pytest.approx(expected, abs=2e-6)
        assert result["num_segments"] == 1  # the members cut the file differently: one row, the file
    # The same command again resumes from the finished report: same members, same weights.
    assert balanced_inference.main(argv) == 0
    again = json.loads(output.read_text(encoding="utf-8"))
    assert again["summary"]["resumed"] == len(files) and again["results"] == report["results"]


# --- members that do not agree -----------------------------------------------------------------------


def _edited_copy(run: Path, dst: Path, edit) -> Path:
    dst.mkdir(parents=True)
    shutil.copy(run / MODEL, dst / MODEL)
    cfg = _config(run)
    edit(cfg)
    (dst / CONFIG).write_text(json.dumps(cfg), encoding="utf-8")
    return dst


def _one_line_error(argv, capsys) -> str:
    assert model_evaluation.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_runs_with_other_genre_vocabularies_are_refused_in_one_line(tiny_run, tmp_path, capsys):
    def drop_a_genre(cfg):
        vocab = cfg["vocabularies"]["top"]
        for key in ("genre_ids", "names"):
            vocab[key] = vocab[key][:-1]

    other = _edited_copy(tiny_run, tmp_path / "other", drop_a_genre)
    err = _one_line_error(["--model", str(tiny_run), "--model", str(other)], capsys)
    assert f"runs {tiny_run} and {other} cannot form an ensemble" in err
    assert "top genre vocabularies differ" in err
    with pytest.raises(ConfigError, match="heads differ"):
        no_medium = _edited_copy(tiny_run, tmp_path / "flat", lambda c: c.update(heads=["top", "all"]))
        Ensemble.from_args([str(tiny_run), str(no_medium)])


@pytest.mark.parametrize(
    ("key", "value"), [("metadata_dir", "/elsewhere/fma_metadata"), ("dataset", "own"), ("subset", "small")]
)
def test_runs_on_other_datasets_are_refused_in_one_line(key, value, tiny_run, tmp_path, capsys):
    other = _edited_copy(tiny_run, tmp_path / "other", lambda c: c["data"].update({key: value}))
    err = _one_line_error(["--model", str(tiny_run), "--model", str(other)], capsys)
    assert f"runs {tiny_run} and {other} cannot form an ensemble: datasets differ ({key} " in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weight", "1"], "1 --weight value(s) for 2 --model value(s)"),
        (["--weight", "1", "--weight", "-2"], "weight '-2' of"),
        (["--weight", "1", "--weight", "x"], "weight 'x' of"),
        (["--config", "c.json"], "--config names one model's training config"),
    ],
)
def test_bad_weights_and_options_are_one_line(extra, message, tiny_run, capsys):
    err = _one_line_error(["--model", str(tiny_run), "--model", str(tiny_run / MODEL), *extra], capsys)
    assert message in err


def test_a_model_named_twice_and_a_lone_weight_are_refused(tiny_run, capsys):
    err = _one_line_error(["--model", str(tiny_run), "--model", str(tiny_run / MODEL)], capsys)
    assert "is named twice in the ensemble" in err
    err = _one_line_error(["--model", str(tiny_run), "--weight", "2"], capsys)
    assert "--weight weighs the members of an ensemble" in err


def test_an_ensemble_file_reads_runs_relative_to_itself(tiny_run, tmp_path):
    other = _edited_copy(tiny_run, tmp_path / "runs" / "b", lambda c: None)
    spec = tmp_path / "ensemble.json"
    spec.write_text(json.dumps({"members": [{"run": "runs/b", "weight": 2}]}))
    ensemble = Ensemble.from_args([str(tiny_run / MODEL)], None, spec)
    assert [m.model_path for m in ensemble.members] == [tiny_run / MODEL, other / MODEL]
    assert ensemble.weights.tolist() == pytest.approx([1 / 3, 2 / 3])
    spec.write_text(json.dumps({"members": [{"runs": "runs/b"}]}))
    with pytest.raises(ConfigError, match="member 1 must give one of 'run' or 'model'"):
        Ensemble.from_args([], None, spec)


# --- one model as before -------------------------------------------------------------------------------


def test_a_single_model_is_evaluated_as_before(tiny_run, tmp_path):
    out = tmp_path / "single"
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            model_evaluation.main(["--model", str(tiny_run / MODEL), "--output_dir", str(out), "--no_plots"])
            == 0
        )
    report = json.loads((out / REPORT_JSON).read_text(encoding="utf-8"))
    assert list(report["run"]) == [
        "model", "model_sha256", "training_config", "training_config_sha256", "genrekit_version", "split",
        "subset", "metadata_dir", "audio_dir", "cache_dir", "aggregation", "tracks_in_split",
        "tracks_csv_rows_skipped", "tracks_without_features", "labels_outside_vocabulary", "left_out_files",
        "track_ids", "device",
    ]  # fmt: skip
    assert "ensemble" not in json.dumps(report["run"])
    markdown = (out / REPORT_MD).read_text(encoding="utf-8")
    assert markdown.startswith(f"# Evaluation of {MODEL} on the test split")
    assert f"| Model | `{(tiny_run / MODEL).resolve()}`" in markdown


def test_a_missing_member_is_one_line(tiny_run, tmp_path, capsys):
    err = _one_line_error(["--model", str(tiny_run), "--model", str(tmp_path / "nope.h5")], capsys)
    assert err == f"error: {tmp_path / 'nope.h5'}: model file not found"
    err = _one_line_error(["--model", str(tiny_run), "--model", str(tmp_path)], capsys)
    assert err == f"error: {tmp_path / MODEL}: model file not found (a run folder holds {MODEL})"
