"""Focal loss, logit-adjusted loss, weighted BCE and the pos_weight helper against values worked out by hand with numpy."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from genrekit.errors import ConfigError
from genrekit.models.keras_metrics import MaskedTopKAccuracy
from genrekit.models.losses import (
    FocalLoss,
    LogitAdjustedLoss,
    WeightedBinaryCrossEntropy,
    make_losses,
)

Y_TRUE = np.array([[0, 1, 0], [1, 0, 0]], dtype=np.float32)
Y_PRED = np.array([[0.2, 0.7, 0.1], [0.3, 0.5, 0.2]], dtype=np.float32)


def per_row(loss: keras.losses.Loss, y_true, y_pred) -> np.ndarray:
    """Per-row loss values, bypassing the batch reduction."""
    return keras.ops.convert_to_numpy(loss.call(keras.ops.convert_to_tensor(y_true), y_pred))


def test_focal_gamma0_alpha1_is_cross_entropy():
    loss = FocalLoss(alpha=1.0, gamma=0.0)
    expected = np.mean([-np.log(0.7), -np.log(0.3)])
    assert float(loss(Y_TRUE, Y_PRED)) == pytest.approx(expected, rel=1e-6)
    assert float(FocalLoss(alpha=None, gamma=0.0)(Y_TRUE, Y_PRED)) == pytest.approx(expected, rel=1e-6)


def test_focal_gamma2_hand_value():
    rows = per_row(FocalLoss(gamma=2.0), Y_TRUE, Y_PRED)
    expected = [(1 - 0.7) ** 2 * -np.log(0.7), (1 - 0.3) ** 2 * -np.log(0.3)]
    np.testing.assert_allclose(rows, expected, rtol=1e-6)
    assert float(FocalLoss(gamma=2.0)(Y_TRUE, Y_PRED)) == pytest.approx(np.mean(expected), rel=1e-6)


def test_focal_per_class_alpha_weighs_the_true_class():
    # Row 1's true class is 0 but class 1 has the highest probability: alpha must follow the target.
    rows = per_row(FocalLoss(alpha=[1.0, 2.0, 3.0], gamma=2.0), Y_TRUE, Y_PRED)
    expected = [2.0 * 0.3**2 * -np.log(0.7), 1.0 * 0.7**2 * -np.log(0.3)]
    np.testing.assert_allclose(rows, expected, rtol=1e-6)


@pytest.mark.parametrize("alpha", [None, 0.5, [1.0, 4.0, 9.0]])
@pytest.mark.parametrize("gamma", [0.0, 2.0])
def test_focal_masked_row_contributes_exactly_zero(alpha, gamma):
    y_true = np.array([[0, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=np.float32)
    y_pred = np.array([[0.2, 0.7, 0.1], [0.9, 0.05, 0.05], [0.3, 0.5, 0.2]], dtype=np.float32)
    loss = FocalLoss(alpha=alpha, gamma=gamma)
    rows = per_row(loss, y_true, y_pred)
    assert rows[1] == 0.0
    assert rows[0] > 0 and rows[2] > 0
    # The batch mean counts the masked row as a zero, nothing more.
    unmasked = float(loss(y_true[[0, 2]], y_pred[[0, 2]]))
    assert float(loss(y_true, y_pred)) == pytest.approx(unmasked * 2 / 3, rel=1e-6)


def test_focal_gradient_of_masked_row_is_zero():
    import tensorflow as tf  # gradients need the backend; the loss itself does not

    y_true = tf.constant([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    logits = tf.Variable([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    with tf.GradientTape() as tape:
        value = FocalLoss(alpha=[1.0, 5.0, 2.0])(y_true, tf.nn.softmax(logits))
    grad = tape.gradient(value, logits).numpy()
    assert np.all(grad[0] == 0.0)
    assert np.any(grad[1] != 0.0)


def test_focal_loss_in_float32_for_float16_predictions():
    value = FocalLoss(gamma=2.0)(Y_TRUE, Y_PRED.astype(np.float16))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"


@pytest.mark.parametrize(
    "kwargs",
    [{"gamma": -1.0}, {"alpha": [1.0, -2.0]}, {"alpha": [[1.0, 2.0]]}, {"alpha": float("nan")}],
)
def test_focal_refuses_bad_parameters(kwargs):
    with pytest.raises(ConfigError):
        FocalLoss(**kwargs)


def test_focal_alpha_length_must_match_classes():
    with pytest.raises(ConfigError, match="alpha has 2 values but the output has 3 classes"):
        FocalLoss(alpha=[1.0, 2.0])(Y_TRUE, Y_PRED)


def test_weighted_bce_hand_value():
    y_true = np.array([[1, 0, 1], [0, 1, 0]], dtype=np.float32)
    y_pred = np.array([[0.8, 0.4, 0.1], [0.3, 0.6, 0.05]], dtype=np.float32)
    loss = WeightedBinaryCrossEntropy(pos_weight=[2.0, 3.0, 0.5])
    expected = [
        -(2.0 * np.log(0.8) + np.log(1 - 0.4) + 0.5 * np.log(0.1)) / 3,
        -(np.log(1 - 0.3) + 3.0 * np.log(0.6) + np.log(1 - 0.05)) / 3,
    ]
    np.testing.assert_allclose(per_row(loss, y_true, y_pred), expected, rtol=1e-6)
    assert float(loss(y_true, y_pred)) == pytest.approx(np.mean(expected), rel=1e-6)


@pytest.mark.parametrize("pos_weight", [None, 1.0, [1.0, 1.0, 1.0]])
def test_weighted_bce_with_unit_weight_is_plain_bce(pos_weight, rng):
    y_true = (rng.random((5, 3)) > 0.5).astype(np.float32)
    y_pred = rng.uniform(0.01, 0.99, (5, 3)).astype(np.float32)
    by_hand = -(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred)).mean()
    value = float(WeightedBinaryCrossEntropy(pos_weight=pos_weight)(y_true, y_pred))
    assert value == pytest.approx(by_hand, rel=1e-5)
    assert value == pytest.approx(float(keras.losses.BinaryCrossentropy()(y_true, y_pred)), rel=1e-5)


def test_weighted_bce_is_finite_at_saturated_predictions():
    y_true = np.array([[1, 0]], dtype=np.float32)
    y_pred = np.array([[0.0, 1.0]], dtype=np.float32)
    value = float(WeightedBinaryCrossEntropy(pos_weight=[10.0, 1.0])(y_true, y_pred))
    assert np.isfinite(value)
    assert value == pytest.approx(-(10 * np.log(1e-7) + np.log(1e-7)) / 2, rel=1e-3)


def test_losses_serialize_by_registered_name():
    for loss in (FocalLoss(alpha=[1.0, 2.5], gamma=1.5), WeightedBinaryCrossEntropy(pos_weight=[3.0, 0.5])):
        config = keras.saving.serialize_keras_object(loss)
        assert config["registered_name"].startswith("genrekit>")
        again = keras.saving.deserialize_keras_object(config)
        assert type(again) is type(loss)
        assert again.get_config() == loss.get_config()


def test_make_losses_and_weights():
    losses = make_losses(use_focal_loss=False, gamma=2.0, top_alpha=[1.0, 2.0], pos_weight=[4.0])
    assert set(losses) == {"top", "medium", "all"}
    assert losses["top"].gamma == 0.0 and losses["top"].alpha == [1.0, 2.0]
    assert make_losses(use_focal_loss=True, gamma=3.0)["medium"].gamma == 3.0
    assert losses["all"].pos_weight == [4.0]


def test_masked_accuracy_skips_all_zero_rows():
    y_true = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    y_pred = np.array(
        [[0.8, 0.1, 0.1], [0.9, 0.05, 0.05], [0.6, 0.3, 0.1], [0.2, 0.3, 0.5]], dtype=np.float32
    )
    metric = MaskedTopKAccuracy()
    metric.update_state(y_true, y_pred)
    # Rows 0 and 3 right, row 2 wrong, row 1 masked (Keras' CategoricalAccuracy would count it right).
    assert float(metric.result()) == pytest.approx(2 / 3)
    top2 = MaskedTopKAccuracy(k=2)
    top2.update_state(y_true, y_pred, sample_weight=np.array([1.0, 1.0, 3.0, 1.0]))
    assert float(top2.result()) == pytest.approx(1.0)
    metric.reset_state()
    assert float(metric.result()) == 0.0


PRIOR = [0.5, 0.3, 0.2]


@pytest.mark.parametrize("prior", [PRIOR, [0.01, 0.9, 0.09]])
def test_logit_adjusted_tau0_is_plain_cross_entropy(prior):
    rows = per_row(LogitAdjustedLoss(prior, tau=0.0), Y_TRUE, Y_PRED)
    np.testing.assert_allclose(rows, [-np.log(0.7), -np.log(0.3)], rtol=1e-6)
    plain = keras.losses.CategoricalCrossentropy()(Y_TRUE, Y_PRED)
    assert float(LogitAdjustedLoss(prior, tau=0.0)(Y_TRUE, Y_PRED)) == pytest.approx(float(plain), rel=1e-6)


def test_logit_adjusted_hand_values():
    # softmax(log p + tau log prior) = p * prior**tau / sum(p * prior**tau)
    # row 0: p = .2 .7 .1, p * prior = .10 .21 .02 (sum .33), true class 1
    # row 1: p = .3 .5 .2, p * prior = .15 .15 .04 (sum .34), true class 0
    rows = per_row(LogitAdjustedLoss(PRIOR, tau=1.0), Y_TRUE, Y_PRED)
    np.testing.assert_allclose(rows, [-np.log(0.21 / 0.33), -np.log(0.15 / 0.34)], rtol=1e-5)
    # tau = 2: p * prior**2 = .05 .063 .004 (sum .117) and .075 .045 .008 (sum .128)
    rows = per_row(LogitAdjustedLoss(PRIOR, tau=2.0), Y_TRUE, Y_PRED)
    np.testing.assert_allclose(rows, [-np.log(0.063 / 0.117), -np.log(0.075 / 0.128)], rtol=1e-5)
    # The frequent true class (row 1, prior .5) costs less than without adjustment, the rarer one more.
    assert rows[1] < -np.log(0.3)


def test_logit_adjusted_prior_is_normalised():
    a = per_row(LogitAdjustedLoss([5.0, 3.0, 2.0], tau=1.0), Y_TRUE, Y_PRED)
    np.testing.assert_allclose(a, per_row(LogitAdjustedLoss(PRIOR, tau=1.0), Y_TRUE, Y_PRED), rtol=1e-6)
    assert LogitAdjustedLoss([5.0, 3.0, 2.0]).prior == pytest.approx(PRIOR)


def test_logit_adjusted_with_gamma_is_focal_loss_of_adjusted_probabilities():
    rows = per_row(LogitAdjustedLoss(PRIOR, tau=1.0, gamma=2.0), Y_TRUE, Y_PRED)
    q = [0.21 / 0.33, 0.15 / 0.34]
    np.testing.assert_allclose(
        rows, [(1 - q[0]) ** 2 * -np.log(q[0]), (1 - q[1]) ** 2 * -np.log(q[1])], rtol=1e-5
    )
    # tau = 0 with gamma: the focal loss itself
    np.testing.assert_allclose(
        per_row(LogitAdjustedLoss(PRIOR, tau=0.0, gamma=2.0), Y_TRUE, Y_PRED),
        per_row(FocalLoss(gamma=2.0), Y_TRUE, Y_PRED),
        rtol=1e-6,
    )


def test_logit_adjusted_masked_row_and_sample_weights():
    """A masked row adds exactly 0; the batch loss is sum(w * loss) / sum(w) (mean_with_sample_weight)."""
    import tensorflow as tf

    y_true = np.array([[0, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=np.float32)
    y_pred = np.array([[0.2, 0.7, 0.1], [0.9, 0.05, 0.05], [0.3, 0.5, 0.2]], dtype=np.float32)
    loss = LogitAdjustedLoss(PRIOR, tau=1.0)
    rows = per_row(loss, y_true, y_pred)
    l0, l2 = -np.log(0.21 / 0.33), -np.log(0.15 / 0.34)
    np.testing.assert_allclose(rows, [l0, 0.0, l2], rtol=1e-5)
    assert rows[1] == 0.0
    # The trainer gives the masked row weight 0 and labelled rows their class weights.
    value = float(loss(y_true, y_pred, sample_weight=np.array([2.0, 0.0, 0.5], np.float32)))
    assert value == pytest.approx((2.0 * l0 + 0.5 * l2) / 2.5, rel=1e-5)
    # The masked row's gradient is exactly zero.
    logits = tf.Variable(np.log(y_pred))
    with tf.GradientTape() as tape:
        total = loss(tf.constant(y_true), tf.nn.softmax(logits))
    grad = tape.gradient(total, logits).numpy()
    assert np.all(grad[1] == 0.0) and np.any(grad[0] != 0.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"prior": [0.5, 0.0, 0.5]}, "prior"),
        ({"prior": 0.5}, "prior"),
        ({"prior": PRIOR, "tau": -1.0}, "tau"),
        ({"prior": PRIOR, "gamma": float("nan")}, "gamma"),
    ],
)
def test_logit_adjusted_refuses_bad_parameters(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LogitAdjustedLoss(**kwargs)


def test_logit_adjusted_prior_length_must_match_classes():
    with pytest.raises(ConfigError, match="prior has 2 values but the output has 3 classes"):
        LogitAdjustedLoss([0.4, 0.6])(Y_TRUE, Y_PRED)


def test_logit_adjusted_serializes_and_make_losses_uses_it():
    loss = LogitAdjustedLoss(PRIOR, tau=0.5, gamma=1.0)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(again) is LogitAdjustedLoss and again.get_config() == loss.get_config()
    losses = make_losses(use_focal_loss=False, priors={"top": PRIOR, "medium": [0.1, 0.9]}, tau=0.5)
    assert isinstance(losses["top"], LogitAdjustedLoss) and losses["top"].tau == 0.5
    assert losses["medium"].prior == pytest.approx([0.1, 0.9]) and losses["medium"].gamma == 0.0
    assert (
        make_losses(use_focal_loss=True, gamma=2.0, priors={"top": PRIOR, "medium": PRIOR})["top"].gamma
        == 2.0
    )
    assert isinstance(make_losses()["top"], FocalLoss)  # off: the losses are unchanged
