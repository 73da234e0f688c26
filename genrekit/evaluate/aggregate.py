"""Segment-to-track aggregation of model probabilities, shared by inference and evaluation.

A clip is cut into segments and the model gives one probability row per segment; these functions
turn the rows into one prediction per track, either for one file (an ``(S, C)`` array) or for many
tracks at once (an ``(N, C)`` array with ``segment_track[i]`` = the track of row ``i``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrekit.errors import ParameterError

__all__ = [
    "AveragePrediction",
    "MultiLabelPrediction",
    "TrackAverages",
    "TrackVotes",
    "VotePrediction",
    "average_confidence",
    "multilabel_average",
    "segment_counts",
    "top_k_indices",
    "track_average",
    "track_averages",
    "track_mean",
    "track_multilabel",
    "track_voting",
    "voting",
]


# --- checks ------------------------------------------------------------------------------------


def _check_probs(probs: Any, what: str = "probs") -> np.ndarray:
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ParameterError(f"{what} must be a 2-D (segments, classes) array, got shape {probs.shape}")
    if probs.shape[1] == 0:
        raise ParameterError(f"{what} has no classes (shape {probs.shape})")
    if not np.issubdtype(probs.dtype, np.floating):
        probs = probs.astype(np.float64)
    if not np.all(np.isfinite(probs)):
        raise ParameterError(f"{what} contains NaN or infinite values")
    return probs


def _check_index(segment_track: Any, n_segments: int, n_tracks: int | None) -> tuple[np.ndarray, int]:
    index = np.asarray(segment_track)
    if index.ndim != 1 or len(index) != n_segments:
        raise ParameterError(f"segment_track must have shape ({n_segments},), got {index.shape}")
    if n_segments and not np.issubdtype(index.dtype, np.integer):
        raise ParameterError(f"segment_track must hold integer track indices, got dtype {index.dtype}")
    index = index.astype(np.intp, copy=False)
    if n_segments and index.min() < 0:
        raise ParameterError(f"segment_track holds a negative track index ({index.min()})")
    top = int(index.max()) + 1 if n_segments else 0
    if n_tracks is None:
        n_tracks = top
    elif top > n_tracks:
        raise ParameterError(f"segment_track refers to track {top - 1} but n_tracks is {n_tracks}")
    return index, n_tracks


def _name(names: Sequence[str] | None, index: int) -> str | None:
    return None if names is None else str(names[index])


def _check_names(names: Sequence[str] | None, n_classes: int) -> None:
    if names is not None and len(names) != n_classes:
        raise ParameterError(f"{len(names)} names given for {n_classes} classes")


# --- many tracks at once -----------------------------------------------------------------------


def segment_counts(segment_track: Any, n_tracks: int | None = None) -> np.ndarray:
    """Number of segments of each track.

    Parameters
    ----------
    segment_track : array of int, shape (n_segments,)
        Track index of each segment.
    n_tracks : int, optional
        Number of tracks; default ``max(segment_track) + 1``.

    Returns
    -------
    counts : ndarray of int64, shape (n_tracks,)
    """
    index = np.asarray(segment_track)
    index, n_tracks = _check_index(index, len(index), n_tracks)
    return np.bincount(index, minlength=n_tracks).astype(np.int64)


def track_mean(probs: Any, segment_track: Any, n_tracks: int | None = None) -> np.ndarray:
    """Mean probability of each class over the segments of each track.

    Parameters
    ----------
    probs : array, shape (n_segments, n_classes)
        Per-segment probabilities (softmax or sigmoid).
    segment_track : array of int, shape (n_segments,)
        Track index of each segment; segments of a track need not be contiguous.
    n_tracks : int, optional
        Number of tracks; default ``max(segment_track) + 1``.

    Returns
    -------
    mean : ndarray of float64, shape (n_tracks, n_classes)
        Rows of tracks without any segment are NaN, so they cannot pass for a prediction.
    """
    from scipy import sparse  # a dependency of scikit-learn and librosa

    probs = _check_probs(probs)
    index, n_tracks = _check_index(segment_track, len(probs), n_tracks)
    n = len(index)
    # A (tracks x segments) 0/1 matrix times the probabilities sums each track's rows in float64;
    # about 15x faster than np.add.at (benchmarks/bench_aggregate.py).
    members = sparse.csr_matrix((np.ones(n), (index, np.arange(n))), shape=(n_tracks, n))
    sums = np.asarray(members @ probs, dtype=np.float64)
    counts = np.bincount(index, minlength=n_tracks)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def top_k_indices(probs: Any, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values of each row, largest first.

    Ties are ordered by class index (the stable sort keeps the lower index first), so the result
    does not depend on the platform's sort.

    Parameters
    ----------
    probs : array, shape (..., n_classes)
    k : int
        Clipped to ``n_classes``.

    Returns
    -------
    ndarray of intp, shape (..., min(k, n_classes))
    """
    probs = np.asarray(probs)
    if k < 1:
        raise ParameterError(f"k={k} must be a positive integer")
    return np.argsort(-probs, axis=-1, kind="stable")[..., : min(k, probs.shape[-1])]


