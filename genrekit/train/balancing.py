"""Class balancing: class weights per level and the per-epoch weighted sampling of tracks.

Class weight of class c: ``n_samples / (n_classes * n_c)``, the README's formula (scikit-learn's
``compute_class_weight('balanced')``), clipped at ``max_class_weight`` so a class with a handful
of tracks cannot dominate the loss. Masked tracks (no target at a level) do not count.

Weighted sampling works on tracks, per epoch, grouped by the top-level target: a class with
fewer than ``oversample_threshold`` training tracks is drawn up to that many (all its tracks
plus repeats), one with more than ``undersample_threshold`` is cut down to that many (a fresh
random choice each epoch), the rest keep their count. Tracks without a top-level target form one
group that keeps its size, since they still train the medium and all-genres heads. The thresholds
are absolute (the README's, FMA-sized) or relative to the training set: :func:`effective_thresholds`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrekit.datasets.labels import MASKED
from genrekit.errors import ConfigError
from genrekit.settings import THRESHOLD_MODES, Settings

OVERSAMPLE, UNDERSAMPLE, KEEP = "oversample", "undersample", "keep"
# Training tracks with a top-level target (genre_top) in fma_large, the dataset the README's
# thresholds (100 / 5,000) were set for: 49,598 tracks have a genre_top (all splits, counted from
# the real tracks.csv, as genrekit.datasets.demo.metadata.TOP_COUNTS) and the stratified split puts 84,353 of 106,574
# tracks in training (shared/fma-real/README.md), so 49,598 * 84,353 / 106,574 = 39,257 (an
# estimate to within the split's stratification; the full tracks.csv is not in the repository).
FMA_LARGE_LABELLED_TRAINING = 39257


def effective_thresholds(settings: Settings, n_labelled_training: int) -> tuple[int, int]:
    """The ``(oversample, undersample)`` thresholds weighted sampling uses on a training set.

    ``settings.sampling_thresholds == "absolute"``: ``oversample_threshold`` and
    ``undersample_threshold`` as given. ``"relative"``: they are read as set for fma_large's
    training split and scaled by ``n_labelled_training / FMA_LARGE_LABELLED_TRAINING`` (rounded,
    never below 1, oversample never above undersample), so a dataset 1/40 of fma_large's size
    oversamples top genres under 100/40 training tracks, not under 100.

    Parameters
    ----------
    settings : Settings
        Its ``oversample_threshold``, ``undersample_threshold`` and ``sampling_thresholds``.
    n_labelled_training : int
        Training tracks with a top-level target (the tracks the sampler groups by genre).
    """
    over, under = int(settings.oversample_threshold), int(settings.undersample_threshold)
    mode = settings.sampling_thresholds
    if mode == "absolute":
        return over, under
    if mode != "relative":
        raise ConfigError(f"sampling_thresholds={mode!r} must be one of {', '.join(THRESHOLD_MODES)}")
    if n_labelled_training < 0:
        raise ConfigError(f"n_labelled_training={n_labelled_training} must be >= 0")
    scale = n_labelled_training / FMA_LARGE_LABELLED_TRAINING
    over = max(1, math.floor(over * scale + 0.5))
    under = max(over, math.floor(under * scale + 0.5))
    return over, under


def class_counts(indices: np.ndarray, n_classes: int) -> np.ndarray:
    """Tracks per class for target indices (masked ones, -1, are not counted)."""
    indices = np.asarray(indices)
    return np.bincount(indices[indices != MASKED], minlength=n_classes).astype(np.int64)


def class_weights(counts: np.ndarray, max_weight: float | None = None) -> np.ndarray:
    """``n_samples / (n_classes * n_c)`` per class; 0 for a class with no samples.

    ``n_classes`` counts only classes that have samples (as scikit-learn's
    ``compute_class_weight('balanced')`` does). ``counts`` may be fractional: the trainer passes
    the expected per-epoch counts when weighted sampling is on, so the two strategies do not
    correct the same imbalance twice.
    """
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.zeros(len(counts), dtype=np.float64)
    if present.any():
        weights[present] = counts.sum() / (present.sum() * counts[present])
    if max_weight is not None:
        weights = np.minimum(weights, max_weight)
    return weights


def pos_weights(
    multi_hot: np.ndarray,
    max_weight: float = 50.0,
    rates: np.ndarray | None = None,
    *,
    min_weight: float | None = None,
    absent: float | None = None,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Per-label positive weight ``n_negative / n_positive`` for the multi-label head.

    The one computation of positive weights: the trainer (``pos_weight`` of the all-genres
    head) and the inspector use it.

    Parameters
    ----------
    multi_hot : array (n_tracks, n_labels)
    max_weight : float
        Upper clip: a label seen once cannot dominate the loss.
    rates : array (n_tracks,), optional
        Expected draws per track and epoch (from the sampler) weigh the rows.
    min_weight : float, optional
        Lower clip; default ``1 / max_weight``, so one positive in every row keeps a non-zero
        weight. The trainer passes 0 (no lower clip).
    absent : float, optional
        Weight of a label never positive; default ``max_weight``. The trainer passes 1.
    dtype : numpy dtype
        Of the result (float32 by default; the trainer keeps float64).
    """
    y = np.asarray(multi_hot)
    if y.ndim != 2 or y.shape[0] == 0:
        raise ConfigError(f"multi_hot must be a non-empty 2-D matrix, got shape {y.shape}")
    if min_weight is None and not max_weight >= 1.0:  # the clip [1 / max_weight, max_weight] is empty
        raise ConfigError(f"max_weight={max_weight} must be >= 1")
    r = np.ones(len(y)) if rates is None else np.asarray(rates, dtype=np.float64)
    positives = ((y > 0.5) * r[:, None]).sum(axis=0)
    negatives = r.sum() - positives
    ratio = np.full(positives.shape, np.inf if absent is None else float(absent))
    np.divide(negatives, positives, out=ratio, where=positives > 0)
    low = 1.0 / max_weight if min_weight is None else min_weight
    return np.clip(ratio, low, max_weight).astype(dtype)


