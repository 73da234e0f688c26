"""Front ends: what turns an audio file into model input, with everything that depends on it.

A :class:`FrontEnd` owns its parameters, the name of its feature cache, the check of a cache's
manifest against them, the shape of a cached track (``row_shape``) and of one model input
(``input_shape``), and the check of a saved model's input against them. The feature cache, the
training pipeline, the training config and inference ask the front end; none of them knows what
the features are. :class:`MelSegments` (log-mel segments, :mod:`genrekit.features.mel`) feeds the CNN;
:class:`genrekit.features.musicnn.MusicnnEmbeddings` (a pretrained backbone's embeddings) is a
subclass in its own module. Each is named in :data:`FRONTENDS` so a saved training config can
name it.
"""

from __future__ import annotations

import abc
import dataclasses
import importlib
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from genrekit.errors import CacheError, ConfigError
from genrekit.features.mel import load_segments
from genrekit.features.normalize import NormStats, band_stats
from genrekit.features.params import FEATURE_VERSION, FeatureParams

if TYPE_CHECKING:
    from genrekit.settings import Settings

# Front end name -> "module:Class". A saved training config names its front end; this finds it.
FRONTENDS = {
    "mel_segments": "genrekit.features.frontends:MelSegments",
    "musicnn_embeddings": "genrekit.features.musicnn:MusicnnEmbeddings",
    "musicnn_patches": "genrekit.features.musicnn:MusicnnPatches",
}
DEFAULT_FRONTEND = "mel_segments"  # what a setting without a front end (and every v1 config) means


