"""Cross-validation over artist groups and bootstrap statistics for the balancing study.

:func:`make_artist_folds` (:func:`dataset_folds` for a loaded dataset) assigns every track a test fold so that folds never share an artist
(scikit-learn's ``StratifiedGroupKFold``, stratified by top genre) and carves, inside each fold's
training part, a validation part that shares no artist with the rest either. The fold's tracks.csv
is written by :func:`write_fold_metadata`, so the trainer and the evaluator run on a fold exactly as
on FMA's official split (which stays the default everywhere else).

The statistics work on predictions pooled over the folds (every track tested once):
:func:`scores` computes the study's figures with per-track weights, so a bootstrap resample is a
vector of counts (:func:`bootstrap_counts`) and a fold is a 0/1 mask; the figures agree with
scikit-learn's (tests compare them). :func:`summarize` gives each figure's mean over folds, its
95% bootstrap interval over tracks, and each row's paired difference to a reference row on the
same resamples.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrekit.datasets import fma
from genrekit.errors import ConfigError

if TYPE_CHECKING:
    from genrekit.datasets.base import LabelledDataset

SPLIT_NAMES = ("training", "validation", "test")


# --- folds -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtistFolds:
    """Test folds over artist groups, with a validation part carved in each fold's training part.

    Attributes
    ----------
    track_ids, artist_ids : ndarray of int64, shape (n,)
    test_fold : ndarray of int, shape (n,)
        The fold in which each track is tested (every track exactly once).
    validation : ndarray of bool, shape (n_folds, n)
        ``validation[f]``: the tracks that steer training (early stopping, thresholds) in fold ``f``.
    """

    track_ids: np.ndarray
    artist_ids: np.ndarray
    test_fold: np.ndarray
    validation: np.ndarray

    @property
    def n_folds(self) -> int:
        return int(self.validation.shape[0])

    def split(self, fold: int) -> np.ndarray:
        """``training`` / ``validation`` / ``test`` per track in fold ``fold``."""
        out = np.full(len(self.track_ids), "training", dtype=object)
        out[self.validation[fold]] = "validation"
        out[self.test_fold == fold] = "test"
        return out

    def split_map(self, fold: int) -> dict[int, str]:
        return dict(zip(self.track_ids.tolist(), self.split(fold).tolist(), strict=True))

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_ids": self.track_ids.tolist(),
            "artist_ids": self.artist_ids.tolist(),
            "test_fold": self.test_fold.tolist(),
            "validation": [np.flatnonzero(v).tolist() for v in self.validation],
        }


def make_artist_folds(
    track_ids: Sequence[int],
    artist_ids: Sequence[int],
    strata: Sequence[Any],
    n_folds: int = 5,
    seed: int = 0,
    validation_folds: int = 8,
) -> ArtistFolds:
    """Folds over artist groups: each track tested once, no artist on two sides of any split.

    Parameters
    ----------
    track_ids, artist_ids : sequence of int
        One entry per track.
    strata : sequence
        The class each track is stratified by (its top genre; tracks without one form a stratum).
    n_folds : int
        Test folds (>= 2).
    seed : int
        The same inputs and seed give the same folds.
    validation_folds : int
        Inside each fold's training part, a ``StratifiedGroupKFold`` of this many parts is drawn
        and its first part becomes the validation tracks (about ``1 / validation_folds`` of them).

    Raises
    ------
    ConfigError
        Fewer artists than folds, mismatched lengths, or a fold count below 2.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    tracks = np.asarray(track_ids, dtype=np.int64)
    artists = np.asarray(artist_ids, dtype=np.int64)
    y = np.unique(np.asarray(strata, dtype=str), return_inverse=True)[1]
    if not (len(tracks) == len(artists) == len(y)):
        raise ConfigError("track_ids, artist_ids and strata must have one entry per track")
    if n_folds < 2 or validation_folds < 2:
        raise ConfigError(f"n_folds={n_folds} and validation_folds={validation_folds} must be >= 2")
    if len(np.unique(tracks)) != len(tracks):
        raise ConfigError("track_ids must be unique")
    n_artists = len(np.unique(artists))
    if n_artists < n_folds * 2:
        raise ConfigError(f"{n_artists} artists cannot fill {n_folds} folds with a validation part each")
    test_fold = np.full(len(tracks), -1)
    validation = np.zeros((n_folds, len(tracks)), dtype=bool)
    with warnings.catch_warnings():
        # "The least populated class in y has only k members": expected for the rarest genres.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        outer = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for f, (_, test) in enumerate(outer.split(np.zeros(len(tracks)), y, artists)):
            test_fold[test] = f
        for f in range(n_folds):
            rest = np.flatnonzero(test_fold != f)
            k = min(validation_folds, len(np.unique(artists[rest])))
            inner = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed + 1 + f)
            _, val = next(inner.split(np.zeros(len(rest)), y[rest], artists[rest]))
            validation[f, rest[val]] = True
    return ArtistFolds(tracks, artists, test_fold, validation)


