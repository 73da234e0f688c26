"""Speed of segment-to-track aggregation and of a whole evaluation, against naive baselines.

    /work/main/.venv/bin/python benchmarks/bench_aggregate.py [--tracks 10000] [--segments 10]

Prints seconds per call (best of --repeat) of the vectorized functions of genrekit.evaluate.aggregate
and the ratio to (a) a Python loop over tracks calling the one-file functions and (b) summing
with np.add.at, all measured in this run on the same random data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from evalmetrics_helpers import synthetic_case  # noqa: E402

from genrekit.evaluate.aggregate import (  # noqa: E402
    average_confidence,
    track_average,
    track_mean,
    track_voting,
    voting,
)
from genrekit.evaluate.metrics import evaluate  # noqa: E402


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def naive_loop(probs: np.ndarray, segment_track: np.ndarray, n_tracks: int) -> None:
    order = np.argsort(segment_track, kind="stable")
    bounds = np.cumsum(np.bincount(segment_track, minlength=n_tracks))[:-1]
    for rows in np.split(probs[order], bounds):
        average_confidence(rows)
        voting(rows)


def add_at_mean(probs: np.ndarray, segment_track: np.ndarray, n_tracks: int) -> np.ndarray:
    sums = np.zeros((n_tracks, probs.shape[1]))
    np.add.at(sums, segment_track, probs)
    return sums / np.bincount(segment_track, minlength=n_tracks)[:, None]


def bench_classes(
    rng: np.random.Generator, n_tracks: int, n_segments: int, n_classes: int, repeat: int
) -> str:
    segment_track = rng.permutation(np.repeat(np.arange(n_tracks), n_segments))
    probs = rng.dirichlet(np.ones(n_classes), size=len(segment_track)).astype(np.float32)
    fast = best_of(lambda: (track_average(probs, segment_track), track_voting(probs, segment_track)), repeat)
    loop = best_of(lambda: naive_loop(probs, segment_track, n_tracks), 1)
    mean = best_of(lambda: track_mean(probs, segment_track), repeat)
    add_at = best_of(lambda: add_at_mean(probs, segment_track, n_tracks), repeat)
    np.testing.assert_allclose(track_mean(probs, segment_track), add_at_mean(probs, segment_track, n_tracks))
    return (
        f"{n_classes:>8} {fast:>13.3f} {loop:>8.3f} {loop / fast:>5.1f}x "
        f"{mean:>7.3f} {add_at:>8.3f} {add_at / mean:>5.1f}x"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=10000)
    parser.add_argument("--segments", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"{args.tracks} tracks x {args.segments} segments, float32 probabilities, best of {args.repeat}")
    print("track_average + track_voting vs a loop of average_confidence + voting; track_mean vs np.add.at")
    header = ("classes", "vectorized s", "loop s", "ratio", "mean s", "add.at s", "ratio")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (8, 13, 8, 6, 7, 8, 6), strict=True)))
    for n_classes in (16, 163):
        print(bench_classes(rng, args.tracks, args.segments, n_classes, args.repeat))
    for n_tracks in (500, 2000):
        case = synthetic_case(np.random.default_rng(1), n_tracks=n_tracks, n_medium=150, n_all=163)
        seconds = best_of(lambda case=case: evaluate(**case), 1)
        n_seg = len(case["segment_track"])
        print(f"evaluate(): {n_tracks} tracks, {n_seg} segments, 16/150/163 classes: {seconds:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
