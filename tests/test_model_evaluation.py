"""model_evaluation.py on the tiny model trained in the test session: the report, its numbers, its errors."""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import model_evaluation
from genrekit.errors import ConfigError, DatasetError, ModelError
from genrekit.evaluate.evaluator import RUN_SECTION, default_output_dir, evaluate_model
from genrekit.evaluate.report import REPORT_JSON, REPORT_MD

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODEL = "balanced_hierarchical_genre_model.h5"
CONFIG = "balanced_training_config.json"


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory):
    """The tiny model evaluated on the demo test split through ``model_evaluation.main``."""
    out = tmp_path_factory.mktemp("evaluation") / "report"
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        code = model_evaluation.main(["--model", str(tiny_run / MODEL), "--output_dir", str(out)])
    assert code == 0
    return out, console.getvalue()


@pytest.fixture(scope="module")
def report(evaluated) -> dict:
    return json.loads((evaluated[0] / REPORT_JSON).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def training_config(tiny_run) -> dict:
    return json.loads((tiny_run / CONFIG).read_text(encoding="utf-8"))


# --- reading the demo dataset independently of genrekit ---------------------------------------------


def _tracks(metadata_dir: Path) -> pd.DataFrame:
    return pd.read_csv(metadata_dir / "tracks.csv", index_col=0, header=[0, 1])


def _split_ids(metadata_dir: Path, split: str) -> np.ndarray:
    tracks = _tracks(metadata_dir)
    return np.sort(tracks.index[tracks["set", "split"] == split].to_numpy())


def _usable(training_config: dict, track_ids: np.ndarray) -> np.ndarray:
    from genrekit.features.cache import FeatureCache
    from genrekit.features.mel import FeatureParams

    params = FeatureParams.from_dict(training_config["features"])
    with FeatureCache.open(training_config["data"]["cache_dir"], params) as cache:
        return cache.available(track_ids)


def _targets(metadata_dir: Path, track_ids: np.ndarray, vocabs: dict) -> dict[str, np.ndarray]:
    """The three targets, by the README's rules, written out again here from the raw CSV files."""
    tracks = _tracks(metadata_dir).loc[track_ids]
    genres = pd.read_csv(metadata_dir / "genres.csv", index_col=0)
    parent = genres["parent"].to_dict()

    def depth(g: int) -> int:
        return 0 if parent[g] == 0 else 1 + depth(parent[g])

    top_names = list(vocabs["top"]["names"])
    top = np.array(
        [
            top_names.index(t) if isinstance(t, str) and t in top_names else -1
            for t in tracks["track", "genre_top"]
        ]
    )
    medium_ids = list(vocabs["medium"]["genre_ids"])
    medium = []
    for text in tracks["track", "genres"]:
        below_root = [g for g in ast.literal_eval(text) if parent[g] != 0]
        deepest = min(below_root, key=lambda g: (-depth(g), g)) if below_root else None
        medium.append(medium_ids.index(deepest) if deepest in medium_ids else -1)
    all_ids = list(vocabs["all"]["genre_ids"])
    multi = np.zeros((len(tracks), len(all_ids)), dtype=int)
    for row, text in enumerate(tracks["track", "genres_all"]):
        for g in ast.literal_eval(text):
            if g in all_ids:
                multi[row, all_ids.index(g)] = 1
    return {"top": top, "medium": np.array(medium), "all": multi}


def _track_probabilities(model_path: Path, training_config: dict, track_ids: np.ndarray) -> dict:
    """Each track's mean segment probabilities, from the model and the cached features directly."""
    import keras

    import genrekit.models.keras_metrics  # noqa: F401
    import genrekit.models.losses  # noqa: F401
    from genrekit.features.cache import FeatureCache
    from genrekit.features.mel import FeatureParams

    model = keras.models.load_model(model_path, compile=False)
    params = FeatureParams.from_dict(training_config["features"])
    with FeatureCache.open(training_config["data"]["cache_dir"], params) as cache:
        x = cache.read(track_ids).astype(np.float32)
    n, segments = x.shape[:2]
    out = model.predict(x.reshape((n * segments, *x.shape[2:], 1)), verbose=0)
    return {level: np.asarray(out[level]).reshape(n, segments, -1).mean(axis=1) for level in out}


def _copy_metadata(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _edit_tracks_csv(path: Path, column: tuple[str, str], edit) -> None:
    """Rewrite one column of FMA's three-header-row tracks.csv with ``edit(track_id, value)``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    col = next(i for i, pair in enumerate(zip(rows[0], rows[1], strict=True)) if pair == column)
    for row in rows[3:]:
        row[col] = edit(int(row[0]), row[col])
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)


# --- the report ---------------------------------------------------------------------------------------


def test_report_has_every_section_and_readable_pngs(evaluated, report):
    import matplotlib.image

    out, _ = evaluated
    assert set(report) == {"counts", "settings", "top", "medium", "all", "hierarchy", "targets", RUN_SECTION}
    text = (out / REPORT_MD).read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", text, flags=re.M)
    assert headings[:3] == ["Run", "Performance targets", "Headline"]
    for heading in (
        "Data",
        "Top-level genres: per genre",
        "Medium genres: per genre",
        "All genres (multi-label)",
        "Hierarchy",
        "Confidence and calibration",
        "Temporal stability",
        "Errors",
    ):
        assert heading in headings
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 12
    for link in links:
        png = out / link
        assert png.read_bytes()[:8] == PNG_SIGNATURE, link
        image = matplotlib.image.imread(png)
        assert image.shape[0] > 100 and image.shape[1] > 100 and image[..., :3].std() > 0.01, link
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_the_test_split_is_what_is_evaluated(report, demo_dataset, training_config):
    test_ids = _split_ids(demo_dataset.metadata_dir, "test")
    usable = _usable(training_config, test_ids)
    run = report[RUN_SECTION]
    assert run["split"] == "test"
    assert run["track_ids"] == usable.tolist()
    assert run["tracks_in_split"] == len(test_ids)
    others = np.concatenate([_split_ids(demo_dataset.metadata_dir, s) for s in ("training", "validation")])
    assert not set(run["track_ids"]) & set(others.tolist())
    # The demo's defective files of the test split are left out and counted, with their reason.
    defective = set(test_ids.tolist()) - set(usable.tolist())
    assert defective, "the demo fixture should put a defective file in the test split"
    assert {f["track_id"] for f in run["left_out_files"]} == defective
    assert report["counts"]["defective_files"] == len(defective)
    assert report["counts"]["tracks"] == len(usable)
    assert report["counts"]["segments"] == len(usable) * training_config["features"]["num_segments"]


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_track_numbers_agree_with_an_independent_recomputation(
    report, tiny_run, demo_dataset, training_config
):
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        confusion_matrix,
        f1_score,
        jaccard_score,
        label_ranking_average_precision_score,
    )

    vocabs = training_config["vocabularies"]
    ids = _usable(training_config, _split_ids(demo_dataset.metadata_dir, "test"))
    probs = _track_probabilities(tiny_run / MODEL, training_config, ids)
    targets = _targets(demo_dataset.metadata_dir, ids, vocabs)
    for level in ("top", "medium"):
        known = targets[level] >= 0
        y, pred = targets[level][known], probs[level][known].argmax(axis=1)
        got = report[level]["track"]
        assert got["n"] == known.sum()
        assert got["accuracy"] == pytest.approx(accuracy_score(y, pred))
        assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
        assert got["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
        assert got["f1_weighted"] == pytest.approx(f1_score(y, pred, average="weighted", zero_division=0))
        # Which genre each track was and was predicted as, cell by cell.
        n_classes = len(vocabs[level]["names"])
        expected = confusion_matrix(y, pred, labels=np.arange(n_classes))
        assert np.array_equal(report[level]["errors"]["confusion_matrix"], expected)
    labelled = targets["all"].any(axis=1)
    y_all, p_all = targets["all"][labelled], probs["all"][labelled]
    got = report["all"]["track"]
    # Decisions at the per-genre thresholds saved with the model (plus, when the model was saved
    # with include_top, the genre its top head predicts), and at the fixed one beside them.
    tuned = np.asarray(training_config["thresholds"]["all"])
    decided = p_all > tuned
    if training_config["thresholds"]["include_top"]:
        where = {g: j for j, g in enumerate(vocabs["all"]["genre_ids"])}
        for row, k in enumerate(probs["top"][labelled].argmax(axis=1)):
            decided[row, where[vocabs["top"]["genre_ids"][k]]] = True
    assert got["jaccard_samples"] == pytest.approx(
        jaccard_score(y_all, decided, average="samples", zero_division=0)
    )
    assert report["all"]["track_fixed_threshold"]["jaccard_samples"] == pytest.approx(
        jaccard_score(y_all, p_all > training_config["threshold"], average="samples", zero_division=0)
    )
    # Ranking metrics read the probabilities themselves, not only the decisions.
    assert got["lrap"] == pytest.approx(label_ranking_average_precision_score(y_all, p_all), rel=1e-5)


def test_a_second_run_gives_the_same_report(report, tiny_run, tmp_path):
    again = evaluate_model(tiny_run / MODEL, output_dir=tmp_path, plots=False)
    assert again == report
    assert json.loads((tmp_path / REPORT_JSON).read_text(encoding="utf-8")) == report


def test_features_missing_from_every_cache_are_built(
    report, tiny_run, demo_dataset, training_config, tmp_path, monkeypatch
):
    """Another audio folder: its own cache under the config's cache root, built for the split's tracks.

    By this machine's worker pool, even for a run trained with ``ENGINE = "ray"`` and where Ray
    is not installed: the training machine's engine says nothing about this one.
    """
    import sys

    from genrekit.datasets.fma import audio_path

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as without the extra

    audio = tmp_path / "fma_fresh"
    test_ids = _split_ids(demo_dataset.metadata_dir, "test")
    for tid in test_ids:
        src = audio_path(demo_dataset.audio_dir, tid)
        if src.exists():
            audio_path(audio, tid).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, audio_path(audio, tid))
    config = json.loads(json.dumps(training_config))
    config["settings"]["cache_dir"] = str(tmp_path / "features")
    config["settings"]["engine"] = "ray"
    (tmp_path / CONFIG).write_text(json.dumps(config), encoding="utf-8")
    results = evaluate_model(
        tiny_run / MODEL,
        tmp_path / CONFIG,
        audio_dir=audio,
        output_dir=tmp_path / "out",
        plots=False,
        workers=2,
    )
    cache_dir = Path(results[RUN_SECTION]["cache_dir"])
    assert cache_dir.parent == tmp_path / "features" / "fma_fresh"
    assert results[RUN_SECTION]["track_ids"] == report[RUN_SECTION]["track_ids"]
    # The same audio decoded again gives the same features, so the same figures.
    for section in ("counts", "top", "medium", "all", "hierarchy", "targets"):
        assert results[section] == report[section], section


def test_console_shows_the_headline_and_the_report_path(evaluated, report):
    out, console = evaluated
    top = report["top"]["track"]
    assert re.search(
        rf"^top genres +{top['n']} +{top['accuracy']:.3f} +{top['balanced_accuracy']:.3f} +"
        rf"{top['f1_macro']:.3f} +{top['f1_weighted']:.3f}$",
        console,
        flags=re.M,
    )
    assert re.search(r"^medium genres +\d+ ", console, flags=re.M)
    assert f"Jaccard {report['all']['track']['jaccard_samples']:.3f}" in console
    assert "hierarchy consistency:" in console
    for target in report["targets"]:
        verdict = "PASS" if target["passed"] else "FAIL"
        assert re.search(
            rf"{re.escape(target['name'])} +> {target['target']:.2f} +[0-9.]+ +{verdict}", console
        )
    assert console.rstrip().endswith(f"report: {out}/{REPORT_MD}")


# --- refusals -------------------------------------------------------------------------------------------


def test_a_config_with_another_vocabulary_is_refused_before_any_work(
    tiny_run, training_config, tmp_path, capsys
):
    config = json.loads(json.dumps(training_config))
    medium = config["vocabularies"]["medium"]
    for key in ("genre_ids", "names", "parent_ids", "root_ids", "paths"):
        medium[key] = medium[key][:-1]
    path = tmp_path / CONFIG
    path.write_text(json.dumps(config), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["--model", str(tiny_run / MODEL), "--config", str(path), "--output_dir", str(out)]
    # Folders that do not exist: reaching the data would raise DatasetError instead.
    argv += ["--metadata", str(tmp_path / "no_metadata"), "--audio", str(tmp_path / "no_audio")]
    assert model_evaluation.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    n = len(training_config["vocabularies"]["medium"]["names"])
    assert err[0].startswith("error: model ") and f"medium head has {n} outputs" in err[0]
    assert f"vocabulary {n - 1} genres" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("change", ["head_size", "normalization"])
def test_another_models_h5_is_refused(change, tiny_run, training_config, tmp_path):
    from genrekit.models.cnn import build_model

    sizes = {level: len(v["names"]) for level, v in training_config["vocabularies"].items()}
    norm = training_config["normalization"]
    mean, std = np.asarray(norm["mean"]), np.asarray(norm["std"])
    if change == "head_size":
        sizes["top"] += 1
    else:
        mean, std = mean + 3.0, std * 2.0  # the statistics of another training set
    model = build_model(
        training_config["input_shape"],
        num_top=sizes["top"],
        num_medium=sizes["medium"],
        num_all=sizes["all"],
        width_factor=0.0625,
        norm_mean=mean,
        norm_std=std,
    )
    other = tmp_path / MODEL
    model.save(other)
    with pytest.raises(ModelError, match="does not match training config") as info:
        evaluate_model(other, tiny_run / CONFIG, output_dir=tmp_path / "out")
    expected = "top head has" if change == "head_size" else "normalization statistics differ"
    assert expected in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_missing_model_is_one_clear_error(tmp_path, capsys):
    missing = tmp_path / "runs" / MODEL
    assert model_evaluation.main(["--model", str(missing)]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {missing}: model file not found (train one with balanced_trainer.py)\n"
    )


def test_a_file_that_is_not_a_model_is_one_clear_error(tiny_run, tmp_path):
    broken = tmp_path / MODEL
    broken.write_bytes((tiny_run / MODEL).read_bytes()[:4096])  # a copy cut short
    with pytest.raises(ModelError, match=rf"{re.escape(str(broken))}: cannot load the model"):
        evaluate_model(broken, tiny_run / CONFIG, output_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_model_without_its_config_is_refused(tiny_run, tmp_path):
    lonely = tmp_path / MODEL
    shutil.copy(tiny_run / MODEL, lonely)
    with pytest.raises(ModelError, match="no --config given and no balanced_training_config.json"):
        evaluate_model(lonely)


@pytest.mark.parametrize("how", ["no_test_tracks", "no_small_test_tracks"])
def test_an_empty_split_is_one_clear_error(how, tiny_run, demo_dataset, tmp_path):
    metadata = _copy_metadata(demo_dataset.metadata_dir, tmp_path / "fma_metadata")
    subset = None
    if how == "no_test_tracks":
        _edit_tracks_csv(
            metadata / "tracks.csv", ("set", "split"), lambda tid, v: "validation" if v == "test" else v
        )
    else:
        test_ids = set(_split_ids(demo_dataset.metadata_dir, "test").tolist())
        _edit_tracks_csv(
            metadata / "tracks.csv", ("set", "subset"), lambda tid, v: "large" if tid in test_ids else v
        )
        subset = "small"
        assert (_tracks(metadata)["set", "subset"] == "small").any()
    out = tmp_path / "out"
    with pytest.raises(
        DatasetError, match=r"the test split of subset '(large|small)' in .*tracks.csv has no tracks"
    ):
        evaluate_model(tiny_run / MODEL, metadata_dir=metadata, output_dir=out, subset=subset)
    assert not out.exists()


def test_metadata_with_another_genre_tree_is_refused(tiny_run, demo_dataset, training_config, tmp_path):
    metadata = _copy_metadata(demo_dataset.metadata_dir, tmp_path / "fma_metadata")
    genres = pd.read_csv(metadata / "genres.csv", index_col=0)
    gid = training_config["vocabularies"]["top"]["genre_ids"][0]
    old = genres.at[gid, "title"]
    genres.at[gid, "title"] = "Renamed"
    genres.to_csv(metadata / "genres.csv")
    with pytest.raises(
        DatasetError, match=rf"not the genre tree the model was trained on: genre {gid} is '{old}'"
    ):
        evaluate_model(tiny_run / MODEL, metadata_dir=metadata, output_dir=tmp_path / "out")


def test_split_is_validated(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        model_evaluation.main(["--model", str(tmp_path / MODEL), "--split", "testing"])
    assert info.value.code == 2
    assert "invalid choice: 'testing'" in capsys.readouterr().err
    # Checked first, before the model is looked for.
    with pytest.raises(ConfigError, match="split 'testing' must be one of training, validation, test"):
        evaluate_model(tmp_path / MODEL, split="testing")
    with pytest.raises(ConfigError, match="subset 'tiny'"):
        evaluate_model(tmp_path / MODEL, subset="tiny")


def test_the_validation_split_can_be_evaluated(tiny_run, demo_dataset, training_config, tmp_path):
    results = evaluate_model(tiny_run / MODEL, split="validation", output_dir=tmp_path, plots=False)
    ids = _usable(training_config, _split_ids(demo_dataset.metadata_dir, "validation"))
    assert results[RUN_SECTION]["split"] == "validation"
    assert results[RUN_SECTION]["track_ids"] == ids.tolist()
    # Its own default folder: a validation report never replaces the test report.
    assert default_output_dir(tiny_run / MODEL, "validation") == tiny_run / "evaluation_validation"
    assert default_output_dir(tiny_run / MODEL) == tiny_run / "evaluation"


# --- the confusion-matrix view the plots draw -------------------------------------------------------------


def test_confusion_view_keeps_predictions_to_genres_that_are_not_rows():
    from genrekit.evaluate.plots import confusion_view

    cm = np.diag([45, 1, 30, 2, 40])
    cm[0, 1] = 5  # e -> d
    cm[2, 3] = 3  # c -> b
    cm[2, 1] = 1  # c -> d
    matrix, rows, cols = confusion_view(cm, list("edcba"), max_classes=3, outside=True)
    assert rows == ["a (n=40)", "c (n=34)", "e (n=50)"] and cols == ["a", "c", "e", "other genres (2)"]
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0)
    np.testing.assert_allclose(matrix[:, 3], [0, 4 / 34, 5 / 50])
    # A class predicted but without target tracks gets its own named column when there is room.
    cm = np.zeros((4, 4), int)
    cm[0, 3], cm[1, 1], cm[1, 3] = 2, 1, 1
    matrix, rows, cols = confusion_view(cm, ["Pop", "Rock", "Jazz", "Folk"], outside=True)
    assert rows == ["Pop (n=2)", "Rock (n=2)"] and cols == ["Pop", "Rock", "Folk"]
    np.testing.assert_allclose(matrix, [[0, 0, 1], [0, 0.5, 0.5]])