def head_pos_weights(multi_hot: np.ndarray, max_weight: float, rates: np.ndarray | None = None) -> np.ndarray:
    """The ``pos_weight`` of the all-genres head, as the trainer uses it and the inspector shows it.

    :func:`pos_weights` clipped above only (at ``max_weight``), 1 for a label without positives
    (it adds no positive term), float64.
    """
    return pos_weights(multi_hot, max_weight, rates, min_weight=-np.inf, absent=1.0, dtype=np.float64)


def sampling_action(count: int, oversample_threshold: int, undersample_threshold: int) -> str:
    if count < oversample_threshold:
        return OVERSAMPLE
    if count > undersample_threshold:
        return UNDERSAMPLE
    return KEEP


def target_count(count: int, oversample_threshold: int, undersample_threshold: int) -> int:
    """How many tracks of a class an epoch holds under weighted sampling."""
    if count == 0:
        return 0
    return int(np.clip(count, oversample_threshold, undersample_threshold))


@dataclass
class EpochSampler:
    """Draws the tracks of each epoch (indices into the training rows) by the thresholds.

    Parameters
    ----------
    top : array of int
        Top-level target index per training track (-1 = no top target).
    n_classes : int
        Number of top-level classes.
    oversample_threshold, undersample_threshold : int
        See the module docstring.
    seed : int
        Epoch ``e`` draws with ``numpy.random.default_rng((seed, e))``: reproducible and
        independent of how many epochs ran before (a resumed run draws the same epochs).
    """

    top: np.ndarray
    n_classes: int
    oversample_threshold: int
    undersample_threshold: int
    seed: int = 0

    def __post_init__(self) -> None:
        self.top = np.asarray(self.top)
        self.groups = [np.flatnonzero(self.top == c) for c in range(self.n_classes)]
        self.unlabeled = np.flatnonzero(self.top == MASKED)

    def planned_counts(self) -> np.ndarray:
        """Tracks per top-level class in every epoch."""
        return np.array(
            [target_count(len(g), self.oversample_threshold, self.undersample_threshold) for g in self.groups]
        )

    def epoch_size(self) -> int:
        return int(self.planned_counts().sum() + len(self.unlabeled))

    def epoch(self, epoch: int) -> np.ndarray:
        """Shuffled training-row indices of one epoch."""
        rng = np.random.default_rng((self.seed, epoch))
        parts = [self.unlabeled]
        for group, want in zip(self.groups, self.planned_counts(), strict=True):
            if want <= len(group):
                parts.append(rng.choice(group, size=want, replace=False))
            else:  # every track once, then repeats drawn at random
                parts.append(group)
                parts.append(rng.choice(group, size=want - len(group), replace=True))
        rows = np.concatenate(parts).astype(np.int64)
        rng.shuffle(rows)
        return rows

    def expected_rates(self) -> np.ndarray:
        """Expected times each training track is drawn per epoch (1.0 for unsampled groups)."""
        rates = np.ones(len(self.top), dtype=np.float64)
        for group, want in zip(self.groups, self.planned_counts(), strict=True):
            if len(group):
                rates[group] = want / len(group)
        return rates

    def realized_counts(self, rows: np.ndarray) -> np.ndarray:
        """Tracks per top-level class in an epoch drawn by :meth:`epoch`."""
        return class_counts(self.top[rows], self.n_classes)


# A class without training tracks gets the prior of this many tracks, so its log prior is finite.
MIN_PRIOR_COUNT = 0.5


def class_priors(counts: np.ndarray) -> np.ndarray:
    """Class frequencies ``n_c / sum(n)`` of a training set, for logit adjustment.

    ``counts`` may be fractional (the expected per-epoch counts under weighted sampling, the
    class mix the loss actually sees). A class with no tracks counts as ``MIN_PRIOR_COUNT``
    tracks, so ``log(prior)`` stays finite.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size == 0 or not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ConfigError(f"class counts must be a non-empty vector of finite values >= 0, got {counts!r}")
    counts = np.maximum(counts, MIN_PRIOR_COUNT)
    return counts / counts.sum()


def posthoc_logit_adjustment(probs: np.ndarray, prior: np.ndarray, tau: float = 1.0) -> np.ndarray:
    """Post-hoc logit adjustment (Menon et al., 2021) of a trained softmax head: no retraining.

    Predicts ``argmax_c (log p_c - tau * log prior_c)``, i.e. the class of highest
    ``p_c / prior_c ** tau``: a model trained on the raw class mix is moved towards the
    balanced-error optimum by dividing out the training prior.

    Parameters
    ----------
    probs : array, shape (n, n_classes)
        The head's probabilities (e.g. track means of segment probabilities).
    prior : array, shape (n_classes,)
        The training class frequencies (:func:`class_priors`).
    tau : float
        Scale of the adjustment (>= 0); 0 gives the plain argmax.

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    probs = np.asarray(probs, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    if probs.ndim != 2 or prior.shape != (probs.shape[1],):
        raise ConfigError(f"probs {probs.shape} and prior {prior.shape} must be (n, k) and (k,)")
    if not np.all(prior > 0) or not np.isfinite(tau) or tau < 0:
        raise ConfigError(f"prior must be > 0 and tau finite and >= 0, got tau={tau}")
    scores = np.log(np.clip(probs, 1e-7, None)) - tau * np.log(prior)
    return scores.argmax(axis=1).astype(np.int64)
