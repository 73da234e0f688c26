"""Benchmark of the execution engines: the feature cache built by the local worker pool and by the
Ray engine on the same machine, the same clips and the same number of workers, measured in one run.

Run from the repository root (the Ray extra installed: pip install -r requirements-ray.txt):

    python benchmarks/bench_engine.py --n 310
    python benchmarks/bench_engine.py --n 310 --workers 2 --nodes 1,4,16
    python benchmarks/bench_engine.py --n 24 --frontend musicnn_embeddings --nodes 1,8,32

Clips: the genuine fma_small clips in ../shared/fma-real/fma_small/000 (62 real 30 s MP3s), each
used several times under other track ids to reach --n (every row is decoded and written again),
else the demo's generator. Each engine builds a new cache of the same --n rows twice, alternating
(local, ray, local, ray), best of two per engine; the time includes starting the workers (spawned
processes, or Ray actors), not starting the Ray instance (once per cluster, printed apart). The
two caches are compared row for row. The projection divides fma_large's 106,574 clips by the Ray
engine's measured rate per node times N nodes (nodes like this one, linear scaling: the driver
only commits status rows). No timed assertions: figures.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # the musicnn workers' TensorFlow notes

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FMA_LARGE = 106_574
GENUINE = Path(os.environ.get("GENREKIT_FMA_REAL", REPO.parent / "shared" / "fma-real")) / "fma_small" / "000"


def clips(n: int, work: Path) -> tuple[list[tuple[int, str]], str]:
    """``n`` (track id, path) items and where their audio came from."""
    files = sorted(GENUINE.glob("*.mp3")) if GENUINE.is_dir() else []
    source = f"{len(files)} genuine fma_small clips ({GENUINE})"
    if not files:
        from genrekit.datasets.demo.writer import write_demo_dataset

        demo = write_demo_dataset(work / "demo", n_tracks=60, clip_seconds=30.0, seed=0, progress=False)
        files = sorted(Path(demo.audio_dir).rglob("*.mp3"))
        source = f"{len(files)} demo clips of 30 s (the genuine clips are absent)"
    return [(i + 1, str(files[i % len(files)])) for i in range(n)], source


def frontend_of(name: str):  # noqa: ANN201
    from genrekit.features.frontends import as_frontend
    from genrekit.features.params import FeatureParams
    from genrekit.settings import Settings

    if name == "mel":
        return as_frontend(FeatureParams())
    from genrekit.features.musicnn import MusicnnEmbeddings

    return MusicnnEmbeddings.from_settings(Settings())


def build(engine: str, items: list, frontend, workers: int, folder: Path) -> float:  # noqa: ANN001
    """Seconds to build a new cache of ``items`` with ``engine``."""
    from genrekit.features.cache import ensure_cache

    shutil.rmtree(folder, ignore_errors=True)
    started = time.perf_counter()
    summary = ensure_cache(folder, items, frontend, workers=workers, engine=engine, progress=False)
    seconds = time.perf_counter() - started
    if summary.pending:
        raise SystemExit(f"{engine}: {summary.pending} rows left pending")
    return seconds


def same_rows(a: Path, b: Path, items: list, frontend) -> bool:  # noqa: ANN001
    from genrekit.features.cache import FeatureCache

    ids = np.array([tid for tid, _ in items])
    ca, cb = FeatureCache.open(a, frontend), FeatureCache.open(b, frontend)
    ok = ca.available(ids)
    return ca.status(ids).tolist() == cb.status(ids).tolist() and np.array_equal(ca.read(ok), cb.read(ok))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=310, help="rows per build (clips reused under other ids)")
    parser.add_argument("--workers", type=int, default=2, help="workers of each engine (default 2)")
    parser.add_argument("--frontend", choices=("mel", "musicnn_embeddings"), default="mel")
    parser.add_argument("--nodes", default="1,4,16,64", help="node counts of the fma_large projection")
    args = parser.parse_args(argv)
    from genrekit.ray_engine import connect

    work = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    try:
        items, source = clips(args.n, work)
        frontend = frontend_of(args.frontend)
        frontend.prepare()
        started = time.perf_counter()
        ray = connect()
        ray_start = time.perf_counter() - started
        cpus = ray.cluster_resources().get("CPU", 0)
        times: dict[str, list[float]] = {"local": [], "ray": []}
        for _ in range(2):
            for engine in times:
                times[engine].append(build(engine, items, frontend, args.workers, work / engine))
        same = same_rows(work / "local", work / "ray", items, frontend)
        report(args, source, items, times, same, ray_start, cpus)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(args, source, items, times, same, ray_start, cpus) -> None:  # noqa: ANN001
    rate = {engine: len(items) / min(t) for engine, t in times.items()}
    ratio = rate["ray"] / rate["local"]
    print(f"{len(items)} rows of {args.frontend} features from {source}; {args.workers} workers each")
    print(
        f"Ray instance: {cpus:g} CPUs on this machine, started in {ray_start:.1f} s (once per cluster, not counted)"
    )
    for engine, t in times.items():
        runs = ", ".join(f"{s:.1f} s" for s in t)
        print(f"{engine:6s} engine: {rate[engine]:7.2f} clips/s (best of {runs}, worker start-up included)")
    print(f"ray / local: {ratio:.2f}x the rate (overhead {100 * (1 - ratio):+.1f}%); same rows: {same}")
    per_node = rate["ray"]
    for n in (int(x) for x in args.nodes.split(",")):
        hours = FMA_LARGE / (per_node * n) / 3600
        print(f"fma_large ({FMA_LARGE:,} clips) on {n:3d} node(s) like this one: {hours:8.2f} h")


if __name__ == "__main__":
    sys.exit(main())
