"""Folder inference speed: files/s of a naive per-file loop and of MusicGenreInference, in one run.

Run from the repository root::

    python benchmarks/bench_inference.py                         # 200 clips, widths 1.0 and 0.25
    python benchmarks/bench_inference.py --clips 60 --widths 0.25 --workers 2
    python benchmarks/bench_inference.py --audio ../shared/fma-real/fma_small/000 --widths 0.25 --workers 2

With ``--audio DIR`` the files of DIR are used as they are (e.g. fma_small's genuine clips);
otherwise the folder holds ``--clips`` 30 s, 44.1 kHz stereo MP3s (``--distinct`` different ones written with
soundfile in parallel, then copied: decoding cost does not depend on the content). Models have
random weights (speed only) and the real head sizes (16 / 147 / 163).

- naive: the model loaded once; per file ``librosa.load`` + mel + the training segments +
  ``model.predict`` on that file's segments alone.
- ours: ``MusicGenreInference.batch_predict`` (decoding in worker processes, several files per
  model batch), timed end to end including the start of the workers.
- limits: the decode-only rate of one process x workers, and the model's own predict rate on
  batches already in memory; ours is reported as a fraction of the lower one (the limit that
  binds). On a CPU decoding and the model share the same cores, so the combined bound
  ``1 / (1 / decode limit + 1 / model limit)`` is printed too.
- decode-only floor: ``soundfile.read`` of whole files (float32, as bench_features.py) in
  ``workers`` processes, right after ours: what decoding every file once costs. Ours decodes only the
  segments' regions (``decode only, 1 process`` above includes them and the mel), so it can pass
  this floor on an idle machine; ours is printed as a fraction of it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

N_TOP, N_MEDIUM, N_ALL = 16, 147, 163


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=200, help="clips in the folder (default 200)")
    parser.add_argument("--distinct", type=int, default=8, help="different clips written (default 8)")
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.25], help="model width factors")
    parser.add_argument("--workers", type=int, default=0, help="decoding workers; 0 = all cores")
    parser.add_argument("--batch_size", type=int, default=64, help="segments per model batch")
    parser.add_argument("--naive_clips", type=int, default=0, help="clips timed for the naive loop (0 = all)")
    parser.add_argument("--dir", help="work folder (default: a temporary folder, removed at the end)")
    parser.add_argument(
        "--audio", metavar="DIR", help="time on the audio files of DIR instead of generated clips"
    )
    return parser


def _write_clip(args: tuple[str, int]) -> str:
    import numpy as np
    import soundfile as sf

    path, seed = args
    rng = np.random.default_rng(seed)
    rate, n = 44100, 30 * 44100
    t = np.arange(n) / rate
    x = np.zeros((n, 2))
    for freq in rng.uniform(60, 5000, size=6):
        env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 3) * t)
        x += (rng.uniform(0.02, 0.12) * env * np.sin(2 * np.pi * freq * t))[:, None]
    x += 0.03 * rng.normal(size=(n, 2))
    sf.write(
        path,
        np.clip(x, -1, 1).astype(np.float32),
        rate,
        format="MP3",
        subtype="MPEG_LAYER_III",
        bitrate_mode="CONSTANT",
        compression_level=(320 - 256) / 288,  # 256 kbps, as FMA
    )
    return path


def make_folder(folder: Path, clips: int, distinct: int, workers: int) -> list[Path]:
    import multiprocessing

    src = folder / "_distinct"
    src.mkdir(parents=True, exist_ok=True)
    jobs = [
        (str(src / f"clip{i:03d}.mp3"), i) for i in range(distinct) if not (src / f"clip{i:03d}.mp3").exists()
    ]
    if jobs:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.map(_write_clip, jobs)
    music = folder / "music"
    music.mkdir(exist_ok=True)
    paths = []
    for i in range(clips):
        dst = music / f"{i:04d}.mp3"
        if not dst.exists():
            shutil.copyfile(src / f"clip{i % distinct:03d}.mp3", dst)
        paths.append(dst)
    return paths


def write_run(run_dir: Path, width: float, batch_size: int, workers: int) -> tuple[Path, Path]:
    """A random-weight model at ``width`` and a training config that matches it."""
    from genrekit.features import frontends
    from genrekit.models.cnn import build_model
    from genrekit.settings import Settings
    from genrekit.train.run_config import CONFIG_FORMAT, CONFIG_VERSION

    run_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings.build(overrides={"workers": workers, "inference_batch_size": batch_size})
    top = list(range(1, N_TOP + 1))
    medium = list(range(100, 100 + N_MEDIUM))
    roots = [top[i % N_TOP] for i in range(N_MEDIUM)]

    def vocab(level: str, ids: list[int], parents: list[int], root_ids: list[int]) -> dict:
        names = [f"genre{g}" for g in ids]
        paths = [n if p == 0 else f"genre{r} > {n}" for n, p, r in zip(names, parents, root_ids, strict=True)]
        return {
            "level": level,
            "genre_ids": ids,
            "names": names,
            "parent_ids": parents,
            "root_ids": root_ids,
            "paths": paths,
        }

    vocabs = {
        "top": vocab("top", top, [0] * N_TOP, top),
        "medium": vocab("medium", medium, roots, roots),
        "all": vocab("all", top + medium, [0] * N_TOP + roots, top + roots),
    }
    model = build_model(
        settings.input_shape,
        num_top=N_TOP,
        num_medium=N_MEDIUM,
        num_all=N_ALL,
        width_factor=width,
        seed=0,
        norm_mean=[-30.0] * settings.n_mels,
        norm_std=[20.0] * settings.n_mels,
    )
    model_path = run_dir / "model.h5"
    model.save(model_path)
    cfg = {
        "format": CONFIG_FORMAT,
        "version": CONFIG_VERSION,
        "model_file": model_path.name,
        "input_shape": list(settings.input_shape),
        "settings": settings.to_dict(),
        "frontend": frontends.from_settings(settings).to_config(),
        "features": frontends.from_settings(settings).params(),
        "normalization": {"mean": [-30.0] * settings.n_mels, "std": [20.0] * settings.n_mels},
        "vocabularies": vocabs,
        "threshold": settings.threshold,
        "top_k": settings.top_k,
    }
    config_path = run_dir / "balanced_training_config.json"
    config_path.write_text(json.dumps(cfg))
    return model_path, config_path


def naive_loop(model, paths: list[Path], params) -> tuple[float, list]:
    """Per file: librosa.load, mel, the training segments, model.predict on that file alone."""
    import librosa
    import numpy as np

    from genrekit.features.mel import segment_starts

    def one(path: Path) -> np.ndarray:
        y, sr = librosa.load(path, sr=params.sample_rate, mono=True, duration=params.duration)
        mel = librosa.feature.melspectrogram(
            y=y,
            sr=sr,
            n_fft=params.n_fft,
            hop_length=params.hop_length,
            n_mels=params.n_mels,
            fmin=params.fmin,
            fmax=params.fmax,
        )
        db = librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)
        starts = segment_starts(db.shape[1], params.num_segments, params.segment_frames)
        x = np.stack([db[:, s : s + params.segment_frames] for s in starts])[..., None]
        return model.predict(x, verbose=0)["top"].mean(axis=0)

    one(paths[0])  # warm-up: librosa's first calls and predict's tracing are not the steady state
    start = time.perf_counter()
    outputs = [one(path) for path in paths]
    return len(paths) / (time.perf_counter() - start), outputs


def _read(path: str) -> int:
    import soundfile as sf

    return len(sf.read(path, dtype="float32")[0])


def decode_floor(paths: list[Path], workers: int) -> float:
    """Files/s of ``soundfile.read`` (float32) of whole files in ``workers`` spawned processes,
    started and warmed up before timing: bench_features.py's decode-only floor, under the load
    the machine has right now (measured next to ours, not once at the start)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    names = [str(p) for p in paths]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        list(pool.map(_read, names[:workers]))
        start = time.perf_counter()
        list(pool.map(_read, names, chunksize=1))
        return len(names) / (time.perf_counter() - start)


