"""Class-balancing losses of the three heads: focal loss or logit-adjusted cross-entropy (softmax
heads), weighted BCE (multi-label head).

All are registered ``keras.losses.Loss`` subclasses built from ``keras.ops``, so a saved model
loads back without ``custom_objects`` on any Keras 3 backend. They compute in float32 whatever
the model's precision policy.

Reduction: a batch's loss is ``sum_i w_i * loss_i / sum_i w_i`` (Keras' ``"mean_with_sample_weight"``)
where ``w_i`` is the row's sample weight: the trainer gives a masked row (no target at that level)
weight 0 and a labelled row its class weight. Dividing by the batch size instead would let the
share of masked rows and the class mix of each batch change the head's step size from batch to
batch. Called without sample weights, the loss is the plain mean over rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from genrekit.backend import keras
from genrekit.errors import ConfigError

ops = keras.ops

# Predicted probabilities are clipped to [EPSILON, 1 - EPSILON] before the log: Keras' own value.
EPSILON = 1e-7
# Normalize each head's loss by the weight of the rows that carry a label (see the module docstring).
REDUCTION = "mean_with_sample_weight"


def _check_non_negative(value: float, what: str) -> None:
    """Refuse a loss parameter that is not a finite number >= 0 (``what`` is e.g. ``FocalLoss gamma``)."""
    if not np.isfinite(value) or value < 0:
        raise ConfigError(f"{what}={value} must be finite and >= 0")


def _as_float_list(values: Any, name: str) -> float | list[float]:
    """A scalar stays a float; a vector becomes a plain list (JSON-serializable in get_config)."""
    array = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ConfigError(f"{name} must be finite and >= 0, got {values!r}")
    if array.ndim == 0:
        return float(array)
    if array.ndim != 1 or array.size == 0:
        raise ConfigError(f"{name} must be a scalar or a 1-D vector, got shape {array.shape}")
    return [float(v) for v in array]


def _check_width(weights: float | list[float], y_pred: Any, name: str, loss_name: str) -> None:
    """Refuse a per-class vector whose length does not match the head's width."""
    width = y_pred.shape[-1]
    if isinstance(weights, list) and width is not None and len(weights) != width:
        raise ConfigError(f"{loss_name}: {name} has {len(weights)} values but the output has {width} classes")


@keras.saving.register_keras_serializable(package="genrekit")
class FocalLoss(keras.losses.Loss):
    """Categorical focal loss on one-hot targets, with an optional per-class weight ``alpha``.

    ``FL = -sum_c alpha_c * y_c * (1 - p_c) ** gamma * log(p_c)``, computed by
    ``keras.losses.categorical_focal_crossentropy`` (probabilities clipped to
    ``[1e-7, 1 - 1e-7]``). Only the true class term is non-zero, so a per-class ``alpha`` weighs
    a row by its true class's weight, and an all-zero row (a masked track) contributes exactly 0.
    With ``gamma=0`` and ``alpha=None`` it is the categorical cross-entropy.

    Parameters
    ----------
    alpha : float or sequence of float, optional
        One weight for every class, or one per class (e.g. balanced class weights). ``None``
        means 1.0 (Keras' own default is 0.25; we leave the weighting to the caller).
    gamma : float
        Focusing parameter (>= 0); larger values down-weight well-classified examples.
    reduction : str
        Keras reduction; the default divides the weighted sum by the sum of the sample weights
        (see the module docstring); without sample weights it is the mean over rows.
    name : str
        Loss name.
    dtype : str
        Computation dtype; float32 so mixed-precision outputs are cast up first.
    """

    def __init__(
        self,
        alpha: float | Sequence[float] | np.ndarray | None = None,
        gamma: float = 2.0,
        reduction: str | None = REDUCTION,
        name: str = "focal_loss",
        dtype: str = "float32",
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        _check_non_negative(gamma, "FocalLoss gamma")
        self.alpha = None if alpha is None else _as_float_list(alpha, "FocalLoss alpha")
        self.gamma = float(gamma)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        alpha = 1.0 if self.alpha is None else self.alpha
        _check_width(alpha, y_pred, "alpha", "FocalLoss")
        if isinstance(alpha, list):
            alpha = ops.convert_to_tensor(np.asarray(alpha, dtype=np.float32))
        return keras.losses.categorical_focal_crossentropy(y_true, y_pred, alpha=alpha, gamma=self.gamma)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"alpha": self.alpha, "gamma": self.gamma, "dtype": self.dtype})
        return config


