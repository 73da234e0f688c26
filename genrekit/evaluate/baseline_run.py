"""A classical baseline on any dataset: fit on its training and validation tracks, score its test tracks.

What ``baseline.py`` runs, so that a user sees on their own collection whether the trained models
beat the baselines the literature compares against: the features of :data:`FEATURES` (the FMA
paper's MFCC statistics, :mod:`genrekit.evaluate.baseline`, or the musicnn transfer recipe,
:mod:`genrekit.evaluate.transfer_baseline`), one SVM per single-label level (top and medium
genres) fitted on the tracks of the training and validation splits that have a target there,
and the evaluator's figures (:func:`genrekit.evaluate.classification.classification_metrics`) and
README targets on the test split's tracks. The split is the dataset's own (FMA's, the demo's, or
the seeded artist split of a ``folder:``/``csv:`` collection, the one the trainer saves as
``splits.csv`` for the same ``SEED``), so the figures sit beside ``model_evaluation.py``'s. There
is no all-genres head: the Jaccard target reads "n/a".
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from genrekit.datasets import base as datasets
from genrekit.errors import ConfigError
from genrekit.evaluate.baseline import CLASSIFIERS as MFCC_CLASSIFIERS
from genrekit.evaluate.baseline import ClipFeatures, extract_mfcc_features, fit_predict
from genrekit.evaluate.classification import classification_metrics
from genrekit.evaluate.common import to_jsonable
from genrekit.evaluate.metrics import performance_targets
from genrekit.evaluate.transfer_baseline import (
    extract_transfer_features,
    fit_predict_transfer,
    transfer_frontend,
)
from genrekit.fileio import OutputKind, check_output_dir, json_kind, write_json_atomic

if TYPE_CHECKING:
    from genrekit.datasets.interface import Dataset, LabelledDataset
    from genrekit.settings import Settings

log = logging.getLogger(__name__)

FEATURES = ("mfcc", "musicnn")
CLASSIFIERS = ("svm", "svm_balanced")  # both feature sets take these (the MFCC one also logreg)
DESCRIPTION = {
    "mfcc": "MFCC statistics (140) + SVM, the FMA paper's",
    "musicnn": "musicnn max_pool (753, mean over patches) + PCA 128 + SVM, Pons & Serra's transfer recipe",
}
MFCC_SAMPLE_RATE = 22050  # the FMA paper's features.py


def baseline_features(
    settings: Settings, dataset: Dataset, track_ids: np.ndarray, features: str, *, progress: bool = False
) -> ClipFeatures:
    """One row per track of ``track_ids``: MFCC statistics of the first ``DURATION`` seconds, or the
    musicnn max_pool averaged over ``MUSICNN_PATCHES`` patches (cached under ``CACHE_DIR``)."""
    if features == "mfcc":
        return extract_mfcc_features(
            dataset.audio_items(track_ids),
            sample_rate=MFCC_SAMPLE_RATE,
            duration=settings.duration,
            workers=settings.num_workers,
            progress=progress,
            engine=settings.engine,
        )
    if features == "musicnn":
        frontend = transfer_frontend(settings)  # the cache build fetches its weights once
        return extract_transfer_features(
            dataset,
            track_ids,
            settings.cache_dir,
            frontend,
            workers=settings.num_workers,
            progress=progress,
            engine=settings.engine,
        )
    raise ConfigError(f"baseline features {features!r} are not one of {', '.join(FEATURES)}")


def fit_level(
    labelled: LabelledDataset, feats: ClipFeatures, level: str, features: str, classifier: str, seed: int
) -> dict[str, Any] | None:
    """Fit on the training + validation tracks with a target at ``level``, score the test tracks.

    None when the level has fewer than two classes among the training tracks or no test track.
    """
    split = labelled.targets.loc[feats.track_ids, "split"].to_numpy()
    y = getattr(labelled.labels(None, feats.track_ids), level)
    fit = np.isin(split, ("training", "validation")) & (y >= 0)
    test = (split == "test") & (y >= 0)
    if len(np.unique(y[fit])) < 2 or not test.any():
        return None
    x = feats.features
    if features == "musicnn":
        pred, seconds = fit_predict_transfer(classifier, x[fit], y[fit], x[test], seed=seed)
    else:
        pred, seconds = fit_predict(classifier, x[fit], y[fit], x[test], seed=seed)
    vocab = labelled.vocabs[level]
    metrics = classification_metrics(y[test], pred, {"names": vocab.names, "genre_ids": vocab.genre_ids})
    return {"track": metrics, "n_train": int(fit.sum()), "fit_seconds": seconds}


# What an earlier baseline report must look like to be replaced (the output policy of genrekit.fileio).
BASELINE_JSON = json_kind("genrekit baseline report (JSON)", "features")


def report_name(features: str, classifier: str) -> str:
    """The report's file name in the output folder."""
    return f"baseline_{features}_{classifier}.json"