@dataclass(frozen=True)
class TrackAverages:
    """Per-track predictions by average probability (see :func:`track_average`)."""

    index: np.ndarray  # (n_tracks,) argmax of the mean; -1 for tracks without segments
    confidence: np.ndarray  # (n_tracks,) the mean probability of that class; NaN without segments
    mean: np.ndarray  # (n_tracks, n_classes) mean probabilities; NaN rows without segments
    n_segments: np.ndarray  # (n_tracks,) segments per track


def track_average(probs: Any, segment_track: Any, n_tracks: int | None = None) -> TrackAverages:
    """Predict each track's class as the argmax of its mean segment probabilities.

    This is how inference and evaluation decide a track's genre: averaging keeps the model's
    confidence, whereas voting (:func:`track_voting`) throws it away.

    Parameters
    ----------
    probs : array, shape (n_segments, n_classes)
    segment_track : array of int, shape (n_segments,)
    n_tracks : int, optional

    Returns
    -------
    TrackAverages
        Ties between classes of equal mean go to the lower class index.
    """
    mean = track_mean(probs, segment_track, n_tracks)
    counts = np.bincount(np.asarray(segment_track, dtype=np.intp), minlength=len(mean))
    has = counts > 0
    index = np.full(len(mean), -1, dtype=np.int64)
    confidence = np.full(len(mean), np.nan)
    if has.any():
        index[has] = np.argmax(mean[has], axis=1)
        confidence[has] = mean[has, index[has]]
    return TrackAverages(index=index, confidence=confidence, mean=mean, n_segments=counts.astype(np.int64))


def track_averages(
    probs: Mapping[str, Any], segment_track: Any, n_tracks: int | None = None
) -> dict[str, TrackAverages]:
    """:func:`track_average` of every head's segment probabilities, keyed as ``probs`` is.

    Parameters
    ----------
    probs : mapping of head to array, shape (n_segments, n_classes)
        The outputs of the heads a model has (``"top"``, ``"medium"``, ``"all"``): for a
        multi-label head, ``mean`` is what counts, its argmax is given all the same.
    segment_track : array of int, shape (n_segments,)
    n_tracks : int, optional

    Returns
    -------
    dict of head to TrackAverages
    """
    return {head: track_average(p, segment_track, n_tracks) for head, p in probs.items()}


@dataclass(frozen=True)
class TrackVotes:
    """Per-track predictions by majority vote (see :func:`track_voting`)."""

    index: np.ndarray  # (n_tracks,) winning class; -1 for tracks without segments
    votes: np.ndarray  # (n_tracks,) segments that voted for it
    share: np.ndarray  # (n_tracks,) votes / n_segments; NaN without segments
    counts: np.ndarray  # (n_tracks, n_classes) votes per class
    n_segments: np.ndarray  # (n_tracks,) segments per track


