"""Benchmark: load a full-size tracks.csv the naive FMA ``utils.load`` way vs ``genrekit.datasets.fma.load_tracks``.

Writes an FMA-layout tracks.csv of fma_large's size (106,574 rows x 52 columns, ~250 MB with
FMA-like long text fields) from ``genrekit.datasets.demo.metadata.make_demo_metadata`` into a temporary folder, then
loads it in a fresh child process per method and prints wall time, the child's peak RSS
(``VmHWM``) and the ratios to the naive baseline. The naive way is FMA's ``utils.load``
(``read_csv(index_col=0, header=[0, 1])``, ``ast.literal_eval`` on the five list columns, date
parsing, ordered subset category) with the calls that break on today's pandas fixed. The
temporary folder is deleted at the end.

    python benchmarks/bench_metadata.py                   # 106,574 rows, 3 repeats
    python benchmarks/bench_metadata.py --rows 20000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
METHODS = ("naive", "genrekit_all", "genrekit_essential")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=106574, help="rows of tracks.csv (default: fma_large's)")
    parser.add_argument("--repeats", type=int, default=3, help="child runs per method; the median is shown")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=None, help="folder for the temporary data (default: the system's)")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "CSV"), help=argparse.SUPPRESS)
    return parser


def naive_load(path: str):
    """FMA's ``utils.load`` for tracks.csv, as far as it still runs on pandas 3."""
    import ast

    import pandas as pd

    tracks = pd.read_csv(path, index_col=0, header=[0, 1])
    for column in [("track", "tags"), ("album", "tags"), ("artist", "tags"), ("track", "genres"),
                   ("track", "genres_all")]:  # fmt: skip
        tracks[column] = tracks[column].map(ast.literal_eval)
    for column in [("track", "date_created"), ("track", "date_recorded"), ("album", "date_created"),
                   ("album", "date_released"), ("artist", "date_created"), ("artist", "active_year_begin"),
                   ("artist", "active_year_end")]:  # fmt: skip
        tracks[column] = pd.to_datetime(tracks[column])
    # utils.load's `astype('category', categories=..., ordered=True)` fails on pandas >= 0.25.
    subsets = pd.CategoricalDtype(["small", "medium", "large"], ordered=True)
    tracks["set", "subset"] = tracks["set", "subset"].astype(subsets)
    for column in [("track", "genre_top"), ("track", "license"), ("album", "type"), ("album", "information"),
                   ("artist", "bio")]:  # fmt: skip
        tracks[column] = tracks[column].astype("category")
    return tracks


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc (VmHWM: peak RSS; VmRSS: now), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(method: str, path: str) -> int:
    """Run one method in this (fresh) process and print a JSON line of its figures; exit status 0."""
    import pandas  # noqa: F401  (imported before timing, as both methods need it)

    base = _status_mb("VmRSS")
    start = time.perf_counter()
    if method == "naive":
        tracks = naive_load(path)
    else:
        from genrekit.datasets.fma import load_tracks

        tracks = load_tracks(path, columns="all" if method == "genrekit_all" else "essential")
    seconds = time.perf_counter() - start
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec.
    peak = _status_mb("VmHWM")
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "base_mb": base,
                      "rows": len(tracks), "columns": tracks.shape[1]}))  # fmt: skip
    return 0


def run_child(method: str, path: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    if out.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return child(*args.child)
    sys.path.insert(0, str(REPO))
    from genrekit.datasets.demo.metadata import make_demo_metadata, write_tracks_csv

    try:
        import genrekit.datasets.fma  # noqa: F401

        methods = METHODS
    except ImportError:
        print("genrekit.datasets.fma not found: skipping the genrekit rows (only the naive baseline is measured)")
        methods = ("naive",)

    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="bench_metadata_") as tmp:
        path = Path(tmp) / "tracks.csv"
        start = time.perf_counter()
        tracks, _ = make_demo_metadata(args.rows, seed=args.seed, long_text=True)
        write_tracks_csv(tracks, path)
        del tracks
        print(f"wrote {path.name}: {args.rows:,} rows x 52 columns, {path.stat().st_size / 1e6:.0f} MB "
              f"in {time.perf_counter() - start:.1f} s")  # fmt: skip

        results: dict[str, dict] = {}
        for method in methods:
            runs = [run_child(method, path) for _ in range(args.repeats)]
            runs.sort(key=lambda r: r["seconds"])
            results[method] = runs[len(runs) // 2]
            results[method]["all_seconds"] = [round(r["seconds"], 2) for r in runs]

    naive = results["naive"]
    print(f"\n{'method':<20} {'rows':>8} {'cols':>5} {'time s':>8} {'peak RSS MB':>12} {'x faster':>9} "
          f"{'x less memory':>14}  runs")  # fmt: skip
    for method, r in results.items():
        speed = naive["seconds"] / r["seconds"]
        memory = (naive["peak_mb"] - naive["base_mb"]) / max(r["peak_mb"] - r["base_mb"], 1e-9)
        print(f"{method:<20} {r['rows']:>8,} {r['columns']:>5} {r['seconds']:>8.2f} {r['peak_mb']:>12.0f} "
              f"{speed:>9.2f} {memory:>14.2f}  {r['all_seconds']}")  # fmt: skip
    print("\npeak RSS is the child's VmHWM; 'x less memory' compares it above the child's RSS after "
          "importing pandas (~{:.0f} MB).".format(naive["base_mb"]))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
