"""Normalization of features: per-mel-band statistics of the training split, applied everywhere.

:func:`band_stats` computes per-mel-band mean and std on the training split (streaming, so a
memory-mapped cache larger than RAM works), the statistics are saved with the model's
configuration (:meth:`NormStats.to_dict`), and :func:`normalize` applies them the same way in
training, evaluation and inference.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from genrekit.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class NormStats:
    """Per-mel-band mean and standard deviation of training features, in dB."""

    mean: np.ndarray
    std: np.ndarray
    count: int  # values per band the statistics were computed on

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, np.float32).reshape(-1)
        std = np.asarray(self.std, np.float32).reshape(-1)
        if mean.shape != std.shape or not np.isfinite(mean).all() or not (np.isfinite(std) & (std > 0)).all():
            raise ConfigError("normalization statistics need finite means and positive stds per mel band")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def n_mels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"mean": [...], "std": [...], "count": n}``."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": int(self.count)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormStats:
        try:
            return cls(mean=np.asarray(data["mean"]), std=np.asarray(data["std"]), count=int(data["count"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"normalization statistics malformed ({exc!r})") from None


# Bands whose std is below this (constant bands, e.g. above a low-passed MP3's cut-off on silence)
# are divided by it instead, so normalization never divides by zero.
MIN_STD = 1e-3


def band_stats(source: np.ndarray | Iterable[np.ndarray], chunk_rows: int = 128) -> NormStats:
    """Per-mel-band mean and std over features ``(..., n_mels, frames)``, streamed in chunks.

    Parameters
    ----------
    source : numpy.ndarray or iterable of numpy.ndarray
        An array (a memmap works: it is read ``chunk_rows`` rows at a time, so it may be larger
        than RAM) or an iterable of chunks, each ``(..., n_mels, frames)``.
    chunk_rows : int
        Rows along axis 0 per chunk when ``source`` is an array.

    Returns
    -------
    NormStats
        Mean and std (population) per band over every segment and frame, combined across chunks
        with Chan's parallel formula in float64.
    """
    if isinstance(source, np.ndarray):
        chunks: Iterable[np.ndarray] = (source[i : i + chunk_rows] for i in range(0, len(source), chunk_rows))
    else:
        chunks = source
    count, mean, m2 = 0, None, None
    for chunk in chunks:
        x = np.asarray(chunk)
        if x.size == 0:
            continue
        # float32 deviations: float16 cache rows would lose digits in x - mean.
        x = np.moveaxis(x, -2, 0).reshape(x.shape[-2], -1).astype(np.float32)
        n = x.shape[1]
        c_mean = x.mean(axis=1, dtype=np.float64)
        x -= c_mean[:, None].astype(np.float32)
        c_m2 = np.square(x).sum(axis=1, dtype=np.float64)
        if mean is None:
            count, mean, m2 = n, c_mean, c_m2
            continue
        if len(c_mean) != len(mean):
            raise ConfigError(f"feature chunks disagree on mel bands: {len(mean)} then {len(c_mean)}")
        delta = c_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + c_m2 + delta**2 * (count * n / total)
        count = total
    if mean is None:
        raise ConfigError("no features to compute normalization statistics on")
    std = np.maximum(np.sqrt(m2 / count), MIN_STD)
    return NormStats(mean=mean, std=std, count=count)


def normalize(segments: np.ndarray, stats: NormStats, mel_axis: int = -2) -> np.ndarray:
    """``(segments - mean) / std`` per mel band, float32; the same in training, evaluation and inference.

    Parameters
    ----------
    segments : numpy.ndarray
        Log-mel features, any leading shape, mel bands on ``mel_axis`` (``(..., n_mels, frames)``
        by default; pass ``mel_axis=-3`` for ``(..., n_mels, frames, 1)``).
    stats : NormStats
        Statistics of the training split (from the model's configuration).
    mel_axis : int
        Axis of the mel bands.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    x = np.asarray(segments)
    if x.shape[mel_axis] != stats.n_mels:
        raise ConfigError(
            f"normalization statistics are for {stats.n_mels} mel bands, features have {x.shape[mel_axis]}"
        )
    shape = [1] * x.ndim
    shape[mel_axis] = stats.n_mels
    out = x.astype(np.float32, copy=True)
    out -= stats.mean.reshape(shape)
    out /= stats.std.reshape(shape)
    return out
