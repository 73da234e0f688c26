"""Evaluation metrics: scikit-learn figures of a model's heads, from numpy probability arrays.

The first of three evaluation layers. Everything here works on numpy arrays of segment
probabilities and track targets, keyed by head (``"top"`` and ``"medium"``: single-label,
``"all"``: multi-label), so it runs the same on a trained model's outputs, on stored predictions
and on hand-built test examples; :func:`evaluate` returns one JSON-serializable dict that
:mod:`genrekit.evaluate.report` writes out. :mod:`genrekit.evaluate.evaluator` runs a saved model
on a split and calls these; ``model_evaluation.py`` is its command line. The metrics Keras tracks
while training (tensors, masked rows skipped) are :mod:`genrekit.models.keras_metrics`.

The figures live in :mod:`~genrekit.evaluate.classification` (single-label heads),
:mod:`~genrekit.evaluate.multilabel` (the all-genres head) and :mod:`~genrekit.evaluate.analysis`
(confidence, calibration, hierarchy, stability); this module gathers them per head and re-exports
them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from genrekit.errors import ModelError, ParameterError
from genrekit.evaluate.aggregate import TrackAverages, track_averages, track_voting
from genrekit.evaluate.analysis import (
    calibration,
    confidence_distribution,
    hierarchy_consistency,
    temporal_stability,
)
from genrekit.evaluate.classification import classification_metrics, error_analysis
from genrekit.evaluate.common import LevelVocab, number, to_jsonable
from genrekit.evaluate.multilabel import multilabel_metrics
from genrekit.evaluate.thresholds import top_columns

__all__ = [
    "HEADS",
    "MULTI_LABEL_HEADS",
    "PERFORMANCE_TARGETS",
    "SINGLE_LABEL_HEADS",
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

SINGLE_LABEL_HEADS = ("top", "medium")  # softmax heads: one class per track
MULTI_LABEL_HEADS = ("all",)  # sigmoid heads: any number of labels per track
HEADS = SINGLE_LABEL_HEADS + MULTI_LABEL_HEADS  # in the order of the report


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
                "value": number(value),
                "passed": None if value is None else bool(value > t.threshold),
            }
        )
    return rows


# --- the checked inputs --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Inputs:
    """The arrays of :func:`evaluate`, checked against each other, for the heads the model has."""

    heads: tuple[str, ...]  # in the order of HEADS
    probs: dict[str, np.ndarray]  # head -> (n_segments, n_classes)
    targets: dict[str, np.ndarray]  # head -> (n_tracks,) indices, or (n_tracks, n_labels) multi-hot
    vocabs: dict[str, LevelVocab]
    segment_track: np.ndarray  # (n_segments,) intp
    has_segments: np.ndarray  # (n_tracks,) bool
    track_ids: np.ndarray | None
    n_tracks: int
    n_segments: int

    @property
    def single_label(self) -> tuple[str, ...]:
        return tuple(h for h in self.heads if h in SINGLE_LABEL_HEADS)


def _heads_of(probs: Mapping[str, Any]) -> tuple[str, ...]:
    unknown = sorted(set(probs) - set(HEADS))
    if unknown or not probs:
        raise ParameterError(f"probs must be keyed by heads among {', '.join(HEADS)}; got {sorted(probs)}")
    return tuple(h for h in HEADS if h in probs)


def _check_width(probs: np.ndarray, vocab: LevelVocab, level: str) -> None:
    if probs.ndim != 2 or probs.shape[1] != len(vocab):
        raise ModelError(
            f"the {level!r} head gives {probs.shape[-1] if probs.ndim else 0} outputs but its "
            f"vocabulary has {len(vocab)} classes"
        )


def _check_targets(
    heads: Sequence[str], targets: Mapping[str, np.ndarray], vocabs: Mapping[str, LevelVocab]
) -> int:
    """The number of tracks, when every head's targets agree on it and hold valid indices."""
    n_tracks = len(targets[heads[0]])
    expected = {h: (n_tracks, len(vocabs[h])) if h in MULTI_LABEL_HEADS else (n_tracks,) for h in heads}
    if any(targets[h].shape != expected[h] for h in heads):
        shapes = ", ".join(
            f"{h} {targets[h].shape}" if h in MULTI_LABEL_HEADS else f"{h} {len(targets[h])}" for h in heads
        )
        wanted = ", ".join(f"{expected[h]}" for h in heads if h in MULTI_LABEL_HEADS)
        raise ParameterError(f"track targets disagree: {shapes} (expected {wanted or n_tracks})")
    for h in heads:
        target, vocab = targets[h], vocabs[h]
        if h in SINGLE_LABEL_HEADS and n_tracks and (target.min() < -1 or target.max() >= len(vocab)):
            raise ParameterError(f"{h}_target holds indices outside -1..{len(vocab) - 1}")
    return n_tracks