def check_baseline_output(
    output_dir: str | Path, features: str, classifier: str, also: dict[str, OutputKind] | None = None
) -> Path:
    """The output policy for the report folder (and ``also``, e.g. ``run.log``), before any work."""
    return check_output_dir(output_dir, {report_name(features, classifier): BASELINE_JSON, **(also or {})})


def run_baseline(
    settings: Settings,
    *,
    features: str = "musicnn",
    classifier: str = "svm_balanced",
    output_dir: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The baseline of ``features`` + ``classifier`` on the dataset of ``settings``.

    Parameters
    ----------
    settings : Settings
        ``dataset`` (or FMA's ``metadata_dir``/``audio_dir``/``subset``), ``seed`` (the split of
        a collection without one), ``duration`` (MFCC), ``musicnn_patches``, ``pretrained_dir``,
        ``cache_dir`` (musicnn), ``workers``.
    features : str
        One of :data:`FEATURES`.
    classifier : str
        ``svm`` or ``svm_balanced`` (``class_weight="balanced"``; ``logreg`` too for MFCCs).
    output_dir : path, optional
        Where ``baseline_<features>_<classifier>.json`` is written (nothing written when None).
    progress : bool
        Progress bars while extracting features.

    Returns
    -------
    dict
        ``features``, ``classifier``, ``description``, ``dataset``, ``tracks`` (fitted, tested,
        left out), ``top`` and ``medium`` (``{"track": figures}``, absent for a level without
        two classes), ``targets`` (the README's, the all-genres one "n/a") and ``seconds``.
    """
    allowed = MFCC_CLASSIFIERS if features == "mfcc" else CLASSIFIERS
    if features not in FEATURES:
        raise ConfigError(f"baseline features {features!r} are not one of {', '.join(FEATURES)}")
    if classifier not in allowed:
        raise ConfigError(
            f"classifier {classifier!r} for {features} features is not one of {', '.join(allowed)}"
        )
    if output_dir is not None:
        check_baseline_output(output_dir, features, classifier)  # before any work
    started = time.time()
    labelled = datasets.from_settings(settings).load()
    splits = labelled.targets["split"]
    ids = np.sort(labelled.targets.index[splits.isin(["training", "validation", "test"])].to_numpy())
    feats = baseline_features(settings, labelled.dataset, ids, features, progress=progress)
    result: dict[str, Any] = {
        "features": features,
        "classifier": classifier,
        "description": DESCRIPTION[features],
        "dataset": settings.dataset if settings.dataset != "fma" else str(settings.metadata_dir),
        "tracks": {"with_features": len(feats.track_ids), "left_out": len(feats.failures)},
        "seconds": {"features": round(feats.seconds, 1)},
    }
    for level in ("top", "medium"):
        if level not in labelled.heads:
            continue
        figures = fit_level(labelled, feats, level, features, classifier, settings.seed)
        if figures is not None:
            result[level] = figures
            result["tracks"][f"{level}_fitted"] = figures.pop("n_train")
            result["seconds"][f"{level}_fit"] = round(figures.pop("fit_seconds"), 2)
    result["targets"] = performance_targets(result)
    result["seconds"]["total"] = round(time.time() - started, 1)
    if output_dir is not None:
        path = Path(output_dir) / report_name(features, classifier)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, to_jsonable(result))
        result["report"] = str(path)
    return result


def format_result(result: dict[str, Any]) -> list[str]:
    """The lines ``baseline.py`` prints: the figures per level, then the README targets."""
    lines = [f"{result['description']} ({result['classifier']}) on {result['dataset']}"]
    t = result["tracks"]
    lines.append(
        f"tracks with features: {t['with_features']}, left out: {t['left_out']} (defective or missing)"
    )
    for level in ("top", "medium"):
        if level not in result:
            continue
        m = result[level]["track"]
        lines.append(
            f"test {level + ' genre:':<13} balanced accuracy {m['balanced_accuracy']:.3f}, F1 macro "
            f"{m['f1_macro']:.3f}, F1 weighted {m['f1_weighted']:.3f}, accuracy {m['accuracy']:.3f} "
            f"({m['n']} test tracks, fitted on {t[level + '_fitted']})"
        )
    lines.append("README targets (test split, tracks):")
    for row in result["targets"]:
        verdict = "n/a" if row["passed"] is None else ("PASS" if row["passed"] else "FAIL")
        value = "n/a" if row["value"] is None else f"{row['value']:.3f}"
        lines.append(f"  {row['name']:<34} > {row['target']:.2f}   {value:>6}   {verdict}")
    return lines
