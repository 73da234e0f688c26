"""Training-recipe comparison: one training + evaluation per setting combination, one line per run.

Run from the repository root (each run trains the toolkit's model with the project's trainer and
scores the test split with the project's evaluator)::

    python benchmarks/bench_recipe.py --run d_cosine:lr_schedule=cosine,learning_rate=3e-3 \\
        --run b_cosine_spec:lr_schedule=cosine,learning_rate=3e-3,spec_augment=true
    python benchmarks/bench_recipe.py --tracks 1600 --base width_factor=0.125,num_epochs=10,patience=10 ...

The demo dataset (``--tracks`` x ``--clip_seconds``, seed 0) and the feature cache are made once
under ``--work`` and reused; a finished run folder is reused too. Settings are config.py's, then
``--base``, then each run's own (``key=value``, the names of config.py in lower case). Lines are
appended to ``<work>/results.txt``. No figure is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BASE = {  # the measurements of issue 13: 4 segments per 10 s clip (FMA's spacing), README thresholds scaled
    "width_factor": 0.125,
    "num_epochs": 10,
    "patience": 10,
    "num_segments": 4,
    "sampling_thresholds": "relative",
}


def parse_pairs(text: str) -> dict:
    out = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME:key=value,...",
                        help="one run (repeatable)")  # fmt: skip
    parser.add_argument(
        "--base", default="", help="key=value,... applied to every run (after the defaults above)"
    )
    parser.add_argument("--tracks", type=int, default=1600, help="demo tracks (default 1600)")
    parser.add_argument("--clip_seconds", type=float, default=10.0, help="demo clip length (default 10)")
    parser.add_argument("--work", default="/tmp/genrekit_bench_recipe", help="demo, cache and runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MPLBACKEND", "Agg")
    from genrekit.cli import setup_logging
    from genrekit.datasets.demo.writer import write_demo_dataset
    from genrekit.evaluate.evaluator import evaluate_model
    from genrekit.settings import Settings
    from genrekit.train.run import train

    work = Path(args.work)
    demo = write_demo_dataset(work / f"demo{args.tracks}", n_tracks=args.tracks,
                              clip_seconds=args.clip_seconds, seed=0, progress=False)  # fmt: skip
    base = {**BASE, **parse_pairs(args.base), "duration": args.clip_seconds,
            "metadata_dir": str(demo.metadata_dir), "audio_dir": str(demo.audio_dir),
            "cache_dir": str(work / "features")}  # fmt: skip
    for spec in args.run:
        name, _, pairs = spec.partition(":")
        out = work / "runs" / name
        settings = Settings.build(None, {**base, **parse_pairs(pairs), "output_dir": str(out)})
        setup_logging(out)
        started = time.time()
        config = train(settings, out)
        seconds = time.time() - started
        r = evaluate_model(out / settings.model_filename, out / settings.training_config_filename,
                           demo.metadata_dir, demo.audio_dir, "test", out / "evaluation", settings.subset)  # fmt: skip
        top, med, a = r["top"]["track"], r["medium"]["track"], r["all"]["track"]
        fixed = r["all"].get("track_fixed_threshold") or {}
        h = config["history"]
        line = (
            f"{name:24s} top bal {top['balanced_accuracy']:.3f} f1m {top['f1_macro']:.3f} "
            f"f1w {top['f1_weighted']:.3f} acc {top['accuracy']:.3f} (n={top['n']}) | medium bal "
            f"{med['balanced_accuracy']:.3f} f1m {med['f1_macro']:.3f} | all jaccard {a['jaccard_samples']:.3f} "
            f"(at {settings.threshold:g}: {fixed.get('jaccard_samples', float('nan')):.3f}) lrap {a['lrap']:.3f} | "
            f"epochs {h['best_epoch']}/{h['epochs_run']}, {seconds:.0f} s | {pairs}"
        )
        print(line, flush=True)
        with open(work / "results.txt", "a", encoding="utf-8") as f:
            f.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
