"""Evaluation metrics: scikit-learn figures of the three heads, from numpy probability arrays.

The first of three evaluation layers. Everything here works on numpy arrays of segment
probabilities and track targets, so it runs the same on a trained model's outputs, on stored
predictions and on hand-built test examples; :func:`evaluate` returns one JSON-serializable dict
that :mod:`genrekit.evaluate.report` writes out. :mod:`genrekit.evaluate.evaluator` runs a saved model on a split and
calls these; ``model_evaluation.py`` is its command line. The metrics Keras tracks while training
(tensors, masked rows skipped) are :mod:`genrekit.models.keras_metrics`.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrekit.errors import ModelError, ParameterError, ParameterTypeError
from genrekit.evaluate.aggregate import track_average, track_mean, track_voting
from genrekit.evaluate.thresholds import decide, top_columns

__all__ = [
    "PERFORMANCE_TARGETS",
    "LevelVocab",
    "PerformanceTarget",
    "calibration",
    "classification_metrics",
    "confidence_distribution",
    "error_analysis",
    "evaluate",
    "hierarchy_consistency",
    "multilabel_metrics",
    "performance_targets",
    "temporal_stability",
    "to_jsonable",
]


@dataclass(frozen=True)
class PerformanceTarget:
    """One row of the README's "Performance Target" table: ``value > threshold`` passes."""

    name: str
    level: str  # "top" or "all"
    metric: str  # key in the track-level metrics of that level
    threshold: float


# The README's table; measured on tracks (segments aggregated by average probability).
PERFORMANCE_TARGETS: tuple[PerformanceTarget, ...] = (
    PerformanceTarget("Balanced accuracy (top genres)", "top", "balanced_accuracy", 0.70),
    PerformanceTarget("F1 macro (top genres)", "top", "f1_macro", 0.65),
    PerformanceTarget("F1 weighted (top genres)", "top", "f1_weighted", 0.75),
    PerformanceTarget("Jaccard samples (all genres)", "all", "jaccard_samples", 0.45),
)


@dataclass(frozen=True)
class LevelVocab:
    """The classes of one head, in output order.

    Attributes
    ----------
    names : tuple of str
        Genre titles.
    genre_ids : tuple of int
        FMA genre ids.
    root_ids : tuple of int or None
        The top-level genre id above each class (a top genre is its own root); needed for the
        hierarchy check of the medium head.
    """

    names: tuple[str, ...]
    genre_ids: tuple[int, ...]
    root_ids: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "genre_ids", tuple(int(g) for g in self.genre_ids))
        if self.root_ids is not None:
            object.__setattr__(self, "root_ids", tuple(int(r) for r in self.root_ids))
        for field in ("genre_ids", "root_ids"):
            value = getattr(self, field)
            if value is not None and len(value) != len(self.names):
                raise ParameterError(f"{len(value)} {field} given for {len(self.names)} names")

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def coerce(cls, vocab: Any) -> LevelVocab:
        """Accept a LevelVocab, a mapping or an object with ``names``/``genre_ids``/``root_ids``.

        A plain sequence of names is accepted too; its genre ids are then the class indices.
        """
        if isinstance(vocab, LevelVocab):
            return vocab
        if isinstance(vocab, Mapping):
            get = vocab.get
        elif hasattr(vocab, "names"):
            get = lambda key, default=None: getattr(vocab, key, default)  # noqa: E731
        elif isinstance(vocab, Sequence) and not isinstance(vocab, str):
            return cls(names=tuple(vocab), genre_ids=tuple(range(len(vocab))))
        else:
            raise ParameterTypeError(f"cannot read a vocabulary from {type(vocab).__name__}")
        names = list(get("names"))
        genre_ids = get("genre_ids")
        root_ids = get("root_ids")
        return cls(
            names=tuple(names),
            genre_ids=tuple(range(len(names))) if genre_ids is None else tuple(genre_ids),
            root_ids=None if root_ids is None else tuple(root_ids),
        )


