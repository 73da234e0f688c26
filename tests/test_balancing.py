"""Class weights (the README formula) and the per-epoch weighted sampler."""

import numpy as np
import pytest

from genrekit.errors import ConfigError
from genrekit.train.balancing import (
    EpochSampler,
    class_counts,
    class_weights,
    effective_thresholds,
    head_pos_weights,
    pos_weights,
    target_count,
)


def test_class_weight_formula_by_hand():
    # n = 100 samples, 3 classes: n / (3 * n_c)
    w = class_weights(np.array([10, 30, 60]))
    assert w == pytest.approx([100 / 30, 100 / 90, 100 / 180])


def test_class_weights_clip_and_empty_class():
    w = class_weights(np.array([1, 99, 0]), max_weight=20.0)
    # two classes present: 100 / (2 * 1) = 50 clipped to 20; 100 / (2 * 99)
    assert w == pytest.approx([20.0, 100 / 198, 0.0])


def test_class_counts_ignore_masked():
    assert class_counts(np.array([0, 2, -1, 2, -1]), 4).tolist() == [1, 0, 2, 0]


def test_pos_weights_by_hand():
    y = np.array([[1, 0], [1, 0], [0, 0], [1, 1]])
    assert pos_weights(y) == pytest.approx([1 / 3, 3.0])
    # rates weigh the rows: row 2 drawn 3 times -> label 0: 3 pos vs 3 neg
    assert pos_weights(y, rates=np.array([1.0, 1.0, 3.0, 1.0])) == pytest.approx([1.0, 5.0])


def test_pos_weights():
    y = np.array(
        [
            [1, 1, 0, 1],
            [0, 1, 0, 1],
            [0, 0, 0, 1],
            [0, 0, 0, 1],
        ]
    )
    # label 0: 3 neg / 1 pos; label 1: 2 / 2; label 2: never positive; label 3: always positive.
    np.testing.assert_allclose(pos_weights(y, max_weight=50.0), [3.0, 1.0, 50.0, 1 / 50])
    assert pos_weights(y, max_weight=2.0)[0] == 2.0
    assert pos_weights(y).dtype == np.float32


def test_pos_weight_clips_rare_label():
    y = np.zeros((200, 2))
    y[0, 0] = 1
    y[:100, 1] = 1
    np.testing.assert_allclose(pos_weights(y, max_weight=50.0), [50.0, 1.0])


def test_head_pos_weights_are_the_trainers_by_hand():
    """The all-genres head's pos_weight: clipped above only, 1 for a label never positive, float64."""
    y = np.array([[1, 0, 1], [1, 0, 1], [0, 0, 1], [1, 0, 1]])
    w = head_pos_weights(y, 50.0)
    assert w.tolist() == [1 / 3, 1.0, 0.0] and w.dtype == np.float64  # pos_weights: [1/3, 50, 1/50]
    assert head_pos_weights(y, 50.0, rates=np.array([1.0, 1.0, 3.0, 1.0]))[0] == 1.0  # 3 neg / 3 pos
    assert head_pos_weights(np.array([[1, 0], [0, 0], [0, 0], [0, 0]]), 2.0).tolist() == [2.0, 1.0]


def test_head_pos_weights_keep_the_numbers_trained_before(rng):
    """The formula the trainer had inline before: the same numbers, bit for bit."""
    y = (rng.random((300, 40)) < rng.random(40) ** 3).astype(np.uint8)
    y[:, 5] = 0
    rates = rng.uniform(0.2, 3.0, 300)
    pos = (y * rates[:, None]).sum(axis=0)
    neg = rates.sum() - pos
    before = np.minimum(np.where(pos > 0, neg / np.maximum(pos, 1e-9), 1.0), 50.0)
    np.testing.assert_array_equal(head_pos_weights(y, 50.0, rates), before)


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.zeros(3)])
def test_pos_weight_refuses_bad_matrix(bad):
    with pytest.raises(ConfigError, match="multi_hot"):
        pos_weights(bad)


@pytest.mark.parametrize("count, want", [(5, 100), (100, 100), (2000, 2000), (9000, 5000), (0, 0)])
def test_target_count(count, want):
    assert target_count(count, 100, 5000) == want


def test_sampler_realized_distribution_follows_thresholds():
    top = np.concatenate([np.full(7, 0), np.full(40, 1), np.full(300, 2), np.full(12, -1)])
    sampler = EpochSampler(top, 3, oversample_threshold=20, undersample_threshold=100, seed=3)
    rows = sampler.epoch(0)
    assert sampler.realized_counts(rows).tolist() == [20, 40, 100]
    assert np.sum(top[rows] == -1) == 12  # tracks without a top target keep their number
    assert len(rows) == sampler.epoch_size() == 172
    assert set(np.flatnonzero(top == 0)) <= set(rows)  # oversampling keeps every track once
    assert len(set(rows[top[rows] == 2])) == 100  # undersampling draws without replacement


