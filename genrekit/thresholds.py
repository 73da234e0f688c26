"""Decision thresholds of the multi-label all-genres head: chosen on validation, used everywhere.

The all-genres head is trained with a positive weight per genre (``n_negative / n_positive``, up
to ``MAX_CLASS_WEIGHT``), which pushes its probabilities far above the genres' frequencies, so a
fixed 0.5 threshold predicts too many genres. After training, :func:`choose_thresholds` picks
for each genre with at least ``min_positives`` validation tracks the threshold that maximizes
that genre's F1 on the validation split, and for every other genre one threshold that
maximizes the mean per-track Jaccard index over all genres. The result is saved in the
training config (``thresholds``) and read back by evaluation and inference with
:func:`thresholds_of`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from genrekit.errors import ModelError

GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)  # candidate thresholds


def fixed_thresholds(n_labels: int, value: float) -> dict[str, Any]:
    """The ``thresholds`` section when thresholds are not tuned: ``value`` for every genre."""
    return {"method": "fixed", "fallback": float(value), "all": [float(value)] * int(n_labels)}


def choose_thresholds(
    y_true: np.ndarray, probs: np.ndarray, *, min_positives: int = 5, default: float = 0.5
) -> dict[str, Any]:
    """Per-genre thresholds from validation tracks (see the module docstring).

    Parameters
    ----------
    y_true : array of {0, 1}, shape (n_tracks, n_labels)
        Multi-hot targets of the validation tracks.
    probs : array of float, shape (n_tracks, n_labels)
        Track-level probabilities (mean over each track's segments).
    min_positives : int
        Genres with fewer positive validation tracks use the shared fallback threshold.
    default : float
        The fixed threshold, for the comparison logged and saved (``jaccard_at_default``).

    Returns
    -------
    dict
        ``method``, ``fallback``, ``all`` (one threshold per genre), ``own`` (per genre: whether it
        has its own threshold), ``n_own``, ``n_tracks``, ``min_positives``, ``jaccard`` and
        ``jaccard_at_default`` (validation Jaccard with the chosen and the fixed thresholds).
    """
    from sklearn.metrics import jaccard_score

    y = (np.asarray(y_true) > 0).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 2:
        raise ModelError(f"thresholds: targets {y.shape} and probabilities {p.shape} must be equal 2-D shapes")
    keep = y.any(axis=1)  # tracks without any genre say nothing about the thresholds
    y, p = y[keep], p[keep]
    n_labels = y.shape[1]
    if len(y) == 0:
        result = fixed_thresholds(n_labels, default)
        result.update(own=[False] * n_labels, n_own=0, n_tracks=0, min_positives=int(min_positives),
                      jaccard=None, jaccard_at_default=None)  # fmt: skip
        return result

    def jaccard(th: Any) -> float:
        return float(jaccard_score(y, (p > th).astype(np.int64), average="samples", zero_division=0))

    fallback = float(GRID[int(np.argmax([jaccard(t) for t in GRID]))])
    own = y.sum(axis=0) >= min_positives
    chosen = np.full(n_labels, fallback)
    if own.any():
        # F1 of every genre at every candidate threshold, (len(GRID), n_own); ties go to the lower one.
        yo = y[:, own].astype(bool)
        pred = p[None, :, own] > GRID[:, None, None]
        tp = (pred & yo).sum(axis=1)
        f1 = 2 * tp / np.maximum(pred.sum(axis=1) + yo.sum(axis=0), 1)  # 2TP / (2TP + FP + FN)
        chosen[own] = GRID[np.argmax(f1, axis=0)]
    return {
        "method": "validation",
        "fallback": fallback,
        "all": [float(t) for t in chosen],
        "own": own.tolist(),
        "n_own": int(own.sum()),
        "n_tracks": int(len(y)),
        "min_positives": int(min_positives),
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
