"""Balancing study: every balancing method against none, cross-validated over artist groups.

Run from the repository root::

    python benchmarks/bench_balancing.py            # the full study on a 2,000-track demo dataset
                                                    # (rows 1-8 about 2 h on 2 cores, estimated;
                                                    # rows 9-10 ~1.3 h more, measured); writes
                                                    # docs/results.md and docs/results_recall.png
    python benchmarks/bench_balancing.py --rows 5 8a 8b 9 11 12 --results docs/results_models.md
                                                    # the model rows against the default CNN
    python benchmarks/bench_balancing.py --quick    # the smoke test (< 10 min on 2 cores); writes
                                                    # <work-dir>/results.md, never docs/

On real FMA (fma_medium, where the paper's SVM reaches about 63% top-genre accuracy), on FMA's
official split (one test split, no folds)::

    python benchmarks/bench_balancing.py \\
        --metadata_dir fma_data/extracted/metadata/fma_metadata \\
        --audio_dir fma_data/extracted/fma_medium/fma_medium --subset medium \\
        --width 1.0 --epochs 100 --patience 15 --lr_patience 5 --segments 10 --duration 30 \\
        --results runs/bench_balancing_fma_medium/results.md

Rows 1-6 train the toolkit's model with the project's trainer (:func:`genrekit.train.run.train`),
each with one combination of the four balancing switches; row 7 adjusts row 1's model after
training (:func:`genrekit.train.balancing.posthoc_logit_adjustment`); rows 8a-b are the FMA paper's
MFCC statistics + SVM (:mod:`genrekit.evaluate.baseline`), top and medium genres; row 9 trains the same
heads and balancing as row 5 on frozen musicnn embeddings (``--backbone musicnn``) and row 10
fine-tunes musicnn from row 9's run of the same fold (``--fine_tune_from``); row 11 trains the
spectrogram transformer (``--backbone ast``) with row 5's balancing and row 12 averages rows 5's and
9's track probabilities fold by fold (an ensemble, no training). Every row is tested
on the tracks all requested front ends read. On the demo dataset
every row runs on the same ``--folds`` folds over artist groups (:mod:`genrekit.evaluate.study`): every
track is tested once, and each figure is the mean over folds with a 95% bootstrap interval over
the pooled tracks; each row is compared with row 1 on the same folds and the same resamples.
Every run keeps its folder under ``--work_dir``: a rerun reuses finished runs, predictions and
features (``--retrain`` trains again).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_balancing")

# Profiles: every figure the study depends on, so the run is reproducible from its name.
# The full profile is sized for <= 2 h on 2 cores, estimated (not run here): the study of
# 2026-11-25 measured 19-24 s per epoch on this machine for 1,596-track epochs at width 0.125,
# 3 segments of a 5 s clip; a fold's training part here has ~1,396 tracks (~2,360 per epoch with
# the absolute sampling thresholds of rows 3 and 5), and --quick measured ~15-30 s of fixed cost
# per run. 20 runs x (8 x ~19 s + 15 s) + 10 runs x (8 x ~31 s + 15 s) + data (~6 min generation,
# ~2 min MFCC) ~ 110 min at most (early stopping shortens it).
PROFILES: dict[str, dict[str, Any]] = {
    "full": dict(
        tracks=2000,
        max_imbalance=20.0,  # FMA's top-genre shape, capped: the 5 smallest genres get >= 15 tracks
        clip_seconds=5.0,
        segments=3,
        width=0.125,
        epochs=8,
        patience=3,
        lr_patience=2,
        # The quick start's small-model recipe (measured on the demo, issue 13): the README's dropout
        # (0.25 / 0.5) starves a model of width 0.125; batches of 16, cosine decay from 3e-3.
        learning_rate=3e-3,
        lr_schedule="cosine",
        batch_size=16,
        conv_dropout=0.1,
        dense_dropout=0.2,
        folds=5,
        n_boot=1000,
        sampling_thresholds=None,  # config.py's SAMPLING_THRESHOLDS
        work_dir="/tmp/genrekit_bench_balancing",
        results=str(REPO / "docs" / "results.md"),
    ),
    "quick": dict(
        tracks=240,
        max_imbalance=10.0,
        clip_seconds=3.0,
        segments=2,
        width=0.0625,
        epochs=2,
        patience=2,
        lr_patience=1,
        learning_rate=1e-3,
        folds=2,
        n_boot=200,
        # FMA-sized absolute thresholds would draw ~14x the training tracks per epoch at this size
        sampling_thresholds="relative",
        work_dir="/tmp/genrekit_bench_balancing_quick",
        results=None,
    ),
}
DEMO_SEED = 0  # the demo dataset's seed (the same for every row)
FOLD_SEED = 0  # seed of the folds over artist groups
BASELINE_SEED = 0
BOOT_SEED = 0
MIN_SMALL_TRACKS = 15  # evaluated tracks each of the five smallest top genres needs, pooled
N_SMALL = 5
REFERENCE = "1"
#: The README's default (the three switches together): a row must beat it to become config.py's default.
DEFAULT_ROW = "5"
#: The figure that decides the default: the toolkit's headline, top balanced accuracy.
DECIDING = "top_balanced_accuracy"
POWER_TAU = 1.0  # tau of rows 6 and 7 (the paper's)
# Row 10's epochs: each runs musicnn forward over every patch (~150 s an epoch of the full profile on
# 2 cores, against ~20 s for the heads alone), so 4 of them (1 of warm-up) keep the row under ~1 h.
FINE_TUNE_EPOCHS = 4


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    kind: str  # "nn": trained model; "posthoc": row 1's model adjusted; "baseline": MFCC + SVM;
    # "ensemble": the weighted mean of other rows' track probabilities, fold by fold (no training)
    switches: tuple[bool, bool, bool, bool] = (False, False, False, False)  # cw, ws, focal, logit adj.
    classifier: str = ""
    backbone: str = "cnn"  # "musicnn": the heads on frozen musicnn embeddings; "ast": the transformer
    fine_tune: bool = False  # train musicnn and the heads of row 9's run of the same fold together
    epochs: int = 0  # maximum epochs of this row (0: the profile's)
    members: tuple[str, ...] = ()  # "ensemble": the rows it averages, with equal weights


ROWS: tuple[Row, ...] = (
    Row("1", "none (cross-entropy, uniform sampling)", "nn"),
    Row("2", "class weights", "nn", (True, False, False, False)),
    Row("3", "weighted sampling", "nn", (False, True, False, False)),
    Row("4", "focal loss", "nn", (False, False, True, False)),
    Row("5", "the three together (README default)", "nn", (True, True, True, False)),
    Row("6", "logit-adjusted cross-entropy (tau 1)", "nn", (False, False, False, True)),
    Row("7", "post-hoc logit adjustment of row 1's model (tau 1)", "posthoc"),
    Row("8a", "MFCC statistics + SVM (RBF)", "baseline", classifier="svm"),
    Row("8b", "MFCC statistics + SVM (RBF), class_weight='balanced'", "baseline", classifier="svm_balanced"),
    Row(
        "9",
        "musicnn frozen + heads (README default balancing)",
        "nn",
        (True, True, True, False),
        backbone="musicnn",
    ),
    Row(
        "10",
        "musicnn fine-tuned from row 9 (mid end + back end, LR 1e-5)",
        "nn",
        (True, True, True, False),
        backbone="musicnn",
        fine_tune=True,
        epochs=FINE_TUNE_EPOCHS,
    ),
    Row(
        "11",
        "spectrogram transformer (AST, README default balancing)",
        "nn",
        (True, True, True, False),
        backbone="ast",
    ),
    Row(
        "12",
        "ensemble: mean of rows 5 (CNN) and 9 (musicnn heads)",
        "ensemble",
        members=("5", "9"),
    ),
)
# Row 10 starts from row 9's heads, fold by fold; an ensemble row needs its members.
REQUIRES: dict[str, tuple[str, ...]] = {"10": ("9",), "12": ("5", "9")}

# Issue 26: the musicnn literature's transfer baseline (rows 13a-b: Pons & Serra's max_pool + PCA
# 128 + RBF SVM, genrekit.evaluate.transfer_baseline) and heads variants of row 9 (rows 14-15),
# every one compared with row 13b on the same folds (transfer_lines). They add to a finished study:
# rows 13a-b need one musicnn max_pool cache (the one row 14 trains on) and SVM fits of seconds.
TRANSFER_ROWS: tuple[Row, ...] = (
    Row(
        "13a",
        "musicnn max_pool + PCA 128 + SVM (RBF) (Pons & Serra)",
        "baseline",
        classifier="svm",
        backbone="musicnn",
    ),
    Row(
        "13b",
        "musicnn max_pool + PCA 128 + SVM (RBF), class_weight='balanced'",
        "baseline",
        classifier="svm_balanced",
        backbone="musicnn",
    ),
    Row(
        "14",
        "row 9 on max_pool (753) instead of the penultimate layer",
        "nn",
        (True, True, True, False),
        backbone="musicnn",
    ),
    Row(
        "15",
        "row 14, at most 24 epochs, early-stopping patience 6",
        "nn",
        (True, True, True, False),
        backbone="musicnn",
    ),
)
ROWS += TRANSFER_ROWS
#: Settings of a heads row on top of row 9's (:func:`musicnn_overrides`). Chosen by 3-fold CV on a
#: 600-track demo (5-s clips, cap 20x; top balanced accuracy, paired to row 9): max_pool +0.076
#: [+0.02, +0.14], and 24 epochs with patience 6 on top +0.089 [+0.02, +0.15] (row 9 stopped after
#: 5-8 epochs, its best at 2-6). No gain, in the means: relative sampling thresholds (-0.038 on row
#: 9, -0.004 with 24 epochs), dropout 0.5 on row 14 (+0.007, all-genres Jaccard -0.08), 512 units (-0.023).
#: Rerun on 5 folds of the same demo: row 14 +0.041 [+0.01, +0.11] over row 9 and +0.024 [+0.00, +0.05]
#: over row 13b; row 15 +0.030 [-0.00, +0.09] over row 9, all-genres Jaccard +0.087 [+0.06, +0.11].
HEADS_VARIANTS: dict[str, dict[str, Any]] = {
    "14": {"musicnn_output": "max_pool"},
    "15": {"musicnn_output": "max_pool", "num_epochs": 24, "patience": 6},
}
#: The transfer baseline the heads must beat: every row's paired difference to it is printed.
TRANSFER_REFERENCE = "13b"
#: The heads recipe the variants change: their paired differences to it are printed too.
HEADS_REFERENCE = "9"
COLUMNS = (
    ("top_balanced_accuracy", "top bal. acc."),
    ("top_f1_macro", "top F1 macro"),
    ("top_f1_weighted", "top F1 weighted"),
    ("top_accuracy", "top acc."),
    ("medium_balanced_accuracy", "medium bal. acc."),
    ("medium_f1_macro", "medium F1 macro"),
    ("all_jaccard", "all Jaccard"),
    ("all_lrap", "all LRAP"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the small profile (smoke test, < 10 min)")
    parser.add_argument("--work_dir", help="datasets, caches and run folders (default: a folder in /tmp)")
    parser.add_argument(
        "--results",
        help="Markdown results file (PNG beside it); default docs/results.md "
        "for the full profile, <work-dir>/results.md for --quick",
    )
    parser.add_argument("--metadata_dir", help="real FMA metadata folder (default: generate a demo dataset)")
    parser.add_argument("--audio_dir", help="real FMA audio folder (with --metadata_dir)")
    parser.add_argument("--subset", default=None, help="FMA subset (default: large, i.e. every demo track)")
    parser.add_argument("--tracks", type=int, help="demo dataset size")
    parser.add_argument(
        "--max_imbalance", type=float, help="demo: cap of the largest / smallest top genre's share"
    )
    parser.add_argument("--clip_seconds", type=float, help="demo clip length in seconds")
    parser.add_argument("--duration", type=float, help="seconds of audio used per clip (default: the clip)")
    parser.add_argument("--segments", type=int, help="segments per clip (NUM_SEGMENTS)")
    parser.add_argument("--width", type=float, help="width factor of the model (WIDTH_FACTOR)")
    parser.add_argument("--epochs", type=int, help="maximum epochs, the same for every row")
    parser.add_argument("--patience", type=int, help="early-stopping patience, the same for every row")
    parser.add_argument("--lr_patience", type=int, help="epochs without improvement before the LR is halved")
    parser.add_argument("--learning_rate", type=float, help="Adam learning rate, the same for every row")
    parser.add_argument(
        "--folds",
        type=int,
        help="folds over artist groups (demo default 5, --quick 2); 0 = the dataset's official split "
        "(the default with --metadata_dir)",
    )
    parser.add_argument("--n_boot", type=int, help="bootstrap resamples of the tracks")
    parser.add_argument(
        "--sampling_thresholds",
        choices=("absolute", "relative"),
        help="weighted sampling's thresholds (default: config.py's; --quick: relative)",
    )
    parser.add_argument("--rows", nargs="+", help="only these rows (e.g. 1 5 8b); row 1 always runs")
    parser.add_argument("--workers", type=int, default=0, help="processes for features (0 = all cores)")
    parser.add_argument("--retrain", action="store_true", help="train again even where a finished run exists")
    return parser


# --- data ------------------------------------------------------------------------------------------


def prepare_dataset(args: argparse.Namespace, work: Path) -> tuple[str, str, dict[str, Any]]:
    """``(metadata_dir, audio_dir, description)``: the real FMA folders, or a demo dataset made now."""
    if args.metadata_dir or args.audio_dir:
        if not (args.metadata_dir and args.audio_dir):
            raise SystemExit("error: --metadata_dir and --audio_dir go together")
        return args.metadata_dir, args.audio_dir, {"kind": "fma", "generation_seconds": 0.0}
    from genrekit.datasets.demo.writer import write_demo_dataset

    started = time.time()
    cap = f"_cap{args.max_imbalance:g}" if args.max_imbalance else ""
    root = work / f"demo_{args.tracks}x{args.clip_seconds:g}s_22k_mono{cap}"
    info = write_demo_dataset(
        root,
        n_tracks=args.tracks,
        clip_seconds=args.clip_seconds,
        seed=DEMO_SEED,
        workers=args.workers or None,
        sample_rate=22050,
        channels=1,
        progress=sys.stderr.isatty(),
        max_imbalance=args.max_imbalance or None,
    )
    desc = {
        "kind": "demo",
        "root": root.name,
        "tracks": info.n_tracks,
        "clip_seconds": info.clip_seconds,
        "max_imbalance": args.max_imbalance,
        "sample_rate": 22050,
        "channels": 1,
        "seed": DEMO_SEED,
        "generation_seconds": round(time.time() - started, 1),
    }
    return str(info.metadata_dir), str(info.audio_dir), desc


def dataset_tag(metadata_dir: str, audio_dir: str, subset: str | None) -> str:
    """A folder name for everything made from one dataset (demo audio folders share a name)."""
    key = f"{Path(metadata_dir).resolve()}|{Path(audio_dir).resolve()}|{subset}"
    return f"{Path(metadata_dir).resolve().parent.name}_{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def base_overrides(
    args: argparse.Namespace, metadata_dir: str, audio_dir: str, cache_dir: Path
) -> dict[str, Any]:
    values = {
        "metadata_dir": metadata_dir,
        "audio_dir": audio_dir,
        "cache_dir": str(cache_dir),
        "subset": args.subset,
        "duration": args.duration,
        "num_segments": args.segments,
        "width_factor": args.width,
        "num_epochs": args.epochs,
        "patience": args.patience,
        "lr_patience": args.lr_patience,
        "learning_rate": args.learning_rate,
        "lr_schedule": getattr(args, "lr_schedule", None),
        "batch_size": getattr(args, "batch_size", None),
        "conv_dropout": getattr(args, "conv_dropout", None),
        "dense_dropout": getattr(args, "dense_dropout", None),
        "workers": args.workers,
        "logit_adjustment_tau": POWER_TAU,
        "sampling_thresholds": args.sampling_thresholds,
    }
    return {k: v for k, v in values.items() if v is not None}


@dataclass
class Fold:
    """One repetition: its metadata folder (the split it trains on) and its split of every track."""

    index: int
    metadata_dir: str
    split: dict[int, str]

    def ids(self, *names: str) -> np.ndarray:
        return np.array(sorted(t for t, s in self.split.items() if s in names), dtype=np.int64)


def make_folds(args, processed, metadata_dir: str, study: Path) -> tuple[list[Fold], dict[str, Any]]:
    """The folds over artist groups (``--folds`` >= 2) or FMA's official split as one fold (0)."""
    from genrekit.evaluate.study import check_folds, dataset_folds, write_fold_metadata

    targets = processed.targets
    if args.folds == 0:
        split = dict(zip(targets.index.tolist(), targets["split"].astype(str).tolist(), strict=True))
        return [Fold(0, metadata_dir, split)], {"kind": "official"}
    folds = dataset_folds(processed, n_folds=args.folds, seed=FOLD_SEED)
    check_folds(folds)
    (study / "folds.json").write_text(json.dumps(folds.to_dict()), encoding="utf-8")
    out = []
    for f in range(folds.n_folds):
        folder = write_fold_metadata(metadata_dir, folds, f, study / f"fold{f}" / "metadata")
        out.append(Fold(f, str(folder), folds.split_map(f)))
    return out, {"kind": "artist folds", "n_folds": folds.n_folds, "seed": FOLD_SEED}


