"""Small own collections for the tests: GTZAN-layout genre folders and a CSV manifest of generated audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 22050
CLIP_SECONDS = 2.0
# 10 top genres as GTZAN names them; rock and jazz have sub-genre folders (the hierarchy).
GENRES = ("blues", "classical", "country", "disco", "hiphop", "jazz", "metal", "pop", "reggae", "rock")
NESTED = {"rock": ("punk", "grunge"), "jazz": ("bebop",)}
PER_GENRE = 10
PER_SUBGENRE = 3
FORMATS = ("mp3", "wav", "flac", "ogg", "au")


def clip(index: int, genre_index: int, seed: int = 0) -> np.ndarray:
    """A short tone mix whose pitch tells the genre apart (float32, mono)."""
    rng = np.random.default_rng([seed, index])
    t = np.arange(int(CLIP_SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 110.0 * 2 ** (genre_index / 4)
    audio = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) / k for k in (1, 2, 3))
    audio = audio + 0.05 * rng.standard_normal(len(t))
    return (0.25 * audio / np.max(np.abs(audio))).astype(np.float32)


def write_audio(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".mp3":
        from genrekit.datasets.demo.writer import encode_mp3

        path.write_bytes(encode_mp3(audio[:, None], SAMPLE_RATE, kbps=64))
    elif suffix == ".ogg":
        sf.write(path, audio, SAMPLE_RATE, format="OGG", subtype="VORBIS")
    elif suffix == ".au":
        sf.write(path, audio, SAMPLE_RATE, format="AU", subtype="PCM_16")
    else:
        sf.write(path, audio, SAMPLE_RATE)


def genre_folders(root: Path) -> list[tuple[str, Path]]:
    """Write the GTZAN-layout collection; return ``(genre path, file)`` per track, in writing order.

    Every genre gets PER_GENRE tracks directly in its folder, each sub-genre PER_SUBGENRE; the
    formats cycle through FORMATS. One defective file (text named .mp3) sits in ``blues``.
    """
    written = []
    n = 0
    for g, genre in enumerate(GENRES):
        places = [(genre, root / genre)] * PER_GENRE
        for sub in NESTED.get(genre, ()):
            places += [(f"{genre}/{sub}", root / genre / sub)] * PER_SUBGENRE
        for i, (path, folder) in enumerate(places):
            shift = 0.5 * (1 + path.count("/") + len(path) % 3) if "/" in path else 0.0
            file = folder / f"{genre}.{i:05d}.{FORMATS[n % len(FORMATS)]}"
            write_audio(file, clip(n, g + shift))
            written.append((path, file))
            n += 1
    return written


def flat_genre_folders(root: Path, per_genre: int = 8) -> list[tuple[str, Path]]:
    """GTZAN as shipped: ``ROOT/<genre>/<file>`` for the 10 GENRES, no sub-genre folders.

    ``per_genre`` clips each, the formats cycling through FORMATS; returns ``(genre, file)`` pairs.
    """
    written = []
    for g, genre in enumerate(GENRES):
        for i in range(per_genre):
            n = g * per_genre + i
            file = root / genre / f"{genre}.{i:05d}.{FORMATS[n % len(FORMATS)]}"
            write_audio(file, clip(n, g))
            written.append((genre, file))
    return written


DEFECTIVE = "blues/blues.broken.mp3"


def add_defective(root: Path) -> Path:
    path = root / DEFECTIVE
    path.write_text("this is not audio\n")
    return path


def manifest(root: Path, written: list[tuple[str, Path]], name: str = "manifest.csv") -> Path:
    """A manifest of the same tracks with artists and capitalised genres.

    Every 7th track also carries a second genre from another root (so its top target is masked).
    """
    lines = ["path,genres,artist"]
    seen: dict[str, int] = {}
    for i, (genre, file) in enumerate(written):
        j = seen[genre] = seen.get(genre, -1) + 1
        genres = "/".join(part.capitalize() for part in genre.split("/"))
        if i % 7 == 3:
            genres += ";Electronic"
        artist = f"{genre} artist {j // 2 if '/' not in genre else j}"  # 2 tracks each; 1 in sub-genres
        lines.append(f"{file.relative_to(root).as_posix()},{genres},{artist}")
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime: to show nothing was written there."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def tiny_settings_file(base: Path, name: str = "tiny.json") -> Path:
    """A settings file for a one-epoch, tiny-model run on these clips, its cache under ``base``."""
    path = base / name
    path.write_text(
        json.dumps(
            {
                "duration": CLIP_SECONDS,
                "num_segments": 1,
                "width_factor": 0.0625,
                "num_epochs": 1,
                "batch_size": 16,
                "workers": 2,
                "cache_dir": str(base / "cache"),
            }
        )
    )
    return path
