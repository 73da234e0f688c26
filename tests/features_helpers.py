"""Short synthetic audio clips for the audio and cache tests (real files, written by soundfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def tone_mix(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Float32 ``(n, channels)``: a few seeded partials with a slow envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    out = np.empty((n, channels), np.float32)
    for c in range(channels):
        freqs = rng.uniform(80, min(6000, sr / 2 - 500), size=4)
        x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in freqs) / 4
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.2, 1.0) * t)
        out[:, c] = 0.4 * x * envelope + 0.02 * rng.standard_normal(n)
    return out


def write_clip(
    path: Path, seconds: float = 4.0, sr: int = 22050, channels: int = 1, seed: int = 0, fmt: str = ""
) -> Path:
    """Write a clip; MP3 (from the suffix) is 44.1k/22.05k CBR as FMA's, WAV float32 otherwise."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = tone_mix(seconds, sr, channels, seed)
    kind = fmt or path.suffix.lstrip(".").upper()
    if kind == "MP3":
        mp3 = {"format": "MP3", "subtype": "MPEG_LAYER_III", "bitrate_mode": "CONSTANT"}
        sf.write(path, x, sr, compression_level=0.2, **mp3)
    elif kind == "WAV":
        sf.write(path, x, sr, subtype="FLOAT")
    else:
        sf.write(path, x, sr, format=kind)
    return path