def _check_segments(segment_track: Any, n_tracks: int) -> tuple[np.ndarray, np.ndarray]:
    """``segment_track`` as intp indices and the tracks that have segments."""
    seg_counts = np.bincount(np.asarray(segment_track, dtype=np.intp), minlength=n_tracks)
    if len(seg_counts) > n_tracks:
        raise ParameterError(f"segment_track refers to track {len(seg_counts) - 1} of {n_tracks}")
    return np.asarray(segment_track).astype(np.intp), seg_counts > 0


def _checked(
    probs: Mapping[str, Any],
    targets: Mapping[str, Any],
    vocabs: Mapping[str, Any],
    segment_track: Any,
    track_ids: Any,
) -> _Inputs:
    heads = _heads_of(probs)
    for what, given in (("target", targets), ("vocabulary", vocabs)):
        missing = [h for h in heads if h not in given]
        if missing:
            raise ParameterError(f"no {what} given for the {', '.join(missing)} head(s)")
    vocab = {h: LevelVocab.coerce(vocabs[h]) for h in heads}
    prob = {h: np.asarray(probs[h], dtype=np.float64) for h in heads}
    target = {
        h: np.asarray(targets[h]) if h in MULTI_LABEL_HEADS else np.asarray(targets[h], dtype=np.int64)
        for h in heads
    }
    for h in heads:
        _check_width(prob[h], vocab[h], h)
    segment_track = np.asarray(segment_track)
    n_segments = len(prob[heads[0]])
    if any(len(prob[h]) != n_segments for h in heads) or len(segment_track) != n_segments:
        lengths = ", ".join(f"{h} {len(prob[h])}" for h in heads)
        raise ParameterError(
            f"segment arrays differ in length: {lengths}, segment_track {len(segment_track)}"
        )
    n_tracks = _check_targets(heads, target, vocab)
    if track_ids is not None:
        track_ids = np.asarray(track_ids)
        if len(track_ids) != n_tracks:
            raise ParameterError(f"{len(track_ids)} track_ids given for {n_tracks} tracks")
    index, has_segments = _check_segments(segment_track, n_tracks)
    return _Inputs(heads, prob, target, vocab, index, has_segments, track_ids, n_tracks, n_segments)


# --- the sections ----------------------------------------------------------------------------------


def _single_label_level(
    data: _Inputs, head: str, avg: TrackAverages, *, top_k: int, n_bins: int, n_pairs: int
) -> dict[str, Any]:
    """The section of a single-label head: tracks by average probability, segments, votes, analyses."""
    probs, target, vocab = data.probs[head], data.targets[head], data.vocabs[head]
    valid = data.has_segments & (target >= 0)
    y_true, y_pred = target[valid], avg.index[valid]
    seg_target = target[data.segment_track]
    seg_valid = seg_target >= 0
    seg_pred = np.argmax(probs, axis=1)
    correct = y_pred == y_true
    confidence = avg.confidence[valid]
    errors = error_analysis(y_true, y_pred, vocab, n_pairs=n_pairs)
    ids = data.track_ids[valid] if data.track_ids is not None else np.flatnonzero(valid)
    errors["confident_errors"] = _confident_errors(y_true, y_pred, confidence, ids, vocab, n_pairs)
    return {
        "n_classes": len(vocab),
        "names": list(vocab.names),
        "genre_ids": list(vocab.genre_ids),
        "root_ids": None if vocab.root_ids is None else list(vocab.root_ids),
        "excluded": {
            "no_target": int((data.has_segments & (target < 0)).sum()),
            "no_segments": int((~data.has_segments).sum()),
        },
        "track": classification_metrics(y_true, y_pred, vocab, probs=avg.mean[valid], k=top_k),
        "segment": classification_metrics(
            seg_target[seg_valid], seg_pred[seg_valid], vocab, probs=probs[seg_valid], k=top_k
        ),
        "voting": _voting(probs, data, valid, y_true, y_pred, vocab, top_k),
        "calibration": calibration(confidence, correct, n_bins=n_bins),
        "confidence": confidence_distribution(confidence, correct),
        "errors": errors,
        "stability": temporal_stability(probs, data.segment_track, avg.index, target=target, vocab=vocab),
    }