class FrontEnd(abc.ABC):
    """What turns audio into model input.

    Subclasses are frozen dataclasses (they travel to worker processes by pickle) with a ``name``
    listed in :data:`FRONTENDS` and a ``version`` raised whenever their output changes.
    """

    name: ClassVar[str]
    version: ClassVar[int]
    # Seconds a worker may take to start before its first file counts against the cache's per-file
    # timeout (a front end that loads a model in each worker needs them; log-mel segments do not).
    startup_seconds: ClassVar[float] = 0.0

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings: Settings) -> FrontEnd:
        """The front end a :class:`~genrekit.settings.Settings` asks for."""

    @classmethod
    @abc.abstractmethod
    def from_params(cls, params: Mapping[str, Any]) -> FrontEnd:
        """Inverse of :meth:`params`; ConfigError on unknown, missing or bad values."""

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """Every parameter that shapes the output, JSON-ready (stored in caches and configs)."""

    @property
    @abc.abstractmethod
    def row_shape(self) -> tuple[int, ...]:
        """Shape of one track's cached features: ``(segments, *segment shape)``."""

    @property
    @abc.abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one model input (one segment), without the batch axis."""

    @abc.abstractmethod
    def load(self, path: str | os.PathLike, *, notes: list[str] | None = None) -> np.ndarray:
        """float32 features of one audio file, of shape :attr:`row_shape`.

        Raises :class:`~genrekit.errors.AudioDecodeError` naming the file and the cause.
        """

    @abc.abstractmethod
    def cache_name(self) -> str:
        """A short folder name naming the front end and its parameters (``CACHE_DIR/.../<name>``)."""

    @abc.abstractmethod
    def norm_stats(self, rows: Iterable[np.ndarray]) -> NormStats:
        """The statistics the model normalizes its input with, streamed over cached rows."""

    @abc.abstractmethod
    def describe_input(self) -> str:
        """The model input in words, for error messages (e.g. ``128 mels x 64 frames``)."""

    def prepare(self) -> None:  # noqa: B027 - optional hook, a no-op unless a front end needs it
        """Fetch what :meth:`load` needs once, before workers start (log-mel segments: nothing)."""

    def to_config(self) -> dict[str, Any]:
        """The ``frontend`` section of a training config: name and parameters."""
        return {"name": self.name, "params": self.params()}

    def check_manifest(self, path: os.PathLike, manifest: Mapping[str, Any]) -> None:
        """Refuse a cache part built by another front end, another version or other parameters.

        Raises
        ------
        CacheError
            Naming the part, every difference and what to do.
        """
        built_by = manifest.get("frontend", DEFAULT_FRONTEND)  # parts written before front ends
        if built_by != self.name:
            raise CacheError(
                f"feature cache part {path} holds {built_by!r} features, not {self.name!r}: "
                "use another cache folder"
            )
        if manifest.get("feature_version") != self.version:
            raise CacheError(
                f"feature cache part {path} was made by feature code version {manifest.get('feature_version')}, "
                f"this is version {self.version}: delete the cache folder to rebuild it, or use another one"
            )
        built = manifest.get("params", {})
        wanted = self.params()
        diffs = [f"{k}={built.get(k)!r} (asked {wanted[k]!r})" for k in wanted if built.get(k) != wanted[k]]
        diffs += [f"{k}={built[k]!r} (unknown)" for k in built if k not in wanted]
        if diffs:
            raise CacheError(
                f"feature cache part {path} was built with other feature parameters: {', '.join(diffs)}; "
                f"delete {os.path.dirname(path)} to rebuild it, or choose another cache folder "
                f"(e.g. .../{self.cache_name()})"
            )

    def input_problems(self, config_input_shape: Iterable[int], model_input_shape: Any) -> list[str]:
        """What disagrees between this front end, a training config's ``input_shape`` and a model's input."""
        expected = tuple(int(d) for d in config_input_shape)
        problems = []
        if expected != tuple(self.input_shape):
            problems.append(
                f"the config's input_shape {expected} disagrees with its features ({self.describe_input()})"
            )
        got = tuple(model_input_shape[1:]) if isinstance(model_input_shape, tuple) else None
        if got != expected:
            problems.append(f"model input shape {got} != config input_shape {expected}")
        return problems


@dataclasses.dataclass(frozen=True)
class MelSegments(FrontEnd):
    """Log-mel segments of the first ``duration`` seconds (:func:`genrekit.features.mel.load_segments`).

    A track is ``(num_segments, n_mels, segment_frames)``; the model sees one segment with a
    channel axis, ``(n_mels, segment_frames, 1)``.
    """

    features: FeatureParams = dataclasses.field(default_factory=FeatureParams)

    name: ClassVar[str] = "mel_segments"
    version: ClassVar[int] = FEATURE_VERSION

    @classmethod
    def from_settings(cls, settings: Settings) -> MelSegments:
        return cls(FeatureParams.from_settings(settings))

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MelSegments:
        return cls(FeatureParams.from_dict(params))

    def params(self) -> dict[str, Any]:
        return self.features.to_dict()

    @property
    def row_shape(self) -> tuple[int, int, int]:
        p = self.features
        return (p.num_segments, p.n_mels, p.segment_frames)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.features.segment_shape, 1)

    def load(self, path: str | os.PathLike, *, notes: list[str] | None = None) -> np.ndarray:
        return load_segments(path, self.features, notes=notes)

    def cache_name(self) -> str:
        return self.features.cache_name()  # the names caches had before front ends: they stay valid

    def norm_stats(self, rows: Iterable[np.ndarray]) -> NormStats:
        return band_stats(rows)

    def describe_input(self) -> str:
        return f"{self.features.n_mels} mels x {self.features.segment_frames} frames"


def frontend_class(name: str) -> type[FrontEnd]:
    """The front end class of a name in :data:`FRONTENDS`; ConfigError for another name."""
    if not isinstance(name, str) or name not in FRONTENDS:
        raise ConfigError(f"front end {name!r} is not one of {', '.join(sorted(FRONTENDS))}")
    module, _, attr = FRONTENDS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def from_settings(settings: Settings) -> FrontEnd:
    """The front end of a run's settings (``settings.frontend``; log-mel segments when it has none)."""
    return frontend_class(getattr(settings, "frontend", DEFAULT_FRONTEND)).from_settings(settings)


def from_config(section: Mapping[str, Any]) -> FrontEnd:
    """A front end from its ``{"name": ..., "params": {...}}`` section; ConfigError when malformed."""
    if not isinstance(section, Mapping) or not isinstance(section.get("params"), Mapping):
        raise ConfigError(f"front end section {section!r} must be {{'name': ..., 'params': {{...}}}}")
    frontend = frontend_class(section.get("name")).from_params(section["params"])
    location = section.get("location") or {}  # where a front end finds its files, not what they are
    if not isinstance(location, Mapping) or not set(location) <= {
        f.name for f in dataclasses.fields(frontend)
    }:
        raise ConfigError(f"front end section {section!r}: 'location' names no field of {frontend.name!r}")
    return dataclasses.replace(frontend, **location) if location else frontend


def as_frontend(value: FrontEnd | FeatureParams) -> FrontEnd:
    """``value`` itself, or the :class:`MelSegments` of a :class:`~genrekit.features.mel.FeatureParams`.

    Callers that hold plain feature parameters (scripts, benchmarks, tests written before front
    ends) keep working.
    """
    if isinstance(value, FrontEnd):
        return value
    if isinstance(value, FeatureParams):
        return MelSegments(value)
    raise ConfigError(f"expected a FrontEnd or FeatureParams, got {type(value).__name__}")