def track_voting(probs: Any, segment_track: Any, n_tracks: int | None = None) -> TrackVotes:
    """Predict each track's class by majority vote of its segments' argmax (arguments as :func:`track_average`).

    A tie in votes goes to the tied class with the highest mean probability over the track's
    segments, then to the lowest class index.
    """
    probs = _check_probs(probs)
    index, n_tracks = _check_index(segment_track, len(probs), n_tracks)
    n_classes = probs.shape[1]
    winners = np.argmax(probs, axis=1)
    counts = np.bincount(index * n_classes + winners, minlength=n_tracks * n_classes)
    counts = counts.reshape(n_tracks, n_classes).astype(np.int64)
    mean = track_mean(probs, index, n_tracks)
    n_segments = counts.sum(axis=1)
    has = n_segments > 0
    tied = counts == counts.max(axis=1, keepdims=True)
    # Mean probabilities lie in [0, 1] for probabilities; -inf keeps untied classes out whatever
    # the scale of the scores.
    key = np.where(tied & has[:, None], np.nan_to_num(mean, nan=0.0), -np.inf)
    choice = np.where(has, np.argmax(key, axis=1), -1).astype(np.int64)
    votes = np.where(has, counts[np.arange(n_tracks), np.maximum(choice, 0)], 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(has, votes / np.maximum(n_segments, 1), np.nan)
    return TrackVotes(index=choice, votes=votes, share=share, counts=counts, n_segments=n_segments)


def track_multilabel(
    probs: Any, segment_track: Any, *, threshold: float = 0.5, n_tracks: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean sigmoid probability per label and track, and the labels above ``threshold``.

    Parameters
    ----------
    probs : array, shape (n_segments, n_labels)
        Per-segment sigmoid outputs of the all-genres head.
    segment_track : array of int, shape (n_segments,)
    threshold : float
        A label is predicted when its mean probability is strictly above it (config ``THRESHOLD``).
    n_tracks : int, optional

    Returns
    -------
    mean : ndarray of float64, shape (n_tracks, n_labels)
        NaN rows for tracks without segments.
    predicted : ndarray of bool, shape (n_tracks, n_labels)
        False everywhere for tracks without segments.
    """
    mean = track_mean(probs, segment_track, n_tracks)
    with np.errstate(invalid="ignore"):
        return mean, np.nan_to_num(mean, nan=0.0) > threshold


# --- one file ------------------------------------------------------------------------------------


def _one_file(probs: Any) -> np.ndarray:
    probs = _check_probs(probs)
    if len(probs) == 0:
        raise ParameterError("no segments to aggregate (probs has 0 rows)")
    return probs


@dataclass(frozen=True)
class AveragePrediction:
    """A file's prediction by average probability (see :func:`average_confidence`)."""

    index: int
    name: str | None
    confidence: float
    top_k: list[tuple[str | int, float]]  # (name, or index without names; mean probability)
    probabilities: np.ndarray  # (n_classes,) mean over segments

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable form (without the full probability vector)."""
        return {
            "index": self.index,
            "name": self.name,
            "confidence": self.confidence,
            "top_k": [{"genre": g, "probability": p} for g, p in self.top_k],
        }


def average_confidence(probs: Any, names: Sequence[str] | None = None, k: int = 3) -> AveragePrediction:
    """Aggregate one file's segment probabilities by their mean.

    Parameters
    ----------
    probs : array, shape (n_segments, n_classes)
        Softmax outputs of one head for the segments of one file.
    names : sequence of str, optional
        Class names in output order.
    k : int
        Length of the ranked ``top_k`` list (config ``TOP_K``).

    Returns
    -------
    AveragePrediction
        ``confidence`` is the mean probability of the winning class; ties go to the lower index.
    """
    probs = _one_file(probs)
    _check_names(names, probs.shape[1])
    mean = probs.astype(np.float64).mean(axis=0)
    ranked = top_k_indices(mean, k)
    best = int(ranked[0])
    return AveragePrediction(
        index=best,
        name=_name(names, best),
        confidence=float(mean[best]),
        top_k=[(_name(names, int(i)) if names is not None else int(i), float(mean[i])) for i in ranked],
        probabilities=mean,
    )


@dataclass(frozen=True)
class VotePrediction:
    """A file's prediction by majority vote (see :func:`voting`)."""

    index: int
    name: str | None
    votes: int
    share: float  # votes / n_segments
    n_segments: int
    vote_counts: np.ndarray  # (n_classes,) votes per class

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable form (without the votes per class)."""
        return {key: getattr(self, key) for key in ("index", "name", "votes", "share", "n_segments")}


def voting(probs: Any, names: Sequence[str] | None = None) -> VotePrediction:
    """Aggregate one file's segments by majority vote of their argmax.

    Parameters
    ----------
    probs : array, shape (n_segments, n_classes)
    names : sequence of str, optional

    Returns
    -------
    VotePrediction
        A tie in votes goes to the tied class with the highest mean probability, then to the
        lowest index.
    """
    probs = _one_file(probs)
    _check_names(names, probs.shape[1])
    result = track_voting(probs, np.zeros(len(probs), dtype=np.intp), 1)
    best = int(result.index[0])
    return VotePrediction(
        index=best,
        name=_name(names, best),
        votes=int(result.votes[0]),
        share=float(result.share[0]),
        n_segments=len(probs),
        vote_counts=result.counts[0],
    )


@dataclass(frozen=True)
class MultiLabelPrediction:
    """A file's all-genres prediction (see :func:`multilabel_average`)."""

    labels: list[tuple[str | int, float]]  # labels above the threshold, most probable first
    probabilities: np.ndarray  # (n_labels,) mean over segments
    threshold: float | list[float]  # one for all labels, or one per label

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable form (without the full probability vector)."""
        return {
            "threshold": self.threshold,
            "labels": [{"genre": g, "probability": p} for g, p in self.labels],
        }


def multilabel_average(
    probs: Any, names: Sequence[str] | None = None, threshold: Any = 0.5, always: Sequence[int] = ()
) -> MultiLabelPrediction:
    """Mean sigmoid probability of each label over one file's segments, and the labels above it.

    Parameters
    ----------
    probs : array, shape (n_segments, n_labels)
    names : sequence of str, optional
    threshold : float or array of float, shape (n_labels,)
        A label is listed when its mean probability is strictly above it (or above its own).
    always : sequence of int
        Labels listed whatever their probability (the top head's genre, ``include_top``).

    Returns
    -------
    MultiLabelPrediction
        ``labels`` sorted by probability, highest first (ties by label index).
    """
    probs = _one_file(probs)
    _check_names(names, probs.shape[1])
    mean = probs.astype(np.float64).mean(axis=0)
    th = np.broadcast_to(np.asarray(threshold, dtype=np.float64), mean.shape)
    order = top_k_indices(mean, len(mean))
    listed = {int(i) for i in always}
    labels = [
        (_name(names, int(i)) if names is not None else int(i), float(mean[i]))
        for i in order
        if mean[i] > th[i] or int(i) in listed
    ]
    return MultiLabelPrediction(labels=labels, probabilities=mean, threshold=threshold_value(th))


def threshold_value(thresholds: Any) -> float | list[float]:
    """One number when every label shares the threshold, else the per-label list (for JSON)."""
    th = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if th.size == 0 or np.all(th == th[0]):
        return float(th[0]) if th.size else 0.5
    return [float(v) for v in th]
