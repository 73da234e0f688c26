"""Figures of the multi-label all-genres head, at one threshold or one per label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from genrekit.errors import ParameterError
from genrekit.evaluate.common import LevelVocab, number
from genrekit.evaluate.thresholds import decide

__all__ = ["multilabel_metrics"]


def multilabel_metrics(
    y_true: Any,
    probs: Any,
    *,
    threshold: float | Sequence[float] | np.ndarray = 0.5,
    vocab: LevelVocab | Sequence[str] | None = None,
    top_class: Any = None,
    columns: Any = None,
) -> dict[str, Any]:
    """Metrics of the multi-label all-genres head.

    Rows without any true label are excluded from every metric and counted: ranking metrics are
    undefined for them, and the rest would count them as free wins or losses.

    Parameters
    ----------
    y_true : array of {0, 1}, shape (n, n_labels)
        Multi-hot targets.
    probs : array of float, shape (n, n_labels)
        Sigmoid probabilities; a label is predicted when strictly above ``threshold``.
    threshold : float or array of float, shape (n_labels,)
        One threshold for every label (config ``THRESHOLD``), or one per label (the thresholds
        tuned on the validation split, see :mod:`genrekit.evaluate.thresholds`).
    vocab : LevelVocab or sequence of str, optional
        Label names for the per-label table.
    top_class, columns : optional
        The top head's predicted class of each row and the all-genres column of each top class:
        that genre is predicted too (``include_top``, :func:`genrekit.evaluate.thresholds.decide`).

    Returns
    -------
    dict
        ``n``, ``excluded_no_labels``, ``threshold`` (the value, or ``"per label"`` with the values
        in ``thresholds``), ``hamming_loss``, ``jaccard_samples``,
        ``lrap`` (label ranking average precision), ``coverage_error``, ``ranking_loss``,
        ``f1_micro``, ``f1_macro`` (over labels present in the targets or the predictions),
        ``precision_micro``, ``recall_micro``, ``mean_true_labels``, ``mean_predicted_labels``,
        ``no_prediction`` (rows with no label above the threshold) and ``per_label``
        (precision, recall, F1, support and predicted count of each label with support or
        predictions, by support).
    """
    y_true, probs, keep = _labelled_rows(y_true, probs)
    th = np.asarray(threshold, dtype=np.float64)
    if th.ndim not in (0, 1) or (th.ndim == 1 and th.shape[0] != probs.shape[1]):
        raise ParameterError(
            f"threshold must be a number or one per label ({probs.shape[1]}), got shape {th.shape}"
        )
    if top_class is not None:
        top_class = np.asarray(top_class)
        if top_class.shape != (len(keep),):
            raise ParameterError(f"top_class has shape {top_class.shape}; expected ({len(keep)},)")
        top_class = top_class[keep]
    y_pred = decide(probs, th, top_class, None if columns is None else np.asarray(columns)).astype(np.int64)
    result: dict[str, Any] = {
        "n": len(y_true),
        "excluded_no_labels": int((~keep).sum()),
        "threshold": float(th) if th.ndim == 0 else "per label",
    }
    if th.ndim == 1:
        result["thresholds"] = [float(v) for v in th]
    if len(y_true) == 0:
        result.update(dict.fromkeys(SCORES), no_prediction=0, per_label=[])
        return result
    present = np.flatnonzero(y_true.any(axis=0) | y_pred.any(axis=0))
    result.update(_scores(y_true, y_pred, probs, present))
    result["per_label"] = _per_label(y_true, y_pred, present, vocab)
    return result


# The figures of multilabel_metrics besides the counts, thresholds and per_label, in the report's order.
SCORES = (
    "hamming_loss",
    "jaccard_samples",
    "lrap",
    "coverage_error",
    "ranking_loss",
    "f1_micro",
    "f1_macro",
    "precision_micro",
    "recall_micro",
    "mean_true_labels",
    "mean_predicted_labels",
)


def _labelled_rows(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 0/1 targets and the probabilities of the rows with a label, and the mask of those rows."""
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != probs.shape:
        raise ParameterError(f"y_true {y_true.shape} and probs {probs.shape} must be equal 2-D shapes")
    y_true = (y_true > 0).astype(np.int64)
    keep = y_true.any(axis=1)
    return y_true[keep], probs[keep], keep


def _scores(y_true: np.ndarray, y_pred: np.ndarray, probs: np.ndarray, present: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import (
        coverage_error,
        f1_score,
        hamming_loss,
        jaccard_score,
        label_ranking_average_precision_score,
        label_ranking_loss,
        precision_score,
        recall_score,
    )

    return {
        "hamming_loss": number(hamming_loss(y_true, y_pred)),
        "jaccard_samples": number(jaccard_score(y_true, y_pred, average="samples", zero_division=0)),
        "lrap": number(label_ranking_average_precision_score(y_true, probs)),
        "coverage_error": number(coverage_error(y_true, probs)),
        "ranking_loss": number(label_ranking_loss(y_true, probs)),
        "f1_micro": number(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "f1_macro": number(f1_score(y_true, y_pred, average="macro", labels=present, zero_division=0)),
        "precision_micro": number(precision_score(y_true, y_pred, average="micro", zero_division=0)),
        "recall_micro": number(recall_score(y_true, y_pred, average="micro", zero_division=0)),
        "mean_true_labels": number(y_true.sum(axis=1).mean()),
        "mean_predicted_labels": number(y_pred.sum(axis=1).mean()),
        "no_prediction": int((y_pred.sum(axis=1) == 0).sum()),
    }


def _per_label(
    y_true: np.ndarray, y_pred: np.ndarray, present: np.ndarray, vocab: LevelVocab | Sequence[str] | None
) -> list[dict[str, Any]]:
    """Per-label rows of the labels with support or predictions, by support (ties by index)."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=0
    )
    names = None if vocab is None else LevelVocab.coerce(vocab).names
    predicted = y_pred.sum(axis=0)
    order = present[np.lexsort((present, -support[present]))]
    return [
        {
            "index": int(i),
            "name": names[i] if names is not None else str(i),
            "precision": number(precision[i]),
            "recall": number(recall[i]),
            "f1": number(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i in order
    ]
