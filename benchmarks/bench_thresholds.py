"""All-genres decision rules compared on a finished training run: chosen on validation, scored on test.

Run from the repository root, on any run folder the trainer wrote (its feature cache is reused)::

    python benchmarks/bench_thresholds.py runs/quick_start     # after `make demo`

For the run's model it predicts the validation and test tracks once and prints, for each rule, the
mean per-track Jaccard on validation (where the rule's parameters are chosen) and on test, and the
mean number of genres predicted per test track against the true number:

- ``0.5``: the fixed THRESHOLD;
- ``one t``: one threshold for every genre, tuned on validation;
- ``per-genre F1``: the previous rule (each genre with >= 5 validation positives gets the threshold
  of its best F1, the others one shared threshold), reimplemented here for reference;
- ``prior-corrected t``: the trainer's rule, ``sigmoid(logit(t) + log pos_weight)``;
- ``+ include_top``: the same with the top head's genre always included (see genrekit.evaluate.thresholds).

No figure is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def per_genre_f1(
    y: np.ndarray, p: np.ndarray, grid: np.ndarray, jaccard, min_positives: int = 5
) -> np.ndarray:
    fallback = grid[int(np.argmax([jaccard(y, p > t) for t in grid]))]
    th = np.full(y.shape[1], fallback)
    for j in np.flatnonzero(y.sum(axis=0) >= min_positives):
        f1 = [
            2 * ((p[:, j] > t) & (y[:, j] > 0)).sum() / max((p[:, j] > t).sum() + y[:, j].sum(), 1)
            for t in grid
        ]
        th[j] = grid[int(np.argmax(f1))]
    return th


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run folder written by the trainer")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from sklearn.metrics import jaccard_score

    from genrekit.evaluate.aggregate import track_mean
    from genrekit.evaluate.thresholds import (
        GRID,
        choose_thresholds,
        corrected_thresholds,
        decide,
        top_columns,
    )
    from genrekit.models.io import load_model
    from genrekit.settings import Settings
    from genrekit.train.pipeline import predict_segments
    from genrekit.train.run import BalancedGenreProcessor
    from genrekit.train.run_config import load_training_config

    run = Path(args.run_dir)
    config = load_training_config(run / "balanced_training_config.json")
    settings = Settings.build(run / "balanced_training_config.json", {})
    processor = BalancedGenreProcessor(settings, settings.metadata_dir, settings.audio_dir)
    processed = processor.process_fma_labels(*processor.load_fma_metadata())
    cache = processor.extract_features(processed)  # the run's cache (settings.cache_dir), reused
    model = load_model(run / config["model_file"])
    data = {}
    for split in ("validation", "test"):
        labels = processed.labels(split, cache.track_ids)
        probs, seg = predict_segments(
            model, cache, labels.track_ids, batch_size=settings.inference_batch_size
        )
        keep = labels.all.any(axis=1)
        mean = {k: track_mean(v, seg, len(labels))[keep] for k, v in probs.items()}
        data[split] = (labels.all[keep], mean["all"], np.argmax(mean["top"], axis=1))
    balancing = config["balancing"]
    w = (
        np.asarray(balancing["class_weights"]["all"])
        if balancing["use_class_weights"]
        else np.ones(data["test"][0].shape[1])
    )
    columns = top_columns(
        config["vocabularies"]["top"]["genre_ids"], config["vocabularies"]["all"]["genre_ids"]
    )

    def jaccard(y, pred):
        return float(jaccard_score(y, pred.astype(int), average="samples", zero_division=0))

    (yv, pv, tv), (yt, pt, tt) = data["validation"], data["test"]
    one_t = GRID[int(np.argmax([jaccard(yv, pv > t) for t in GRID]))]
    plain = choose_thresholds(yv, pv, pos_weight=w)
    ruled = choose_thresholds(yv, pv, pos_weight=w, top_class=tv, columns=columns)
    best_with_top = max(
        GRID, key=lambda t: (jaccard(yv, decide(pv, corrected_thresholds(t, w), tv, columns)), -t)
    )
    rules = {
        "0.5": (0.5, None),
        f"one t ({one_t:g})": (one_t, None),
        "per-genre F1 (previous)": (per_genre_f1(yv, pv, GRID, jaccard), None),
        f"prior-corrected t ({plain['t']:g})": (np.asarray(plain["all"]), None),
        f"+ include_top (t {best_with_top:g})": (corrected_thresholds(best_with_top, w), "top"),
    }
    print(f"{run}: {len(yv)} validation and {len(yt)} test tracks with genres; "
          f"{yt.sum(axis=1).mean():.2f} true genres per test track")  # fmt: skip
    print(f"{'rule':32s} {'validation':>10s} {'test':>7s} {'predicted/track':>16s}")
    for name, (th, top) in rules.items():
        v = decide(pv, th, tv if top else None, columns)
        t = decide(pt, th, tt if top else None, columns)
        print(f"{name:32s} {jaccard(yv, v):10.3f} {jaccard(yt, t):7.3f} {t.sum(axis=1).mean():16.2f}")
    print(f"the trainer's choice: include_top {ruled['include_top']}, t {ruled['t']:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