@keras.saving.register_keras_serializable(package="genrekit")
class LogitAdjustedLoss(keras.losses.Loss):
    """Logit-adjusted softmax cross-entropy (Menon et al., 2021), computed from the head's probabilities.

    Menon et al., "Long-tail learning via logit adjustment" (ICLR 2021), train on
    ``softmax(z + tau * log(prior))`` where ``z`` are the logits and ``prior`` the training class
    frequencies, and predict with the plain ``z``: rare classes must win by a margin during
    training, which removes the head's bias towards frequent classes. Our heads output
    ``p = softmax(z)``; since ``log p = z - logsumexp(z)`` and a softmax ignores a shift common to
    all classes, ``softmax(log p + tau * log(prior)) = softmax(z + tau * log(prior))``. So

    ``loss = -sum_c y_c * (1 - q_c) ** gamma * log q_c``, ``q = softmax(log p + tau * log(prior))``

    with ``p`` clipped below at ``1e-7``. ``tau = 0`` and ``gamma = 0`` give the plain
    cross-entropy; ``gamma > 0`` is the focal loss of the adjusted probabilities (focal loss and
    logit adjustment both switched on). A masked all-zero row contributes exactly 0.

    Parameters
    ----------
    prior : sequence of float
        Training class frequencies (> 0; normalised here to sum to 1), one per class of the head:
        see :func:`genrekit.train.balancing.class_priors`.
    tau : float
        Scale of the adjustment (>= 0); 1.0 is the paper's Bayes-consistent choice.
    gamma : float
        Focusing parameter (>= 0), as in :class:`FocalLoss`.
    reduction, name, dtype
        As for :class:`FocalLoss`.
    """

    def __init__(
        self,
        prior: Sequence[float] | np.ndarray,
        tau: float = 1.0,
        gamma: float = 0.0,
        reduction: str | None = REDUCTION,
        name: str = "logit_adjusted_loss",
        dtype: str = "float32",
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        values = _as_float_list(prior, "LogitAdjustedLoss prior")
        if not isinstance(values, list) or min(values) <= 0:
            raise ConfigError(f"LogitAdjustedLoss prior must be a vector of values > 0, got {prior!r}")
        _check_non_negative(tau, "LogitAdjustedLoss tau")
        _check_non_negative(gamma, "LogitAdjustedLoss gamma")
        total = float(np.sum(values))
        self.prior = [v / total for v in values]
        self.tau = float(tau)
        self.gamma = float(gamma)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        _check_width(self.prior, y_pred, "prior", "LogitAdjustedLoss")
        shift = ops.convert_to_tensor(
            self.tau * np.log(np.asarray(self.prior, dtype=np.float64)).astype(np.float32)
        )
        log_q = ops.log_softmax(ops.log(ops.clip(y_pred, EPSILON, 1.0)) + shift, axis=-1)
        per_class = -y_true * log_q
        if self.gamma:
            per_class = per_class * ops.power(1.0 - ops.exp(log_q), self.gamma)
        return ops.sum(per_class, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"prior": self.prior, "tau": self.tau, "gamma": self.gamma, "dtype": self.dtype})
        return config