def decode_rate(paths: list[Path], params) -> tuple[float, list]:
    """Files/s of decoding alone in this process with one BLAS thread."""
    from threadpoolctl import threadpool_limits

    from genrekit.features.audio_files import decode_file

    with threadpool_limits(1):
        decode_file("warm", paths[0], params)
        start = time.perf_counter()
        decoded = [decode_file(p.name, p, params) for p in paths]
        rate = len(paths) / (time.perf_counter() - start)
    return rate, decoded


def model_rate(inference, decoded: list, files_per_batch: int, repeats: int = 3) -> float:
    """Files/s of the model alone on batches already in memory (``files_per_batch`` files each)."""
    import numpy as np

    segs = np.concatenate([d.segments for d in decoded[:files_per_batch]]).astype(np.float32)
    inference.predict_segments(segs)  # warm-up: tracing and allocation
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        inference.predict_segments(segs)
        best = min(best, time.perf_counter() - start)
    return files_per_batch / best


def music_folder(args: argparse.Namespace, work: Path, workers: int) -> tuple[Path, list[Path]]:
    """The folder timed and its audio files: ``--audio`` as it is, or generated clips."""
    from genrekit.features.audio_files import list_audio_files

    if args.audio:
        folder = Path(args.audio)
        paths = list_audio_files(folder)[0]
        if not paths:
            raise SystemExit(f"--audio {folder}: no audio files")
        print(
            f"folder: {len(paths)} audio files of {folder} (as they are); workers {workers}; cores {os.cpu_count()}"
        )
        return folder, paths
    t0 = time.perf_counter()
    paths = make_folder(work, args.clips, args.distinct, workers)
    print(
        f"folder: {len(paths)} clips of 30 s 44.1 kHz stereo MP3 ({args.distinct} distinct), "
        f"written in {time.perf_counter() - t0:.1f} s; workers {workers}; cores {os.cpu_count()}"
    )
    return work / "music", paths


