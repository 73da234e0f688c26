"""Segment-to-track aggregation against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from genrekit.evaluate.aggregate import (
    average_confidence,
    multilabel_average,
    segment_counts,
    top_k_indices,
    track_average,
    track_averages,
    track_mean,
    track_multilabel,
    track_voting,
    voting,
)

NAMES = ["Rock", "Jazz", "Folk"]

# Two segments lean mildly to Rock, one is very sure of Jazz: voting says Rock, averaging Jazz.
SPLIT = np.array(
    [
        [0.40, 0.35, 0.25],
        [0.40, 0.35, 0.25],
        [0.00, 0.90, 0.10],
    ]
)


def test_averaging_and_voting_differ_on_a_hand_example():
    avg = average_confidence(SPLIT, NAMES, k=2)
    assert (avg.index, avg.name) == (1, "Jazz")
    assert avg.confidence == pytest.approx(1.6 / 3)
    assert avg.top_k == [("Jazz", pytest.approx(1.6 / 3)), ("Rock", pytest.approx(0.8 / 3))]
    np.testing.assert_allclose(avg.probabilities, [0.8 / 3, 1.6 / 3, 0.6 / 3])

    vote = voting(SPLIT, NAMES)
    assert (vote.index, vote.name, vote.votes, vote.n_segments) == (0, "Rock", 2, 3)
    assert vote.share == pytest.approx(2 / 3)
    assert vote.vote_counts.tolist() == [2, 1, 0]
    assert vote.to_dict() == {"index": 0, "name": "Rock", "votes": 2, "share": 2 / 3, "n_segments": 3}


@pytest.mark.parametrize(
    ("probs", "winner"),
    [
        # 2 votes each for Rock and Folk; Folk's mean (0.5) beats Rock's (0.375).
        ([[0.5, 0.1, 0.4], [0.5, 0.1, 0.4], [0.2, 0.1, 0.7], [0.3, 0.2, 0.5]], 2),
        # 2 votes each again; now Rock's mean (0.675) beats Folk's (0.275): not decided by index.
        ([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.45, 0.05, 0.5], [0.45, 0.05, 0.5]], 0),
        # Equal votes and equal means: the lower index wins.
        ([[0.6, 0.4, 0.0], [0.4, 0.6, 0.0]], 0),
    ],
)
def test_voting_ties_go_to_the_higher_mean_probability(probs, winner):
    vote = voting(np.array(probs), NAMES)
    assert vote.index == winner
    assert vote.votes == len(probs) // 2
    assert vote.share == 0.5


def test_average_tie_goes_to_the_lower_index():
    assert average_confidence(np.array([[0.3, 0.4, 0.3], [0.5, 0.2, 0.3]]), NAMES).index == 0


def test_top_k_without_names_gives_indices_and_is_clipped():
    avg = average_confidence(SPLIT, k=10)
    assert [g for g, _ in avg.top_k] == [1, 0, 2]
    assert avg.name is None


def test_top_k_indices_orders_ties_by_index():
    assert top_k_indices(np.array([[0.2, 0.4, 0.4, 0.0]]), 3).tolist() == [[1, 2, 0]]


def test_vectorized_tracks_match_hand_values():
    # Segments of track 0 are rows 0 and 2 (not contiguous); track 2 has no segment.
    probs = np.array(
        [
            [0.6, 0.3, 0.1],  # track 0
            [0.1, 0.1, 0.8],  # track 1
            [0.2, 0.5, 0.3],  # track 0
            [0.3, 0.3, 0.4],  # track 3
        ]
    )
    segment_track = np.array([0, 1, 0, 3])
    assert segment_counts(segment_track, 4).tolist() == [2, 1, 0, 1]
    mean = track_mean(probs, segment_track, 4)
    np.testing.assert_allclose(mean[0], [0.4, 0.4, 0.2])
    assert np.isnan(mean[2]).all()

    avg = track_average(probs, segment_track, 4)
    assert avg.index.tolist() == [0, 2, -1, 2]  # track 0: a 0.4 / 0.4 tie goes to index 0
    np.testing.assert_allclose(avg.confidence[[0, 1, 3]], [0.4, 0.8, 0.4])
    assert np.isnan(avg.confidence[2])

    votes = track_voting(probs, segment_track, 4)
    # Track 0: one vote each for 0 and 1; means are tied too (0.4, 0.4) -> index 0.
    assert votes.index.tolist() == [0, 2, -1, 2]
    assert votes.votes.tolist() == [1, 1, 0, 1]
    np.testing.assert_allclose(votes.share[[0, 1, 3]], [0.5, 1.0, 1.0])
    assert np.isnan(votes.share[2])


def test_vectorized_equals_one_file_functions(rng):
    n_tracks, n_classes = 30, 5
    segment_track = rng.permutation(np.repeat(np.arange(n_tracks), rng.integers(1, 8, n_tracks)))
    # Coarse probabilities make ties in votes frequent, so the tie rule is exercised.
    probs = rng.integers(0, 4, (len(segment_track), n_classes)) / 4.0
    avg = track_average(probs, segment_track)
    votes = track_voting(probs, segment_track)
    for t in range(n_tracks):
        rows = probs[segment_track == t]
        one_avg, one_vote = average_confidence(rows), voting(rows)
        assert avg.index[t] == one_avg.index
        assert avg.confidence[t] == pytest.approx(one_avg.confidence)
        assert votes.index[t] == one_vote.index
        # The rule itself: a tied class with a higher mean would have won.
        counts = np.bincount(np.argmax(rows, axis=1), minlength=n_classes)
        tied = np.flatnonzero(counts == counts.max())
        means = rows.mean(axis=0)
        assert one_vote.index == tied[np.argmax(means[tied])]


def test_multilabel_average_lists_labels_strictly_above_the_threshold():
    probs = np.array([[0.9, 0.2, 0.6, 0.5], [0.7, 0.4, 0.5, 0.5]])
    pred = multilabel_average(probs, ["Rock", "Jazz", "Folk", "Pop"], threshold=0.5)
    assert pred.labels == [("Rock", pytest.approx(0.8)), ("Folk", pytest.approx(0.55))]  # Pop = 0.5 exactly
    assert pred.to_dict()["labels"][0]["genre"] == "Rock"

    mean, predicted = track_multilabel(probs, np.array([0, 2]), threshold=0.5, n_tracks=3)
    np.testing.assert_allclose(mean[0], [0.9, 0.2, 0.6, 0.5])
    assert predicted.tolist() == [[True, False, True, False], [False] * 4, [True, False, False, False]]


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: average_confidence(np.zeros((0, 3))), "no segments"),
        (lambda: voting(np.array([0.2, 0.8])), "2-D"),
        (lambda: average_confidence(np.array([[np.nan, 1.0]])), "NaN"),
        (lambda: average_confidence(SPLIT, ["a", "b"]), "2 names given for 3 classes"),
        (lambda: track_mean(SPLIT, [0, -1, 0]), "negative track index"),
        (lambda: track_mean(SPLIT, [0, 1]), "segment_track must have shape (3,)"),
        (lambda: track_mean(SPLIT, [0, 1, 5], n_tracks=3), "refers to track 5"),
        (lambda: top_k_indices(SPLIT, 0), "k=0"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(call, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_track_averages_aggregate_every_head_the_model_has():
    rng = np.random.default_rng(3)
    segment_track = np.array([0, 0, 2, 1, 2, 2])
    probs = {"top": rng.dirichlet(np.ones(3), 6), "all": rng.random((6, 5))}  # no medium head
    heads = track_averages(probs, segment_track, n_tracks=4)
    assert list(heads) == ["top", "all"]
    for head, p in probs.items():
        one = track_average(p, segment_track, n_tracks=4)
        np.testing.assert_array_equal(heads[head].index, one.index)
        np.testing.assert_allclose(heads[head].mean, one.mean)
    assert heads["top"].index[3] == -1 and np.isnan(heads["all"].mean[3]).all()
