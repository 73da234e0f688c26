"""Not-music detection (:mod:`genrekit.features.content`): false flags on genuine music, detection
per kind of synthetic non-music, and the cost per clip against decoding.

Run from the repository root (the genuine clips are read from ../shared when present):

    python benchmarks/bench_content.py                  # the default features (22,050 Hz, 128 mels)
    python benchmarks/bench_content.py --features small # the tests' tiny model's (11,025 Hz, 32 mels)
    python benchmarks/bench_content.py --demo 60 --verbose

Genuine music: the 62 fma_small MP3s of ``../shared/fma-real`` and the 162 GTZAN clips of
``../shared/gtzan-dev`` (FLAC), and with ``--demo N`` N clips of the demo's synthesizer, 30 s as
``make demo`` writes them. Synthetic non-music, 30 s at 44.1 kHz, each written as MP3 and as
16-bit WAV and decoded by the inference path (:func:`genrekit.features.audio_files.decode_file`):
digital silence, near-silence (white noise at -70 and -80 dBFS), white and pink noise at -50 to
-3 dBFS RMS (pink at -3 dBFS clips hard), full-scale uniform white noise, pink noise peaking at
-1 dBFS, sines, squares and sawtooths at 55 Hz to 4 kHz and -40 to -3 dBFS, clicks (1 to 8 a
second at random, on digital silence and on -80 dBFS noise), and a sine sweep (reported, not
required: it changes all the time, as music does). Printed: the flags on each genuine group (any
is a false flag), the detection rate per synthetic kind, each measure's range per group (the
margins the thresholds leave), and ms per clip of the detector against the decode.

Measured at 23ed531 (2-core Intel Xeon shared with other jobs), the same rates with both features:
false flags 0/62 fma_small, 0/162 GTZAN, 0/57 demo clips (default features; 2 of the demo's
defective files do not decode); detected silence 6/6, noise 22/24 (missed: pink noise at -3 dBFS
RMS, clipped hard, as MP3 and WAV), tones 90/90, clicks 16/16, sweep 0/2. Detector 1.3 ms a clip
(median) against 54 ms for decode_file (default features), 0.5 ms against 11.5 ms (small).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from genrekit.features.audio_files import decode_file  # noqa: E402
from genrekit.features.content import content_of  # noqa: E402
from genrekit.features.params import FeatureParams  # noqa: E402
from genrekit.workers import native_stderr_to  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
RATE = 44100
SECONDS = 30.0


# --- Synthetic non-music --------------------------------------------------------------------------


def _amp(dbfs: float) -> float:
    return 10 ** (dbfs / 20)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f power) noise by shaping white noise's spectrum, unit RMS."""
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / np.sqrt(np.mean(x**2))


def _wave(kind: str, freq: float, t: np.ndarray) -> np.ndarray:
    """Unit-peak sine, square or sawtooth (naive, as test-tone generators make them)."""
    phase = (freq * t) % 1.0
    if kind == "sine":
        return np.sin(2 * np.pi * phase)
    if kind == "square":
        return np.where(phase < 0.5, 1.0, -1.0)
    return 2.0 * phase - 1.0