def test_sampler_is_deterministic_per_epoch_and_varies_between_epochs():
    top = np.repeat(np.arange(3), [5, 50, 500])
    a = EpochSampler(top, 3, 20, 100, seed=1)
    b = EpochSampler(top, 3, 20, 100, seed=1)
    assert np.array_equal(a.epoch(4), b.epoch(4))
    assert not np.array_equal(np.sort(a.epoch(0)), np.sort(a.epoch(1)))


def test_class_weights_match_scikit_learn_balanced():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.repeat([0, 1, 2, 3], [3, 17, 80, 1])
    expected = compute_class_weight("balanced", classes=np.arange(4), y=y)
    assert class_weights(np.bincount(y)) == pytest.approx(expected)


def test_expected_rates_give_the_planned_counts():
    top = np.repeat([0, 1, 2, -1], [5, 50, 500, 7])
    sampler = EpochSampler(top, 3, 20, 100, seed=0)
    rates = sampler.expected_rates()
    assert rates[top == 0] == pytest.approx(4.0)
    assert rates[top == 2] == pytest.approx(0.2)
    assert rates[top == -1] == pytest.approx(1.0)
    sums = [rates[top == c].sum() for c in range(3)]
    assert sums == pytest.approx(sampler.planned_counts())


def _th(over: int, under: int, mode: str):
    from types import SimpleNamespace

    return SimpleNamespace(oversample_threshold=over, undersample_threshold=under, sampling_thresholds=mode)


@pytest.mark.parametrize(
    ("over", "under", "mode", "n", "want"),
    [
        (100, 5000, "absolute", 1000, (100, 5000)),  # as given, whatever the size
        (100, 5000, "relative", 39257, (100, 5000)),  # fma_large's own size: the README's values
        (100, 5000, "relative", 1000, (3, 127)),  # 100 * 1000 / 39257 = 2.55, 5000 * ... = 127.4
        (100, 5000, "relative", 3926, (10, 500)),  # 10.0008 and 500.04
        (100, 5000, "relative", 100, (1, 13)),  # 0.25 is raised to 1; 12.7 rounds to 13
        (100, 5000, "relative", 0, (1, 1)),
        (30, 40, "relative", 78514, (60, 80)),  # twice fma_large
        (100, 120, "relative", 196, (1, 1)),  # 0.499 -> 1 and 0.599 -> 1: oversample never above undersample
    ],
)
def test_effective_thresholds_by_hand(over, under, mode, n, want):
    assert effective_thresholds(_th(over, under, mode), n) == want


def test_effective_thresholds_refuse_an_unknown_mode():
    with pytest.raises(ConfigError, match="sampling_thresholds='fraction'"):
        effective_thresholds(_th(100, 5000, "fraction"), 10)


def test_class_priors_by_hand():
    from genrekit.train.balancing import class_priors

    np.testing.assert_allclose(class_priors(np.array([6, 3, 1])), [0.6, 0.3, 0.1])
    # A class without tracks counts as half a track, so its log prior is finite.
    np.testing.assert_allclose(class_priors(np.array([3.0, 1.0, 0.0])), [3 / 4.5, 1 / 4.5, 0.5 / 4.5])
    with pytest.raises(ConfigError):
        class_priors(np.array([1.0, -1.0]))


@pytest.mark.parametrize(
    "tau, expected",
    [
        (0.0, [0, 0]),  # the plain argmax
        # p / prior**0.5: row 0 .6/.894 = .671 < .4/.447 = .894; row 1 .7/.894 = .783 > .3/.447 = .671
        (0.5, [1, 0]),
        # p / prior: row 0 .75 < 2.0; row 1 .875 < 1.5
        (1.0, [1, 1]),
    ],
)
def test_posthoc_logit_adjustment_by_hand(tau, expected):
    from genrekit.train.balancing import posthoc_logit_adjustment

    probs = np.array([[0.6, 0.4], [0.7, 0.3]])
    assert posthoc_logit_adjustment(probs, np.array([0.8, 0.2]), tau).tolist() == expected


def test_posthoc_logit_adjustment_refuses_mismatched_prior():
    from genrekit.train.balancing import posthoc_logit_adjustment

    with pytest.raises(ConfigError):
        posthoc_logit_adjustment(np.ones((2, 3)) / 3, np.array([0.5, 0.5]))