# --- JSON --------------------------------------------------------------------------------------


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars and arrays, tuples and NaN/inf to plain JSON values (NaN -> None)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def _f(x: Any) -> float | None:
    """A metric as a plain float, None when undefined."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence sklearn's warnings about classes absent from a small or masked set."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
        warnings.filterwarnings("ignore", message=".*'k'.*greater than or equal to 'n_classes'.*")
        yield


# --- single-label heads --------------------------------------------------------------------------


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
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        f1_score,
        precision_recall_fscore_support,
        precision_score,
        recall_score,
        top_k_accuracy_score,
    )

    vocab = LevelVocab.coerce(vocab)
    n_classes = len(vocab)
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ParameterError(f"y_true {y_true.shape} and y_pred {y_pred.shape} must be equal 1-D shapes")
    for what, y in (("y_true", y_true), ("y_pred", y_pred)):
        if len(y) and (y.min() < 0 or y.max() >= n_classes):
            raise ParameterError(f"{what} holds class indices outside range({n_classes})")
    labels = np.arange(n_classes)
    result: dict[str, Any] = {"n": len(y_true), "k": k}
    if len(y_true) == 0:
        result.update(
            accuracy=None,
            balanced_accuracy=None,
            f1_macro=None,
            f1_weighted=None,
            precision_macro=None,
            recall_macro=None,
            top_k_accuracy=None,
            per_class=[],
        )
        return result
    with _quiet():
        result["accuracy"] = _f(accuracy_score(y_true, y_pred))
        result["balanced_accuracy"] = _f(balanced_accuracy_score(y_true, y_pred))
        result["f1_macro"] = _f(f1_score(y_true, y_pred, average="macro", zero_division=0))
        result["f1_weighted"] = _f(f1_score(y_true, y_pred, average="weighted", zero_division=0))
        result["precision_macro"] = _f(precision_score(y_true, y_pred, average="macro", zero_division=0))
        result["recall_macro"] = _f(recall_score(y_true, y_pred, average="macro", zero_division=0))
        result["top_k_accuracy"] = None
        if probs is not None:
            probs = np.asarray(probs, dtype=np.float64)
            if probs.shape != (len(y_true), n_classes):
                raise ParameterError(f"probs must have shape ({len(y_true)}, {n_classes}), got {probs.shape}")
            if n_classes > 2:  # scikit-learn reads 2-column scores as a binary problem
                result["top_k_accuracy"] = _f(
                    top_k_accuracy_score(y_true, probs, k=min(k, n_classes), labels=labels)
                )
        precision, recall, f1, support = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, zero_division=0
        )
    predicted = np.bincount(y_pred, minlength=n_classes)
    result["per_class"] = [
        {
            "index": i,
            "name": vocab.names[i],
            "genre_id": vocab.genre_ids[i],
            "precision": _f(precision[i]),
            "recall": _f(recall[i]),
            "f1": _f(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i in range(n_classes)
    ]
    return result


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
            "share_of_true": _f(counts[i] / support[rows[i]]),
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
            "error_rate": _f(errors[i] / support[i]),
        }
        for i in by_rate
    ]
    return {"confusion_matrix": cm.tolist(), "confused_pairs": pairs, "error_rates": error_rates}


# --- confidence and calibration ------------------------------------------------------------------


def _summary(x: np.ndarray) -> dict[str, Any]:
    if len(x) == 0:
        return {"n": 0, "mean": None, "median": None, "std": None, "p10": None, "p90": None}
    return {
        "n": len(x),
        "mean": _f(np.mean(x)),
        "median": _f(np.median(x)),
        "std": _f(np.std(x)),
        "p10": _f(np.percentile(x, 10)),
        "p90": _f(np.percentile(x, 90)),
    }


def confidence_distribution(confidence: Any, correct: Any, *, n_bins: int = 20) -> dict[str, Any]:
    """Distribution of the top-1 confidence for correct and for wrong predictions.

    Parameters
    ----------
    confidence : array of float, shape (n,)
        Probability of the predicted class.
    correct : array of bool, shape (n,)
    n_bins : int
        Equal-width histogram bins over [0, 1].

    Returns
    -------
    dict
        ``correct`` and ``wrong`` summaries (n, mean, median, std, p10, p90) and ``histogram``
        with shared ``edges`` and the ``correct`` and ``wrong`` counts per bin.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    hist_ok, _ = np.histogram(confidence[correct], bins=edges)
    hist_bad, _ = np.histogram(confidence[~correct], bins=edges)
    return {
        "correct": _summary(confidence[correct]),
        "wrong": _summary(confidence[~correct]),
        "histogram": {"edges": edges.tolist(), "correct": hist_ok.tolist(), "wrong": hist_bad.tolist()},
    }