def measure_width(args, width: float, work: Path, folder: Path, paths: list[Path], workers: int):
    """Every rate of one model width, printed; the summary row."""
    from genrekit.infer.predict import MusicGenreInference
    from genrekit.models.cnn import count_flops

    model_path, config_path = write_run(work / f"run_w{width}", width, args.batch_size, workers)
    inference = MusicGenreInference(model_path, config_path)
    flops = count_flops(inference.model) * inference.params.num_segments
    naive_paths = paths[: args.naive_clips] if args.naive_clips else paths
    naive_fps, naive_out = naive_loop(inference.model, naive_paths, inference.params)
    start = time.perf_counter()
    report = inference.batch_predict(folder, workers=workers)
    ours_fps = len(report["results"]) / (time.perf_counter() - start)
    assert len(report["results"]) == len(paths), report["errors"]
    floor = decode_floor(paths, workers)
    dec1, decoded = decode_rate(paths[: min(len(paths), 24)], inference.params)
    per_batch = max(1, args.batch_size // inference.params.num_segments)
    mod = model_rate(inference, decoded, per_batch)
    decode_limit = dec1 * workers
    limit = min(decode_limit, mod)
    binds = "decoding" if decode_limit < mod else "the model"
    shared = 1 / (1 / decode_limit + 1 / mod)
    # Sanity: the naive loop's librosa features give (nearly) the same predictions.
    ours_top = [
        report["results"][p.name]["aggregated_results"]["top_genre"]["average_confidence"]["confidence"]
        for p in naive_paths[:8]
    ]
    diff = max(abs(float(o.max()) - c) for o, c in zip(naive_out[:8], ours_top, strict=True))
    print(
        f"\nwidth {width}: {flops / 1e9:.2f} GFLOP per 30 s clip ({inference.params.num_segments} segments)"
    )
    print(f"  naive loop              {naive_fps:7.2f} files/s  ({len(naive_paths)} files)")
    print(
        f"  ours (batch_predict)    {ours_fps:7.2f} files/s  (summary: {report['summary']['files_per_second']:.2f})"
    )
    print(f"  ratio ours / naive      {ours_fps / naive_fps:7.2f}x   (target >= 2)")
    print(f"  decode only, 1 process  {dec1:7.2f} files/s  x {workers} workers = {decode_limit:.2f}")
    print(f"  model only, in memory   {mod:7.2f} files/s  ({per_batch} files per batch)")
    print(
        f"  limit that binds: {binds} ({limit:.2f} files/s); ours = {ours_fps / limit:.2f} of it "
        f"(target >= 0.8); shared-core bound {shared:.2f} files/s, ours = {ours_fps / shared:.2f} of it"
    )
    print(
        f"  decode-only floor       {floor:7.2f} files/s  (soundfile.read of whole files, {workers} processes)"
    )
    print(f"  ours / decode-only floor {ours_fps / floor:6.2f}")
    print(f"  naive vs ours top confidence, max difference over 8 files: {diff:.2e}")
    return width, naive_fps, ours_fps, ours_fps / naive_fps, binds, ours_fps / limit, ours_fps / floor


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from genrekit.settings import Settings

    workers = Settings.build(overrides={"workers": args.workers}).num_workers
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_inference_"))
    try:
        folder, paths = music_folder(args, work, workers)
        import keras
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        print(f"device: {'GPU ' + str(len(gpus)) if gpus else 'CPU'}, keras {keras.__version__}")
        rows = [measure_width(args, w, work, folder, paths, workers) for w in args.widths]
        print("\nwidth  naive f/s  ours f/s  ratio  binds      fraction of limit  ours / decode floor")
        for width, naive_fps, ours_fps, ratio, binds, frac, of_floor in rows:
            print(
                f"{width:5.2f}  {naive_fps:9.2f}  {ours_fps:8.2f}  {ratio:5.2f}  {binds:9s}  {frac:17.2f}  {of_floor:.2f}"
            )
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
