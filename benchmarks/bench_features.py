"""Benchmark of audio-to-segments extraction against the naive librosa path, measured in one run.

Run from the repository root (clips are generated once, in parallel, and reused with --clip_dir):

    python benchmarks/bench_features.py --n 200
    python benchmarks/bench_features.py --n 200 --clip_dir /tmp/bench_clips

Measures, on the same N synthetic 30 s, 44.1 kHz stereo, 256 kbps CBR MP3s (FMA's format):
naive (librosa.load(sr=22050) + melspectrogram + power_to_db, one process), decode only
(soundfile.read float32: the floor of a decoder-bound pipeline, per core), decode of only the
regions the segments use, and our extractor through the real cache build (``ensure_cache``) with
1 worker and with every core, each build in a fresh process so its peak memory can be read for
two dataset sizes. Every path runs with one BLAS/OpenMP thread (the naive baseline too, as in
PERF_NOTES.md: under load, extra BLAS threads only slow it down). No timed assertions: figures.

Each path is timed twice: wall clock, and CPU time (user + system; for a build, of the parent and
of every worker). On a machine busy with other jobs the wall-clock rates measure the load more
than the code; the CPU time per clip does not, so the ratios are also given in CPU terms, with
the rate they project on an idle machine (cores / CPU seconds per clip).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FMA_LARGE = 106_574
SR_IN = 44100


def _write_clip(args: tuple[Path, int]) -> Path:
    """One 30 s stereo clip: a few seeded partials with envelopes, a beat and noise; 256 kbps CBR."""
    import soundfile as sf

    path, seed = args
    if path.is_file() and path.stat().st_size > 0:
        return path
    rng = np.random.default_rng(seed)
    n = 30 * SR_IN
    t = np.arange(n, dtype=np.float64) / SR_IN
    x = np.zeros((n, 2))
    for _ in range(6):
        f = rng.uniform(60, 5000)
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.1, 2) * t + rng.uniform(0, 6))
        x += (np.sin(2 * np.pi * f * t)[:, None] * env[:, None]) * rng.uniform(0.3, 1.0, 2)
    beat = (np.sin(2 * np.pi * 2 * t) > 0.95).astype(float) * rng.standard_normal(n)
    x = 0.15 * x / 6 + 0.2 * beat[:, None] + 0.01 * rng.standard_normal((n, 2))
    tmp = path.with_suffix(".tmp.mp3")
    sf.write(
        tmp,
        x.astype(np.float32),
        SR_IN,
        format="MP3",
        subtype="MPEG_LAYER_III",
        bitrate_mode="CONSTANT",
        compression_level=(320 - 256) / 288,
    )
    os.replace(tmp, path)
    return path


def make_clips(clip_dir: Path, n: int, workers: int) -> list[Path]:
    clip_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(clip_dir / f"{i:06d}.mp3", i) for i in range(n)]
    todo = [j for j in jobs if not j[0].is_file()]
    if todo:
        start = time.perf_counter()
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_clip, todo, chunksize=4))
        print(f"generated {len(todo)} clips in {time.perf_counter() - start:.1f} s ({workers} processes)")
    return [p for p, _ in jobs]


class _Timer:
    """Wall-clock and CPU (user + system of this process) seconds of a ``with`` block."""

    def __enter__(self) -> _Timer:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def naive(paths: list[Path]) -> _Timer:
    import librosa

    with _Timer() as timer:
        for path in paths:
            y, sr = librosa.load(path, sr=22050)
            mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=128)
            librosa.power_to_db(mel)
    return timer


def decode_only(paths: list[Path]) -> _Timer:
    import soundfile as sf

    with _Timer() as timer:
        for path in paths:
            sf.read(path, dtype="float32")
    return timer


def decode_regions(paths: list[Path], params) -> _Timer:
    """Seek + read of only the regions the segments use (what load_segments decodes)."""
    import soundfile as sf

    from genrekit.features.mel import segment_starts

    with _Timer() as timer:
        for path in paths:
            with sf.SoundFile(path) as f:
                length = min(
                    -(-f.frames * params.sample_rate // f.samplerate), round(params.duration * 22050)
                )
                total = 1 + length // params.hop_length
                starts = segment_starts(total, params.num_segments, params.segment_frames)
                ratio = f.samplerate / params.sample_rate
                seg = (params.segment_frames - 1) * params.hop_length + params.n_fft
                for s in starts:
                    a = max(0, int((s * params.hop_length - params.n_fft // 2 - 441) * ratio))
                    f.seek(a)
                    f.read(int((seg + 882) * ratio), dtype="float32")
    return timer


def in_process(paths: list[Path], params) -> _Timer:
    from genrekit.features.mel import load_segments

    with _Timer() as timer:
        for path in paths:
            load_segments(path, params)
    return timer


def build_in_subprocess(paths: list[Path], cache_dir: Path, workers: int) -> dict:
    """A real cache build in a fresh process; returns its time and the peak RSS of it and its workers."""
    spec = json.dumps({"paths": [str(p) for p in paths], "cache": str(cache_dir), "workers": workers})
    out = subprocess.run(
        [sys.executable, __file__, "--_build", spec], check=True, capture_output=True, text=True, cwd=REPO
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM): unlike ru_maxrss it does not inherit the forking parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> tuple[float, float]:
    """User + system seconds of this process and of its ended children (the build's workers)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def _build_main(spec_text: str) -> None:
    from genrekit.features.cache import ensure_cache
    from genrekit.features.mel import FeatureParams

    spec = json.loads(spec_text)
    items = [(i + 1, p) for i, p in enumerate(spec["paths"])]
    cpu_before = _cpu_seconds()
    start = time.perf_counter()
    summary = ensure_cache(spec["cache"], items, FeatureParams(), workers=spec["workers"], progress=False)
    seconds = time.perf_counter() - start
    parent_cpu, workers_cpu = (b - a for a, b in zip(cpu_before, _cpu_seconds(), strict=True))
    assert summary.done == len(items), str(summary)
    print(
        json.dumps(
            {
                "seconds": seconds,
                "parent_cpu": parent_cpu,
                "workers_cpu": workers_cpu,
                "parent_rss_mb": _peak_rss_mb(),
                "worker_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            }
        )
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="clips (>= 200 for the reported figures)")
    parser.add_argument("--clip_dir", type=Path, help="where clips are generated and reused (default: temp)")
    parser.add_argument("--workers", type=int, default=0, help="cores for the parallel run (0 = all)")
    parser.add_argument("--_build", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._build:
        _build_main(args._build)
        return

    from genrekit.features.mel import FeatureParams
    from genrekit.workers import usable_cores

    cores = args.workers or usable_cores()
    temp = Path(tempfile.mkdtemp(prefix="bench_features_"))
    try:
        clip_dir = args.clip_dir or temp / "clips"
        paths = make_clips(clip_dir, args.n, cores)
        params = FeatureParams()
        n = len(paths)
        load = os.getloadavg()[0]
        print(f"{n} clips of 30 s, 44.1 kHz stereo, 256 kbps MP3; {cores} cores; load average {load:.1f}")

        # Warm the page cache and every import, so no path pays for them in its timing.
        decode_only(paths[:5])
        naive(paths[:1])
        in_process(paths[:1], params)
        t = {
            "naive": naive(paths),
            "decode": decode_only(paths),
            "regions": decode_regions(paths, params),
            "inproc": in_process(paths, params),
        }
        one = build_in_subprocess(paths, temp / "cache1", 1)
        half = build_in_subprocess(paths[: n // 2], temp / "cache_half", cores)
        full = build_in_subprocess(paths, temp / "cache_all", cores)
        _print_rates(n, cores, t, one, full)
        print(f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
        _print_targets(n, cores, t, full)
        print("\npeak memory (RSS) of the cache build, by dataset size")
        for label, res in ((f"{n // 2} clips", half), (f"{n} clips", full)):
            parent, worker = res["parent_rss_mb"], res["worker_rss_mb"]
            print(f"  {label:>10}: parent {parent:.0f} MB, largest worker {worker:.0f} MB")
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _build_cpu(res: dict) -> float:
    return res["parent_cpu"] + res["workers_cpu"]


def _print_rates(n: int, cores: int, t: dict, one: dict, full: dict) -> None:
    rows = [  # name, wall seconds, CPU seconds (all processes)
        ("naive (librosa.load + melspectrogram + power_to_db), 1 process", t["naive"].wall, t["naive"].cpu),
        ("decode only (soundfile.read float32), 1 process", t["decode"].wall, t["decode"].cpu),
        ("decode only the segments' regions (seek + read), 1 process", t["regions"].wall, t["regions"].cpu),
        ("ours, load_segments in-process, 1 process", t["inproc"].wall, t["inproc"].cpu),
        ("ours, cache build, 1 worker (incl. worker start)", one["seconds"], _build_cpu(one)),
        (f"ours, cache build, {cores} workers (incl. worker start)", full["seconds"], _build_cpu(full)),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'':<{width}}  clips/s  CPU ms/clip")
    for name, wall, cpu in rows:
        print(f"  {name:<{width - 2}}  {n / wall:7.1f}  {1000 * cpu / n:11.1f}")
    for label, res in (("1 worker", one), (f"{cores} workers", full)):
        print(
            f"  build, {label}: parent {1000 * res['parent_cpu'] / n:.1f} CPU ms/clip, "
            f"workers {1000 * res['workers_cpu'] / n:.1f} (start-up included)"
        )


def _print_targets(n: int, cores: int, t: dict, full: dict) -> None:
    t_naive, t_decode, t_regions, t_inproc = t["naive"], t["decode"], t["regions"], t["inproc"]
    ours, naive_rate = n / full["seconds"], n / t_naive.wall
    decode_floor = n / t_decode.wall * cores
    print(f"\nwall clock: ours ({cores} workers) / naive (1 process): {ours / naive_rate:.2f}x (target >= 3)")
    print(
        f"wall clock: ours / (decode-only x {cores} cores):         {ours / decode_floor:.2f} (target >= 0.6)"
    )
    # CPU terms: what an idle machine gives, every core busy with workers.
    ours_cpu = _build_cpu(full) / n
    idle_rate = cores / ours_cpu
    print(
        f"CPU time:   ours ({cores} workers) / naive: {idle_rate / (n / t_naive.cpu):.2f}x (target >= 3); "
        f"ours / (decode-only x {cores}): {idle_rate / (cores * n / t_decode.cpu):.2f} (target >= 0.6); "
        f"projected idle rate {idle_rate:.1f} clips/s"
    )
    print(f"region decoding / full decoding time:     {t_regions.cpu / t_decode.cpu:.2f} (CPU)")
    per_core = n / t_inproc.cpu
    print(
        f"projected fma_large ({FMA_LARGE:,} clips): {FMA_LARGE / ours / 60:.0f} min here now "
        f"({cores} cores), {FMA_LARGE / (per_core * cores * 0.95) / 60:.0f} min idle; "
        f"{FMA_LARGE / (per_core * 16 * 0.95) / 60:.0f} min on 16 cores (in-process CPU rate x 16 x 0.95); "
        f"naive, 1 process: {FMA_LARGE / (n / t_naive.cpu) / 60:.0f} min"
    )


if __name__ == "__main__":
    main()