def calibration(confidence: Any, correct: Any, *, n_bins: int = 10) -> dict[str, Any]:
    """Expected calibration error and reliability-diagram data of top-1 confidences.

    scikit-learn has no multiclass ECE, and its ``calibration_curve`` returns neither the bin
    counts (the ECE weights) nor the empty bins. So the bins are formed here exactly as
    ``sklearn.calibration.calibration_curve(correct, confidence, n_bins=n_bins,
    strategy="uniform")`` forms them (equal width on [0, 1]; a value on an inner edge goes to
    the lower bin), and its non-empty bins' accuracy and mean confidence are the values it gives.

    ``ECE = sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)|``; ``MCE`` is the largest gap.

    Parameters
    ----------
    confidence : array of float in [0, 1], shape (n,)
        Probability of the predicted class.
    correct : array of bool, shape (n,)
        Whether the prediction was right.
    n_bins : int
        Number of equal-width bins (config ``CALIBRATION_BINS``, 10 by default).

    Returns
    -------
    dict
        ``n``, ``n_bins``, ``ece``, ``mce`` (None when n is 0) and ``bins``: per bin ``lower``,
        ``upper``, ``count``, ``accuracy`` and ``confidence`` (None for empty bins).
    """
    if n_bins < 1:
        raise ParameterError(f"n_bins={n_bins} must be a positive integer")
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if confidence.shape != correct.shape:
        raise ParameterError(f"confidence {confidence.shape} and correct {correct.shape} differ in shape")
    if len(confidence) and (confidence.min() < 0 or confidence.max() > 1):
        raise ParameterError("confidence values must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_of = np.searchsorted(edges[1:-1], confidence)  # as calibration_curve does
    count = np.bincount(bin_of, minlength=n_bins)
    hits = np.bincount(bin_of, weights=correct.astype(np.float64), minlength=n_bins)
    conf_sum = np.bincount(bin_of, weights=confidence, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = hits / count
        mean_conf = conf_sum / count
    gaps = np.abs(accuracy - mean_conf)
    n = len(confidence)
    full = count > 0
    ece = float(np.sum(count[full] / n * gaps[full])) if n else None
    mce = float(np.max(gaps[full])) if n else None
    bins = [
        {
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": int(count[b]),
            "accuracy": _f(accuracy[b]) if full[b] else None,
            "confidence": _f(mean_conf[b]) if full[b] else None,
        }
        for b in range(n_bins)
    ]
    return {"n": n, "n_bins": n_bins, "ece": ece, "mce": mce, "bins": bins}


# --- all-genres head ---------------------------------------------------------------------------


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
    from sklearn.metrics import (
        coverage_error,
        f1_score,
        hamming_loss,
        jaccard_score,
        label_ranking_average_precision_score,
        label_ranking_loss,
        precision_recall_fscore_support,
        precision_score,
        recall_score,
    )

    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    if y_true.ndim != 2 or y_true.shape != probs.shape:
        raise ParameterError(f"y_true {y_true.shape} and probs {probs.shape} must be equal 2-D shapes")
    y_true = (y_true > 0).astype(np.int64)
    keep = y_true.any(axis=1)
    y_true, probs = y_true[keep], probs[keep]
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
    n = len(y_true)
    result: dict[str, Any] = {
        "n": n,
        "excluded_no_labels": int((~keep).sum()),
        "threshold": float(th) if th.ndim == 0 else "per label",
    }
    if th.ndim == 1:
        result["thresholds"] = [float(v) for v in th]
    keys = (
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
    if n == 0:
        result.update(dict.fromkeys(keys), no_prediction=0, per_label=[])
        return result
    present = np.flatnonzero(y_true.any(axis=0) | y_pred.any(axis=0))
    result.update(
        hamming_loss=_f(hamming_loss(y_true, y_pred)),
        jaccard_samples=_f(jaccard_score(y_true, y_pred, average="samples", zero_division=0)),
        lrap=_f(label_ranking_average_precision_score(y_true, probs)),
        coverage_error=_f(coverage_error(y_true, probs)),
        ranking_loss=_f(label_ranking_loss(y_true, probs)),
        f1_micro=_f(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        f1_macro=_f(f1_score(y_true, y_pred, average="macro", labels=present, zero_division=0)),
        precision_micro=_f(precision_score(y_true, y_pred, average="micro", zero_division=0)),
        recall_micro=_f(recall_score(y_true, y_pred, average="micro", zero_division=0)),
        mean_true_labels=_f(y_true.sum(axis=1).mean()),
        mean_predicted_labels=_f(y_pred.sum(axis=1).mean()),
        no_prediction=int((y_pred.sum(axis=1) == 0).sum()),
    )
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, average=None, zero_division=0
    )
    names = None if vocab is None else LevelVocab.coerce(vocab).names
    predicted = y_pred.sum(axis=0)
    order = present[np.lexsort((present, -support[present]))]
    result["per_label"] = [
        {
            "index": int(i),
            "name": names[i] if names is not None else str(i),
            "precision": _f(precision[i]),
            "recall": _f(recall[i]),
            "f1": _f(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i in order
    ]
    return result


# --- hierarchy and stability -------------------------------------------------------------------


def hierarchy_consistency(
    top_pred: Any, medium_pred: Any, top_vocab: LevelVocab, medium_vocab: LevelVocab, *, n_pairs: int = 10
) -> dict[str, Any]:
    """How often the predicted medium genre lies under the predicted top genre.

    Parameters
    ----------
    top_pred, medium_pred : array of int, shape (n,)
        Predicted class indices of the two heads for the same tracks (or segments).
    top_vocab, medium_vocab : LevelVocab
        ``medium_vocab.root_ids`` must be set; a top class's root is its ``root_ids`` entry when
        given, else its own genre id.
    n_pairs : int
        How many inconsistent (top, medium) combinations to list.

    Returns
    -------
    dict
        ``n``, ``consistent``, ``rate`` (None when n is 0) and ``inconsistent_pairs``: the most
        frequent predicted (top, medium) combinations whose medium genre is under another root.
    """
    top_vocab = LevelVocab.coerce(top_vocab)
    medium_vocab = LevelVocab.coerce(medium_vocab)
    if medium_vocab.root_ids is None:
        raise ParameterError("the medium vocabulary has no root_ids: the hierarchy cannot be checked")
    top_pred = np.asarray(top_pred, dtype=np.int64)
    medium_pred = np.asarray(medium_pred, dtype=np.int64)
    top_root = np.asarray(top_vocab.root_ids or top_vocab.genre_ids)
    medium_root = np.asarray(medium_vocab.root_ids)
    ok = medium_root[medium_pred] == top_root[top_pred]
    n = len(ok)
    bad_pairs = top_pred[~ok] * len(medium_vocab) + medium_pred[~ok]
    values, counts = np.unique(bad_pairs, return_counts=True)
    order = np.lexsort((values, -counts))[:n_pairs]
    pairs = [
        {
            "top": top_vocab.names[values[i] // len(medium_vocab)],
            "medium": medium_vocab.names[values[i] % len(medium_vocab)],
            "count": int(counts[i]),
        }
        for i in order
    ]
    return {
        "n": n,
        "consistent": int(ok.sum()),
        "rate": _f(ok.mean()) if n else None,
        "inconsistent_pairs": pairs,
    }


def temporal_stability(
    probs: Any,
    segment_track: Any,
    track_pred: Any,
    *,
    target: Any = None,
    vocab: LevelVocab | Sequence[str] | None = None,
    n_bins: int = 10,
) -> dict[str, Any]:
    """Share of each track's segments whose argmax agrees with the track's prediction.

    Parameters
    ----------
    probs : array, shape (n_segments, n_classes)
    segment_track : array of int, shape (n_segments,)
    track_pred : array of int, shape (n_tracks,)
        The track-level prediction; tracks marked -1 (no segments) are left out.
    target : array of int, shape (n_tracks,), optional
        Target class of each track (-1 = none), for the mean stability per target genre.
    vocab : LevelVocab or sequence of str, optional
        Class names for the per-genre means.
    n_bins : int
        Histogram resolution (see Returns).

    Returns
    -------
    dict
        ``n_tracks``, ``mean``, ``median``, ``std``, ``fully_stable`` (share of tracks whose
        segments all agree), ``histogram`` (``edges``, ``counts``: ``n_bins + 1`` bins of width
        ``1 / n_bins`` centred on 0, 1/n_bins, ..., 1),
        ``per_track`` (the shares; NaN -> None for left-out tracks) and ``per_genre``: mean
        stability per target genre with tracks, lowest first.
    """
    probs = np.asarray(probs)
    track_pred = np.asarray(track_pred, dtype=np.int64)
    n_tracks = len(track_pred)
    seg_argmax = np.argmax(probs, axis=1)
    index = np.asarray(segment_track, dtype=np.intp)
    agree = (seg_argmax == track_pred[index]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.bincount(index, weights=agree, minlength=n_tracks) / np.bincount(index, minlength=n_tracks)
    share[track_pred < 0] = np.nan
    valid = np.isfinite(share)
    values = share[valid]
    # Shares are fractions k / n_segments; bins centred on 0, 1/n_bins, ..., 1 keep a value such
    # as 3/10 off a bin edge, where rounding would drop it into either neighbour.
    edges = (np.arange(n_bins + 2) - 0.5) / n_bins
    counts, _ = np.histogram(values, bins=edges)
    result: dict[str, Any] = {
        "n_tracks": int(valid.sum()),
        "mean": _f(values.mean()) if len(values) else None,
        "median": _f(np.median(values)) if len(values) else None,
        "std": _f(values.std()) if len(values) else None,
        "fully_stable": _f(np.mean(values == 1.0)) if len(values) else None,
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "per_track": [_f(s) for s in share],
        "per_genre": [],
    }
    if target is not None:
        target = np.asarray(target, dtype=np.int64)
        names = None if vocab is None else LevelVocab.coerce(vocab).names
        use = valid & (target >= 0)
        n_classes = probs.shape[1]
        count = np.bincount(target[use], minlength=n_classes)
        total = np.bincount(target[use], weights=share[use], minlength=n_classes)
        present = np.flatnonzero(count > 0)
        means = total[present] / count[present]
        order = np.lexsort((present, means))
        result["per_genre"] = [
            {
                "index": int(present[i]),
                "name": names[present[i]] if names is not None else str(present[i]),
                "mean": _f(means[i]),
                "tracks": int(count[present[i]]),
            }
            for i in order
        ]
    return result


# --- targets -------------------------------------------------------------------------------------


def performance_targets(
    results: Mapping[str, Any], targets: Sequence[PerformanceTarget] = PERFORMANCE_TARGETS
) -> list[dict[str, Any]]:
    """The README's performance-target table with the measured value and pass/fail of each row.

    Parameters
    ----------
    results : mapping
        The dict of :func:`evaluate` (only ``results[level]["track"][metric]`` is read).
    targets : sequence of PerformanceTarget

    Returns
    -------
    list of dict
        ``name``, ``level``, ``metric``, ``target``, ``value`` and ``passed`` (``value > target``;
        None when the value could not be measured).
    """
    rows = []
    for t in targets:
        value = results.get(t.level, {}).get("track", {}).get(t.metric)
        rows.append(
            {
                "name": t.name,
                "level": t.level,
                "metric": t.metric,
                "target": t.threshold,
                "value": _f(value),
                "passed": None if value is None else bool(value > t.threshold),
            }
        )
    return rows


# --- everything ----------------------------------------------------------------------------------


def _check_width(probs: np.ndarray, vocab: LevelVocab, level: str) -> None:
    if probs.ndim != 2 or probs.shape[1] != len(vocab):
        raise ModelError(
            f"the {level!r} head gives {probs.shape[-1] if probs.ndim else 0} outputs but its "
            f"vocabulary has {len(vocab)} classes"
        )


def _single_label_level(
    probs: np.ndarray,
    segment_track: np.ndarray,
    target: np.ndarray,
    vocab: LevelVocab,
    *,
    top_k: int,
    n_bins: int,
    n_pairs: int,
    track_ids: np.ndarray | None,
) -> tuple[dict[str, Any], np.ndarray]:
    n_tracks = len(target)
    avg = track_average(probs, segment_track, n_tracks)
    votes = track_voting(probs, segment_track, n_tracks)
    has_segments = avg.n_segments > 0
    valid = has_segments & (target >= 0)
    y_true, y_pred = target[valid], avg.index[valid]

    seg_target = target[segment_track]
    seg_valid = seg_target >= 0
    seg_pred = np.argmax(probs, axis=1)

    correct = y_pred == y_true
    confidence = avg.confidence[valid]
    voting_metrics = classification_metrics(y_true, votes.index[valid], vocab, k=top_k)
    voting_metrics.pop("per_class")
    agreement = np.mean(votes.index[valid] == y_pred) if len(y_true) else None
    voting_metrics["agreement_with_average"] = _f(agreement)

    wrong = np.flatnonzero(~correct)
    worst = wrong[np.lexsort((wrong, -confidence[wrong]))][:n_pairs]
    ids = track_ids[valid] if track_ids is not None else np.flatnonzero(valid)
    confident_errors = [
        {
            "track": ids[i],
            "true": vocab.names[y_true[i]],
            "predicted": vocab.names[y_pred[i]],
            "confidence": _f(confidence[i]),
        }
        for i in worst
    ]
    errors = error_analysis(y_true, y_pred, vocab, n_pairs=n_pairs)
    errors["confident_errors"] = confident_errors
    section = {
        "n_classes": len(vocab),
        "names": list(vocab.names),
        "genre_ids": list(vocab.genre_ids),
        "root_ids": None if vocab.root_ids is None else list(vocab.root_ids),
        "excluded": {
            "no_target": int((has_segments & (target < 0)).sum()),
            "no_segments": int((~has_segments).sum()),
        },
        "track": classification_metrics(y_true, y_pred, vocab, probs=avg.mean[valid], k=top_k),
        "segment": classification_metrics(
            seg_target[seg_valid], seg_pred[seg_valid], vocab, probs=probs[seg_valid], k=top_k
        ),
        "voting": voting_metrics,
        "calibration": calibration(confidence, correct, n_bins=n_bins),
        "confidence": confidence_distribution(confidence, correct),
        "errors": errors,
        "stability": temporal_stability(probs, segment_track, avg.index, target=target, vocab=vocab),
    }
    return section, avg.index


def evaluate(
    *,
    top_probs: Any,
    medium_probs: Any,
    all_probs: Any,
    segment_track: Any,
    top_target: Any,
    medium_target: Any,
    all_target: Any,
    top_vocab: Any,
    medium_vocab: Any,
    all_vocab: Any,
    threshold: float = 0.5,
    top_k: int = 3,
    n_bins: int = 10,
    n_pairs: int = 10,
    n_defective_files: int = 0,
    track_ids: Any = None,
    thresholds: Any = None,
    include_top: bool = False,
) -> dict[str, Any]:
    """Evaluate the three heads on tracks and on segments; return every figure as plain JSON.

    Track-level figures aggregate each track's segments by average probability, as inference
    does (:func:`genrekit.evaluate.aggregate.track_average`); segment-level figures score each segment
    against its track's target. Tracks without a target at a level are left out of that level and
    counted, as are tracks without segments.

    Parameters
    ----------
    top_probs : array, shape (n_segments, n_top)
        Softmax outputs of the top-genre head.
    medium_probs : array, shape (n_segments, n_medium), or None
        Softmax outputs of the medium-genre head; None for a model without one (no sub-genres):
        then ``medium_target`` and ``medium_vocab`` are ignored and the results have no ``medium``
        section, no ``medium_no_target`` count and a skipped ``hierarchy``.
    all_probs : array, shape (n_segments, n_all)
        Sigmoid outputs of the all-genres head.
    segment_track : array of int, shape (n_segments,)
        Index (into the target arrays) of the track of each segment.
    top_target, medium_target : array of int, shape (n_tracks,)
        Target class index per track, -1 where masked.
    all_target : array of {0, 1}, shape (n_tracks, n_all)
        Multi-hot targets.
    top_vocab, medium_vocab, all_vocab : LevelVocab or compatible (see :meth:`LevelVocab.coerce`)
        ``medium_vocab`` needs ``root_ids`` for the hierarchy section (skipped without).
    threshold : float
        Fixed decision threshold of the all-genres head (config ``THRESHOLD``).
    thresholds : array of float, shape (n_all,), optional
        Per-genre thresholds the model was saved with (tuned on validation). When given, the
        all-genres figures use them, and ``all.track_fixed_threshold`` holds the figures at
        ``threshold`` beside them.
    include_top : bool
        The model's all-genres decisions also hold the genre its top head predicts (the
        ``include_top`` the thresholds were chosen with, :func:`genrekit.evaluate.thresholds.decide`); the
        figures at the fixed ``threshold`` beside them never do.
    top_k : int
        k of the top-k accuracy (config ``TOP_K``).
    n_bins : int
        Calibration bins (config ``CALIBRATION_BINS``).
    n_pairs : int
        Confused pairs and confident errors listed per head.
    n_defective_files : int
        Files left out before evaluation because they could not be decoded; only reported.
    track_ids : array, shape (n_tracks,), optional
        FMA track ids, used to name the most confident errors (default: track indices).

    Returns
    -------
    dict
        Sections ``counts``, ``settings``, ``top``, ``medium``, ``all``, ``hierarchy`` and
        ``targets``; only plain floats, ints, strings, lists, dicts and None.

    Raises
    ------
    ModelError
        When a head's width does not match its vocabulary.
    ParameterError
        (a ValueError) When the arrays disagree in length or hold out-of-range indices.
    """
    # No medium head (a collection without sub-genres): the medium level is left out everywhere.
    has_medium = medium_probs is not None
    top_vocab = LevelVocab.coerce(top_vocab)
    all_vocab = LevelVocab.coerce(all_vocab)
    top_probs = np.asarray(top_probs, dtype=np.float64)
    all_probs = np.asarray(all_probs, dtype=np.float64)
    top_target = np.asarray(top_target, dtype=np.int64)
    n_tracks = len(top_target)
    n_segments = len(top_probs)
    if has_medium:
        medium_vocab = LevelVocab.coerce(medium_vocab)
        medium_probs = np.asarray(medium_probs, dtype=np.float64)
        medium_target = np.asarray(medium_target, dtype=np.int64)
    else:  # stand-ins that pass the checks below; no medium section is written
        medium_vocab = top_vocab
        medium_probs = np.zeros((n_segments, len(top_vocab)))
        medium_target = np.full(n_tracks, -1, dtype=np.int64)
    for level, probs, vocab in (
        ("top", top_probs, top_vocab),
        ("medium", medium_probs, medium_vocab),
        ("all", all_probs, all_vocab),
    ):
        _check_width(probs, vocab, level)
    segment_track = np.asarray(segment_track)
    all_target = np.asarray(all_target)
    if len(medium_probs) != n_segments or len(all_probs) != n_segments or len(segment_track) != n_segments:
        raise ParameterError(
            f"segment arrays differ in length: top {n_segments}, medium {len(medium_probs)}, "
            f"all {len(all_probs)}, segment_track {len(segment_track)}"
        )
    if len(medium_target) != n_tracks or all_target.shape != (n_tracks, len(all_vocab)):
        raise ParameterError(
            f"track targets disagree: top {n_tracks}, medium {len(medium_target)}, "
            f"all {all_target.shape} (expected ({n_tracks}, {len(all_vocab)}))"
        )
    for level, target, vocab in (("top", top_target, top_vocab), ("medium", medium_target, medium_vocab)):
        if n_tracks and (target.min() < -1 or target.max() >= len(vocab)):
            raise ParameterError(f"{level}_target holds indices outside -1..{len(vocab) - 1}")
    if track_ids is not None:
        track_ids = np.asarray(track_ids)
        if len(track_ids) != n_tracks:
            raise ParameterError(f"{len(track_ids)} track_ids given for {n_tracks} tracks")
    # Validates segment_track once for every level below.
    seg_counts = np.bincount(np.asarray(segment_track, dtype=np.intp), minlength=n_tracks)
    if len(seg_counts) > n_tracks:
        raise ParameterError(f"segment_track refers to track {len(seg_counts) - 1} of {n_tracks}")
    segment_track = segment_track.astype(np.intp)
    has_segments = seg_counts > 0

    common = {"top_k": top_k, "n_bins": n_bins, "n_pairs": n_pairs, "track_ids": track_ids}
    top, top_pred = _single_label_level(top_probs, segment_track, top_target, top_vocab, **common)
    if has_medium:
        medium, medium_pred = _single_label_level(
            medium_probs, segment_track, medium_target, medium_vocab, **common
        )

    all_mean = track_mean(all_probs, segment_track, n_tracks)
    columns = top_columns(top_vocab.genre_ids, all_vocab.genre_ids) if include_top else None
    operating = threshold if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    all_section = {
        "n_labels": len(all_vocab),
        "names": list(all_vocab.names),
        "excluded": {"no_segments": int((~has_segments).sum())},
        "track": multilabel_metrics(
            all_target[has_segments],
            all_mean[has_segments],
            threshold=operating,
            vocab=all_vocab,
            top_class=top_pred[has_segments] if include_top else None,
            columns=columns,
        ),
        "segment": multilabel_metrics(
            all_target[segment_track],
            all_probs,
            threshold=operating,
            top_class=np.argmax(top_probs, axis=1) if include_top else None,
            columns=columns,
        ),
    }
    all_section["segment"].pop("per_label")
    if thresholds is not None:
        fixed = multilabel_metrics(all_target[has_segments], all_mean[has_segments], threshold=threshold)
        fixed.pop("per_label")
        all_section["track_fixed_threshold"] = fixed

    if not has_medium:
        hierarchy: dict[str, Any] = {"skipped": "the model has no medium head (no sub-genres in training)"}
    elif medium_vocab.root_ids is None:
        hierarchy = {"skipped": "the medium vocabulary has no root_ids"}
    else:
        hierarchy = {
            "track": hierarchy_consistency(
                top_pred[has_segments], medium_pred[has_segments], top_vocab, medium_vocab, n_pairs=n_pairs
            ),
            "segment": hierarchy_consistency(
                np.argmax(top_probs, axis=1), np.argmax(medium_probs, axis=1), top_vocab, medium_vocab
            ),
        }

    results: dict[str, Any] = {
        "counts": {
            "tracks": n_tracks,
            "tracks_evaluated": int(has_segments.sum()),
            "tracks_without_segments": int((~has_segments).sum()),
            "segments": n_segments,
            "defective_files": int(n_defective_files),
            "excluded": {
                "top_no_target": top["excluded"]["no_target"],
                **({"medium_no_target": medium["excluded"]["no_target"]} if has_medium else {}),
                "all_no_labels": all_section["track"]["excluded_no_labels"],
            },
        },
        "settings": {
            "threshold": float(threshold),
            "thresholds": "fixed" if thresholds is None else "per genre, tuned on the validation split",
            "include_top": bool(include_top),
            "top_k": top_k,
            "calibration_bins": n_bins,
        },
        "top": top,
        **({"medium": medium} if has_medium else {}),
        "all": all_section,
        "hierarchy": hierarchy,
    }
    results["targets"] = performance_targets(results)
    return to_jsonable(results)