def _voting(
    probs: np.ndarray,
    data: _Inputs,
    valid: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    vocab: LevelVocab,
    top_k: int,
) -> dict[str, Any]:
    """Track figures by majority vote of the segments, and how often the vote agrees with the average."""
    votes = track_voting(probs, data.segment_track, data.n_tracks).index[valid]
    result = classification_metrics(y_true, votes, vocab, k=top_k)
    result.pop("per_class")
    result["agreement_with_average"] = number(np.mean(votes == y_pred) if len(y_true) else None)
    return result


def _confident_errors(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    confidence: np.ndarray,
    ids: np.ndarray,
    vocab: LevelVocab,
    n_pairs: int,
) -> list[dict[str, Any]]:
    """The ``n_pairs`` wrong track predictions of highest confidence (ties by position)."""
    wrong = np.flatnonzero(y_pred != y_true)
    worst = wrong[np.lexsort((wrong, -confidence[wrong]))][:n_pairs]
    return [
        {
            "track": ids[i],
            "true": vocab.names[y_true[i]],
            "predicted": vocab.names[y_pred[i]],
            "confidence": number(confidence[i]),
        }
        for i in worst
    ]


def _all_genres_level(
    data: _Inputs,
    mean: np.ndarray,
    track_pred: Mapping[str, np.ndarray],
    *,
    threshold: float,
    thresholds: Any,
    include_top: bool,
) -> dict[str, Any]:
    """The section of the all-genres head: tracks (mean probabilities) and segments, at its thresholds."""
    probs, target, vocab = data.probs["all"], data.targets["all"], data.vocabs["all"]
    has = data.has_segments
    columns = top_columns(data.vocabs["top"].genre_ids, vocab.genre_ids) if include_top else None
    operating = threshold if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    section = {
        "n_labels": len(vocab),
        "names": list(vocab.names),
        "excluded": {"no_segments": int((~has).sum())},
        "track": multilabel_metrics(
            target[has],
            mean[has],
            threshold=operating,
            vocab=vocab,
            top_class=track_pred["top"][has] if include_top else None,
            columns=columns,
        ),
        "segment": multilabel_metrics(
            target[data.segment_track],
            probs,
            threshold=operating,
            top_class=np.argmax(data.probs["top"], axis=1) if include_top else None,
            columns=columns,
        ),
    }
    section["segment"].pop("per_label")
    if thresholds is not None:
        fixed = multilabel_metrics(target[has], mean[has], threshold=threshold)
        fixed.pop("per_label")
        section["track_fixed_threshold"] = fixed
    return section


def _hierarchy(data: _Inputs, track_pred: Mapping[str, np.ndarray], n_pairs: int) -> dict[str, Any]:
    """Whether the predicted medium genres lie under the predicted top genres, of tracks and segments."""
    if "medium" not in data.heads:
        return {"skipped": "the model has no medium head (no sub-genres in training)"}
    if "top" not in data.heads:
        return {"skipped": "the model has no top head"}
    top_vocab, medium_vocab = data.vocabs["top"], data.vocabs["medium"]
    if medium_vocab.root_ids is None:
        return {"skipped": "the medium vocabulary has no root_ids"}
    has = data.has_segments
    return {
        "track": hierarchy_consistency(
            track_pred["top"][has], track_pred["medium"][has], top_vocab, medium_vocab, n_pairs=n_pairs
        ),
        "segment": hierarchy_consistency(
            np.argmax(data.probs["top"], axis=1),
            np.argmax(data.probs["medium"], axis=1),
            top_vocab,
            medium_vocab,
        ),
    }


def _counts(data: _Inputs, sections: Mapping[str, Any], n_defective_files: int) -> dict[str, Any]:
    excluded = {f"{h}_no_target": sections[h]["excluded"]["no_target"] for h in data.single_label}
    if "all" in sections:
        excluded["all_no_labels"] = sections["all"]["track"]["excluded_no_labels"]
    return {
        "tracks": data.n_tracks,
        "tracks_evaluated": int(data.has_segments.sum()),
        "tracks_without_segments": int((~data.has_segments).sum()),
        "segments": data.n_segments,
        "defective_files": int(n_defective_files),
        "excluded": excluded,
    }


