"""Analyses beside the scores: confidence, calibration, hierarchy consistency, temporal stability."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from genrekit.errors import ParameterError
from genrekit.evaluate.common import LevelVocab, number

__all__ = ["calibration", "confidence_distribution", "hierarchy_consistency", "temporal_stability"]


def _summary(x: np.ndarray) -> dict[str, Any]:
    if len(x) == 0:
        return {"n": 0, "mean": None, "median": None, "std": None, "p10": None, "p90": None}
    return {
        "n": len(x),
        "mean": number(np.mean(x)),
        "median": number(np.median(x)),
        "std": number(np.std(x)),
        "p10": number(np.percentile(x, 10)),
        "p90": number(np.percentile(x, 90)),
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
            "accuracy": number(accuracy[b]) if full[b] else None,
            "confidence": number(mean_conf[b]) if full[b] else None,
        }
        for b in range(n_bins)
    ]
    return {"n": n, "n_bins": n_bins, "ece": ece, "mce": mce, "bins": bins}


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
        "rate": number(ok.mean()) if n else None,
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
        "mean": number(values.mean()) if len(values) else None,
        "median": number(np.median(values)) if len(values) else None,
        "std": number(values.std()) if len(values) else None,
        "fully_stable": number(np.mean(values == 1.0)) if len(values) else None,
        "histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
        "per_track": [number(s) for s in share],
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
                "mean": number(means[i]),
                "tracks": int(count[present[i]]),
            }
            for i in order
        ]
    return result