def dataset_folds(
    labelled: LabelledDataset, n_folds: int = 5, seed: int = 0, validation_folds: int = 8
) -> ArtistFolds:
    """:func:`make_artist_folds` over a dataset's tracks (:class:`genrekit.datasets.base.LabelledDataset`).

    Stratified by top genre (tracks without one form a stratum); a track of unknown artist
    (-1) is a group of its own.
    """
    targets = labelled.targets
    ids = targets.index.to_numpy(dtype=np.int64)
    artists = targets["artist"].to_numpy(dtype=np.int64)
    artists = np.where(artists >= 0, artists, -ids - 1)
    return make_artist_folds(
        ids,
        artists,
        targets["top"].astype(str),
        n_folds=n_folds,
        seed=seed,
        validation_folds=validation_folds,
    )


def check_folds(folds: ArtistFolds) -> None:
    """Raise ``ConfigError`` unless every track is tested once and no fold's parts share an artist."""
    if np.any(folds.test_fold < 0) or np.any(folds.test_fold >= folds.n_folds):
        raise ConfigError("a track has no test fold")
    for f in range(folds.n_folds):
        split = folds.split(f)
        parts = [set(folds.artist_ids[split == name].tolist()) for name in SPLIT_NAMES]
        for i in range(3):
            for j in range(i + 1, 3):
                shared = parts[i] & parts[j]
                if shared:
                    raise ConfigError(
                        f"fold {f}: artist {min(shared)} is in both {SPLIT_NAMES[i]} and {SPLIT_NAMES[j]}"
                    )
        if not (split == "validation").any() or not (split == "training").any():
            raise ConfigError(f"fold {f} has an empty training or validation part")