def _clicks(n: int, per_second: float, floor_dbfs: float | None, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros(n) if floor_dbfs is None else rng.normal(size=n) * _amp(floor_dbfs)
    count = int(per_second * n / RATE)
    for at in rng.choice(n - 64, size=count, replace=False):
        x[at : at + 3] += rng.choice([-1, 1]) * np.array([0.9, -0.5, 0.2])
    return x


def synthetic_cases(rng: np.random.Generator) -> list[tuple[str, str, np.ndarray]]:
    """``(kind, name, mono float samples)``: the kind a detector should give (or "sweep")."""
    n = int(SECONDS * RATE)
    t = np.arange(n) / RATE
    cases = [("silence", "digital silence", np.zeros(n))]
    for level in (-70, -80):
        cases.append(("silence", f"white noise {level} dBFS", rng.normal(size=n) * _amp(level)))
    for level in (-50, -40, -20, -10, -3):
        cases.append(("noise", f"white noise {level} dBFS", np.clip(rng.normal(size=n) * _amp(level), -1, 1)))
        cases.append(("noise", f"pink noise {level} dBFS", np.clip(_pink(n, rng) * _amp(level), -1, 1)))
    cases.append(("noise", "uniform white noise, full scale", rng.uniform(-1, 1, size=n)))
    pink = _pink(n, rng)
    cases.append(("noise", "pink noise peaking at -1 dBFS", pink / np.abs(pink).max() * _amp(-1)))
    for wave in ("sine", "square", "saw"):
        for freq in (55.0, 220.0, 440.0, 1000.0, 4000.0):
            for level in (-40, -12, -3):
                cases.append(("tone", f"{wave} {freq:g} Hz {level} dBFS", _wave(wave, freq, t) * _amp(level)))
    for per_second in (1, 2, 4, 8):
        cases.append(("clicks", f"clicks {per_second}/s on silence", _clicks(n, per_second, None, rng)))
        cases.append(("clicks", f"clicks {per_second}/s on -80 dBFS noise", _clicks(n, per_second, -80, rng)))
    sweep_phase = (
        2 * np.pi * 20 * SECONDS / np.log(10000 / 20) * (np.exp(t / SECONDS * np.log(10000 / 20)) - 1)
    )
    cases.append(("sweep", "sine sweep 20 Hz-10 kHz -6 dBFS", np.sin(sweep_phase) * _amp(-6)))
    return cases


def write_synthetic(folder: Path, rng: np.random.Generator) -> list[tuple[str, str, Path]]:
    """Every synthetic case as a 44.1 kHz MP3 and a 16-bit WAV."""
    import soundfile as sf

    out = []
    for i, (kind, name, x) in enumerate(synthetic_cases(rng)):
        for fmt, subtype, ext in (("MP3", "MPEG_LAYER_III", "mp3"), ("WAV", "PCM_16", "wav")):
            path = folder / f"{i:03d}.{ext}"
            sf.write(path, x.astype(np.float32), RATE, format=fmt, subtype=subtype)
            out.append((kind, f"{name} ({ext})", path))
    return out


# --- Genuine music --------------------------------------------------------------------------------


def genuine_files() -> dict[str, list[Path]]:
    groups = {}
    fma = SHARED / "fma-real" / "fma_small"
    if fma.is_dir():
        groups["fma_small (MP3)"] = sorted(fma.rglob("*.mp3"))
    gtzan = SHARED / "gtzan-dev" / "gtzan_dev.csv"
    if gtzan.is_file():
        import pandas as pd

        groups["GTZAN (FLAC)"] = [gtzan.parent / p for p in pd.read_csv(gtzan)["path"]]
    return groups


def demo_files(folder: Path, count: int) -> list[Path]:
    """``count`` demo clips, written as ``make demo`` writes them (44.1 kHz stereo MP3)."""
    from genrekit.datasets.demo.writer import write_demo_dataset

    info = write_demo_dataset(folder, n_tracks=max(20, count), seed=0, workers=1, progress=False)
    files = sorted(Path(info.audio_dir).rglob("*.mp3"))
    return files[:count]


# --- Measuring --------------------------------------------------------------------------------------


def measure(path: Path, params: FeatureParams) -> tuple[dict | None, float, float]:
    """``(content or None, decode ms, detector ms)`` of one file: the content inference gives
    (:func:`decode_file`, the detector included in its time), and the detector timed again alone
    on the segments."""
    started = time.perf_counter()
    with native_stderr_to(os.devnull):  # libmpg123's notes on the demo's defective files
        decoded = decode_file(path.name, path, params)
    decode_ms = 1000 * (time.perf_counter() - started)
    if decoded.error is not None:
        return None, decode_ms, 0.0
    segments = decoded.segments.astype(np.float32)
    started = time.perf_counter()
    content_of(segments, params)
    return decoded.info["content"], decode_ms, 1000 * (time.perf_counter() - started)


MEASURES = ("peak_dbfs", "level_dbfs", "quiet_share", "longest_sound_seconds", "change_vs_noise", "jitter_db")
# The tests' tiny model's features (tests/inference_helpers.py FEATURES).
SMALL = {
    "sample_rate": 11025,
    "n_mels": 32,
    "n_fft": 512,
    "hop_length": 256,
    "fmax": 5512.5,
    "segment_frames": 16,
}


def report_group(name: str, rows: list[tuple[str, str, dict | None]], verbose: bool) -> None:
    flags = Counter(c["flag"] if c else "decode error" for _, _, c in rows)
    print(f"\n{name}: {len(rows)} files, flags {dict(flags)}")
    if verbose:
        for _kind, label, c in rows:
            print(f"  {label[:48]:48s} {c}")
    for m in MEASURES:
        values = [c[m] for _, _, c in rows if c and c[m] is not None]
        if values:
            print(
                f"  {m:22s} min {min(values):9.3f}  median {float(np.median(values)):9.3f}  max {max(values):9.3f}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=int, default=0, help="also measure this many demo clips")
    parser.add_argument("--verbose", action="store_true", help="print every file's measures")
    parser.add_argument("--features", choices=("default", "small"), default="default")
    args = parser.parse_args(argv)
    params = FeatureParams(**SMALL) if args.features == "small" else FeatureParams()
    print(f"features: {params}")
    rng = np.random.default_rng(0)
    decode_ms, detect_ms = [], []
    false_flags = 0
    genuine = genuine_files()
    with tempfile.TemporaryDirectory() as tmp:
        if args.demo:
            genuine["demo synthesizer (MP3)"] = demo_files(Path(tmp) / "demo", args.demo)
        for group, files in genuine.items():
            rows = []
            for path in files:
                content, d_ms, c_ms = measure(path, params)
                decode_ms.append(d_ms)
                detect_ms.append(c_ms)
                rows.append(("music", os.path.relpath(path, SHARED), content))
            flagged = [(label, c["flag"]) for _, label, c in rows if c and c["flag"]]
            false_flags += len(flagged)
            report_group(group, rows, args.verbose)
            print(f"  FALSE FLAGS: {len(flagged)}/{len(rows)} {flagged}")
        folder = Path(tmp) / "synthetic"
        folder.mkdir()
        by_kind = defaultdict(list)
        for kind, label, path in write_synthetic(folder, rng):
            content, d_ms, c_ms = measure(path, params)
            decode_ms.append(d_ms)
            detect_ms.append(c_ms)
            by_kind[kind].append((kind, label, content))
    print("\nsynthetic non-music, detection rate per kind (right flag / files):")
    for kind, rows in by_kind.items():
        right = sum(1 for _, _, c in rows if c and c["flag"] == kind)
        wrong = Counter(c["flag"] if c else "decode error" for _, _, c in rows if not c or c["flag"] != kind)
        print(f"  {kind:8s} {right}/{len(rows)}  other: {dict(wrong)}")
    for kind, rows in by_kind.items():
        report_group(f"synthetic {kind}", rows, args.verbose)
    print(
        f"\ncost per clip: detector {np.median(detect_ms):.2f} ms (median; max {max(detect_ms):.2f}), "
        f"decode_file {np.median(decode_ms):.1f} ms (median, the detector included), over {len(decode_ms)} files"
    )
    print(f"false flags on genuine music: {false_flags}")
    return 0 if false_flags == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
