"""Balancing ablation and the FMA paper's MFCC-statistics baseline, side by side, in one table.

Run from the repository root::

    python benchmarks/bench_balancing.py            # the full study on a 2,000-track demo dataset;
                                                    # writes docs/results.md and docs/results_*.png
    python benchmarks/bench_balancing.py --quick    # a small version (< 10 min on 2 cores); writes
                                                    # <work-dir>/results.md, never docs/

On real FMA (fma_medium, where the paper's SVM reaches about 63% top-genre accuracy)::

    python benchmarks/bench_balancing.py \\
        --metadata-dir fma_data/extracted/metadata/fma_metadata \\
        --audio-dir fma_data/extracted/fma_medium/fma_medium --subset medium \\
        --width 1.0 --epochs 100 --patience 15 --lr-patience 5 --segments 10 --duration 30 \\
        --results runs/bench_balancing_fma_medium/results.md

Rows 1-5 train the toolkit's model with the project's own trainer (:func:`genrekit.training.train`)
and evaluate it with the project's evaluator, each with one combination of the balancing switches
(same data, seeds, epochs and early-stopping rule); rows 6-7 are the FMA paper's recipe
(:mod:`genrekit.baseline`) on the same tracks and the same artist-filtered split. Every run keeps
its folder under ``--work-dir``: a rerun reuses the finished runs and features (``--retrain``
trains again).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_balancing")

# Profiles: every figure the study depends on, so the run is reproducible from its name.
PROFILES: dict[str, dict[str, Any]] = {
    "full": dict(
        tracks=2000,
        clip_seconds=5.0,
        segments=3,
        width=0.125,
        epochs=15,
        patience=4,
        lr_patience=2,
        learning_rate=1e-3,
        seeds=[42, 43, 44],
        work_dir="/tmp/genrekit_bench_balancing",
        results=str(REPO / "docs" / "results.md"),
    ),
    "quick": dict(
        tracks=360,
        clip_seconds=3.0,
        segments=2,
        width=0.0625,
        epochs=2,
        patience=2,
        lr_patience=1,
        learning_rate=1e-3,
        seeds=[42],
        work_dir="/tmp/genrekit_bench_balancing_quick",
        results=None,
    ),
}
DEMO_SEED = 0  # the demo dataset's seed (the same for every row)
BASELINE_SEED = 0


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    kind: str  # "nn" or "baseline"
    flags: tuple[bool, bool, bool] = (False, False, False)  # class weights, weighted sampling, focal loss
    classifier: str = ""


ROWS: tuple[Row, ...] = (
    Row("1", "no balancing (cross-entropy, uniform sampling)", "nn", (False, False, False)),
    Row("2", "class weights only", "nn", (True, False, False)),
    Row("3", "weighted sampling only", "nn", (False, True, False)),
    Row("4", "focal loss only", "nn", (False, False, True)),
    Row("5", "all three (the default configuration)", "nn", (True, True, True)),
    Row("6a", "baseline A: MFCC statistics + SVM (RBF)", "baseline", classifier="svm"),
    Row("6b", "baseline A: MFCC statistics + logistic regression", "baseline", classifier="logreg"),
    Row(
        "7",
        "baseline B: MFCC statistics + SVM (RBF), class_weight='balanced'",
        "baseline",
        classifier="svm_balanced",
    ),
)
METRICS = (
    "top_balanced_accuracy",
    "top_f1_macro",
    "top_f1_weighted",
    "top_accuracy",
    "medium_f1_macro",
    "all_jaccard",
)
PLOTTED = ("1", "5", "6a")


@dataclass
class Result:
    """One row of the table; NN rows hold one entry per seed in each list."""

    row: Row
    metrics: dict[str, list[float | None]] = field(default_factory=dict)
    recall: list[np.ndarray] = field(default_factory=list)  # per top class, one array per seed
    seconds: list[float] = field(default_factory=list)
    epochs: list[str] = field(default_factory=list)  # "best/run" per seed
    seeds: list[int] = field(default_factory=list)

    def add(
        self, metrics: dict[str, float | None], recall: np.ndarray, seconds: float, epochs: str, seed: int
    ):
        for k in METRICS:
            self.metrics.setdefault(k, []).append(metrics.get(k))
        self.recall.append(recall)
        self.seconds.append(seconds)
        self.epochs.append(epochs)
        self.seeds.append(seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the small profile (smoke test, < 10 min)")
    parser.add_argument("--work-dir", help="datasets, caches and run folders (default: a folder in /tmp)")
    parser.add_argument(
        "--results",
        help="Markdown results file (PNGs beside it); default docs/results.md "
        "for the full profile, <work-dir>/results.md for --quick",
    )
    parser.add_argument("--metadata-dir", help="real FMA metadata folder (default: generate a demo dataset)")
    parser.add_argument("--audio-dir", help="real FMA audio folder (with --metadata-dir)")
    parser.add_argument("--subset", default=None, help="FMA subset (default: large, i.e. every demo track)")
    parser.add_argument("--tracks", type=int, help="demo dataset size")
    parser.add_argument("--clip-seconds", type=float, help="demo clip length in seconds")
    parser.add_argument("--duration", type=float, help="seconds of audio used per clip (default: the clip)")
    parser.add_argument("--segments", type=int, help="segments per clip (NUM_SEGMENTS)")
    parser.add_argument("--width", type=float, help="width factor of the model (WIDTH_FACTOR)")
    parser.add_argument("--epochs", type=int, help="maximum epochs, the same for every row")
    parser.add_argument("--patience", type=int, help="early-stopping patience, the same for every row")
    parser.add_argument("--lr-patience", type=int, help="epochs without improvement before the LR is halved")
    parser.add_argument("--learning-rate", type=float, help="Adam learning rate, the same for every row")
    parser.add_argument(
        "--seeds", type=int, nargs="+", help="seeds of rows 1 and 5 (the others use the first)"
    )
    parser.add_argument(
        "--repeat", nargs="+", default=["1", "5"], help="rows run over every seed (default: 1 5)"
    )
    parser.add_argument("--rows", nargs="+", help="only these rows (e.g. 1 5 6a); default all")
    parser.add_argument("--workers", type=int, default=0, help="processes for features (0 = all cores)")
    parser.add_argument("--retrain", action="store_true", help="train again even where a finished run exists")
    return parser


# --- data ------------------------------------------------------------------------------------------


def prepare_dataset(args: argparse.Namespace, work: Path) -> tuple[str, str, dict[str, Any]]:
    """``(metadata_dir, audio_dir, description)``: the real FMA folders, or a demo dataset made now."""
    if args.metadata_dir or args.audio_dir:
        if not (args.metadata_dir and args.audio_dir):
            raise SystemExit("error: --metadata-dir and --audio-dir go together")
        return args.metadata_dir, args.audio_dir, {"kind": "fma", "generation_seconds": 0.0}
    from genrekit.demo import write_demo_dataset

    started = time.time()
    root = work / f"demo_{args.tracks}x{args.clip_seconds:g}s_22k_mono"
    info = write_demo_dataset(
        root,
        n_tracks=args.tracks,
        clip_seconds=args.clip_seconds,
        seed=DEMO_SEED,
        workers=args.workers or None,
        sample_rate=22050,
        channels=1,
        progress=sys.stderr.isatty(),
    )
    desc = {
        "kind": "demo",
        "tracks": info.n_tracks,
        "clip_seconds": info.clip_seconds,
        "sample_rate": 22050,
        "channels": 1,
        "seed": DEMO_SEED,
        "generation_seconds": round(time.time() - started, 1),
    }
    return str(info.metadata_dir), str(info.audio_dir), desc


def base_overrides(args: argparse.Namespace, metadata_dir: str, audio_dir: str, work: Path) -> dict[str, Any]:
    values = {
        "metadata_dir": metadata_dir,
        "audio_dir": audio_dir,
        "cache_dir": str(work / "features"),
        "subset": args.subset,
        "duration": args.duration,
        "num_segments": args.segments,
        "width_factor": args.width,
        "num_epochs": args.epochs,
        "patience": args.patience,
        "lr_patience": args.lr_patience,
        "learning_rate": args.learning_rate,
        "workers": args.workers,
    }
    return {k: v for k, v in values.items() if v is not None}


# --- evaluation --------------------------------------------------------------------------------------


def evaluate_nn_run(
    run_dir: Path, config: dict[str, Any], metadata_dir: str, audio_dir: str
) -> dict[str, Any]:
    """The project's evaluation (``model_evaluation.py``'s function) of a finished run on the test split."""
    from genrekit.evaluate_model import evaluate_model

    return evaluate_model(
        run_dir / config["model_file"],
        None,  # the training config beside the model
        metadata_dir,
        audio_dir,
        "test",
        run_dir / "evaluation_test",
        plots=False,
    )


def row_metrics(results: dict[str, Any]) -> tuple[dict[str, float | None], np.ndarray]:
    top, medium, allg = results["top"]["track"], results["medium"]["track"], results["all"]["track"]
    metrics = {
        "top_balanced_accuracy": top["balanced_accuracy"],
        "top_f1_macro": top["f1_macro"],
        "top_f1_weighted": top["f1_weighted"],
        "top_accuracy": top["accuracy"],
        "medium_f1_macro": medium["f1_macro"],
        "all_jaccard": allg["jaccard_samples"],
    }
    recall = np.array([c["recall"] if c["support"] else np.nan for c in top["per_class"]], dtype=float)
    return metrics, recall


# --- the study -----------------------------------------------------------------------------------------


def run_nn_rows(rows, args, overrides, metadata_dir, audio_dir, work, results: dict[str, Result]) -> dict:
    import keras

    from genrekit.settings import Settings
    from genrekit.training import train

    extra: dict[str, Any] = {}
    # Every row once first, then the repeated rows' other seeds: a study cut short still has a full table.
    plan = [(row, args.seeds[0]) for row in rows] + [
        (row, seed) for seed in args.seeds[1:] for row in rows if row.key in args.repeat
    ]
    for row, seed in plan:
        res = results.setdefault(row.key, Result(row))
        cw, ws, fl = row.flags
        settings = Settings.build(
            None,
            {
                **overrides,
                "use_class_weights": cw,
                "use_weighted_sampling": ws,
                "use_focal_loss": fl,
                "seed": seed,
            },
        )
        run_dir = work / "runs" / f"row{row.key}_seed{seed}"
        print(f"[row {row.key}, seed {seed}] training: {row.label}", flush=True)
        keras.backend.clear_session()
        config = train(settings, run_dir, retrain=args.retrain)
        evaluation = evaluate_nn_run(run_dir, config, metadata_dir, audio_dir)
        metrics, recall = row_metrics(evaluation)
        hist = config["history"]
        res.add(metrics, recall, float(hist["seconds"]), f"{hist['best_epoch']}/{hist['epochs_run']}", seed)
        extra.setdefault("epoch_top_counts", {})[row.key] = config["balancing"]["epoch_top_counts"]
        extra["vocab"] = config["vocabularies"]["top"]
        extra["device"] = config["device"]
        print(
            f"[row {row.key}, seed {seed}] {hist['seconds']:.0f} s, epochs {hist['best_epoch']}/"
            f"{hist['epochs_run']}, top balanced accuracy {fmt(metrics['top_balanced_accuracy'])}",
            flush=True,
        )
    return extra


def run_baselines(rows, args, overrides, work, processed, usable_ids, results: dict[str, Result]) -> dict:
    """Rows 6-7: MFCC statistics of the same usable tracks; fit on training, score the test split."""
    from genrekit import fma
    from genrekit.baseline import MfccFeatures, extract_mfcc_features, fit_predict
    from genrekit.evaluation import classification_metrics

    duration = overrides.get("duration", 30.0)
    path = work / f"mfcc_{Path(overrides['audio_dir']).resolve().name}_{duration:g}s.npz"
    if path.is_file():
        feats = MfccFeatures.load(path)
    else:
        print(f"MFCC statistics of {len(usable_ids)} tracks ...", flush=True)
        items = fma.audio_items(overrides["audio_dir"], usable_ids)
        feats = extract_mfcc_features(
            items, 22050, duration, workers=args.workers, progress=sys.stderr.isatty()
        )
        feats.save(path)
    split = {}
    for name in ("training", "test"):
        labels = processed.labels(name, usable_ids)
        keep = labels.top >= 0
        x, found = feats.rows(labels.track_ids[keep])
        split[name] = (x, labels.top[keep][found], labels.track_ids[keep][found])
    vocab = processed.vocabs["top"]
    for row in rows:
        pred, seconds = fit_predict(
            row.classifier, split["training"][0], split["training"][1], split["test"][0], BASELINE_SEED
        )
        m = classification_metrics(split["test"][1], pred, vocab.names)
        metrics = {
            "top_balanced_accuracy": m["balanced_accuracy"],
            "top_f1_macro": m["f1_macro"],
            "top_f1_weighted": m["f1_weighted"],
            "top_accuracy": m["accuracy"],
        }
        recall = np.array([c["recall"] if c["support"] else np.nan for c in m["per_class"]], dtype=float)
        res = results.setdefault(row.key, Result(row))
        res.add(metrics, recall, seconds, "-", BASELINE_SEED)
        print(
            f"[row {row.key}] fit {seconds:.1f} s, top balanced accuracy {fmt(metrics['top_balanced_accuracy'])}",
            flush=True,
        )
    return {
        "mfcc_seconds": feats.seconds,
        "mfcc_failures": len(feats.failures),
        "baseline_tracks": {k: len(v[1]) for k, v in split.items()},
    }


# --- formatting -------------------------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def summarize(values: list[float | None]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None, None
    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None)


def cell(values: list[float | None]) -> str:
    mean, sd = summarize(values)
    return fmt(mean) if sd is None else f"{fmt(mean)} ± {fmt(sd)}"


def smallest_classes(train_counts: np.ndarray, test_counts: np.ndarray, k: int = 3) -> list[int]:
    """The ``k`` top genres with the fewest training tracks among those present in the test split."""
    order = [int(i) for i in np.lexsort((np.arange(len(train_counts)), train_counts)) if test_counts[i] > 0]
    return order[:k]


def table_lines(
    results: dict[str, Result], names: list[str], small: list[int], train_counts, test_counts, width: float
) -> list[str]:
    small_heads = [f"recall {names[i]} ({train_counts[i]}/{test_counts[i]})" for i in small]
    head = (
        [
            "row",
            "configuration",
            "top bal. acc.",
            "top F1 macro",
            "top F1 weighted",
            "top acc.",
            "medium F1 macro",
            "all Jaccard",
        ]
        + small_heads
        + ["train s", "epochs best/run", "seeds"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results.values():
        row = res.row
        label = row.label + (f" [width {width:g}]" if row.kind == "nn" else "")
        recalls = [cell([float(r[i]) for r in res.recall]) for i in small]
        mean_s, sd_s = summarize(res.seconds)
        secs = f"{mean_s:.0f}" + (f" ± {sd_s:.0f}" if sd_s is not None else "")
        if row.kind == "baseline":
            secs = f"{mean_s:.2f}"
        cells = (
            [row.key, label]
            + [cell(res.metrics.get(m, [None])) for m in METRICS]
            + recalls
            + [secs, ", ".join(res.epochs), ", ".join(str(s) for s in res.seeds)]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot_recall(results: dict[str, Result], names: list[str], train_counts, test_counts, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = [int(i) for i in np.argsort(-np.asarray(train_counts), kind="stable") if test_counts[i] > 0]
    keys = [k for k in PLOTTED if k in results]
    fig, ax = plt.subplots(figsize=(13, 4.8))
    bar = 0.8 / max(len(keys), 1)
    for j, key in enumerate(keys):
        rec = np.vstack(results[key].recall)[:, order]
        mean = np.nanmean(rec, axis=0)
        err = np.nanstd(rec, axis=0, ddof=1) if len(rec) > 1 else None
        label = f"row {key}: {results[key].row.label}" + (
            f" (mean of {len(rec)} seeds)" if len(rec) > 1 else ""
        )
        ax.bar(
            np.arange(len(order)) + (j - (len(keys) - 1) / 2) * bar,
            mean,
            bar,
            yerr=err,
            capsize=2,
            label=label,
        )
    ax.set_xticks(np.arange(len(order)))
    ax.set_xticklabels(
        [f"{names[i]}\n{train_counts[i]}/{test_counts[i]}" for i in order],
        rotation=60,
        ha="right",
        fontsize=8,
    )
    ax.set_ylabel("recall on the test split (tracks)")
    ax.set_ylim(0, 1.3)  # room for the legend above the bars
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_title("Per-class recall of the top-genre head, genres by training size (train/test tracks)")
    ax.legend(fontsize=8, loc="upper left", ncol=len(keys))
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    profile = PROFILES["quick" if args.quick else "full"]
    given = {key for key in profile if getattr(args, key, None) is not None}
    for key, value in profile.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    real = bool(args.metadata_dir)
    if args.duration is None and not real:
        args.duration = args.clip_seconds
    if real and "segments" not in given:
        args.segments = None  # real FMA: config.py's NUM_SEGMENTS unless given
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
    rows = [r for r in ROWS if not args.rows or r.key in args.rows]
    started = time.time()
    command = "python benchmarks/bench_balancing.py " + " ".join(argv if argv is not None else sys.argv[1:])

    metadata_dir, audio_dir, data_desc = prepare_dataset(args, work)
    print(f"dataset: {metadata_dir} ({data_desc})", flush=True)
    overrides = base_overrides(args, metadata_dir, audio_dir, work)

    from genrekit.settings import Settings
    from genrekit.training import BalancedGenreProcessor

    settings = Settings.build(None, overrides)
    processor = BalancedGenreProcessor(settings)
    tracks, genres = processor.load_fma_metadata()
    processed = processor.process_fma_labels(tracks, genres)
    t0 = time.time()
    cache = processor.extract_features(processed, cache_dir=settings.cache_dir)
    cache_seconds = time.time() - t0
    # A rerun reuses the dataset and cache: report the times measured when they were made.
    timings_path = work / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
    key = f"{Path(audio_dir).resolve()}|{settings.num_segments}|{settings.duration}"
    first = timings.setdefault(
        key, {"generation_seconds": data_desc["generation_seconds"], "cache_seconds": cache_seconds}
    )
    timings_path.write_text(json.dumps(timings, indent=1))
    data_desc["generation_seconds"], cache_seconds = first["generation_seconds"], first["cache_seconds"]
    usable = np.asarray(cache.track_ids)
    print(
        f"feature cache: {len(usable)} usable tracks, {len(cache.failures)} left out ({cache_seconds:.0f} s)",
        flush=True,
    )
    names = list(processed.vocabs["top"].names)
    n_top = len(names)
    counts = {}
    for split in ("training", "validation", "test"):
        lab = processed.labels(split, usable)
        counts[split] = np.bincount(lab.top[lab.top >= 0], minlength=n_top)
    all_top = counts["training"] + counts["validation"] + counts["test"]
    small = smallest_classes(counts["training"], counts["test"])

    results: dict[str, Result] = {}
    extra = run_nn_rows(
        [r for r in rows if r.kind == "nn"], args, overrides, metadata_dir, audio_dir, work, results
    )
    base_rows = [r for r in rows if r.kind == "baseline"]
    if base_rows:
        extra.update(run_baselines(base_rows, args, overrides, work, processed, usable, results))
    results = {r.key: results[r.key] for r in rows if r.key in results}
    total = time.time() - started

    table = table_lines(
        results, names, small, counts["training"].tolist(), counts["test"].tolist(), settings.width_factor
    )
    print("\n" + "\n".join(table), flush=True)
    print(f"\ntotal {total / 60:.1f} min", flush=True)

    plot_path = results_path.with_name(f"{results_path.stem}_recall.png")
    plot_recall(results, names, counts["training"].tolist(), counts["test"].tolist(), plot_path)
    raw = {
        "command": command,
        "seconds": round(total, 1),
        "dataset": data_desc,
        "machine": machine(),
        "settings": {
            k: v for k, v in overrides.items() if k not in ("metadata_dir", "audio_dir", "cache_dir")
        },
        "top_names": names,
        "top_counts": {k: v.tolist() for k, v in counts.items()},
        "rows": {
            k: {
                "label": r.row.label,
                "metrics": r.metrics,
                "seconds": r.seconds,
                "epochs": r.epochs,
                "seeds": r.seeds,
                "recall": [x.tolist() for x in r.recall],
            }
            for k, r in results.items()
        },
        **{k: v for k, v in extra.items() if k != "vocab"},
    }
    (work / "results.json").write_text(json.dumps(raw, indent=1, default=lambda o: None), encoding="utf-8")

    train_total = sum(sum(r.seconds) for r in results.values() if r.row.kind == "nn")
    fit_total = sum(sum(r.seconds) for r in results.values() if r.row.kind == "baseline")
    parts = (
        data_desc.get("generation_seconds", 0)
        + cache_seconds
        + train_total
        + extra.get("mfcc_seconds", 0)
        + fit_total
    )
    m = raw["machine"]
    present = all_top[all_top > 0]
    ratio = f"{present.max() / present.min():.0f}x" if len(present) else "n/a"
    device = extra.get("device", {})
    lines = [
        "# Results: balancing ablation and the FMA paper's baseline",
        "",
        "> **Synthetic data.** "
        + (
            "These are results on the toolkit's synthetic demo dataset "
            "(`genrekit.demo`), not on FMA. Real FMA results may not follow them: the demo's genres are "
            "families of synthesised sounds, its imbalance is FMA's shape scaled down to a few thousand tracks, "
            "and its smallest genres have only a handful of tracks."
            if not real
            else "Real FMA data."
        ),
        "",
        f"Produced by `{command.strip()}`. Compute time of the study, summed over its parts: "
        f"{parts / 60:.1f} min (demo dataset generation {data_desc.get('generation_seconds', 0):.0f} s, "
        f"feature cache {cache_seconds:.0f} s, training runs {train_total / 60:.1f} min, MFCC statistics "
        f"{extra.get('mfcc_seconds', 0):.0f} s, classifier fits {fit_total:.0f} s); this invocation took "
        f"{total / 60:.1f} min (finished runs, the dataset and the features in `--work-dir` are reused; "
        "the times above are those measured when each was made).",
        "",
        "## Machine",
        "",
        f"- {m['cores']} CPU cores ({m['cpu']}), shared with other jobs while this ran; {m['platform']}, "
        f"Python {m['python']}; {m['versions']}; genrekit commit {m['commit']}.",
        f"- Training device: {describe_device(device)}. "
        "No GPU was lent to this task, so the full-width rows (1 and 5 at width 1.0) were not run; "
        "every model row uses a reduced width factor (below).",
        "",
        "## Setup",
        "",
        (
            f"- Data: demo dataset of {data_desc.get('tracks')} tracks, {data_desc.get('clip_seconds'):g} s clips, "
            f"22,050 Hz mono MP3, seed {DEMO_SEED}; {len(usable)} tracks with usable audio "
            f"({len(cache.failures)} defective files left out, as in FMA)."
            if not real
            else f"- Data: {metadata_dir}, {audio_dir}, subset {settings.subset}; {len(usable)} usable tracks."
        ),
        f"- Top-genre tracks (single top genre) per split: training {int(counts['training'].sum())}, validation "
        f"{int(counts['validation'].sum())}, test {int(counts['test'].sum())}; the largest top genre has "
        f"{ratio} the tracks of the smallest ({int(present.max())} vs {int(present.min())}).",
        "- Split: the dataset's artist-filtered training/validation/test split; every row is scored on the "
        "same test tracks, at track level (segment probabilities averaged per track).",
        f"- Model rows: `genrekit.training.train` and the project's evaluator, width factor "
        f"**{settings.width_factor:g}** (the README's model is 1.0, ~0.9 GFLOP per segment; too slow for "
        f"this CPU), {settings.num_segments} segments of {settings.segment_frames} frames per clip "
        f"(first {settings.duration:g} s), batch {settings.batch_size}, learning rate {settings.learning_rate:g}, "
        f"at most {settings.num_epochs} epochs, early stopping on `{settings.monitor}` with "
        f"patience {settings.patience} (best weights kept), LR schedule {settings.lr_schedule}"
        + (f" (halved after {settings.lr_patience} epochs without improvement)" if settings.lr_schedule == "plateau" else "")
        + f", SpecAugment {'on' if settings.spec_augment else 'off'}, mixup alpha {settings.mixup_alpha:g}. "
        f"Every other setting is config.py's default, including the sampling "
        f"thresholds ({settings.sampling_thresholds}: oversample below {settings.oversample_threshold}, "
        f"undersample above {settings.undersample_threshold} training tracks), focal gamma {settings.focal_gamma:g} and the "
        f"class-weight cap {settings.max_class_weight:g}.",
        f"- Seeds: rows {', '.join(args.repeat)} over seeds {', '.join(map(str, args.seeds))} (mean ± sample "
        f"standard deviation); the other model rows seed {args.seeds[0]}.",
        "- Baselines (rows 6-7): `genrekit.baseline`, the FMA paper's recipe on the same usable tracks and "
        "split: 20 MFCCs x (mean, std, skew, kurtosis, median, min, max) = 140 values per clip (librosa), "
        "standardized, scikit-learn `SVC(kernel='rbf')` (defaults C=1, gamma='scale') and "
        "`LogisticRegression`, fitted on the training split's top-genre tracks "
        f"({extra.get('baseline_tracks', {}).get('training', 'n/a')}), scored on the test split's "
        f"({extra.get('baseline_tracks', {}).get('test', 'n/a')}) with the evaluator's "
        "`classification_metrics`. They predict only top genres, so their medium and all-genres cells are n/a. "
        "Their time is the classifier's fit time (features excluded).",
        "",
        "## Table (test split, track level)",
        "",
        "Recall columns: the three top genres with the fewest training tracks that appear in the test split "
        "(training/test tracks in brackets). `train s` is the whole training run (model rows, including "
        "per-epoch validation) or the classifier fit (baselines).",
        "",
        *table,
        "",
        f"Per-epoch top-genre draws with weighted sampling (row 5; training counts without sampling: "
        f"{counts['training'].tolist()}): {extra.get('epoch_top_counts', {}).get('5')}",
        "",
        "## Per-class recall (rows 1, 5 and 6a)",
        "",
        f"![per-class recall]({plot_path.name})",
        "",
        "## Reading",
        "",
        "{{NOTES}}",
        "",
        "## Reproduce on real FMA",
        "",
        "The paper's reference is fma_medium, where its SVM reaches about 63% top-genre accuracy "
        "(row 6a's `top acc.`). After `python setup_fma_dataset.py` has fetched fma_metadata and fma_medium:",
        "",
        "```",
        "python benchmarks/bench_balancing.py \\",
        "    --metadata-dir fma_data/extracted/metadata/fma_metadata \\",
        "    --audio-dir fma_data/extracted/fma_medium/fma_medium --subset medium \\",
        "    --width 1.0 --epochs 100 --patience 15 --lr-patience 5 --segments 10 --duration 30 \\",
        "    --results runs/bench_balancing_fma_medium/results.md",
        "```",
        "",
        "That needs a GPU for the model rows (25,000 clips, width 1.0).",
    ]
    write_markdown(results_path, lines)
    print(f"results: {results_path} and {plot_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