@keras.saving.register_keras_serializable(package="genrekit")
class WeightedBinaryCrossEntropy(keras.losses.Loss):
    """Binary cross-entropy of a multi-label head with a per-label weight on the positives.

    ``loss = mean_j -(w_j * y_j * log p_j + (1 - y_j) * log(1 - p_j))`` with ``p`` clipped to
    ``[1e-7, 1 - 1e-7]``, so rare genres are not drowned by their many negatives. Keras'
    ``BinaryCrossentropy`` has no per-label positive weight, hence this class.

    Parameters
    ----------
    pos_weight : float or sequence of float, optional
        Weight of the positive term, one per label (see :func:`genrekit.train.balancing.pos_weights`) or one for
        all. ``None`` or 1.0 gives the plain binary cross-entropy.
    reduction, name, dtype
        As for :class:`FocalLoss`.
    """

    def __init__(
        self,
        pos_weight: float | Sequence[float] | np.ndarray | None = None,
        reduction: str | None = REDUCTION,
        name: str = "weighted_bce",
        dtype: str = "float32",
    ) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.pos_weight = None if pos_weight is None else _as_float_list(pos_weight, "pos_weight")

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y_pred = ops.clip(ops.cast(y_pred, "float32"), EPSILON, 1.0 - EPSILON)
        y_true = ops.cast(y_true, "float32")
        weight = 1.0 if self.pos_weight is None else self.pos_weight
        _check_width(weight, y_pred, "pos_weight", "WeightedBinaryCrossEntropy")
        if isinstance(weight, list):
            weight = ops.convert_to_tensor(np.asarray(weight, dtype=np.float32))
        per_label = -(weight * y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred))
        return ops.mean(per_label, axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"pos_weight": self.pos_weight, "dtype": self.dtype})
        return config


def make_losses(
    *,
    use_focal_loss: bool = True,
    gamma: float = 2.0,
    top_alpha: float | Sequence[float] | None = None,
    medium_alpha: float | Sequence[float] | None = None,
    pos_weight: float | Sequence[float] | None = None,
    priors: dict[str, Sequence[float]] | None = None,
    tau: float = 1.0,
    heads: Sequence[str] = ("top", "medium", "all"),
) -> dict[str, keras.losses.Loss]:
    """The losses of the three heads, keyed by output name, for ``model.compile(loss=...)``.

    Parameters
    ----------
    use_focal_loss : bool
        Focal loss on ``top`` and ``medium``; otherwise cross-entropy (``FocalLoss`` with
        ``gamma=0``, which keeps masked all-zero rows at exactly 0 and the per-class ``alpha``).
    gamma : float
        Focal focusing parameter (``settings.focal_gamma``).
    top_alpha, medium_alpha : float or sequence of float, optional
        Per-class weights of the softmax heads (``None`` = 1).
    pos_weight : float or sequence of float, optional
        Positive weights of the ``all`` head (see :func:`genrekit.train.balancing.pos_weights`).
    priors : dict, optional
        ``{"top": prior, "medium": prior}``: logit adjustment on (``USE_LOGIT_ADJUSTMENT``), a
        :class:`LogitAdjustedLoss` with these class priors on each softmax head (focal when
        ``use_focal_loss``; ``top_alpha`` / ``medium_alpha`` must then be None).
    tau : float
        ``LOGIT_ADJUSTMENT_TAU``, used with ``priors``.
    heads : sequence of str
        The model's outputs (:func:`genrekit.datasets.labels.heads_of`): without ``medium`` there is no
        medium loss (and ``priors`` need no ``medium`` entry).

    Returns
    -------
    dict
        ``{"top": FocalLoss, "medium": FocalLoss, "all": WeightedBinaryCrossEntropy}`` (with
        ``priors``, ``LogitAdjustedLoss`` on ``top`` and ``medium``).
    """
    g = gamma if use_focal_loss else 0.0
    if priors is not None:
        if top_alpha is not None or medium_alpha is not None:
            raise ConfigError("make_losses: per-class alpha and logit-adjustment priors do not combine")
        softmax_losses = {
            level: LogitAdjustedLoss(priors[level], tau=tau, gamma=g, name=f"{level}_loss")
            for level in ("top", "medium")
            if level in heads
        }
    else:
        softmax_losses = {
            "top": FocalLoss(alpha=top_alpha, gamma=g, name="top_loss"),
            "medium": FocalLoss(alpha=medium_alpha, gamma=g, name="medium_loss"),
        }
    losses = {**softmax_losses, "all": WeightedBinaryCrossEntropy(pos_weight=pos_weight, name="all_loss")}
    return {level: loss for level, loss in losses.items() if level in heads}
