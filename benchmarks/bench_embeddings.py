"""Benchmark of musicnn embedding extraction against today's mel features, measured in one run.

Run from the repository root (clips are generated once, like bench_features.py, and reused with
--clip_dir; the musicnn weights are fetched on first use, see fetch_backbone.py):

    python benchmarks/bench_embeddings.py --n 40
    python benchmarks/bench_embeddings.py --n 40 --clip_dir /tmp/bench_clips --cores 2
    python benchmarks/bench_embeddings.py --audio ../shared/fma-real/fma_small/000 --cores 2

On the same N synthetic 30 s, 44.1 kHz stereo, 256 kbps MP3s (FMA's format), or the audio files
of ``--audio DIR`` as they are (e.g. fma_small's genuine clips), with --cores cores:

- decode only: ``soundfile.read`` of whole files (float32), one process per core: what decoding
  every file once costs (bench_features.py's floor; the front end decodes only its patches'
  regions, so it can pass it);
- mel features: ``genrekit.features.mel.load_segments`` (10 segments of 128 x 64), one process per core;
- musicnn front end: ``musicnn_patches`` (16 kHz, 96 mels, 10 patches of 187 frames), one process
  per core;
- musicnn forward: MSD_musicnn on those patches (batches of 32), TensorFlow with --cores threads;
- embeddings end to end: front end then forward, each stage using every core in turn.

Printed: clips/s (wall) and CPU seconds per clip for each, and the ratio of embeddings to mel
features and to the decode-only floor. On a machine busy with other jobs the wall-clock rates measure the load more than the
code; the CPU seconds per clip do not.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_features import make_clips  # noqa: E402


def _cpu_seconds() -> float:
    """User + system seconds of this process and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _decode(path: Path) -> int:
    import soundfile as sf

    return len(sf.read(path, dtype="float32")[0])


def _mel(path: Path) -> int:
    from genrekit.features.mel import FeatureParams, load_segments

    return len(load_segments(path, FeatureParams()))


def _patches(path: Path) -> np.ndarray:
    from genrekit.models.musicnn import musicnn_patches

    return musicnn_patches(path)


def _pool_run(fn, paths: list[Path], cores: int) -> tuple[list, float, float]:
    """``fn`` over ``paths`` in ``cores`` spawned processes (started and warmed up before timing)."""
    import multiprocessing as mp

    with ProcessPoolExecutor(cores, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(fn, paths[:cores]))  # imports and caches warm in every worker
        wall, cpu = time.perf_counter(), _cpu_seconds()
        results = list(pool.map(fn, paths, chunksize=1))
        wall = time.perf_counter() - wall
    # Children's CPU time is counted when they are reaped (the pool's shutdown above); the warm-up
    # share is small next to N clips and stated as included.
    cpu = _cpu_seconds() - cpu
    return results, wall, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=None, help="clips (default: 40 generated; all of --audio)")
    parser.add_argument("--cores", type=int, default=2, help="cores used (default: %(default)s)")
    parser.add_argument("--clip_dir", default="/tmp/genrekit_bench_clips", help="generated clips, reused")
    parser.add_argument(
        "--weights_dir", default=None, help="musicnn weights (default: config.PRETRAINED_DIR)"
    )
    parser.add_argument("--batch_size", type=int, default=32, help="patches per forward pass")
    parser.add_argument(
        "--audio", metavar="DIR", help="time on the audio files of DIR instead of generated clips"
    )
    args = parser.parse_args(argv)

    if args.audio:
        from genrekit.features.audio_files import list_audio_files

        paths = list_audio_files(Path(args.audio))[0][: args.n]
        if not paths:
            raise SystemExit(f"--audio {args.audio}: no audio files")
        print(f"{len(paths)} audio files of {args.audio} (as they are); {args.cores} cores")
    else:
        paths = make_clips(Path(args.clip_dir), args.n or 40, args.cores)
        print(f"{len(paths)} clips of 30 s, 44.1 kHz stereo MP3; {args.cores} cores")
    n = len(paths)

    _, dec_wall, dec_cpu = _pool_run(_decode, paths, args.cores)
    _, mel_wall, mel_cpu = _pool_run(_mel, paths, args.cores)
    patches, fe_wall, fe_cpu = _pool_run(_patches, paths, args.cores)

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.cores)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from genrekit.models.musicnn import predict_patches
    from genrekit.models.musicnn_weights import load_musicnn

    model = load_musicnn("MSD_musicnn", args.weights_dir)
    predict_patches(model, patches[0], batch_size=args.batch_size)  # tracing
    all_patches = np.concatenate(patches)
    wall, cpu = time.perf_counter(), time.process_time()
    emb = predict_patches(model, all_patches, batch_size=args.batch_size)["penultimate"]
    fw_wall, fw_cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert emb.shape == (len(all_patches), 200) and np.isfinite(emb).all()

    emb_wall, emb_cpu = fe_wall + fw_wall, fe_cpu + fw_cpu
    rows = [
        ("decode only (soundfile.read float32)", dec_wall, dec_cpu),
        ("mel features (genrekit.features.mel)", mel_wall, mel_cpu),
        ("musicnn front end (patches)", fe_wall, fe_cpu),
        (f"musicnn forward ({len(all_patches) / n:.0f} patches/clip)", fw_wall, fw_cpu),
        ("musicnn embeddings, end to end", emb_wall, emb_cpu),
    ]
    print(f"{'path':<42} {'clips/s':>9} {'CPU s/clip':>11}")
    for name, w, c in rows:
        print(f"{name:<42} {n / w:>9.2f} {c / n:>11.3f}")
    print(
        f"embeddings / decode-only floor: {dec_wall / emb_wall:.2f} of its rate (wall), "
        f"{dec_cpu / emb_cpu:.2f} (CPU per clip); mel features / decode-only floor: {dec_wall / mel_wall:.2f} (wall)"
    )
    print(
        f"embeddings / mel features: {mel_wall / emb_wall:.2f}x the rate (wall), "
        f"{mel_cpu / emb_cpu:.2f}x (CPU per clip); fma_large (106,574 clips) would take "
        f"{106_574 * emb_wall / n / 3600:.1f} h of embedding extraction at this wall rate"
    )


if __name__ == "__main__":
    main()
