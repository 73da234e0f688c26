"""The musicnn front ends: each track becomes pretrained musicnn embeddings, or musicnn's input patches.

:class:`MusicnnEmbeddings` is a :class:`~genrekit.features.frontends.FrontEnd`: the feature cache stores
its rows ``(patches, dim)`` as it stores log-mel segments (resumable, built in worker processes,
defective files listed in failures.csv), the training config names it, and inference and
evaluation rebuild it from there. Each worker decodes the file (musicnn's 16 kHz, 96-band,
``log10(10000 * mel + 1)`` front end, :func:`genrekit.models.musicnn.musicnn_patches`'s code
with ``patches`` patches spread evenly over the file) and runs the Keras port of musicnn, loaded
once per process from the converted weights (:mod:`genrekit.models.musicnn_weights`).

Outputs (``output``): ``penultimate`` (200 values, the layer Essentia's genre heads are trained
on), ``max_pool`` or ``mean_pool`` (753), ``pools`` (both, 1,506: max then mean).

:class:`MusicnnPatches` caches the patches themselves ``(patches, 187, 96)``, the input of a
model that fine-tunes the backbone (:mod:`genrekit.models.finetune`). Both share
:class:`MusicnnInput`: the checkpoint, the patches and the backbone's own tags.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from genrekit.errors import ConfigError
from genrekit.features.frontends import FrontEnd
from genrekit.features.mel import load_track_segments
from genrekit.features.normalize import NormStats, band_stats
from genrekit.features.params import FeatureParams
from genrekit.models.musicnn import (
    EMBEDDING_SIZE,
    HOP_LENGTH,
    MODELS,
    N_FFT,
    N_MELS,
    PATCH_FRAMES,
    POOL_SIZE,
    SAMPLE_RATE,
    predict_patches,
)
from genrekit.models.musicnn_weights import ensure_musicnn_weights, load_musicnn, musicnn_tags

if TYPE_CHECKING:
    from genrekit.settings import Settings

OUTPUTS = {
    "penultimate": EMBEDDING_SIZE,
    "max_pool": POOL_SIZE,
    "mean_pool": POOL_SIZE,
    "pools": 2 * POOL_SIZE,
}
_BATCH = 16  # patches per forward pass (a 30-s clip: 10)

_MODELS: dict[tuple[str, str], Any] = {}  # (model, weights folder) -> the port, loaded once per process


def _port(model: str, weights_dir: str) -> Any:
    key = (model, weights_dir)
    if key not in _MODELS:
        _MODELS[key] = load_musicnn(model, weights_dir or None)
    return _MODELS[key]


def embeddings_of(outputs: Mapping[str, np.ndarray], output: str) -> np.ndarray:
    """The ``output`` embedding ``(n, dim)`` from musicnn's outputs (``pools``: max then mean)."""
    if output == "pools":
        return np.concatenate([outputs["max_pool"], outputs["mean_pool"]], axis=1)
    return np.asarray(outputs[output])


