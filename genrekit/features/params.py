"""The feature parameters: every number that shapes a track's log-mel segments.

:class:`FeatureParams` is stored in a feature cache's manifest and in a training config, and names
the cache folder (:meth:`FeatureParams.cache_name`); :mod:`genrekit.features.mel` computes the
segments it describes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from genrekit.errors import ConfigError

if TYPE_CHECKING:
    from genrekit.settings import Settings

# Bump when the extraction code changes its output: caches built by another version are refused.
FEATURE_VERSION = 1

_FIELDS = (
    "sample_rate",
    "duration",
    "n_mels",
    "n_fft",
    "hop_length",
    "fmin",
    "fmax",
    "num_segments",
    "segment_frames",
    "min_segments",
)


@dataclasses.dataclass(frozen=True)
class FeatureParams:
    """Every parameter that shapes the features; stored in a cache's manifest and checked on use."""

    sample_rate: int = 22050
    duration: float = 30.0
    n_mels: int = 128
    n_fft: int = 2048
    hop_length: int = 512
    fmin: float = 0.0
    fmax: float = 11025.0
    num_segments: int = 10
    segment_frames: int = 64
    min_segments: int = 1

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mels", "n_fft", "hop_length", "num_segments", "segment_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"feature parameter {name}={value!r} must be a positive integer")
        if isinstance(self.min_segments, bool) or not isinstance(self.min_segments, int):
            raise ConfigError(f"feature parameter min_segments={self.min_segments!r} must be an integer")
        if not 1 <= self.min_segments <= self.num_segments:
            raise ConfigError(
                f"feature parameter min_segments={self.min_segments} must be in [1, num_segments="
                f"{self.num_segments}]"
            )
        if not self.duration > 0:
            raise ConfigError(f"feature parameter duration={self.duration!r} must be > 0")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(
                f"feature parameters fmin={self.fmin!r}, fmax={self.fmax!r} must satisfy "
                f"0 <= fmin < fmax <= sample_rate / 2 ({self.sample_rate / 2:g})"
            )
        if self.n_fft < self.hop_length:
            raise ConfigError(f"feature parameter n_fft={self.n_fft} must be >= hop_length={self.hop_length}")
        if self.min_segments * self.segment_frames > self.clip_frames:
            raise ConfigError(
                f"duration={self.duration:g} s holds {self.clip_frames} frames, fewer than min_segments "
                f"x segment_frames = {self.min_segments * self.segment_frames}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> FeatureParams:
        """The feature parameters of a :class:`~genrekit.settings.Settings` (or any object with them)."""
        return cls(**{name: getattr(settings, name) for name in _FIELDS})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureParams:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ConfigError."""
        unknown = sorted(set(data) - set(_FIELDS))
        missing = sorted(set(_FIELDS) - set(data))
        if unknown or missing:
            raise ConfigError(f"feature parameters: unknown keys {unknown}, missing keys {missing}")
        values = {name: data[name] for name in _FIELDS}
        for name in ("duration", "fmin", "fmax"):
            if isinstance(values[name], int) and not isinstance(values[name], bool):
                values[name] = float(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-ready dict (keys are the settings' names)."""
        return dataclasses.asdict(self)

    @property
    def clip_frames(self) -> int:
        """Spectrogram frames of a full ``duration`` clip (1292 for 30 s at 22050 Hz, hop 512)."""
        return 1 + int(round(self.duration * self.sample_rate)) // self.hop_length

    @property
    def segment_shape(self) -> tuple[int, int]:
        """``(n_mels, segment_frames)``: one segment, the model input without its channel axis."""
        return (self.n_mels, self.segment_frames)

    def cache_name(self) -> str:
        """A short folder name naming these parameters and the feature version, e.g. for CACHE_DIR/<name>."""
        blob = json.dumps({"params": self.to_dict(), "version": FEATURE_VERSION}, sort_keys=True)
        digest = hashlib.sha1(blob.encode()).hexdigest()[:8]
        return (
            f"sr{self.sample_rate}_mel{self.n_mels}_fft{self.n_fft}_hop{self.hop_length}_"
            f"seg{self.num_segments}x{self.segment_frames}_{self.duration:g}s_{digest}"
        )
