"""The figures of the validation split: the metrics that steer training, the tuned thresholds.

:func:`validation_metrics` runs after every epoch (:class:`genrekit.train.callbacks.ValidationMetrics`)
and gives the monitored figures; :func:`tune_all_thresholds` chooses the all-genres head's
thresholds once training has ended.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from genrekit.datasets.labels import EncodedLabels
from genrekit.evaluate.aggregate import track_mean
from genrekit.evaluate.thresholds import choose_thresholds, fixed_thresholds
from genrekit.train.data import softmax_heads
from genrekit.train.pipeline import predict_segments

if TYPE_CHECKING:
    from genrekit.settings import Settings

log = logging.getLogger("genrekit.train.run")  # the trainer's log, as when these lived in run.py


def validation_metrics(
    probs: dict[str, np.ndarray],
    segment_track: np.ndarray,
    labels: EncodedLabels,
    threshold: float,
    loss_weights: dict[str, float] | None = None,
) -> dict[str, float]:
    """Track-level metrics used to steer training (computed with scikit-learn).

    ``val_score`` combines the heads in ``probs``, weighted like their losses: the top and medium heads'
    balanced accuracy and the all-genres head's label ranking average precision (LRAP: threshold-free,
    so the score does not depend on the threshold tuned after training). It is the default
    ``MONITOR``; every figure is logged, and any of them can be monitored instead.
    """
    from sklearn.metrics import (
        balanced_accuracy_score,
        f1_score,
        jaccard_score,
        label_ranking_average_precision_score,
    )


    n = len(labels)
    out = {}
    for level in softmax_heads(probs):
        target = getattr(labels, level)
        known = target >= 0
        pred = track_mean(probs[level], segment_track, n).argmax(axis=1)
        if known.any():
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
                out[f"val_{level}_balanced_accuracy"] = float(
                    balanced_accuracy_score(target[known], pred[known])
                )
            out[f"val_{level}_f1_macro"] = float(
                f1_score(target[known], pred[known], average="macro", zero_division=0)
            )
        else:
            out[f"val_{level}_balanced_accuracy"] = out[f"val_{level}_f1_macro"] = 0.0
    all_mean = track_mean(probs["all"], segment_track, n)
    all_pred = (all_mean > threshold).astype(np.uint8)  # as evaluation
    out["val_all_jaccard"] = float(jaccard_score(labels.all, all_pred, average="samples", zero_division=0))
    has = labels.all.any(axis=1)
    out["val_all_lrap"] = (
        float(label_ranking_average_precision_score(labels.all[has], all_mean[has])) if has.any() else 0.0
    )
    w = loss_weights or {"top": 1.0, "medium": 1.0, "all": 1.0}
    parts = {level: out[f"val_{level}_balanced_accuracy"] for level in softmax_heads(probs)}
    parts["all"] = out["val_all_lrap"]
    total = sum(w[k] for k in parts)
    out["val_score"] = float(sum(w[k] * v for k, v in parts.items()) / total) if total > 0 else 0.0
    return out


def tune_all_thresholds(
    model: Any,
    cache: Any,
    labels: EncodedLabels,
    settings: Settings,
    pos_weight: np.ndarray | None = None,
    columns: np.ndarray | None = None,
) -> dict[str, Any]:
    """Thresholds of the all-genres head, chosen on the validation split's tracks.

    Returns the ``thresholds`` section of the training config (see
    :func:`genrekit.evaluate.thresholds.choose_thresholds`; ``pos_weight`` is what the head was trained
    with, None without class weights; ``columns`` (:func:`genrekit.evaluate.thresholds.top_columns`) lets
    it try ``include_top``); with ``TUNE_THRESHOLDS`` off, every genre gets ``settings.threshold``.
    """

    n_all = labels.all.shape[1]
    if not settings.tune_thresholds:
        return fixed_thresholds(n_all, settings.threshold)
    probs, seg_track = predict_segments(
        model, cache, labels.track_ids, batch_size=settings.inference_batch_size
    )
    mean = track_mean(probs["all"], seg_track, len(labels))
    top_class = None
    if columns is not None:
        top_class = np.argmax(np.nan_to_num(track_mean(probs["top"], seg_track, len(labels))), axis=1)
    result = choose_thresholds(
        labels.all,
        mean,
        pos_weight=pos_weight,
        default=settings.threshold,
        top_class=top_class,
        columns=columns,
    )
    nan = float("nan")
    log.info(
        "all-genres thresholds chosen on %d validation tracks: t %.2f, corrected for each genre's "
        "positive weight (%.2f to %.3f)%s; validation Jaccard %.3f (thresholds alone %.3f; at %.2f: %.3f)",
        result["n_tracks"],
        result["t"],
        min(result["all"]),
        max(result["all"]),
        ", plus the top head's genre" if result["include_top"] else "",
        nan if result["jaccard"] is None else result["jaccard"],
        nan if result["jaccard_thresholds_only"] is None else result["jaccard_thresholds_only"],
        settings.threshold,
        nan if result["jaccard_at_default"] is None else result["jaccard_at_default"],
    )
    return result
