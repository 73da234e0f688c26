"""Decision thresholds of the multi-label all-genres head: chosen on validation, used everywhere.

The all-genres head is trained with a positive weight ``w_g`` per genre (``n_negative /
n_positive``, up to ``MAX_CLASS_WEIGHT``). A weighted binary cross-entropy is minimized by the
probability whose logit is the true one plus ``log w_g``, so its probabilities sit far above the
genres' frequencies and a fixed 0.5 predicts too many genres (on the demo: 5.4 per track for 2.4
true ones). :func:`choose_thresholds` undoes that shift exactly and tunes one number: genre ``g``
is predicted when its probability exceeds ``sigmoid(logit(t) + log w_g)``, with the one ``t``
that maximizes the mean per-track Jaccard index on the validation split. One parameter is what
a validation split of a few hundred tracks can estimate; a threshold per genre chosen for its
own F1 was measured worse on the demo (test Jaccard 0.27 against 0.39 for the same model).

The top-genre head is trained on one clean label per track, and every track's genres include
its top genre's. So the set may also always hold the genre the top head predicts
(``include_top``): :func:`choose_thresholds` tunes ``t`` with and without that rule and keeps the
rule only when it scores better on validation (on the demo: Jaccard 0.448 -> 0.465 on
validation, 0.450 -> 0.496 on test). :func:`decide` applies both, for evaluation and inference
alike. The result is saved in the training config (``thresholds``) and read back with
:func:`thresholds_of` and :func:`include_top_of`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from genrekit.errors import ModelError

GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)  # candidate values of t


def fixed_thresholds(n_labels: int, value: float) -> dict[str, Any]:
    """The ``thresholds`` section when thresholds are not tuned: ``value`` for every genre."""
    return {"method": "fixed", "t": float(value), "all": [float(value)] * int(n_labels), "include_top": False}


def top_columns(top_genre_ids: Sequence[int], all_genre_ids: Sequence[int]) -> np.ndarray:
    """The all-genres column of each top-genre class (-1 where the all vocabulary lacks it)."""
    where = {int(g): j for j, g in enumerate(all_genre_ids)}
    return np.array([where.get(int(g), -1) for g in top_genre_ids], dtype=np.int64)


def decide(
    probs: Any, thresholds: Any, top_class: Any = None, columns: np.ndarray | None = None
) -> np.ndarray:
    """The all-genres decisions: probability above its threshold, plus the top head's genre.

    Parameters
    ----------
    probs : array of float, shape (n, n_labels)
        All-genres probabilities (per track or per segment).
    thresholds : float or array of float, shape (n_labels,)
    top_class : array of int, shape (n,), optional
        The top head's predicted class of each row; None leaves the thresholds alone (no
        ``include_top``).
    columns : array of int, optional
        :func:`top_columns` of the model's vocabularies (needed with ``top_class``).

    Returns
    -------
    ndarray of bool, shape (n, n_labels)
    """
    p = np.asarray(probs, dtype=np.float64)
    out = p > np.asarray(thresholds, dtype=np.float64)
    if top_class is not None and len(out):
        if columns is None:
            raise ModelError("decide: top_class needs the top genres' columns")
        col = np.asarray(columns)[np.asarray(top_class, dtype=np.int64)]
        rows = np.flatnonzero(col >= 0)
        out[rows, col[rows]] = True
    return out


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
    top_class: np.ndarray | None = None,
    columns: np.ndarray | None = None,
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
    top_class, columns : optional
        The top head's predicted class of each validation track and :func:`top_columns`; when
        given, ``include_top`` is tried as well.

    Returns
    -------
    dict
        ``method``, ``t``, ``all`` (one threshold per genre), ``include_top``, ``n_tracks``,
        ``jaccard`` and ``jaccard_at_default`` (validation Jaccard with the chosen rule and with the
        fixed threshold alone) and ``jaccard_thresholds_only`` (the best without ``include_top``).
    """
    from sklearn.metrics import jaccard_score

    y = (np.asarray(y_true) > 0).astype(np.int64)
    p = np.asarray(probs, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 2:
        raise ModelError(
            f"thresholds: targets {y.shape} and probabilities {p.shape} must be equal 2-D shapes"
        )
    n_labels = y.shape[1]
    w = np.ones(n_labels) if pos_weight is None else np.asarray(pos_weight, dtype=np.float64).reshape(-1)
    if w.shape != (n_labels,):
        raise ModelError(f"thresholds: {w.size} positive weights for {n_labels} genres")
    keep = y.any(axis=1)  # tracks without any genre say nothing about the thresholds
    y, p = y[keep], p[keep]
    top = None if top_class is None else np.asarray(top_class, dtype=np.int64)[keep]
    if len(y) == 0:
        result = fixed_thresholds(n_labels, default)
        result.update(n_tracks=0, jaccard=None, jaccard_at_default=None, jaccard_thresholds_only=None)
        return result

    def jaccard(th: Any, with_top: bool = False) -> float:
        pred = decide(p, th, top if with_top else None, columns)
        return float(jaccard_score(y, pred.astype(np.int64), average="samples", zero_division=0))

    best: dict[bool, tuple[float, float]] = {}  # include_top -> (validation Jaccard, t)
    for with_top in (False, True) if top is not None else (False,):
        scores = [jaccard(corrected_thresholds(t, w), with_top) for t in GRID]
        i = int(np.argmax(scores))  # ties go to the lower t
        best[with_top] = (scores[i], float(GRID[i]))
    include_top = True in best and best[True][0] > best[False][0]
    score, t = best[include_top]
    return {
        "method": "validation, prior-corrected",
        "t": t,
        "all": [float(v) for v in corrected_thresholds(t, w)],
        "include_top": bool(include_top),
        "n_tracks": int(len(y)),
        "jaccard": score,
        "jaccard_at_default": jaccard(default),
        "jaccard_thresholds_only": best[False][0],
    }


def include_top_of(training_config: Mapping[str, Any]) -> bool:
    """Whether a model's all-genres decisions also hold its top head's genre (see :func:`decide`)."""
    return bool((training_config.get("thresholds") or {}).get("include_top", False))


def thresholds_of(
    training_config: Mapping[str, Any], n_labels: int, override: float | None = None
) -> np.ndarray:
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