class MusicnnInput(FrontEnd):
    """What both musicnn front ends share: the checkpoint, the 3-s patches and the backbone's tags.

    Not a dataclass itself: each front end declares its fields, in its own order.

    Parameters
    ----------
    model : str
        ``MSD_musicnn`` (Million Song Dataset tags) or ``MTT_musicnn``.
    patches : int
        Patches per track, spread evenly over the file (10 cover a 30-s FMA clip without overlap;
        a shorter file gives overlapping patches, one shorter than 3 s is defective).
    weights_dir : str
        The converted weights' folder ("" = ``<PRETRAINED_DIR>/musicnn``); where they are, not
        what they are (their sha256 is checked on loading), so not a parameter of the features.
    """

    model: str
    patches: int
    weights_dir: str

    startup_seconds: ClassVar[float] = 600.0  # a worker imports TensorFlow and loads the port first

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"musicnn model={self.model!r} must be one of {', '.join(MODELS)}")
        if isinstance(self.patches, bool) or not isinstance(self.patches, int) or self.patches < 1:
            raise ConfigError(f"musicnn patches={self.patches!r} must be a positive integer")

    def to_config(self) -> dict[str, Any]:
        """The config section, with the weights folder as ``location`` (not compared, not a parameter)."""
        section = super().to_config()
        if self.weights_dir:
            section["location"] = {"weights_dir": self.weights_dir}
        return section

    @classmethod
    def _from_keys(cls, params: Mapping[str, Any], keys: set[str]) -> Any:
        if set(params) != keys:
            raise ConfigError(
                f"{cls.name} front end parameters: unknown keys {sorted(set(params) - keys)}, "
                f"missing keys {sorted(keys - set(params))}"
            )
        return cls(**{k: params[k] for k in keys})

    def mel_params(self) -> FeatureParams:
        """musicnn's spectrogram as our feature parameters (``duration`` only sizes the check)."""
        return FeatureParams(
            sample_rate=SAMPLE_RATE,
            duration=30.0,
            n_mels=N_MELS,
            n_fft=N_FFT,
            hop_length=HOP_LENGTH,
            fmin=0.0,
            fmax=SAMPLE_RATE / 2,
            num_segments=self.patches,
            segment_frames=PATCH_FRAMES,
            min_segments=1,
        )

    def patches_of(self, path: str | os.PathLike, *, notes: list[str] | None = None) -> np.ndarray:
        """musicnn's input ``(patches, 187, 96)`` of a file, float32; AudioDecodeError when it has none."""
        mel = load_track_segments(
            path, self.mel_params(), num_segments=self.patches, compression="log10000", notes=notes
        )
        return np.ascontiguousarray(mel.transpose(0, 2, 1))

    def prepare(self) -> None:
        """Fetch and convert the weights once (``python fetch_backbone.py``), before workers start."""
        ensure_musicnn_weights(self.weights_dir or None)

    def tags(self) -> list[str]:
        """The backbone's own tags (its taggram's 50 outputs, in order)."""
        return musicnn_tags(self.model, self.weights_dir or None)

    def taggram(self, path: str | os.PathLike) -> np.ndarray:
        """The pretrained backbone's tag probabilities of a file, averaged over its patches ``(50,)``."""
        out = predict_patches(_port(self.model, self.weights_dir), self.patches_of(path), batch_size=_BATCH)
        return out["taggram"].mean(axis=0)


@dataclasses.dataclass(frozen=True)
class MusicnnEmbeddings(MusicnnInput):
    """Embeddings of a pretrained musicnn, ``patches`` 3-s patches per track (the backbone frozen).

    Parameters
    ----------
    model : str
        As :class:`MusicnnInput`.
    output : str
        One of :data:`OUTPUTS`.
    patches, weights_dir
        As :class:`MusicnnInput`.
    """

    model: str = "MSD_musicnn"
    output: str = "penultimate"
    patches: int = 10
    weights_dir: str = dataclasses.field(default="", compare=False)

    name: ClassVar[str] = "musicnn_embeddings"
    version: ClassVar[int] = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.output not in OUTPUTS:
            raise ConfigError(f"musicnn output={self.output!r} must be one of {', '.join(OUTPUTS)}")

    @classmethod
    def from_settings(cls, settings: Settings) -> MusicnnEmbeddings:
        return cls(
            model=settings.musicnn_model,
            output=settings.musicnn_output,
            patches=settings.musicnn_patches,
            weights_dir=str(Path(settings.pretrained_dir) / "musicnn"),
        )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MusicnnEmbeddings:
        return cls._from_keys(params, {"model", "output", "patches"})

    def params(self) -> dict[str, Any]:
        return {"model": self.model, "output": self.output, "patches": self.patches}

    @property
    def dim(self) -> int:
        return OUTPUTS[self.output]

    @property
    def row_shape(self) -> tuple[int, int]:
        return (self.patches, self.dim)

    @property
    def input_shape(self) -> tuple[int]:
        return (self.dim,)

    def embed(self, patches: np.ndarray) -> np.ndarray:
        """Embeddings ``(n, dim)`` float32 of musicnn patches ``(n, 187, 96)``."""
        outputs = predict_patches(_port(self.model, self.weights_dir), patches, batch_size=_BATCH)
        return embeddings_of(outputs, self.output).astype(np.float32)

    def load(self, path: str | os.PathLike, *, notes: list[str] | None = None) -> np.ndarray:
        return self.embed(self.patches_of(path, notes=notes))

    def cache_name(self) -> str:
        return f"musicnn_{self.model}_{self.output}_{self.patches}p_v{self.version}"

    def norm_stats(self, rows: Iterable[np.ndarray]) -> NormStats:
        # Per embedding value: band_stats reduces every axis but the second-last one.
        return band_stats(np.asarray(chunk)[..., None] for chunk in rows)

    def describe_input(self) -> str:
        return f"{self.dim} musicnn {self.output} values"


