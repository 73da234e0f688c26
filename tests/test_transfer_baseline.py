"""The musicnn transfer baseline (issue 26): its pipeline, its cached features and ``baseline.py`` on real data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from genrekit.errors import ConfigError
from genrekit.evaluate.transfer_baseline import (
    PCA_COMPONENTS,
    fit_predict_transfer,
    make_transfer_classifier,
)
from tests import own_fixtures as fx
from tests.musicnn_fixtures import WEIGHTS_CACHE


@pytest.mark.parametrize("n_train, components", [(400, PCA_COMPONENTS), (50, 49), (2, 1)])
def test_pipeline_is_the_recipe(n_train, components):
    """Standardize, PCA 128 (fewer with few tracks; not whitened), SVC rbf C=1 gamma='scale'."""
    plain = make_transfer_classifier("svm", n_train)
    balanced = make_transfer_classifier("svm_balanced", n_train)
    scaler, pca, svm = (step for _, step in plain.steps)
    assert type(scaler).__name__ == "StandardScaler"
    assert pca.n_components == components and not pca.whiten
    assert (svm.kernel, svm.C, svm.gamma, svm.class_weight) == ("rbf", 1.0, "scale", None)
    assert balanced.steps[-1][1].class_weight == "balanced"


def test_bad_classifier_and_too_few_tracks_are_refused():
    with pytest.raises(ConfigError, match="'knn' is not one of svm, svm_balanced"):
        make_transfer_classifier("knn", 100)
    with pytest.raises(ConfigError, match="at least 2 training tracks, got 1"):
        make_transfer_classifier("svm", 1)


def test_fit_predict_separates_classes_with_fewer_tracks_than_dimensions(rng):
    """753 values, 62 tracks of 3 classes whose means differ: the PCA keeps 61 components and the
    SVM predicts held-out tracks; a class 6x rarer is found only with class_weight='balanced'."""
    centers = rng.normal(0, 1, (3, 753))
    y = np.repeat(np.arange(3), (30, 27, 5))
    x = centers[y] + rng.normal(0, 3.0, (len(y), 753))
    y_test = np.repeat(np.arange(3), 10)
    x_test = centers[y_test] + rng.normal(0, 3.0, (30, 753))
    recall = {}
    for kind in ("svm", "svm_balanced"):
        pred, seconds = fit_predict_transfer(kind, x, y, x_test)
        assert pred.dtype == np.int64 and seconds >= 0
        recall[kind] = [float((pred[y_test == c] == c).mean()) for c in range(3)]
    assert min(recall["svm"][:2] + recall["svm_balanced"][:2]) >= 0.9, recall
    assert recall["svm"][2] == 0.0 and recall["svm_balanced"][2] >= 0.3, recall


@pytest.fixture(scope="module")
def demo_baseline(demo_dataset, weights, tmp_path_factory):
    """``baseline.py --features musicnn`` on the demo fixture (one patch per 3-s clip), run once."""
    import baseline

    out = tmp_path_factory.mktemp("transfer")
    argv = [
        "--metadata", str(demo_dataset.metadata_dir), "--audio", str(demo_dataset.audio_dir),
        "--duration", "3", "--musicnn_patches", "1", "--pretrained_dir", str(WEIGHTS_CACHE.parent),
        "--cache_dir", str(out / "features"), "--workers", "2", "--output_dir", str(out / "report"),
    ]  # fmt: skip
    assert baseline.main(argv) == 0
    return out, argv


@pytest.mark.slow
def test_baseline_command_on_the_demo(demo_baseline, demo_dataset, capsys):
    """The report scores exactly the test tracks that have a top genre and features; the rows are
    the cache's patches averaged, in track order (the front end's own values: tests/test_musicnn.py)."""
    from genrekit.datasets import base as datasets
    from genrekit.evaluate.transfer_baseline import pooled_rows
    from genrekit.features.cache import FeatureCache
    from genrekit.features.musicnn import MusicnnEmbeddings

    out, _ = demo_baseline
    report = json.loads((out / "report" / "baseline_musicnn_svm_balanced.json").read_text())
    folder = next((out / "features").glob("*/musicnn_MSD_musicnn_max_pool_1p_v1"))
    frontend = MusicnnEmbeddings(output="max_pool", patches=1, weights_dir=str(WEIGHTS_CACHE))
    labelled = datasets.DemoDataset(demo_dataset.root).load()
    targets = labelled.targets
    with FeatureCache.open(folder, frontend) as cache:
        have = set(cache.track_ids.tolist())
        ids = cache.track_ids[::-7]  # not in cache order
        rows = pooled_rows(cache, ids)
        by_hand = [cache.read([t])[0].astype(np.float64).mean(axis=0) for t in ids]
    test = targets[(targets["split"] == "test") & (targets["top"] >= 0)]
    assert report["top"]["track"]["n"] == sum(int(t) in have for t in test.index)
    split_tracks = targets.index[targets["split"].isin(["training", "validation", "test"])]
    assert report["tracks"]["with_features"] == len(have) and report["tracks"]["left_out"] > 0  # its defects
    assert report["tracks"]["with_features"] + report["tracks"]["left_out"] == len(split_tracks)
    assert [t["passed"] for t in report["targets"]][-1] is None  # no all-genres head
    assert rows.shape == (len(ids), 753) and rows.dtype == np.float64
    np.testing.assert_array_equal(rows, np.array(by_hand))


@pytest.mark.slow
def test_rerun_reuses_the_cache_and_mfcc_features_work_too(demo_baseline, capsys):
    import baseline

    out, argv = demo_baseline
    capsys.readouterr()
    assert baseline.main(argv) == 0
    assert "0 extracted now" in capsys.readouterr().err  # every track's features reused
    assert baseline.main([*argv, "--features", "mfcc", "--classifier", "svm"]) == 0
    printed = capsys.readouterr().out
    assert "MFCC statistics (140) + SVM" in printed and "README targets" in printed
    assert (out / "report" / "baseline_mfcc_svm.json").is_file()


def test_baseline_on_genre_folders(tmp_path, capsys):
    """``--dataset folder:``: GTZAN-layout folders whose 10 genres differ in pitch; MFCCs + SVM find
    most of them (chance: 0.1; tracks and labels misaligned would score about that)."""
    import baseline

    fx.flat_genre_folders(tmp_path / "music", per_genre=8)
    argv = ["--dataset", f"folder:{tmp_path / 'music'}", "--features", "mfcc", "--workers", "1"]
    assert baseline.main([*argv, "--output_dir", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "baseline_mfcc_svm_balanced.json").read_text())
    assert "medium" not in report  # flat folders: no medium genres
    top = report["top"]["track"]
    assert top["n"] >= 10 and top["balanced_accuracy"] >= 0.5, top


def test_baseline_on_a_missing_folder_is_one_line(tmp_path, capsys):
    import baseline

    assert baseline.main(["--dataset", f"folder:{tmp_path / 'nowhere'}", "--output_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "nowhere") in err[0], err
