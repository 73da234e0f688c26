"""Figures of a single-label head (top or medium genres): scores, confusions and error rates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from genrekit.errors import ParameterError
from genrekit.evaluate.common import LevelVocab, number, quiet_sklearn

__all__ = ["classification_metrics", "error_analysis"]


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    vocab: LevelVocab | Sequence[str],
    *,
    probs: Any = None,
    k: int = 3,
) -> dict[str, Any]:
    """Metrics of a single-label head on targets that are all valid (masked rows removed).

    Parameters
    ----------
    y_true, y_pred : array of int, shape (n,)
        Target and predicted class indices in ``range(len(vocab))``.
    vocab : LevelVocab or sequence of str
        The classes; per-class rows are given for every class, present or not.
    probs : array, shape (n, n_classes), optional
        Scores used for top-k accuracy (omitted when None).
    k : int
        The k of top-k accuracy (config ``TOP_K``).

    Returns
    -------
    dict
        ``n``, ``accuracy``, ``balanced_accuracy`` (mean recall over the classes present in
        ``y_true``, as scikit-learn defines it), ``f1_macro``, ``f1_weighted``, ``precision_macro``,
        ``recall_macro`` (macro averages over the classes present in ``y_true`` or ``y_pred``:
        a class absent from both is neither right nor wrong), ``top_k_accuracy`` and ``k``, and
        ``per_class``: one dict per class with ``precision``, ``recall``, ``f1`` (0 where undefined),
        ``support`` and ``predicted`` (how often it was predicted).
    """
    vocab = LevelVocab.coerce(vocab)
    y_true, y_pred = _class_indices(y_true, y_pred, len(vocab))
    result: dict[str, Any] = {"n": len(y_true), "k": k}
    if len(y_true) == 0:
        result.update(dict.fromkeys(SCORES), per_class=[])
        return result
    with quiet_sklearn():
        result.update(_scores(y_true, y_pred))
        result["top_k_accuracy"] = _top_k_accuracy(y_true, probs, len(vocab), k)
        result["per_class"] = _per_class(y_true, y_pred, vocab)
    return result


# The figures of classification_metrics besides n, k and per_class, in the report's order.
SCORES = (
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "top_k_accuracy",
)


def _class_indices(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Target and predicted indices as int64 arrays, refused unless 1-D, equal and in range."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ParameterError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal 1-D shapes")
    for what, y in (("y_true", y_true), ("y_pred", y_pred)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ParameterError(f"{what} holds class indices outside range({n_classes})")
    return y_true, y_pred


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        f1_score,
        precision_score,
        recall_score,
    )

    return {
        "accuracy": number(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": number(balanced_accuracy_score(y_true, y_pred)),
        "f1_macro": number(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "f1_weighted": number(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "precision_macro": number(precision_score(y_true, y_pred, average="macro", zero_division=0)),
        "recall_macro": number(recall_score(y_true, y_pred, average="macro", zero_division=0)),
    }


def _top_k_accuracy(y_true: np.ndarray, probs: Any, n_classes: int, k: int) -> float | None:
    """Top-k accuracy of the scores ``probs``; None without scores or with two classes or fewer."""
    from sklearn.metrics import top_k_accuracy_score

    if probs is None:
        return None
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (len(y_true), n_classes):
        raise ParameterError(f"probs must have shape ({len(y_true)}, {n_classes}), got {probs.shape}")
    if n_classes <= 2:  # scikit-learn reads 2-column scores as a binary problem
        return None
    return number(top_k_accuracy_score(y_true, probs, k=min(k, n_classes), labels=np.arange(n_classes)))


def _per_class(y_true: np.ndarray, y_pred: np.ndarray, vocab: LevelVocab) -> list[dict[str, Any]]:
    from sklearn.metrics import precision_recall_fscore_support

    n_classes = len(vocab)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=np.arange(n_classes), zero_division=0
    )
    predicted = np.bincount(y_pred, minlength=n_classes)
    return [
        {
            "index": i,
            "name": vocab.names[i],
            "genre_id": vocab.genre_ids[i],
            "precision": number(precision[i]),
            "recall": number(recall[i]),
            "f1": number(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i in range(n_classes)
    ]


def error_analysis(
    y_true: Any, y_pred: Any, vocab: LevelVocab | Sequence[str], *, n_pairs: int = 10
) -> dict[str, Any]:
    """Confusion matrix, most confused pairs and per-class error rates.

    Parameters
    ----------
    y_true, y_pred : array of int, shape (n,)
    vocab : LevelVocab or sequence of str
    n_pairs : int
        How many confused pairs to list.

    Returns
    -------
    dict
        ``confusion_matrix`` (counts, rows = target, columns = prediction, every class),
        ``confused_pairs``: the largest off-diagonal cells, most frequent first (ties by target
        then predicted index), each with ``true``, ``predicted``, ``count`` and ``share_of_true``
        (count / support of the target class); ``error_rates``: per class with support,
        ``errors / support``, highest first.
    """
    from sklearn.metrics import confusion_matrix

    vocab = LevelVocab.coerce(vocab)
    n_classes = len(vocab)
    labels = np.arange(n_classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if len(y_true) == 0:
        cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    else:
        cm = confusion_matrix(y_true, y_pred, labels=labels)
    support = cm.sum(axis=1)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    rows, cols = np.nonzero(off)
    counts = off[rows, cols]
    # lexsort: last key is primary -> count descending, then true index, then predicted index.
    order = np.lexsort((cols, rows, -counts))[:n_pairs]
    pairs = [
        {
            "true": vocab.names[rows[i]],
            "predicted": vocab.names[cols[i]],
            "true_index": int(rows[i]),
            "predicted_index": int(cols[i]),
            "count": int(counts[i]),
            "share_of_true": number(counts[i] / support[rows[i]]),
        }
        for i in order
    ]
    errors = support - np.diag(cm)
    present = np.flatnonzero(support > 0)
    rates = errors[present] / support[present]
    by_rate = present[np.lexsort((present, -rates))]
    error_rates = [
        {
            "name": vocab.names[i],
            "index": int(i),
            "errors": int(errors[i]),
            "support": int(support[i]),
            "error_rate": number(errors[i] / support[i]),
        }
        for i in by_rate
    ]
    return {"confusion_matrix": cm.tolist(), "confused_pairs": pairs, "error_rates": error_rates}