def write_fold_metadata(metadata_dir: str | Path, folds: ArtistFolds, fold: int, out_dir: str | Path) -> Path:
    """A metadata folder for fold ``fold``: tracks.csv with the fold's split, genres.csv copied.

    Returns the folder; tracks outside ``folds`` keep their split in the copy.
    """

    metadata_dir, out_dir = Path(metadata_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(metadata_dir / "genres.csv", out_dir / "genres.csv")
    fma.write_tracks_with_split(metadata_dir / "tracks.csv", out_dir / "tracks.csv", folds.split_map(fold))
    return out_dir


# --- figures with per-track weights ----------------------------------------------------------------


def single_label_scores(
    y_true: np.ndarray, y_pred: np.ndarray, n_classes: int, weights: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro and weighted F1 and per-class recall, with track weights.

    Tracks with ``y_true < 0`` (no label at this level) are left out. With integer weights the
    figures are those of scikit-learn on the tracks repeated that many times: balanced accuracy
    is the mean recall over the classes present in ``y_true``; macro F1 averages over the classes
    present in ``y_true`` or ``y_pred`` (F1 = 0 where undefined); weighted F1 weighs by support.
    ``recall`` is NaN for a class without tracks.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    w = np.ones(len(y_true)) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = (y_true >= 0) & (w > 0)
    cm = np.bincount(
        y_true[keep] * n_classes + y_pred[keep], weights=w[keep], minlength=n_classes * n_classes
    ).reshape(n_classes, n_classes)
    support, predicted, tp = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)
    nan = float("nan")
    if support.sum() == 0:
        return {
            "accuracy": nan,
            "balanced_accuracy": nan,
            "f1_macro": nan,
            "f1_weighted": nan,
            "recall": np.full(n_classes, nan),
        }
    present = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(present, tp / support, nan)
        denom = support + predicted
        f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
    labels = present | (predicted > 0)
    return {
        "accuracy": float(tp.sum() / support.sum()),
        "balanced_accuracy": float(np.mean(recall[present])),
        "f1_macro": float(np.mean(f1[labels])),
        "f1_weighted": float(np.sum(f1 * support) / support.sum()),
        "recall": recall,
    }


def jaccard_per_track(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """``|T & P| / |T | P|`` per track (0 where both are empty, scikit-learn's ``zero_division=0``)."""
    t, p = np.asarray(y_true) > 0, np.asarray(y_pred) > 0
    union = (t | p).sum(axis=1)
    inter = (t & p).sum(axis=1)
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def lrap_per_track(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Label ranking average precision of each track (scikit-learn's definition, ties counted high).

    A track with no relevant label or only relevant labels scores 1, as in scikit-learn.
    """
    y_true, scores = np.asarray(y_true) > 0, np.asarray(scores, dtype=np.float64)
    out = np.ones(len(y_true))
    n_labels = y_true.shape[1]
    for i in range(len(y_true)):
        rel = y_true[i]
        k = int(rel.sum())
        if k == 0 or k == n_labels:
            continue
        s = scores[i]
        sr = s[rel]
        rank = (s[None, :] >= sr[:, None]).sum(axis=1)
        hits = (sr[None, :] >= sr[:, None]).sum(axis=1)
        out[i] = float(np.mean(hits / rank))
    return out


@dataclass
class Predictions:
    """One row's predictions pooled over the folds, for the same tracks in the same order as the others.

    ``all_*`` are None for rows without an all-genres head (the MFCC baselines); ``medium_pred``
    may be None too.
    """

    top_true: np.ndarray
    top_pred: np.ndarray
    medium_true: np.ndarray
    medium_pred: np.ndarray | None = None
    all_true: np.ndarray | None = None
    all_pred: np.ndarray | None = None
    all_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._jaccard = self._lrap = None
        if self.all_true is not None:
            self._labelled = np.asarray(self.all_true).any(axis=1)
            if self.all_pred is not None:
                self._jaccard = jaccard_per_track(self.all_true, self.all_pred)
            if self.all_scores is not None:
                self._lrap = lrap_per_track(self.all_true, self.all_scores)

    def single_label(self) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
        """``(true, predicted)`` classes of each single-label head (predicted None: the row has no such head)."""
        return {"top": (self.top_true, self.top_pred), "medium": (self.medium_true, self.medium_pred)}


# The figures of each single-label head, in the order of METRICS; recall_of is about RECALL_HEAD.
SINGLE_LABEL_FIGURES = {
    "top": ("balanced_accuracy", "f1_macro", "f1_weighted", "accuracy"),
    "medium": ("balanced_accuracy", "f1_macro"),
}
RECALL_HEAD = "top"

METRICS = (
    "top_balanced_accuracy",
    "top_f1_macro",
    "top_f1_weighted",
    "top_accuracy",
    "medium_balanced_accuracy",
    "medium_f1_macro",
    "all_jaccard",
    "all_lrap",
)


def scores(
    pred: Predictions,
    n_top: int,
    n_medium: int,
    recall_of: Sequence[int] = (),
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """The study's figures of one row with per-track ``weights`` (None: every track once).

    All-genres figures are over the tracks with at least one genre label (Jaccard at the model's
    thresholds, samples average; LRAP). ``recall_of``: top classes whose recall is reported as
    ``recall_<index>``.
    """
    w = np.ones(len(pred.top_true)) if weights is None else np.asarray(weights, dtype=np.float64)
    n_classes = {"top": n_top, "medium": n_medium}
    out: dict[str, float] = {}
    for head, (y_true, y_pred) in pred.single_label().items():
        figures = None if y_pred is None else single_label_scores(y_true, y_pred, n_classes[head], w)
        for name in SINGLE_LABEL_FIGURES[head]:
            out[f"{head}_{name}"] = float("nan") if figures is None else figures[name]
        if head == RECALL_HEAD:
            for c in recall_of:
                out[f"recall_{c}"] = float(figures["recall"][c])
    for name, values in (("all_jaccard", pred._jaccard), ("all_lrap", pred._lrap)):
        if values is None:
            out[name] = float("nan")
            continue
        wl = w * pred._labelled
        out[name] = float(np.dot(wl, values) / wl.sum()) if wl.sum() > 0 else float("nan")
    return out


# --- bootstrap ----------------------------------------------------------------------------------------


def bootstrap_counts(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """``(n_boot, n)`` counts: how often each track is drawn in each resample of ``n`` tracks with replacement."""
    if n <= 0 or n_boot <= 0:
        raise ConfigError(f"n={n} tracks and n_boot={n_boot} resamples must be > 0")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(row, minlength=n) for row in idx]).astype(np.float64)


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` percentile interval of bootstrap values (NaN values dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


@dataclass
class Figure:
    """One figure of one row: mean over folds, pooled value, 95% bootstrap interval over tracks."""

    mean: float
    pooled: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "pooled": self.pooled, "low": self.low, "high": self.high}


def summarize(
    rows: Mapping[str, Predictions],
    test_fold: np.ndarray,
    n_top: int,
    n_medium: int,
    reference: str,
    recall_of: Sequence[int] = (),
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    against: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """Every row's figures and its paired difference to ``reference`` (and to each row of ``against``).

    Returns ``{row: {"value": {metric: Figure}, "difference": {metric: Figure}, "difference_to":
    {other: {metric: Figure}}}}``. ``value``: the mean of the per-fold figures, the figure of the
    pooled predictions, and the percentile interval of the mean over folds when the tracks are
    resampled ``n_boot`` times (each resample's tracks scored in their own folds, so the interval
    is about the same statistic as the mean it brackets). ``difference``: the row minus
    ``reference``, per fold and then averaged, on the same resamples for both rows (paired). The
    reference row has no difference; ``difference_to`` holds the same for each row of ``against``.
    """
    test_fold = np.asarray(test_fold)
    folds = np.unique(test_fold)
    n = len(test_fold)
    for key, pred in rows.items():
        if len(pred.top_true) != n:
            raise ConfigError(f"row {key}: {len(pred.top_true)} tracks, the folds have {n}")
    masks = [(test_fold == f).astype(float) for f in folds]

    def per_fold(pred, w):
        return [scores(pred, n_top, n_medium, recall_of, w * m) for m in masks]

    ones = np.ones(n)
    fold_scores = {key: per_fold(pred, ones) for key, pred in rows.items()}
    pooled = {key: scores(pred, n_top, n_medium, recall_of) for key, pred in rows.items()}
    counts = bootstrap_counts(n, n_boot, seed)
    boot = {key: [per_fold(pred, w) for w in counts] for key, pred in rows.items()}
    names = list(pooled[reference])
    out: dict[str, dict[str, Any]] = {}

    def column(per_folds, m):
        return np.array([s[m] for s in per_folds])

    def difference(key, ref, m):
        d = column(fold_scores[key], m) - column(fold_scores[ref], m)
        boot_d = [np.nanmean(column(b, m) - column(r, m)) for b, r in zip(boot[key], boot[ref], strict=True)]
        lo, hi = percentile_interval(boot_d, level)
        return Figure(float(np.nanmean(d)), pooled[key][m] - pooled[ref][m], lo, hi)

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Mean of empty slice", category=RuntimeWarning)
        for key in rows:
            value = {}
            for m in names:
                lo, hi = percentile_interval([np.nanmean(column(b, m)) for b in boot[key]], level)
                value[m] = Figure(float(np.nanmean(column(fold_scores[key], m))), pooled[key][m], lo, hi)
            diff = {m: difference(key, reference, m) for m in names} if key != reference else {}
            to = {
                ref: {m: difference(key, ref, m) for m in names}
                for ref in against
                if ref in rows and ref != key
            }
            out[key] = {"value": value, "difference": diff, "difference_to": to}
    return out
