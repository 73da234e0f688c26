"""The balancing study's statistics: artist-group folds, figures with track weights, bootstrap, paired differences."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    jaccard_score,
    label_ranking_average_precision_score,
    recall_score,
)

from genrekit.errors import ConfigError
from genrekit.evaluate.study import (
    ArtistFolds,
    Predictions,
    bootstrap_counts,
    check_folds,
    jaccard_per_track,
    lrap_per_track,
    make_artist_folds,
    percentile_interval,
    single_label_scores,
    summarize,
    write_fold_metadata,
)


@pytest.fixture
def tracks(rng):
    """300 tracks of 70 artists of unequal size; an artist's tracks share a genre (as in the demo)."""
    sizes = rng.integers(1, 9, size=70)
    artists = np.repeat(np.arange(70) * 3 + 11, sizes)
    genre_of_artist = rng.choice(5, size=70, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    genre = np.repeat(genre_of_artist, sizes)
    ids = np.sort(rng.choice(np.arange(2, 99999), size=len(artists), replace=False))
    return ids, artists, genre


@pytest.mark.parametrize("n_folds", [2, 5])
def test_folds_test_every_track_once_and_never_share_an_artist(tracks, n_folds):
    ids, artists, genre = tracks
    folds = make_artist_folds(ids, artists, genre, n_folds=n_folds, seed=3)
    assert sorted(set(folds.test_fold.tolist())) == list(range(n_folds))
    check_folds(folds)
    # Each artist is tested in exactly one fold.
    for a in np.unique(artists):
        assert len(set(folds.test_fold[artists == a].tolist())) == 1
    for f in range(n_folds):
        split = folds.split(f)
        assert (split == "test").sum() == (folds.test_fold == f).sum()
        for name in ("training", "validation", "test"):
            others = set(artists[split != name].tolist())
            assert not (set(artists[split == name].tolist()) & others), (f, name)
        # The validation part is about 1/8 of the training part, never a test track.
        share = (split == "validation").sum() / (split != "test").sum()
        assert 0.04 < share < 0.3
        assert not np.any(folds.validation[f] & (folds.test_fold == f))
    # Stratified: the commonest genre's share of each test fold is near its share overall.
    for f in range(n_folds):
        assert abs((genre[folds.test_fold == f] == 0).mean() - (genre == 0).mean()) < 0.2


def test_folds_are_deterministic_from_the_seed(tracks):
    ids, artists, genre = tracks
    a = make_artist_folds(ids, artists, genre, n_folds=5, seed=1)
    b = make_artist_folds(ids, artists, genre, n_folds=5, seed=1)
    c = make_artist_folds(ids, artists, genre, n_folds=5, seed=2)
    np.testing.assert_array_equal(a.test_fold, b.test_fold)
    np.testing.assert_array_equal(a.validation, b.validation)
    assert not np.array_equal(a.test_fold, c.test_fold)


def test_check_folds_catches_a_shared_artist(tracks):
    ids, artists, genre = tracks
    good = make_artist_folds(ids, artists, genre, n_folds=5, seed=0)
    test_fold = good.test_fold.copy()
    a = artists[0]
    first = np.flatnonzero(artists == a)
    if len(first) < 2:  # make the first artist two tracks long
        artists = artists.copy()
        artists[1] = a
        first = np.flatnonzero(artists == a)
    test_fold[first[0]] = (test_fold[first[1]] + 1) % 5  # one of its tracks in another fold
    bad = ArtistFolds(ids, artists, test_fold, good.validation & (test_fold != np.arange(5)[:, None]))
    with pytest.raises(ConfigError, match=f"artist {a} is in both"):
        check_folds(bad)


def test_too_few_artists_is_refused():
    with pytest.raises(ConfigError, match="3 artists cannot fill 5 folds"):
        make_artist_folds([1, 2, 3, 4], [7, 7, 8, 9], [0, 0, 1, 1], n_folds=5)


def test_fold_metadata_changes_only_the_split(tmp_path):
    from genrekit.datasets import fma
    from genrekit.datasets.demo.metadata import make_demo_metadata, write_genres_csv, write_tracks_csv

    tracks, genres = make_demo_metadata(200, seed=0)
    src = tmp_path / "meta"
    src.mkdir()
    write_tracks_csv(tracks, src / "tracks.csv")
    write_genres_csv(genres, src / "genres.csv")
    original = fma.load_tracks(src, "all")
    top = original["track", "genre_top"].astype(str).to_numpy()
    folds = make_artist_folds(original.index, original["artist", "id"], top, n_folds=5, seed=0)
    out = write_fold_metadata(src, folds, 2, tmp_path / "fold2")
    copy = fma.load_tracks(out, "all")
    assert (out / "genres.csv").read_bytes() == (src / "genres.csv").read_bytes()
    assert copy["set", "split"].astype(str).tolist() == folds.split(2).tolist()
    assert (copy["set", "split"] != original["set", "split"]).any()
    others = [c for c in original.columns if c != ("set", "split")]
    assert copy[others].astype(str).equals(original[others].astype(str))


def test_single_label_scores_by_hand():
    # class 0: 2 tracks, 1 right, predicted twice; class 1: 2 tracks, both right, predicted 3 times;
    # class 2: 1 track, missed, never predicted.
    s = single_label_scores(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), 3)
    assert s["accuracy"] == pytest.approx(3 / 5)
    assert s["balanced_accuracy"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    # F1 = 2 tp / (support + predicted): 2/4, 4/5, 0
    assert s["f1_macro"] == pytest.approx((0.5 + 0.8 + 0) / 3)
    assert s["f1_weighted"] == pytest.approx((2 * 0.5 + 2 * 0.8 + 0) / 5)
    np.testing.assert_allclose(s["recall"], [0.5, 1.0, 0.0])
    # An unlabelled track (-1) is not scored; weights count tracks that many times.
    w = single_label_scores(
        np.array([0, 0, -1, 1]), np.array([0, 1, 1, 1]), 3, np.array([3.0, 1.0, 5.0, 0.0])
    )
    assert w["accuracy"] == pytest.approx(3 / 4)
    assert np.isnan(w["recall"][1]) and np.isnan(w["recall"][2])  # class 1 weighed 0 times: absent


def test_single_label_scores_equal_scikit_learn_on_resamples(rng):
    y = rng.choice(6, size=200, p=[0.4, 0.3, 0.15, 0.1, 0.04, 0.01])
    p = np.where(rng.random(200) < 0.6, y, rng.choice(6, size=200))
    p[:3] = 5  # a class predicted though (maybe) absent from the truth
    counts = bootstrap_counts(200, 20, seed=4)
    idx_all = np.random.default_rng(4).integers(0, 200, size=(20, 200))
    for w, idx in zip(counts, idx_all, strict=True):
        s = single_label_scores(y, p, 6, w)
        yt, yp = y[idx], p[idx]
        assert s["accuracy"] == pytest.approx(accuracy_score(yt, yp))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true"
            assert s["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yt, yp))
        assert s["f1_macro"] == pytest.approx(f1_score(yt, yp, average="macro", zero_division=0))
        assert s["f1_weighted"] == pytest.approx(f1_score(yt, yp, average="weighted", zero_division=0))
        present = np.unique(yt)
        np.testing.assert_allclose(
            s["recall"][present], recall_score(yt, yp, labels=present, average=None, zero_division=0)
        )


def test_bootstrap_counts_are_resamples_with_replacement():
    counts = bootstrap_counts(50, 7, seed=1)
    assert counts.shape == (7, 50) and np.all(counts.sum(axis=1) == 50)
    np.testing.assert_array_equal(counts, bootstrap_counts(50, 7, seed=1))
    idx = np.random.default_rng(1).integers(0, 50, size=(7, 50))
    np.testing.assert_array_equal(counts[3], np.bincount(idx[3], minlength=50))


def test_multilabel_per_track_figures_equal_scikit_learn(rng):
    y = (rng.random((40, 7)) < 0.25).astype(int)
    y[0] = 0  # no label
    y[1] = 1  # every label
    s = rng.random((40, 7))
    s[2, :] = 0.5  # ties
    pred = (s > 0.6).astype(int)
    assert jaccard_per_track(y, pred).mean() == pytest.approx(
        jaccard_score(y, pred, average="samples", zero_division=0)
    )
    assert lrap_per_track(y, s).mean() == pytest.approx(label_ranking_average_precision_score(y, s))
    # by hand: labels {0, 2} with scores .9 .8 .7 -> ranks 1 and 3, hits 1 and 2: (1 + 2/3) / 2
    assert lrap_per_track(np.array([[1, 0, 1]]), np.array([[0.9, 0.8, 0.7]]))[0] == pytest.approx(5 / 6)


def test_percentile_interval_by_hand():
    assert percentile_interval(np.arange(101)) == pytest.approx((2.5, 97.5))
    assert percentile_interval([1.0, float("nan"), 1.0]) == (1.0, 1.0)


def _pred(top_true, top_pred):
    t, p = np.asarray(top_true), np.asarray(top_pred)
    return Predictions(top_true=t, top_pred=p, medium_true=t, medium_pred=p)


def test_summarize_fold_means_and_paired_differences_by_hand():
    # 4 tracks, folds 0 0 1 1; row "a" always right, row "b" wrong on track 0.
    truth = [0, 1, 0, 1]
    rows = {"a": _pred(truth, truth), "b": _pred(truth, [1, 1, 0, 1]), "same": _pred(truth, truth)}
    out = summarize(rows, np.array([0, 0, 1, 1]), 2, 2, reference="a", n_boot=400, seed=0)
    acc_a = out["a"]["value"]["top_accuracy"]
    assert (acc_a.mean, acc_a.pooled, acc_a.low, acc_a.high) == (1.0, 1.0, 1.0, 1.0)
    acc_b = out["b"]["value"]["top_accuracy"]
    assert acc_b.mean == pytest.approx((0.5 + 1.0) / 2) and acc_b.pooled == pytest.approx(0.75)
    diff = out["b"]["difference"]["top_accuracy"]
    assert diff.mean == pytest.approx(-0.25) and diff.pooled == pytest.approx(-0.25)
    # The difference is minus the share of track 0 in each resample: never above 0, at least -1.
    assert -1.0 <= diff.low < -0.25 < diff.high <= 0.0
    # Paired: a row identical to the reference differs by exactly 0 on every resample.
    same = out["same"]["difference"]["top_accuracy"]
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    assert out["a"]["difference"] == {}


def test_summarize_interval_matches_the_binomial_width():
    # 1,000 tracks, 700 right: the 95% interval of the accuracy is about 0.7 +- 1.96 sqrt(.21 / 1000).
    truth = np.zeros(1000, int)
    pred = np.where(np.arange(1000) < 700, 0, 1)
    out = summarize({"r": _pred(truth, pred)}, np.arange(1000) % 5, 2, 2, reference="r", n_boot=2000, seed=1)
    fig = out["r"]["value"]["top_accuracy"]
    half = 1.96 * np.sqrt(0.21 / 1000)
    assert fig.low == pytest.approx(0.7 - half, abs=0.006) and fig.high == pytest.approx(
        0.7 + half, abs=0.006
    )


def test_fold_metadata_refuses_an_unknown_split_name(tmp_path):
    from genrekit.datasets import fma
    from genrekit.datasets.demo.metadata import make_demo_metadata, write_tracks_csv
    from genrekit.errors import DatasetError

    tracks, _ = make_demo_metadata(40, seed=0)
    write_tracks_csv(tracks, tmp_path / "tracks.csv")
    with pytest.raises(DatasetError, match="'train' is not one of training, validation, test"):
        fma.write_tracks_with_split(
            tmp_path / "tracks.csv", tmp_path / "copy.csv", {int(tracks.index[0]): "train"}
        )
    assert not (tmp_path / "copy.csv").exists()


def test_summarize_interval_brackets_the_mean_over_folds():
    # Fold 0: 20 tracks, all right; fold 1: 80 tracks, 20 right. Mean over folds (1 + 0.25) / 2 =
    # 0.625, pooled 40 / 100 = 0.4 (whose own interval, 0.4 +- 0.1, would miss 0.625). The interval
    # is that of the mean over folds: fold 0 stays 1, fold 1 varies by 1.96 sqrt(.25 * .75 / 80)
    # = 0.095, so the mean varies by about half that.
    truth = np.zeros(100, int)
    pred = np.r_[np.zeros(40, int), np.ones(60, int)]
    fold = np.r_[np.zeros(20, int), np.ones(80, int)]
    out = summarize({"r": _pred(truth, pred)}, fold, 2, 2, reference="r", n_boot=2000, seed=0)
    fig = out["r"]["value"]["top_accuracy"]
    assert fig.mean == pytest.approx(0.625) and fig.pooled == pytest.approx(0.4)
    assert fig.low == pytest.approx(0.625 - 0.095 / 2, abs=0.012)
    assert fig.high == pytest.approx(0.625 + 0.095 / 2, abs=0.012)


def test_summarize_differences_to_a_second_reference():
    truth = [0, 1, 0, 1]
    rows = {"a": _pred(truth, truth), "b": _pred(truth, [1, 1, 0, 1]), "c": _pred(truth, [1, 0, 0, 1])}
    out = summarize(rows, np.array([0, 0, 1, 1]), 2, 2, reference="a", n_boot=200, seed=0, against=("b",))
    # c - b: track 1 wrong in c, right in b (fold 0): -0.5 in fold 0, 0 in fold 1 -> -0.25.
    to_b = out["c"]["difference_to"]["b"]["top_accuracy"]
    assert to_b.mean == pytest.approx(-0.25) and to_b.high <= 0.0
    assert out["b"]["difference_to"] == {}  # not against itself
    assert out["a"]["difference_to"]["b"]["top_accuracy"].mean == pytest.approx(0.25)


def test_dataset_folds_keep_each_artist_in_one_fold(tmp_path):
    """The study's folds over a dataset read through the seam: artists (unknown ones alone) never split."""
    from genrekit.datasets.base import FMADataset
    from genrekit.evaluate.study import dataset_folds
    from tests.fma_fixtures import small_dataset

    labelled = FMADataset(small_dataset(tmp_path / "meta"), tmp_path / "audio").load()
    folds = dataset_folds(labelled, n_folds=2, seed=0, validation_folds=2)
    check_folds(folds)
    assert folds.track_ids.tolist() == [2, 3, 5, 10, 11, 12, 20, 21, 30, 31, 32, 33]
    by_artist = {}
    for artist, fold in zip(folds.artist_ids.tolist(), folds.test_fold.tolist(), strict=True):
        by_artist.setdefault(artist, set()).add(fold)
    assert len(by_artist) == 8 and all(len(f) == 1 for f in by_artist.values())
    same = make_artist_folds(
        folds.track_ids,
        folds.artist_ids,
        labelled.targets["top"].astype(str),
        n_folds=2,
        seed=0,
        validation_folds=2,
    )
    np.testing.assert_array_equal(same.test_fold, folds.test_fold)