@dataclasses.dataclass(frozen=True)
class MusicnnPatches(MusicnnInput):
    """musicnn's input patches themselves, for a model that trains the backbone (fine-tuning).

    A track is ``(patches, 187, 96)``: ``log10(10000 * mel + 1)`` of 3-s patches, time first.
    The cache stores them in float16 like every feature (values 0 to ~5 keep ~3 decimal digits,
    the rounding the original musicnn applied to its mel spectrogram too); fma_large's 10 patches
    per track take ~38 GB. The fine-tuned model (:mod:`genrekit.models.finetune`) starts with
    musicnn's own input batch norm and keeps the heads' statistics, so :meth:`norm_stats` (per
    mel band) is not used by the trainer.
    """

    model: str = "MSD_musicnn"
    patches: int = 10
    weights_dir: str = dataclasses.field(default="", compare=False)

    name: ClassVar[str] = "musicnn_patches"
    version: ClassVar[int] = 1
    startup_seconds: ClassVar[float] = 0.0  # no model in the workers: decoding only

    @classmethod
    def from_settings(cls, settings: Settings) -> MusicnnPatches:
        return cls(
            model=settings.musicnn_model,
            patches=settings.musicnn_patches,
            weights_dir=str(Path(settings.pretrained_dir) / "musicnn"),
        )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MusicnnPatches:
        return cls._from_keys(params, {"model", "patches"})

    def params(self) -> dict[str, Any]:
        # The checkpoint does not change the patches; the run's config names it with them (its tags).
        return {"model": self.model, "patches": self.patches}

    @property
    def row_shape(self) -> tuple[int, int, int]:
        return (self.patches, PATCH_FRAMES, N_MELS)

    @property
    def input_shape(self) -> tuple[int, int]:
        return (PATCH_FRAMES, N_MELS)

    def load(self, path: str | os.PathLike, *, notes: list[str] | None = None) -> np.ndarray:
        return self.patches_of(path, notes=notes)

    def prepare(self) -> None:
        """Nothing: decoding needs no weights, and a fine-tuned model file holds all of its own."""

    def cache_name(self) -> str:
        return f"musicnn_patches_{self.model}_{self.patches}p_v{self.version}"

    def norm_stats(self, rows: Iterable[np.ndarray]) -> NormStats:
        # Per mel band (the last axis): band_stats reduces every axis but the second-last one.
        return band_stats(np.swapaxes(np.asarray(chunk), -1, -2) for chunk in rows)

    def describe_input(self) -> str:
        return f"musicnn patches of {PATCH_FRAMES} frames x {N_MELS} mels"


def check_tags(frontend: FrontEnd) -> MusicnnInput:
    """``frontend`` when it has backbone tags (a musicnn front end).

    Raises
    ------
    ConfigError
        When the front end has no tags (log-mel segments: the ``cnn`` backbone).
    """
    if not isinstance(frontend, MusicnnInput):
        raise ConfigError(
            f"the model's front end {frontend.name!r} has no backbone tags (--tags needs musicnn)"
        )
    return frontend


def format_tags(frontend: FrontEnd, path: str | os.PathLike) -> str:
    """The backbone's own tags of a file, most likely first, one ``probability  tag`` per line.

    Raises
    ------
    ConfigError
        When the front end has no tags (log-mel segments: the ``cnn`` backbone).
    """
    frontend = check_tags(frontend)
    probs = frontend.taggram(path)
    names = frontend.tags()
    order = np.argsort(-probs, kind="stable")
    lines = [f"{frontend.model} tags of {path} (mean over {frontend.patches} patches):"]
    lines += [f"  {probs[i]:.3f}  {names[i]}" for i in order]
    return "\n".join(lines)


def format_top_tags(frontend: FrontEnd, files: Mapping[str, str | os.PathLike], top_k: int) -> str:
    """The backbone's ``top_k`` most likely tags of each file, one ``name  tag 0.61, ...`` line per file.

    ``files`` maps the name printed (a folder run's key) to the audio file, in the order printed.

    Raises
    ------
    ConfigError
        When the front end has no tags (log-mel segments: the ``cnn`` backbone).
    """
    frontend = check_tags(frontend)
    names = frontend.tags()
    width = max((len(key) for key in files), default=0)
    lines = [f"{frontend.model} tags, the {top_k} most likely (mean over {frontend.patches} patches):"]
    for key, path in files.items():
        probs = frontend.taggram(path)
        best = np.argsort(-probs, kind="stable")[:top_k]
        lines.append(f"  {key:<{width}}  " + ", ".join(f"{names[i]} {probs[i]:.2f}" for i in best))
    return "\n".join(lines)
