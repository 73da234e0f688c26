"""Benchmark: demo clip generation, before (main's renderer, 44.1 kHz stereo MP3) vs now.

Run from the repository root (about 2 minutes on 2 cores with the defaults)::

    python benchmarks/bench_demo.py
    python benchmarks/bench_demo.py --clips 40 --clip_seconds 10 --tracks 400 --workers 2

Two parts, in one run:

1. Per clip, in this process (one BLAS thread), CPU and wall time of rendering and of MP3 encoding
   for ``--clips`` parameter rows of the demo plan: the reference renderer (main's, kept verbatim
   below) against ``genrekit.datasets.demo.synth.render_clip``, at 44,100 Hz stereo and 22,050 Hz mono, and LAME
   (through libsndfile) at both formats and a few bitrate modes. "before" is main's demo (reference
   renderer, 44.1 kHz stereo, CBR); "now" is the demo's default (fast renderer, its default format).
2. ``write_demo_dataset`` end to end with ``--workers`` processes on ``--tracks`` tracks, in a
   temporary folder: wall seconds, clips/s, and the CPU seconds of the workers.

The load average is printed first: other jobs on the cores inflate wall time, far less CPU time.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one BLAS thread, as in the demo's worker processes

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from genrekit.datasets.demo import metadata as demo_metadata  # noqa: E402
from genrekit.datasets.demo import mp3, synth  # noqa: E402
from genrekit.datasets.demo import writer as demo  # noqa: E402


def render_clip_reference(
    params: np.ndarray, seconds: float, sample_rate: int, channels: int, rng: np.random.Generator
) -> np.ndarray:
    """``genrekit.datasets.demo.synth.render_clip`` as it was before vectorization (main a31dd9e).

    One ``np.sin`` per harmonic and sample, each note panned into both channels: the "before" of
    this benchmark and the reference ``tests/test_demo.py`` holds the fast renderer to. What
    vectorization left unchanged (the score: drums, harmony, melody and bass; note partials and
    envelopes; pad chords; crackle and drive) is the package's own code (``genrekit.datasets.demo.synth``), called here with
    this renderer's ``add`` (each note panned into both channels) and sum of partials.
    """
    from scipy import fft as sfft

    p = dict(zip(synth.PARAM_NAMES, params, strict=True))
    sr = int(sample_rate)
    n = max(1, int(round(seconds * sr)))
    tail = int(0.05 * sr)  # room for the last onsets; the sound past the end is cut anyway
    buf = np.zeros((2, n + tail), dtype=np.float64)
    nyq = sr / 2

    def add(sig: np.ndarray, at: float, gain: float, pan: float) -> None:
        i = int(at * sr)
        if i >= n or i < 0:
            return
        seg = sig[: n + tail - i]
        buf[0, i : i + len(seg)] += seg * gain * (1 - pan)
        buf[1, i : i + len(seg)] += seg * gain * (1 + pan)

    def harmonic_sum(fk: np.ndarray, amp: np.ndarray, tt: np.ndarray) -> np.ndarray:
        vib = p["vibrato"] * 0.012 * np.sin(2 * np.pi * 5.5 * tt) / (2 * np.pi * 5.5) * 2 * np.pi
        sig = np.zeros_like(tt)
        for a, f in zip(amp, fk, strict=True):
            sig += a * np.sin(2 * np.pi * f * tt + f * vib)
        return sig

    beat, degrees, note_of, cutoff_hz = synth._score(p, rng, n, sr, add, harmonic_sum)

    def chord_sum(notes: list[tuple[float, float, float]], tt: np.ndarray) -> np.ndarray:
        chord = np.zeros(len(tt))
        for f, det, phase in notes:
            chord += np.sin(2 * np.pi * f * det * tt + phase)
        return chord

    synth._pads(p, rng, n, sr, beat, degrees, note_of, add, chord_sum)

    if p["speech"] > 0.02:
        f0 = rng.uniform(95, 230)
        at = 0.0
        cache: dict[tuple[int, int], np.ndarray] = {}
        while at < n / sr:
            if rng.random() < 0.15:
                at += rng.uniform(0.25, 0.8)
                continue
            v, pitch_step = int(rng.integers(len(synth._VOWELS))), int(rng.integers(3))
            key = (v, pitch_step)
            if key not in cache:
                fv = f0 * (1 + 0.08 * (pitch_step - 1))
                tt = np.arange(int(0.3 * sr)) / sr
                k = np.arange(1, int(min(4500.0, nyq * 0.9) / fv) + 1)
                amp = sum(1.0 / (1 + ((k * fv - fmt) / 90.0) ** 2) for fmt in synth._VOWELS[v]) + 0.02
                sig = (amp[:, None] * np.sin(2 * np.pi * fv * k[:, None] * tt)).sum(axis=0)
                cache[key] = sig / amp.sum()
            dur = rng.uniform(0.12, 0.3)
            syl = cache[key][: int(dur * sr)] * np.hanning(int(dur * sr))
            burst = rng.standard_normal(int(0.03 * sr)) * 0.15
            add(np.concatenate([burst, syl]), at, 1.2 * p["speech"], 0.0)
            at += dur + 0.03 + rng.uniform(0.0, 0.08)

    # Coloured noise (independent per channel) and crackle (the same in both).
    size = sfft.next_fast_len(n + tail, real=True)
    freqs = np.fft.rfftfreq(size, 1 / sr)
    if p["noise"] > 0.001:
        shape = np.maximum(freqs, 30.0) ** (-p["tilt"] / 2)
        for c in range(2):
            spec = sfft.rfft(rng.standard_normal(size)) * shape
            colour = sfft.irfft(spec, size)[: n + tail]
            buf[c] += p["noise"] * colour / (colour.std() + 1e-12) * 0.3
    buf = synth._crackle_and_drive(p, rng, buf, n, sr)
    lowpass = 1.0 / np.sqrt(1 + (freqs / cutoff_hz) ** 8)
    out = np.empty((n, 2))
    for c in range(2):
        out[:, c] = sfft.irfft(sfft.rfft(buf[c], size) * lowpass, size)[:n]
    if channels == 1:
        out = out.mean(axis=1, keepdims=True)
    peak = np.abs(out).max()
    gain = 10 ** (rng.uniform(-10, -1) / 20)
    if peak > 0:
        out *= gain / peak
    return out.astype(np.float32)


FORMATS = ((44100, 2), (44100, 1), (22050, 2), (22050, 1))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clips", type=int, default=16, help="clips timed per variant in part 1 (default 16)"
    )
    parser.add_argument(
        "--clip_seconds", type=float, default=10.0, help="clip length (default 10, the demo's)"
    )
    parser.add_argument("--tracks", type=int, default=200, help="tracks written in part 2; 0 skips it (200)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes in part 2 (default 2)")
    return parser


def _timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.process_time() - cpu, time.perf_counter() - wall


def _encode(audio: np.ndarray, sample_rate: int, mode: str, level: float) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="MP3", subtype="MPEG_LAYER_III", bitrate_mode=mode,
             compression_level=level)  # fmt: skip
    return buf.getvalue()


def per_clip(n_clips: int, seconds: float) -> dict[str, tuple[float, float]]:
    """Mean (CPU s, wall s) per clip of each render and encode variant."""
    params = demo_metadata.plan_demo(600, 0).params
    rows = np.linspace(0, len(params) - 1, n_clips).astype(int)
    results: dict[str, tuple[float, float]] = {}

    def mean(key: str, fn, make_args) -> list:
        outs, cpu, wall = [], 0.0, 0.0
        for i in rows:
            out, c, w = _timed(fn, *make_args(i))
            outs.append(out)
            cpu, wall = cpu + c, wall + w
        results[key] = (cpu / len(rows), wall / len(rows))
        return outs

    clips = {}
    for sr, ch in FORMATS:

        def args(i, sr=sr, ch=ch):
            return params[i], seconds, sr, ch, np.random.default_rng([0, int(i), 3])

        if (sr, ch) in ((44100, 2), (22050, 1)):
            mean(f"render reference {sr} Hz {ch} ch", render_clip_reference, args)
        clips[sr, ch] = mean(f"render now {sr} Hz {ch} ch", synth.render_clip, args)
    for (sr, ch), audio in clips.items():
        it = iter(audio)
        mean(f"encode CBR 320 {sr} Hz {ch} ch", mp3.encode_mp3, lambda i, sr=sr, it=it: (next(it), sr, 320))
    for mode, level in (("CONSTANT", 0.5), ("VARIABLE", 0.5)):
        it = iter(clips[22050, 1])
        mean(
            f"encode {mode} {level} 22050 Hz 1 ch",
            _encode,
            lambda i, it=it, m=mode, lv=level: (next(it), 22050, m, lv),
        )
    return results


def whole_dataset(n_tracks: int, seconds: float, workers: int) -> tuple[float, float, int]:
    """(wall s, workers' CPU s, clips) of ``write_demo_dataset`` with the demo's defaults."""
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu0, wall = time.process_time(), time.perf_counter()
        info = demo.write_demo_dataset(Path(tmp) / "demo", n_tracks=n_tracks, clip_seconds=seconds, seed=0,
                                       workers=workers, progress=False)  # fmt: skip
        wall = time.perf_counter() - wall
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (
            (after.ru_utime + after.ru_stime)
            - (before.ru_utime + before.ru_stime)
            + time.process_time()
            - cpu0
        )
        clips = info.n_tracks - len(info.missing_ids) - len(info.zero_length_ids)
    return wall, cpu, clips


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
          f"clips of {args.clip_seconds:g} s; demo default format {demo.DEFAULT_SAMPLE_RATE} Hz "
          f"{demo.DEFAULT_CHANNELS} ch")  # fmt: skip
    res = per_clip(args.clips, args.clip_seconds)
    print(f"\n1. per clip, mean of {args.clips} ({'CPU':>8} {'wall':>8})")
    for key, (cpu, wall) in res.items():
        print(f"   {key:<34} {cpu * 1000:6.0f} ms {wall * 1000:6.0f} ms")
    fmt = (demo.DEFAULT_SAMPLE_RATE, demo.DEFAULT_CHANNELS)
    before = res["render reference 44100 Hz 2 ch"][0] + res["encode CBR 320 44100 Hz 2 ch"][0]
    now = res[f"render now {fmt[0]} Hz {fmt[1]} ch"][0] + res[f"encode CBR 320 {fmt[0]} Hz {fmt[1]} ch"][0]
    print(f"   render + encode, CPU per clip: before {before * 1000:.0f} ms ({1 / before:.2f} clips/s per core), "
          f"now {now * 1000:.0f} ms ({1 / now:.2f} clips/s per core): {before / now:.1f}x")  # fmt: skip
    if args.tracks:
        wall, cpu, clips = whole_dataset(args.tracks, args.clip_seconds, args.workers)
        print(f"\n2. write_demo_dataset, {args.tracks} tracks, {args.workers} workers: {wall:.1f} s wall, "
              f"{clips / wall:.2f} clips/s; {cpu:.1f} CPU s ({cpu / clips * 1000:.0f} ms per clip, "
              f"{clips / cpu * args.workers:.2f} clips/s on {args.workers} idle cores)")  # fmt: skip
        print(f"   load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
