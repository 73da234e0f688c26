"""Decision thresholds of the multi-label all-genres head: chosen on validation, used everywhere.

The all-genres head is trained with a positive weight ``w_g`` per genre (``n_negative /
n_positive``, up to ``MAX_CLASS_WEIGHT``). A weighted binary cross-entropy is minimized by the
probability whose logit is the true one plus ``log w_g``, so its probabilities sit far above the
genres' frequencies and a fixed 0.5 predicts too many genres (on the demo: 5.4 per track for 2.4
true ones). :func:`choose_thresholds` undoes that shift exactly and tunes one number: genre ``g``
is predicted when its probability exceeds ``sigmoid(logit(t) + log w_g)``, with the one ``t``
that maximizes the mean per-track Jaccard index on the validation split. One parameter is what
a validation split of a few hundred tracks can estimate; a threshold per genre chosen for its
own F1 was measured worse on the demo (test Jaccard 0.27 against 0.39 for the same model). The
result is saved in the training config (``thresholds``) and read back by evaluation and
inference with :func:`thresholds_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from genrekit.errors import ModelError

GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)  # candidate values of t


def fixed_thresholds(n_labels: int, value: float) -> dict[str, Any]:
    """The ``thresholds`` section when thresholds are not tuned: ``value`` for every genre."""
    return {"method": "fixed", "t": float(value), "all": [float(value)] * int(n_labels)}


def corrected_thresholds(t: float, pos_weight: np.ndarray) -> np.ndarray:
    """``sigmoid(logit(t) + log(pos_weight))`` per genre: ``t`` on the scale of an unweighted loss.

    Written as ``t * w / (t * w + 1 - t)``; ``pos_weight`` of 1 leaves ``t`` as it is.
    """
    w = np.asarray(pos_weight, dtype=np.float64)
    if np.any(~np.isfinite(w)) or np.any(w <= 0):
        raise ModelError("thresholds: pos_weight must be finite and > 0 for every genre")
    return t * w / (t * w + (1.0 - t))


def choose_thresholds(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    pos_weight: np.ndarray | None = None,
    default: float = 0.5,
) -> dict[str, Any]:
    """Thresholds of every genre from validation tracks (see the module docstring).

    Parameters
    ----------
    y_true : array of {0, 1}, shape (n_tracks, n_labels)
        Multi-hot targets of the validation tracks.
    probs : array of float, shape (n_tracks, n_labels)
        Track-level probabilities (mean over each track's segments).
    pos_weight : array of float, shape (n_labels,), optional
        The positive weights the head was trained with; None (no class weights) means 1.
    default : float
        The fixed threshold, for the comparison logged and saved (``jaccard_at_default``).

    Returns
    -------
    dict
        ``method``, ``t``, ``all`` (one threshold per genre), ``n_tracks``, ``jaccard`` and
        ``jaccard_at_default`` (validation Jaccard with the chosen and the fixed thresholds).
    """
    from sklearn.metrics import jaccard_score

    y = (np.asarray(y_true) > 0).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 2:
        raise ModelError(f"thresholds: targets {y.shape} and probabilities {p.shape} must be equal 2-D shapes")
    n_labels = y.shape[1]
    w = np.ones(n_labels) if pos_weight is None else np.asarray(pos_weight, dtype=np.float64).reshape(-1)
    if w.shape != (n_labels,):
        raise ModelError(f"thresholds: {w.size} positive weights for {n_labels} genres")
    keep = y.any(axis=1)  # tracks without any genre say nothing about the thresholds
    y, p = y[keep], p[keep]
    if len(y) == 0:
        result = fixed_thresholds(n_labels, default)
        result.update(n_tracks=0, jaccard=None, jaccard_at_default=None)
        return result

    def jaccard(th: Any) -> float:
        return float(jaccard_score(y, (p > th).astype(np.int64), average="samples", zero_division=0))

    scores = [jaccard(corrected_thresholds(t, w)) for t in GRID]
    t = float(GRID[int(np.argmax(scores))])  # ties go to the lower t
    chosen = corrected_thresholds(t, w)
    return {
        "method": "validation, prior-corrected",
        "t": t,
        "all": [float(v) for v in chosen],
        "n_tracks": int(len(y)),
        "jaccard": jaccard(chosen),
        "jaccard_at_default": jaccard(default),
    }


def thresholds_of(training_config: Mapping[str, Any], n_labels: int, override: float | None = None) -> np.ndarray:
    """The all-genres thresholds a model was saved with, one per genre.

    ``override`` (a threshold the user asked for) wins; a config written before thresholds were
    tuned gives its single ``threshold`` to every genre.
    """
    if override is not None:
        return np.full(n_labels, float(override))
    section = training_config.get("thresholds")
    if not section:
        return np.full(n_labels, float(training_config.get("threshold", 0.5)))
    values = np.asarray(section.get("all", []), dtype=np.float64)
    if values.shape != (n_labels,) or not np.all((values > 0) & (values < 1)):
        raise ModelError(
            f"training config: 'thresholds' holds {values.size} values in (0, 1) for {n_labels} genres"
        )
    return values
