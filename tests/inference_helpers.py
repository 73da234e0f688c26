"""A tiny trained genre model with a hand-written training config, and small audio files, for inference tests.

The model is ``genrekit.models.cnn.build_model`` at width 0.0625 on small features (32 mels x 16 frames
at 11,025 Hz), trained a few steps on random data; its vocabularies are the real genre ids of the
small tree of ``fma_fixtures.TREE``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from tests.fma_fixtures import TREE

FEATURES = {
    "sample_rate": 11025,
    "duration": 30.0,
    "n_mels": 32,
    "n_fft": 512,
    "hop_length": 256,
    "fmin": 0.0,
    "fmax": 5512.5,
    "num_segments": 10,
    "segment_frames": 16,
    "min_segments": 1,
}
INPUT_SHAPE = (FEATURES["n_mels"], FEATURES["segment_frames"], 1)


def vocabularies(tree=TREE) -> dict:
    from genrekit.datasets.labels import GenreTree, Vocabulary

    genres = pd.DataFrame(
        {"parent": [p for _, p, _ in tree], "title": [t for _, _, t in tree]},
        index=pd.Index([g for g, _, _ in tree], name="genre_id"),
    )
    genre_tree = GenreTree(genres)
    ids = {
        "top": genre_tree.roots,
        "medium": genre_tree.non_roots,
        "all": sorted(genre_tree.parent),
    }
    return {level: Vocabulary.from_ids(level, v, genre_tree).to_dict() for level, v in ids.items()}


def training_config(model_file: str, vocabs: dict, input_shape=INPUT_SHAPE, features=FEATURES) -> dict:
    from genrekit.settings import Settings
    from genrekit.train.run_config import CONFIG_FORMAT, CONFIG_VERSION

    settings = Settings.build(overrides={**features, "workers": 2, "inference_batch_size": 64})
    return {
        "format": CONFIG_FORMAT,
        "version": CONFIG_VERSION,
        "model_file": model_file,
        "input_shape": list(input_shape),
        "settings": settings.to_dict(),
        "features": dict(features),
        "frontend": {"name": "mel_segments", "params": dict(features)},
        "normalization": {"mean": [-40.0] * features["n_mels"], "std": [20.0] * features["n_mels"]},
        "vocabularies": vocabs,
        "threshold": settings.threshold,
        "top_k": settings.top_k,
    }


def build_tiny_run(run_dir: Path, seed: int = 0, width_factor: float = 0.0625) -> tuple[Path, Path]:
    """Train a tiny model a few steps on random data; save it and its training config in ``run_dir``."""
    import keras

    from genrekit.models.cnn import build_model
    from genrekit.models.losses import make_losses

    run_dir.mkdir(parents=True, exist_ok=True)
    vocabs = vocabularies()
    sizes = {level: len(v["genre_ids"]) for level, v in vocabs.items()}
    cfg = training_config("balanced_hierarchical_genre_model.h5", vocabs)
    keras.utils.set_random_seed(seed)
    model = build_model(
        INPUT_SHAPE,
        num_top=sizes["top"],
        num_medium=sizes["medium"],
        num_all=sizes["all"],
        width_factor=width_factor,
        norm_mean=cfg["normalization"]["mean"],
        norm_std=cfg["normalization"]["std"],
        seed=seed,
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=make_losses(gamma=2.0))
    rng = np.random.default_rng(seed)
    n = 48
    x = (rng.normal(size=(n, *INPUT_SHAPE)) * 20 - 40).astype(np.float32)
    y = {
        "top": np.eye(sizes["top"], dtype=np.float32)[rng.integers(0, sizes["top"], n)],
        "medium": np.eye(sizes["medium"], dtype=np.float32)[rng.integers(0, sizes["medium"], n)],
        "all": (rng.random((n, sizes["all"])) > 0.7).astype(np.float32),
    }
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    model_path = run_dir / cfg["model_file"]
    model.save(model_path)
    config_path = run_dir / "balanced_training_config.json"
    config_path.write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    return model_path, config_path


def signal(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A few tones and noise whose mix depends on ``seed`` (so files get different predictions)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    x = np.zeros_like(t)
    for freq in rng.uniform(80, min(4000, rate / 2 - 100), size=3):
        x += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6))
    x += rng.uniform(0.01, 0.2) * rng.normal(size=len(t))
    x = np.clip(x, -0.95, 0.95).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_audio(
    path: Path, seconds: float = 5.0, rate: int = 11025, channels: int = 1, seed: int = 0
) -> Path:
    """Write a short audio file in the format its extension names (mp3, wav, flac, ogg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".mp3": "MP3", ".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}[path.suffix.lower()]
    subtype = {"MP3": "MPEG_LAYER_III", "WAV": "PCM_16", "FLAC": "PCM_16", "OGG": "VORBIS"}[fmt]
    sf.write(path, signal(seconds, rate, channels, seed), rate, format=fmt, subtype=subtype)
    return path