# --- everything ----------------------------------------------------------------------------------


def evaluate(
    probs: Mapping[str, Any],
    targets: Mapping[str, Any],
    vocabs: Mapping[str, Any],
    segment_track: Any,
    *,
    threshold: float = 0.5,
    thresholds: Any = None,
    include_top: bool = False,
    top_k: int = 3,
    n_bins: int = 10,
    n_pairs: int = 10,
    n_defective_files: int = 0,
    track_ids: Any = None,
) -> dict[str, Any]:
    """Evaluate a model's heads on tracks and on segments; return every figure as plain JSON.

    Track-level figures aggregate each track's segments by average probability, as inference
    does (:func:`genrekit.evaluate.aggregate.track_average`); segment-level figures score each
    segment against its track's target. Tracks without a target at a level are left out of that
    level and counted, as are tracks without segments.

    Parameters
    ----------
    probs : mapping of head to array, shape (n_segments, n_classes)
        The outputs of the heads the model has, among ``"top"``, ``"medium"`` (softmax) and
        ``"all"`` (sigmoid). A model without a medium head (no sub-genres) gives no ``"medium"``:
        then the results have no ``medium`` section, no ``medium_no_target`` count and a skipped
        ``hierarchy``.
    targets : mapping of head to array
        Per track: the target class index (-1 where masked), shape (n_tracks,), of a single-label
        head; multi-hot targets, shape (n_tracks, n_labels), of ``"all"``. Heads the model lacks
        are ignored.
    vocabs : mapping of head to LevelVocab or compatible (see :meth:`LevelVocab.coerce`)
        The medium vocabulary needs ``root_ids`` for the hierarchy section (skipped without).
    segment_track : array of int, shape (n_segments,)
        Index (into the target arrays) of the track of each segment.
    threshold : float
        Fixed decision threshold of the all-genres head (config ``THRESHOLD``).
    thresholds : array of float, shape (n_all,), optional
        Per-genre thresholds the model was saved with (tuned on validation). When given, the
        all-genres figures use them, and ``all.track_fixed_threshold`` holds the figures at
        ``threshold`` beside them.
    include_top : bool
        The model's all-genres decisions also hold the genre its top head predicts (the
        ``include_top`` the thresholds were chosen with, :func:`genrekit.evaluate.thresholds.decide`);
        the figures at the fixed ``threshold`` beside them never do.
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
        Sections ``counts``, ``settings``, one per head (``top``, ``medium``, ``all``),
        ``hierarchy`` and ``targets``; only plain floats, ints, strings, lists, dicts and None.

    Raises
    ------
    ModelError
        When a head's width does not match its vocabulary.
    ParameterError
        (a ValueError) When the arrays disagree in length or hold out-of-range indices, or a
        head is unknown or lacks its target or vocabulary.
    """
    data = _checked(probs, targets, vocabs, segment_track, track_ids)
    if include_top and not {"top", "all"} <= set(data.heads):
        raise ParameterError("include_top needs the top and the all-genres heads")
    averages = track_averages(data.probs, data.segment_track, data.n_tracks)
    sections: dict[str, Any] = {
        h: _single_label_level(data, h, averages[h], top_k=top_k, n_bins=n_bins, n_pairs=n_pairs)
        for h in data.single_label
    }
    track_pred = {h: averages[h].index for h in data.single_label}
    if "all" in data.heads:
        sections["all"] = _all_genres_level(
            data,
            averages["all"].mean,
            track_pred,
            threshold=threshold,
            thresholds=thresholds,
            include_top=include_top,
        )
    results: dict[str, Any] = {
        "counts": _counts(data, sections, n_defective_files),
        "settings": {
            "threshold": float(threshold),
            "thresholds": "fixed" if thresholds is None else "per genre, tuned on the validation split",
            "include_top": bool(include_top),
            "top_k": top_k,
            "calibration_bins": n_bins,
        },
        **sections,
        "hierarchy": _hierarchy(data, track_pred, n_pairs),
    }
    results["targets"] = performance_targets(results)
    return to_jsonable(results)