# --- runs --------------------------------------------------------------------------------------------


def nn_settings(row: Row, overrides: dict[str, Any], fold: Fold, study: Path | None = None):
    from genrekit.settings import Settings

    cw, ws, fl, la = row.switches
    extra: dict[str, Any] = {}
    if row.backbone == "musicnn":
        extra = musicnn_overrides(overrides)
    elif row.backbone == "ast":
        extra = dict(AST_OVERRIDES)
    extra.update(HEADS_VARIANTS.get(row.key, {}))
    if row.fine_tune:
        extra["fine_tune_from"] = str(run_folder(study, REQUIRES[row.key][0], fold))
    if row.epochs:
        extra["num_epochs"] = row.epochs
    return Settings.build(
        None,
        {
            **overrides,
            "metadata_dir": fold.metadata_dir,
            "use_class_weights": cw,
            "use_weighted_sampling": ws,
            "use_focal_loss": fl,
            "use_logit_adjustment": la,
            **extra,
        },
    )


def run_folder(study: Path | None, key: str, fold: Fold) -> Path:
    if study is None:
        raise ValueError(f"row {key}'s run folder needs the study folder")
    return study / "runs" / f"row{key}_fold{fold.index}"


def musicnn_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """Row 9: heads on MSD_musicnn's penultimate layer, one 3-s patch per 3 s of the clip.

    The layer is named: rows 9-10 keep the one they were measured with (MUSICNN_OUTPUT's default
    became max_pool after rows 14-15).
    """
    return {
        "backbone": "musicnn",
        "musicnn_output": "penultimate",
        "musicnn_patches": max(1, int(overrides.get("duration", 30.0) // 3)),
        "learning_rate": 1e-3,  # Adam's usual rate for a small dense head (the CNN rows keep theirs)
    }


# Row 11: the quick start's AST recipe on the demo (learning rate chosen on validation, issue 25);
# every other setting is the CNN rows' (AST_* are settings.py's defaults).
AST_OVERRIDES = {"backbone": "ast", "learning_rate": 1e-3}


def predict_test_tracks(run_dir: Path, config: dict[str, Any], test_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Track-level probabilities of a finished run on its fold's test tracks (saved, then reused)."""
    path = run_dir / "test_predictions.npz"
    model_path = run_dir / config["model_file"]
    if path.is_file() and path.stat().st_mtime >= model_path.stat().st_mtime:
        with np.load(path) as z:
            saved = {k: z[k] for k in z.files}
        if np.array_equal(saved["track_ids"], test_ids):
            return saved
    from genrekit.evaluate.aggregate import track_mean
    from genrekit.evaluate.thresholds import thresholds_of
    from genrekit.features.cache import FeatureCache
    from genrekit.models.io import load_model
    from genrekit.train.pipeline import predict_segments
    from genrekit.train.run_config import check_model, frontend_of

    model = load_model(model_path)
    check_model(model, config, model_path, run_dir / "balanced_training_config.json")
    cache = FeatureCache.open(config["data"]["cache_dir"], frontend_of(config))
    try:
        ids = cache.available(test_ids)
        if len(ids) != len(test_ids):
            raise SystemExit(f"error: {run_dir}: {len(test_ids) - len(ids)} test tracks have no features")
        probs, seg = predict_segments(
            model, cache, ids, batch_size=config["settings"]["inference_batch_size"]
        )
    finally:
        cache.close()
    vocab = config["vocabularies"]
    out = {
        "track_ids": ids,
        **{level: track_mean(probs[level], seg, len(ids)) for level in ("top", "medium", "all")},
        **{
            f"{level}_ids": np.asarray(vocab[level]["genre_ids"], np.int64)
            for level in ("top", "medium", "all")
        },
        "thresholds": thresholds_of(config, len(vocab["all"]["genre_ids"])),
    }
    tmp = run_dir / ".test_predictions.tmp.npz"
    np.savez(tmp, **out)
    os.replace(tmp, path)
    return out


def run_nn_rows(rows, folds, overrides, study: Path, usable, retrain: bool) -> dict[str, dict[int, Any]]:
    """Train (or reuse) every model row on every fold, fold by fold; returns {row: {fold: result}}."""
    import keras

    from genrekit.train.run import train

    out: dict[str, dict[int, Any]] = {}
    for fold in folds:  # fold by fold: a study cut short has whole folds to compare
        test_ids = fold_ids(fold, usable, "test")
        for row in rows:
            run_dir = run_folder(study, row.key, fold)
            print(f"[fold {fold.index}, row {row.key}] {row.label}", flush=True)
            keras.backend.clear_session()
            if retrain:
                (run_dir / "test_predictions.npz").unlink(missing_ok=True)
            config = train(nn_settings(row, overrides, fold, study), run_dir, retrain=retrain)
            pred = predict_test_tracks(run_dir, config, test_ids)
            hist = config["history"]
            out.setdefault(row.key, {})[fold.index] = {
                "pred": pred,
                "seconds": float(hist["seconds"]),
                "epochs": f"{hist['best_epoch']}/{hist['epochs_run']}",
                "priors": config["balancing"].get("priors"),
                "epoch_top_counts": config["balancing"].get("epoch_top_counts"),
                "device": config.get("device"),
            }
            print(
                f"[fold {fold.index}, row {row.key}] {hist['seconds']:.0f} s, epochs {hist['best_epoch']}/"
                f"{hist['epochs_run']}",
                flush=True,
            )
    return out


def usable_by_every_row(rows, overrides, fold: Fold, study: Path, processor, processed, usable) -> np.ndarray:
    """The tracks every row's front end reads: each row is tested on the same tracks.

    A front end may leave out other files than the log-mel segments do (musicnn needs 3 s of
    audio); each row still trains on every track its own front end reads.
    """
    from genrekit.train.run import BalancedGenreProcessor

    seen = {processor.frontend()}
    for row in rows:
        if row.kind != "nn":
            continue
        settings = nn_settings(row, overrides, fold, study)
        other = BalancedGenreProcessor(settings)
        frontend = other.frontend()
        if frontend in seen:
            continue
        seen.add(frontend)
        cache = other.extract_features(processed, cache_dir=settings.cache_dir)
        ids = np.asarray(cache.track_ids)
        cache.close()
        left = int((~np.isin(usable, ids)).sum())
        print(
            f"{frontend.cache_name()}: {len(ids)} tracks; {left} more left out of every row's test",
            flush=True,
        )
        usable = usable[np.isin(usable, ids)]
    return usable


def fold_ids(fold: Fold, usable: np.ndarray, *names: str) -> np.ndarray:
    """The fold's tracks in the named parts that have features."""
    ids = fold.ids(*names)
    return ids[np.isin(ids, usable)]


def fit_rows(rows, folds, feats, labels, usable, fit_predict) -> dict[str, dict[int, Any]]:
    """Per fold and row, ``fit_predict`` (row.classifier, features, labels, test features) fitted on
    the training and validation tracks for the top and the medium genre; the test tracks predicted."""
    out: dict[str, dict[int, Any]] = {}
    for fold in folds:
        tr = np.isin(feats.track_ids, fold.ids("training", "validation"))
        te = np.isin(feats.track_ids, fold_ids(fold, usable, "test"))
        for row in rows:
            pred, seconds = {"track_ids": feats.track_ids[te]}, 0.0
            for level in ("top", "medium"):
                y = getattr(labels, level)
                fit = tr & (y >= 0)
                pred[level], s = fit_predict(
                    row.classifier, feats.features[fit], y[fit], feats.features[te], seed=BASELINE_SEED
                )
                seconds += s
            out.setdefault(row.key, {})[fold.index] = {"pred": pred, "seconds": seconds, "epochs": "-"}
            print(f"[fold {fold.index}, row {row.key}] fit {seconds:.1f} s", flush=True)
    return out


def run_baselines(rows, folds, args, overrides, study: Path, processed, usable, gvocab) -> dict:
    """Rows 8a-b: MFCC statistics; per fold, fit on training + validation, predict the test tracks."""
    transfer = [r for r in rows if r.backbone == "musicnn"]
    if transfer:  # rows 13a-b: musicnn features instead (issue 26)
        mfcc = [r for r in rows if r not in transfer]
        return with_transfer_rows(transfer, mfcc, folds, args, overrides, study, processed, usable, gvocab)
    from genrekit.datasets import fma
    from genrekit.datasets.labels import encode
    from genrekit.evaluate.baseline import MfccFeatures, extract_mfcc_features, fit_predict

    duration = overrides.get("duration", 30.0)
    path = study / f"mfcc_{duration:g}s.npz"
    if path.is_file():
        feats = MfccFeatures.load(path)
    else:
        print(f"MFCC statistics of {len(usable)} tracks ...", flush=True)
        items = fma.audio_items(overrides["audio_dir"], usable)
        feats = extract_mfcc_features(
            items, sample_rate=22050, duration=duration, workers=args.workers, progress=sys.stderr.isatty()
        )
        feats.save(path)
    labels = encode(processed.targets.loc[feats.track_ids], gvocab)
    return {
        "rows": fit_rows(rows, folds, feats, labels, usable, fit_predict),
        "mfcc_seconds": feats.seconds,
        "mfcc_failures": len(feats.failures),
        "ids": feats.track_ids,
    }


def ensemble_rows(rows, results: dict[str, dict[int, Any]], gvocab) -> dict[str, dict[int, Any]]:
    """Rows of kind "ensemble": per fold, the equal-weight mean of the members' track probabilities.

    The members were tested on the same tracks of the same fold; their probabilities are averaged
    in the global vocabularies (a genre outside a member's vocabulary counts 0 from it), as
    ``genrekit.evaluate.ensemble`` averages runs, and the all-genres thresholds are the mean of the
    members' tuned ones (:data:`genrekit.evaluate.ensemble.THRESHOLD_RULE`).
    """
    out: dict[str, dict[int, Any]] = {}
    for row in rows:
        member_folds = [results[m] for m in row.members]
        for f in sorted(member_folds[0]):
            preds = [m[f]["pred"] for m in member_folds]
            ids = np.asarray(preds[0]["track_ids"])
            for p in preds[1:]:
                if not np.array_equal(np.asarray(p["track_ids"]), ids):
                    raise SystemExit(
                        f"error: row {row.key}: its members were tested on other tracks in fold {f}"
                    )
            pred: dict[str, Any] = {"track_ids": ids}
            for level in ("top", "medium", "all"):
                n = len(gvocab[level])
                total, thresholds, seen = np.zeros((len(ids), n)), np.zeros(n), np.zeros(n)
                for p in preds:
                    cols = _to_global(p[f"{level}_ids"], gvocab[level].index)
                    ok = cols >= 0
                    total[:, cols[ok]] += p[level][:, ok]
                    seen[cols[ok]] += 1
                    if level == "all":
                        thresholds[cols[ok]] += np.broadcast_to(p["thresholds"], cols.shape)[ok]
                pred[level] = total / len(preds)
                pred[f"{level}_ids"] = np.asarray(gvocab[level].genre_ids, np.int64)
            pred["thresholds"] = thresholds / np.maximum(seen, 1)
            out.setdefault(row.key, {})[f] = {
                "pred": pred,
                "seconds": sum(m[f]["seconds"] for m in member_folds),
                "epochs": "-",
            }
    return out


# --- issue 26: the transfer baseline and the heads variants ------------------------------------------


def with_transfer_rows(
    transfer, mfcc, folds, args, overrides, study: Path, processed, usable, gvocab
) -> dict:
    """Rows 13a-b beside the MFCC rows: both run, their results merged (tracks: those both have)."""
    parts = [run_transfer_baselines(transfer, folds, args, overrides, study, processed, usable, gvocab)]
    if mfcc:
        parts.append(run_baselines(mfcc, folds, args, overrides, study, processed, usable, gvocab))
    merged: dict[str, Any] = {"rows": {}, "ids": parts[0]["ids"]}
    for part in parts:
        merged["rows"].update(part["rows"])
        merged["ids"] = np.intersect1d(merged["ids"], part["ids"])
        merged.update({k: v for k, v in part.items() if k not in ("rows", "ids")})
    return merged


def transfer_features(args, overrides, study: Path, processed, usable):
    """musicnn max_pool averaged over each track's patches, through the feature cache (saved, then reused)."""
    from genrekit.evaluate.baseline import ClipFeatures
    from genrekit.evaluate.transfer_baseline import extract_transfer_features, transfer_frontend
    from genrekit.settings import Settings

    frontend = transfer_frontend(Settings.build(None, {**overrides, **musicnn_overrides(overrides)}))
    path = study / f"{frontend.cache_name()}_mean.npz"
    if path.is_file():
        feats = ClipFeatures.load(path)
        if np.isin(usable, np.concatenate([feats.track_ids, list(feats.failures)])).all():
            return feats
    print(f"musicnn max_pool of {len(usable)} tracks ...", flush=True)
    feats = extract_transfer_features(
        processed.dataset, usable, overrides["cache_dir"], frontend, workers=args.workers or None,
        progress=sys.stderr.isatty(),
    )  # fmt: skip
    feats.save(path)
    return feats


def run_transfer_baselines(rows, folds, args, overrides, study: Path, processed, usable, gvocab) -> dict:
    """Rows 13a-b: per fold, the transfer recipe fitted on training + validation, the test tracks predicted."""
    from genrekit.datasets.labels import encode
    from genrekit.evaluate.transfer_baseline import fit_predict_transfer

    feats = transfer_features(args, overrides, study, processed, usable)
    labels = encode(processed.targets.loc[feats.track_ids], gvocab)
    return {
        "rows": fit_rows(rows, folds, feats, labels, usable, fit_predict_transfer),
        "transfer_feature_seconds": feats.seconds,
        "transfer_failures": len(feats.failures),
        "ids": feats.track_ids,
    }


def transfer_lines(summary, results, small, names) -> list[str]:
    """Every row's paired difference to :data:`TRANSFER_REFERENCE`, then the heads variants' to
    :data:`HEADS_REFERENCE` (each table left out when its reference was not run)."""
    keys = [m for m, _ in COLUMNS] + [f"recall_{i}" for i in small]
    head = ["row", "configuration"] + [h for _, h in COLUMNS] + [f"recall {names[i]}" for i in small]
    lines: list[str] = []
    tables = (
        (TRANSFER_REFERENCE, "the transfer baseline", results),
        (HEADS_REFERENCE, "row 9's heads", HEADS_VARIANTS),
    )
    for ref, what, which in tables:
        body = []
        for key, res in results.items():
            other = summary[key].get("difference_to", {}).get(ref)
            if other and key in which:
                cells = [key, res["row"].label] + [diff_cell(other.get(m)) for m in keys]
                body.append("| " + " | ".join(cells) + " |")
        if body:
            title = f"\npaired difference to row {ref}, {what} (same folds, same resamples)"
            lines += [title, "| " + " | ".join(head) + " |", "|" + "---|" * len(head), *body]
    return lines


def transfer_setup_lines() -> list[str]:
    """The setup bullets of rows 13a-b and the heads variants, for the Markdown file."""
    variants = "; ".join(
        f"row {k}: " + ", ".join(f"`{name.upper()} = {value!r}`" for name, value in v.items())
        for k, v in HEADS_VARIANTS.items()
    )
    return [
        "- Rows 13a-b: the musicnn literature's transfer baseline (Pons & Serra; "
        "`genrekit.evaluate.transfer_baseline`): MSD_musicnn's `max_pool` layer (753 values per 3-s patch, "
        "row 9's patches, through the feature cache), averaged over each track's patches, standardized, "
        "PCA to 128 components (not whitened, unlike the recipe's script: see that module), "
        "`SVC(kernel='rbf', C=1, gamma='scale')`, plain and "
        "`class_weight='balanced'`, fitted per fold on the training and validation parts like rows 8a-b; "
        "no all-genres head. Their time is the fit time (the musicnn extraction excluded).",
        f"- Rows 14 and on: row 9 with these settings changed ({variants}); chosen by cross-validation on "
        "the demo, never by a test split.",
    ]


def with_transfer_markdown(lines: list[str], table: list[str]) -> list[str]:
    """The Markdown lines with rows 13-15's setup bullets after row 10's and their table before the plot."""
    out = list(lines)
    at = next((i + 1 for i, line in enumerate(out) if line.startswith("- Row 10")), None)
    if at is not None:
        out[at:at] = transfer_setup_lines()
    starts = [i for i, line in enumerate(table) if line.startswith("\npaired difference to row ")]
    section = []
    for j, start in enumerate(starts):
        end = starts[j + 1] if j + 1 < len(starts) else len(table)
        ref = table[start].split("row ", 1)[1].split(",", 1)[0]
        what = (
            "the transfer baseline" if ref == TRANSFER_REFERENCE else "the heads recipe the variants change"
        )
        section += [f"## Paired differences to row {ref} ({what})", "", f"Row minus row {ref}, as above.", ""]
        section += [*table[start + 1 : end], ""]
    at = next((i for i, line in enumerate(out) if line.startswith("## Per-genre recall")), len(out))
    out[at:at] = section
    return out


# --- pooling -------------------------------------------------------------------------------------------


def _to_global(fold_ids: np.ndarray, index: dict[int, int]) -> np.ndarray:
    """Global class index of each of a fold model's classes (-1: a genre outside the global vocabulary)."""
    return np.array([index.get(int(g), -1) for g in fold_ids], dtype=np.int64)


def pool(row: Row, per_fold: dict[int, Any], common: np.ndarray, gvocab, row1: dict[int, Any] | None):
    """A row's predictions on ``common`` (sorted track ids), in the global vocabularies."""
    from genrekit.train.balancing import posthoc_logit_adjustment

    n = len(common)
    pos = {int(t): i for i, t in enumerate(common)}
    top = np.full(n, -1, np.int64)
    medium = np.full(n, -1, np.int64)
    has_all = row.kind != "baseline"
    n_all = len(gvocab["all"])
    all_scores = np.zeros((n, n_all)) if has_all else None
    all_pred = np.zeros((n, n_all), np.uint8) if has_all else None
    seen = np.zeros(n, bool)
    source = row1 if row.kind == "posthoc" else per_fold
    for result in source.values():
        pred = result["pred"]
        ids = np.asarray(pred["track_ids"])
        keep = np.isin(ids, common)
        rows_ = np.array([pos[int(t)] for t in ids[keep]], dtype=np.int64)
        seen[rows_] = True
        if row.kind == "baseline":
            top[rows_] = pred["top"][keep]
            medium[rows_] = pred["medium"][keep]
            continue
        for level, target in (("top", top), ("medium", medium)):
            probs = pred[level][keep]
            if row.kind == "posthoc":
                idx = posthoc_logit_adjustment(probs, np.asarray(result["priors"][level]), POWER_TAU)
            else:
                idx = probs.argmax(axis=1)
            target[rows_] = _to_global(pred[f"{level}_ids"], gvocab[level].index)[idx]
        cols = _to_global(pred["all_ids"], gvocab["all"].index)
        ok = cols >= 0
        all_scores[np.ix_(rows_, cols[ok])] = pred["all"][keep][:, ok]
        all_pred[np.ix_(rows_, cols[ok])] = (pred["all"][keep] > pred["thresholds"])[:, ok]
    if not seen.all():
        raise SystemExit(f"error: row {row.key} has no prediction for {int((~seen).sum())} tracks")
    return top, medium, all_pred, all_scores


# --- formatting -------------------------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def value_cell(fig: dict[str, float]) -> str:
    if fig is None or math.isnan(fig["mean"]):
        return "n/a"
    return f"{fmt(fig['mean'])} [{fmt(fig['low'], 2)}, {fmt(fig['high'], 2)}]"


def diff_cell(fig: dict[str, float] | None) -> str:
    if not fig or math.isnan(fig["mean"]) or math.isnan(fig["low"]):
        return "n/a"
    beyond = fig["low"] > 0 or fig["high"] < 0
    return f"{fmt(fig['mean'], sign=True)} [{fmt(fig['low'], 2, True)}, {fmt(fig['high'], 2, True)}]" + (
        " *" if beyond else ""
    )


def smallest_classes(counts: np.ndarray, k: int = N_SMALL) -> list[int]:
    """The ``k`` top genres with the fewest evaluated tracks among those that have any."""
    order = [int(i) for i in np.lexsort((np.arange(len(counts)), counts)) if counts[i] > 0]
    return order[:k]


def table_lines(
    summary, results, small, names, eval_counts, train_counts
) -> tuple[list[str], list[str], list[str]]:
    """The values table (mean over folds [95% interval]), the paired differences to row 1 and to
    the default (row 5; empty when it was not run)."""
    small_heads = [f"recall {names[i]} ({eval_counts[i]}; {train_counts[i]:.0f})" for i in small]
    head = ["row", "configuration"] + [h for _, h in COLUMNS] + small_heads
    values = ["| " + " | ".join(head + ["train s / fold", "epochs best/run"]) + " |"]
    values.append("|" + "---|" * (len(head) + 2))
    diffs = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    to_default = list(diffs)
    keys = [m for m, _ in COLUMNS] + [f"recall_{i}" for i in small]
    for key, res in results.items():
        row = res["row"]
        s = summary[key]
        secs = res["seconds"]
        if row.kind == "posthoc":
            time_cell = "0 (row 1's model)"
        elif row.kind == "baseline":
            time_cell = f"{np.mean(secs):.2f}"
        elif row.kind == "ensemble":
            time_cell = f"{np.mean(secs):.0f} (its members')"
        else:
            time_cell = f"{np.mean(secs):.0f}"
        values.append(
            "| "
            + " | ".join(
                [row.key, row.label]
                + [value_cell(s["value"].get(m)) for m in keys]
                + [time_cell, ", ".join(res["epochs"])]
            )
            + " |"
        )
        if key != REFERENCE:
            diffs.append(
                "| "
                + " | ".join([row.key, row.label] + [diff_cell(s["difference"].get(m)) for m in keys])
                + " |"
            )
        other = s.get("difference_to", {}).get(DEFAULT_ROW)
        if other:
            to_default.append(
                "| " + " | ".join([row.key, row.label] + [diff_cell(other.get(m)) for m in keys]) + " |"
            )
    return values, diffs, (to_default if len(to_default) > 2 else [])


def default_decision(summary: dict[str, Any]) -> tuple[list[str], str]:
    """The rows that beat the default beyond the paired interval on :data:`DECIDING`, and a sentence."""
    if DEFAULT_ROW not in summary:
        return [], f"row {DEFAULT_ROW} (the default) was not run: no decision"
    better = [
        k
        for k, v in summary.items()
        if DEFAULT_ROW in v.get("difference_to", {}) and v["difference_to"][DEFAULT_ROW][DECIDING]["low"] > 0
    ]
    if not better:
        return [], (
            f"no row beats row {DEFAULT_ROW} (the default) beyond the paired 95% interval on "
            f"{DECIDING.replace('_', ' ')}: the default stays"
        )
    figs = ", ".join(
        f"row {k} {summary[k]['difference_to'][DEFAULT_ROW][DECIDING]['mean']:+.3f} "
        f"[{summary[k]['difference_to'][DEFAULT_ROW][DECIDING]['low']:+.2f}, "
        f"{summary[k]['difference_to'][DEFAULT_ROW][DECIDING]['high']:+.2f}]"
        for k in better
    )
    return (
        better,
        f"beats row {DEFAULT_ROW} (the default) on {DECIDING.replace('_', ' ')} beyond the paired interval: {figs}",
    )


def plot_recall(
    pooled_recall: dict[str, np.ndarray], labels: dict[str, str], names, train_counts, path: Path
):
    """Per-genre recall (pooled over folds) against training tracks per fold, log x axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401  (matplotlib.ticker below)

    fig, ax = plt.subplots(figsize=(9, 5.5))
    x = np.asarray(train_counts, dtype=float)
    markers = ("o", "s", "^", "D")
    for j, (key, recall) in enumerate(pooled_recall.items()):
        ok = np.isfinite(recall) & (x > 0)
        ax.scatter(
            x[ok],
            recall[ok],
            marker=markers[j % len(markers)],
            s=36,
            alpha=0.8,
            label=f"row {key}: {labels[key]}",
        )
    at: dict[int, list[int]] = {}  # genres of (nearly) the same training size share one label
    for i in np.flatnonzero(x > 0):
        at.setdefault(round(float(np.log10(x[i])) * 25), []).append(int(i))
    for group in at.values():
        xi = float(np.exp(np.mean(np.log(x[group]))))
        ax.annotate("\n".join(names[i] for i in group), (xi, -0.04), fontsize=6, ha="center", va="top")
    ax.set_xscale("log")
    plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("training tracks of the genre (mean per fold, log scale)")
    ax.set_ylabel("recall (test tracks pooled over folds)")
    ax.set_ylim(-0.45, 1.05)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_title("Top-genre recall against training size")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def machine() -> dict[str, str]:
    import importlib.metadata as md

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("tensorflow", "keras", "scikit-learn", "librosa", "numpy", "soundfile"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            try:
                versions[pkg] = md.version(pkg + "-cpu")
            except md.PackageNotFoundError:
                versions[pkg] = "?"
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = "?"
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit or "?",
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def describe_device(device: Any) -> str:
    if not isinstance(device, dict):
        return str(device)
    gpus = device.get("gpus") or []
    where = f"{len(gpus)} GPU(s): {', '.join(map(str, gpus))}" if gpus else "CPU only"
    return f"{where}, {device.get('backend', '?')} backend, policy {device.get('policy', '?')}"


NOTES_START, NOTES_END = "<!-- notes: kept when the script rewrites this file -->", "<!-- /notes -->"


def write_markdown(path: Path, lines: list[str]) -> None:
    """Write the results, keeping the hand-written notes section of an existing file."""
    notes = f"{NOTES_START}\n_(No reading written yet.)_\n{NOTES_END}"
    if path.is_file():
        found = re.search(re.escape(NOTES_START) + r".*?" + re.escape(NOTES_END), path.read_text(), re.S)
        if found:
            notes = found.group(0)
    text = "\n".join(lines).replace("{{NOTES}}", notes) + "\n"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --- the study -----------------------------------------------------------------------------------------


def resolve_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full"]
    given = {key for key in profile if getattr(args, key, None) is not None}
    for key, value in profile.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    args.real = bool(args.metadata_dir)
    if args.duration is None and not args.real:
        args.duration = args.clip_seconds
    if args.real:
        if "segments" not in given:
            args.segments = None  # real FMA: config.py's NUM_SEGMENTS unless given
        if "folds" not in given:
            args.folds = 0  # real FMA: FMA's official split unless --folds is given
        args.max_imbalance = None
    if args.folds == 1 or args.folds < 0:
        raise SystemExit("error: --folds must be 0 (the official split) or >= 2")
    args.profile = "quick" if args.quick else "full"
    return args


def main(argv: list[str] | None = None) -> int:
    args = resolve_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.results) if args.results else work / "results.md"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MPLBACKEND", "Agg")
    logging.basicConfig(
        level=logging.INFO,
        filename=str(work / "bench_balancing.log"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    wanted = set(args.rows or [r.key for r in ROWS]) | {REFERENCE}
    wanted |= {r for k in list(wanted) if k in REQUIRES for r in REQUIRES[k]}
    rows = [r for r in ROWS if r.key in wanted]
    started = time.time()
    command = "python benchmarks/bench_balancing.py " + " ".join(argv if argv is not None else sys.argv[1:])

    metadata_dir, audio_dir, data_desc = prepare_dataset(args, work)
    print(f"dataset: {metadata_dir} ({data_desc})", flush=True)
    tag = dataset_tag(metadata_dir, audio_dir, args.subset)
    study = work / f"{tag}_{'official' if args.folds == 0 else f'k{args.folds}'}"
    study.mkdir(parents=True, exist_ok=True)
    overrides = base_overrides(args, metadata_dir, audio_dir, work / "features" / tag)

    from genrekit.datasets.labels import build_vocabularies, encode
    from genrekit.evaluate.study import Predictions, summarize
    from genrekit.settings import Settings
    from genrekit.train.run import BalancedGenreProcessor

    settings = Settings.build(None, overrides)
    processor = BalancedGenreProcessor(settings)
    processed = processor.load_dataset()
    t0 = time.time()
    cache = processor.extract_features(processed, cache_dir=settings.cache_dir)
    cache_seconds = time.time() - t0
    usable = np.asarray(cache.track_ids)
    n_failures = len(cache.failures)
    cache.close()
    # A rerun reuses the dataset and cache: report the times measured when they were made.
    timings_path = study / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    first = timings.setdefault(
        f"{settings.num_segments}|{settings.duration}",
        {"generation_seconds": data_desc["generation_seconds"], "cache_seconds": cache_seconds},
    )
    timings_path.write_text(json.dumps(timings, indent=1))
    data_desc["generation_seconds"], cache_seconds = first["generation_seconds"], first["cache_seconds"]
    print(
        f"feature cache: {len(usable)} usable tracks, {n_failures} left out ({cache_seconds:.0f} s)",
        flush=True,
    )

    folds, fold_desc = make_folds(args, processed, metadata_dir, study)
    n_mel_usable = len(usable)
    usable = usable_by_every_row(rows, overrides, folds[0], study, processor, processed, usable)
    # One vocabulary over every track, so the folds' predictions pool into one label space.
    gvocab = build_vocabularies(processed.targets.assign(split="training"), processed.tree)
    names = list(gvocab["top"].names)
    n_top, n_medium = len(gvocab["top"]), len(gvocab["medium"])

    nn_rows = [r for r in rows if r.kind == "nn"]
    base_rows = [r for r in rows if r.kind == "baseline"]
    results: dict[str, dict[int, Any]] = run_nn_rows(nn_rows, folds, overrides, study, usable, args.retrain)
    results.update(ensemble_rows([r for r in rows if r.kind == "ensemble"], results, gvocab))
    extra: dict[str, Any] = {}
    common = np.concatenate([fold_ids(f, usable, "test") for f in folds])
    if base_rows:
        base = run_baselines(base_rows, folds, args, overrides, study, processed, usable, gvocab)
        results.update(base["rows"])
        extra = {k: v for k, v in base.items() if k not in ("rows", "ids")}
        dropped = int((~np.isin(common, base["ids"])).sum())
        extra["tracks_without_mfcc"] = dropped
        common = common[np.isin(common, base["ids"])]
    common = np.sort(common)
    test_fold_of = {int(t): f.index for f in folds for t in fold_ids(f, usable, "test")}
    test_fold = np.array([test_fold_of[int(t)] for t in common])

    truth = encode(processed.targets.loc[common], gvocab)
    preds, table_results = {}, {}
    for row in rows:
        per_fold = results.get(REFERENCE if row.kind == "posthoc" else row.key, {})
        top, medium, all_pred, all_scores = pool(row, per_fold, common, gvocab, results.get(REFERENCE))
        preds[row.key] = Predictions(
            truth.top,
            top,
            truth.medium,
            medium,
            truth.all if all_pred is not None else None,
            all_pred,
            all_scores,
        )
        table_results[row.key] = {
            "row": row,
            "seconds": [per_fold[f]["seconds"] for f in sorted(per_fold)] if row.kind != "posthoc" else [0.0],
            "epochs": [per_fold[f]["epochs"] for f in sorted(per_fold)] if row.kind == "nn" else ["-"],
        }

    eval_counts = np.bincount(truth.top[truth.top >= 0], minlength=n_top)
    train_counts = np.zeros(n_top)
    for fold in folds:
        lab = encode(processed.targets.loc[fold_ids(fold, usable, "training")], gvocab)
        train_counts += np.bincount(lab.top[lab.top >= 0], minlength=n_top)
    train_counts /= len(folds)
    small = smallest_classes(eval_counts)
    enough = all(eval_counts[i] >= MIN_SMALL_TRACKS for i in small)
    print(
        "power: the five smallest top genres have "
        + ", ".join(f"{names[i]} {eval_counts[i]}" for i in small)
        + f" evaluated tracks (>= {MIN_SMALL_TRACKS} each: {'yes' if enough else 'NO'})",
        flush=True,
    )
    summary_obj = summarize(
        preds,
        test_fold,
        n_top,
        n_medium,
        REFERENCE,
        recall_of=small,
        n_boot=args.n_boot,
        seed=BOOT_SEED,
        against=(DEFAULT_ROW, TRANSFER_REFERENCE, HEADS_REFERENCE),
    )
    summary = {
        k: {
            "value": {m: fig.to_dict() for m, fig in v["value"].items()},
            "difference": {m: fig.to_dict() for m, fig in v["difference"].items()},
            "difference_to": {
                ref: {m: fig.to_dict() for m, fig in figs.items()} for ref, figs in v["difference_to"].items()
            },
        }
        for k, v in summary_obj.items()
    }
    beats_default, decision = default_decision(summary)
    candidates = [k for k in preds if k not in (REFERENCE, DEFAULT_ROW)]
    best = max(candidates, key=lambda k: summary[k]["value"]["top_balanced_accuracy"]["mean"], default=None)
    total = time.time() - started

    values_table, diff_table, default_table = table_lines(
        summary, table_results, small, names, eval_counts, train_counts
    )
    caption = (
        f"Profile `{args.profile}`: model width {settings.width_factor:g}, {settings.num_segments} segments per "
        f"clip, at most {settings.num_epochs} epochs; "
        + (f"{args.folds} folds over artist groups" if args.folds else "the official split")
        + (f"; top-genre imbalance capped at {args.max_imbalance:g}x (demo)" if args.max_imbalance else "")
        + f"; {len(common)} tracks evaluated. Cells: mean over folds [95% bootstrap interval]."
    )
    print("\n" + caption + "\n\n" + "\n".join(values_table), flush=True)
    print("\npaired difference to row 1 (same folds, same resamples; * = the 95% interval excludes 0)")
    print("\n".join(diff_table), flush=True)
    if default_table:
        print(f"\npaired difference to row {DEFAULT_ROW}, the default (same folds, same resamples)")
        print("\n".join(default_table), flush=True)
    print(f"\ndefault: {decision}", flush=True)
    transfer_table = transfer_lines(summary, table_results, small, names)
    print("\n".join(transfer_table), flush=True)
    print(
        f"\nbest row other than 1 and 5 by top balanced accuracy: {best}; total {total / 60:.1f} min",
        flush=True,
    )

    from genrekit.evaluate.study import single_label_scores

    plotted = [k for k in dict.fromkeys([REFERENCE, DEFAULT_ROW, best]) if k in preds]
    recall = {k: single_label_scores(truth.top, preds[k].top_pred, n_top)["recall"] for k in plotted}
    plot_path = results_path.with_name(f"{results_path.stem}_recall.png")
    plot_recall(recall, {k: table_results[k]["row"].label for k in plotted}, names, train_counts, plot_path)

    nn_seconds = sum(sum(r["seconds"]) for r in table_results.values() if r["row"].kind == "nn")
    fit_seconds = sum(sum(r["seconds"]) for r in table_results.values() if r["row"].kind == "baseline")
    device = next((r[f].get("device") for k, r in results.items() for f in r if "device" in r[f]), None)
    raw = {
        "command": command,
        "profile": args.profile,
        "seconds": round(total, 1),
        "dataset": data_desc,
        "folds": fold_desc,
        "machine": machine(),
        "settings": {
            k: v for k, v in overrides.items() if k not in ("metadata_dir", "audio_dir", "cache_dir")
        },
        "top_names": names,
        "evaluated_top_counts": eval_counts.tolist(),
        "training_top_counts_per_fold": train_counts.tolist(),
        "smallest": small,
        "power_ok": enough,
        "tracks_evaluated": len(common),
        "tracks_without_every_front_end": n_mel_usable - len(usable),
        "best": best,
        "beats_default": beats_default,
        "decision": decision,
        "caption": caption,
        "summary": summary,
        "rows": {
            k: {"label": r["row"].label, "seconds": r["seconds"], "epochs": r["epochs"]}
            for k, r in table_results.items()
        },
        "timings": {
            "generation_seconds": data_desc.get("generation_seconds", 0),
            "cache_seconds": cache_seconds,
            "training_seconds": nn_seconds,
            "baseline_fit_seconds": fit_seconds,
            **extra,
        },
    }
    (study / "results.json").write_text(json.dumps(raw, indent=1, default=lambda o: None), encoding="utf-8")
    lines = markdown_lines(
        args,
        raw,
        settings,
        values_table,
        diff_table,
        default_table,
        plot_path,
        device,
        len(usable),
        n_failures,
    )
    lines = with_transfer_markdown(lines, transfer_table)
    write_markdown(results_path, lines)
    print(f"results: {results_path}, {plot_path} and {study / 'results.json'}", flush=True)
    return 0


def markdown_lines(
    args, raw, settings, values_table, diff_table, default_table, plot_path, device, n_usable, n_failures
) -> list[str]:
    """docs/results.md (full profile) or <work-dir>/results.md: setup, machine, times, tables, plot."""
    m, t, d = raw["machine"], raw["timings"], raw["dataset"]
    names, small = raw["top_names"], raw["smallest"]
    ev = raw["evaluated_top_counts"]
    parts = (
        t["generation_seconds"]
        + t["cache_seconds"]
        + t["training_seconds"]
        + t.get("mfcc_seconds", 0)
        + t["baseline_fit_seconds"]
    )
    present = [c for c in ev if c > 0]
    folds = raw["folds"]
    if folds["kind"] == "official":
        split_text = "the dataset's official artist-filtered split; every row is scored on its test tracks"
    else:
        split_text = (
            f"{folds['n_folds']} folds over artist groups (scikit-learn `StratifiedGroupKFold` by top genre, "
            f"seed {folds['seed']}; `genrekit.evaluate.study`): every track is tested exactly once and no fold's "
            "training, validation and test parts share an artist; each fold's validation part (early "
            "stopping, all-genres thresholds) is about 1/8 of its training part, also artist-disjoint. FMA's "
            "official split is not used here; it stays the default of the trainer, the evaluator and the "
            "real-FMA command"
        )
    return [
        "# Results: balancing study",
        "",
        "> **Synthetic data.** "
        + (
            "These are results on the toolkit's synthetic demo dataset (`genrekit.datasets.demo.writer`), not on FMA. Real FMA "
            "results may not follow them: the demo's genres are families of synthesised sounds and its "
            "imbalance is FMA's shape, capped (below)."
            if not args.real
            else "Real FMA data."
        ),
        "",
        f"Produced by `{raw['command'].strip()}` (profile `{raw['profile']}`). Compute time of the study, "
        f"summed over its parts: {parts / 60:.1f} min (demo dataset generation {t['generation_seconds']:.0f} s, "
        f"feature cache {t['cache_seconds']:.0f} s, training runs {t['training_seconds'] / 60:.1f} min, MFCC "
        f"statistics {t.get('mfcc_seconds', 0):.0f} s, SVM fits {t['baseline_fit_seconds']:.0f} s); this "
        f"invocation took {raw['seconds'] / 60:.1f} min (finished runs, predictions, the dataset and the "
        "features in `--work_dir` are reused; the times above are those measured when each was made).",
        "",
        "## Machine",
        "",
        f"- {m['cores']} CPU cores ({m['cpu']}), shared with other jobs while this ran; {m['platform']}, "
        f"Python {m['python']}; {m['versions']}; genrekit commit {m['commit']}.",
        f"- Training device: {describe_device(device)}.",
        "",
        "## Setup",
        "",
        (
            f"- Data: demo dataset of {d.get('tracks')} tracks, {d.get('clip_seconds'):g} s clips, 22,050 Hz mono "
            f"MP3, seed {d.get('seed')}, "
            + (
                f"FMA's top-genre shape **capped at {d['max_imbalance']:g}x** (`max_imbalance`: no top genre "
                f"below 1/{d['max_imbalance']:g} of the largest's share; FMA's own is ~590x)"
                if d.get("max_imbalance")
                else "FMA's top-genre shape (not capped)"
            )
            + f"; {n_usable} tracks with usable audio ({n_failures} defective files left out, as in FMA"
            + (
                f"; {raw['tracks_without_every_front_end']} more that another front end cannot read, "
                "such as musicnn's 3-s patches"
                if raw.get("tracks_without_every_front_end")
                else ""
            )
            + ")."
            if not args.real
            else f"- Data: {args.metadata_dir}, {args.audio_dir}, subset {settings.subset}; {n_usable} usable tracks."
        ),
        f"- Split: {split_text}.",
        f"- Evaluated: {raw['tracks_evaluated']} tracks pooled over the folds, {sum(ev)} with a single top genre; "
        f"the largest top genre has {max(present) / max(1, min(present)):.0f}x the evaluated tracks of the "
        f"smallest ({max(present)} vs {min(present)}). Five smallest: "
        + ", ".join(f"{names[i]} {ev[i]}" for i in small)
        + f" (>= {MIN_SMALL_TRACKS} each: {'yes' if raw['power_ok'] else '**no**'}).",
        f"- Model rows 1-6: `genrekit.train.run.train`, width factor **{settings.width_factor:g}**, "
        f"**{settings.num_segments} segments** of {settings.segment_frames} frames per clip (first "
        f"{settings.duration:g} s), dropout {settings.conv_dropout:g} / {settings.dense_dropout:g}, "
        f"**at most {settings.num_epochs} epochs**, batch {settings.batch_size}, "
        f"learning rate {settings.learning_rate:g}, LR schedule {settings.lr_schedule}, early stopping on "
        f"`{settings.monitor}` with patience {settings.patience} (best weights kept), SpecAugment "
        f"{'on' if settings.spec_augment else 'off'}, mixup alpha {settings.mixup_alpha:g}; every other setting "
        f"is config.py's, including the sampling thresholds ({settings.oversample_threshold} / "
        f"{settings.undersample_threshold}, {settings.sampling_thresholds}"
        + (
            ", read as fma_large's and scaled to each fold's training tracks"
            if settings.sampling_thresholds == "relative"
            else ""
        )
        + f"), focal gamma "
        f"{settings.focal_gamma:g} and the class-weight cap {settings.max_class_weight:g}. Row 6: "
        f"`USE_LOGIT_ADJUSTMENT` (Menon et al. 2021), tau {POWER_TAU:g}, priors = the fold's training class "
        f"frequencies. Row 7: row 1's models, predictions `argmax(log p - tau log prior)` with the same "
        "priors, no retraining (its all-genres head is row 1's). Track probabilities are the mean over "
        "segments; all-genres predictions use the thresholds tuned on the validation part.",
        "- Rows 8a-b: the FMA paper's MFCC statistics (140 per clip, `genrekit.evaluate.baseline`) + "
        "`SVC(kernel='rbf')`, plain and `class_weight='balanced'`, fitted per fold on the training and "
        "validation parts, one classifier for the top genre and one for the medium genre; no all-genres head. "
        "Their time is the fit time (features excluded).",
        '- Row 9: the same trainer and balancing as row 5 with `BACKBONE = "musicnn"`: the three heads '
        "(dense 256, `genrekit.models.heads`) on MSD_musicnn's 200-value penultimate layer, one embedding "
        "per 3-s patch (the backbone frozen; its time excludes embedding extraction). musicnn was trained "
        "on real music (the Million Song Dataset): the demo's synthetic sounds are far from it, so this row "
        "measures the machinery here, not what the backbone is worth on FMA.",
        "- Row 10: row 9's heads and MSD_musicnn trained together from row 9's run of the same fold "
        "(`FINE_TUNE_FROM`, `genrekit.models.finetune`): the mid end and back end learn at Adam's "
        f"`FINE_TUNE_LEARNING_RATE` 1e-5 (the front-end convolutions and every batch norm frozen), at most "
        f"{FINE_TUNE_EPOCHS} epochs, on the cached musicnn patches; every step runs the backbone forward, so "
        "its time is musicnn's cost, not the heads'. Each row is tested on the tracks every row's front end "
        "reads (musicnn needs 3 s of audio).",
        '- Row 11: the same trainer and balancing as row 5 with `BACKBONE = "ast"`: the spectrogram '
        "transformer (`genrekit.models.ast`: 16 x 16 patches of the same log-mel segments, "
        f"{settings.ast_depth} encoder blocks of width {settings.ast_dim}, {settings.ast_heads} heads, "
        f"{settings.ast_pooling} pooling, the same three heads) at learning rate "
        f"{AST_OVERRIDES['learning_rate']:g} (the quick start's AST recipe, chosen on validation).",
        "- Row 12: no training: per fold, the mean of rows 5's and 9's track probabilities (each model "
        "reads its own features; `genrekit.evaluate.ensemble` does the same for `--model A --model B`), "
        "all-genres thresholds the mean of the two runs' tuned ones; its time is its members'.",
        f"- Figures: scikit-learn's definitions (`genrekit.evaluate.study` computes them with track weights; tests "
        f"compare). Each cell: the mean over folds [95% percentile bootstrap interval of that mean, "
        f"{args.n_boot} resamples of the evaluated tracks, each scored in its own fold]. Balanced accuracy and F1 over the tracks with a "
        "label at that level; all-genres Jaccard (samples) and LRAP over the tracks with a genre. Recall "
        "columns: the five top genres with the fewest evaluated tracks (evaluated tracks; training tracks "
        "per fold).",
        "",
        "## Table",
        "",
        raw["caption"],
        "",
        *values_table,
        "",
        "## Paired differences to row 1",
        "",
        "Row minus row 1: mean over folds of the per-fold differences [95% bootstrap interval of that mean, "
        "the same resamples for both rows]; `*` marks an interval that excludes 0.",
        "",
        *diff_table,
        "",
        *(
            [
                f"## Paired differences to row {DEFAULT_ROW} (the default)",
                "",
                f"Row minus row {DEFAULT_ROW}, as above. **Decision**: {raw['decision']}.",
                "",
                *default_table,
                "",
            ]
            if default_table
            else []
        ),
        f"## Per-genre recall against training size (rows {', '.join(dict.fromkeys(['1', '5', str(raw['best'])]))})",
        "",
        f"![per-genre recall]({plot_path.name})",
        "",
        "## Reading",
        "",
        "{{NOTES}}",
        "",
        "## Reproduce on real FMA",
        "",
        "On FMA's official split (one test split; `--folds 5` cross-validates over artists instead). After "
        "`python setup_fma_dataset.py` has fetched fma_metadata and fma_medium:",
        "",
        "```",
        "python benchmarks/bench_balancing.py \\",
        "    --metadata_dir fma_data/extracted/metadata/fma_metadata \\",
        "    --audio_dir fma_data/extracted/fma_medium/fma_medium --subset medium \\",
        "    --width 1.0 --epochs 100 --patience 15 --lr_patience 5 --segments 10 --duration 30 \\",
        "    --results runs/bench_balancing_fma_medium/results.md",
        "```",
        "",
        "That needs a GPU for the model rows (25,000 clips, width 1.0).",
    ]


if __name__ == "__main__":
    sys.exit(main())
