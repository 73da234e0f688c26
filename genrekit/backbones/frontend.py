"""The musicnn front end: each track becomes pretrained musicnn embeddings, one per 3-s patch.

:class:`MusicnnEmbeddings` is a :class:`~genrekit.frontends.FrontEnd`: the feature cache stores
its rows ``(patches, dim)`` as it stores log-mel segments (resumable, built in worker processes,
defective files listed in failures.csv), the training config names it, and inference and
evaluation rebuild it from there. Each worker decodes the file (musicnn's 16 kHz, 96-band,
``log10(10000 * mel + 1)`` front end, :func:`genrekit.backbones.musicnn.musicnn_patches`'s code
with ``patches`` patches spread evenly over the file) and runs the Keras port of musicnn, loaded
once per process from the converted weights (:mod:`genrekit.backbones.musicnn_weights`).

Outputs (``output``): ``penultimate`` (200 values, the layer Essentia's genre heads are trained
on), ``max_pool`` or ``mean_pool`` (753), ``pools`` (both, 1,506: max then mean).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from genrekit.audio import FeatureParams, NormStats, band_stats, load_track_segments
from genrekit.backbones.musicnn import (
    EMBEDDING_SIZE,
    HOP_LENGTH,
    MODELS,
    N_FFT,
    N_MELS,
    PATCH_FRAMES,
    POOL_SIZE,
    SAMPLE_RATE,
)
from genrekit.errors import ConfigError
from genrekit.frontends import FrontEnd

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
        from genrekit.backbones.musicnn_weights import load_musicnn

        _MODELS[key] = load_musicnn(model, weights_dir or None)
    return _MODELS[key]


def embeddings_of(outputs: Mapping[str, np.ndarray], output: str) -> np.ndarray:
    """The ``output`` embedding ``(n, dim)`` from musicnn's outputs (``pools``: max then mean)."""
    if output == "pools":
        return np.concatenate([outputs["max_pool"], outputs["mean_pool"]], axis=1)
    return np.asarray(outputs[output])


@dataclasses.dataclass(frozen=True)
class MusicnnEmbeddings(FrontEnd):
    """Embeddings of a pretrained musicnn, ``patches`` 3-s patches per track.

    Parameters
    ----------
    model : str
        ``MSD_musicnn`` (Million Song Dataset tags) or ``MTT_musicnn``.
    output : str
        One of :data:`OUTPUTS`.
    patches : int
        Patches per track, spread evenly over the file (10 cover a 30-s FMA clip without overlap;
        a shorter file gives overlapping patches, one shorter than 3 s is defective).
    weights_dir : str
        The converted weights' folder ("" = ``<PRETRAINED_DIR>/musicnn``); where they are, not
        what they are (their sha256 is checked on loading), so not a parameter of the features.
    """

    model: str = "MSD_musicnn"
    output: str = "penultimate"
    patches: int = 10
    weights_dir: str = dataclasses.field(default="", compare=False)

    name: ClassVar[str] = "musicnn_embeddings"
    version: ClassVar[int] = 1
    startup_seconds: ClassVar[float] = 600.0  # a worker imports TensorFlow and loads the port first

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"musicnn model={self.model!r} must be one of {', '.join(MODELS)}")
        if self.output not in OUTPUTS:
            raise ConfigError(f"musicnn output={self.output!r} must be one of {', '.join(OUTPUTS)}")
        if isinstance(self.patches, bool) or not isinstance(self.patches, int) or self.patches < 1:
            raise ConfigError(f"musicnn patches={self.patches!r} must be a positive integer")

    @classmethod
    def from_settings(cls, settings: Any) -> MusicnnEmbeddings:
        return cls(
            model=settings.musicnn_model,
            output=settings.musicnn_output,
            patches=settings.musicnn_patches,
            weights_dir=str(Path(settings.pretrained_dir) / "musicnn"),
        )

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> MusicnnEmbeddings:
        keys = {"model", "output", "patches"}
        if set(params) != keys:
            raise ConfigError(
                f"musicnn front end parameters: unknown keys {sorted(set(params) - keys)}, "
                f"missing keys {sorted(keys - set(params))}"
            )
        return cls(model=params["model"], output=params["output"], patches=params["patches"])

    def params(self) -> dict[str, Any]:
        return {"model": self.model, "output": self.output, "patches": self.patches}

    def to_config(self) -> dict[str, Any]:
        """The config section, with the weights folder as ``location`` (not compared, not a parameter)."""
        section = super().to_config()
        if self.weights_dir:
            section["location"] = {"weights_dir": self.weights_dir}
        return section

    @property
    def dim(self) -> int:
        return OUTPUTS[self.output]

    @property
    def row_shape(self) -> tuple[int, int]:
        return (self.patches, self.dim)

    @property
    def input_shape(self) -> tuple[int]:
        return (self.dim,)

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

    def embed(self, patches: np.ndarray) -> np.ndarray:
        """Embeddings ``(n, dim)`` float32 of musicnn patches ``(n, 187, 96)``."""
        from genrekit.backbones.musicnn import predict_patches

        outputs = predict_patches(_port(self.model, self.weights_dir), patches, batch_size=_BATCH)
        return embeddings_of(outputs, self.output).astype(np.float32)

    def prepare(self) -> None:
        """Fetch and convert the weights once (``python fetch_backbone.py``), before workers start."""
        from genrekit.backbones.musicnn_weights import ensure_musicnn_weights

        ensure_musicnn_weights(self.weights_dir or None)

    def load(self, path: str | os.PathLike, *, notes: list[str] | None = None) -> np.ndarray:
        return self.embed(self.patches_of(path, notes=notes))

    def cache_name(self) -> str:
        return f"musicnn_{self.model}_{self.output}_{self.patches}p_v{self.version}"

    def norm_stats(self, rows: Iterable[np.ndarray]) -> NormStats:
        # Per embedding value: band_stats reduces every axis but the second-last one.
        return band_stats(np.asarray(chunk)[..., None] for chunk in rows)

    def describe_input(self) -> str:
        return f"{self.dim} musicnn {self.output} values"

    def tags(self) -> list[str]:
        """The backbone's own tags (its taggram's 50 outputs, in order)."""
        from genrekit.backbones.musicnn_weights import musicnn_tags

        return musicnn_tags(self.model, self.weights_dir or None)

    def taggram(self, path: str | os.PathLike) -> np.ndarray:
        """The backbone's tag probabilities of a file, averaged over its patches ``(50,)``."""
        from genrekit.backbones.musicnn import predict_patches

        out = predict_patches(_port(self.model, self.weights_dir), self.patches_of(path), batch_size=_BATCH)
        return out["taggram"].mean(axis=0)


def format_tags(frontend: Any, path: str | os.PathLike) -> str:
    """The backbone's own tags of a file, most likely first, one ``probability  tag`` per line.

    Raises
    ------
    ConfigError
        When the front end has no tags (log-mel segments: the ``cnn`` backbone).
    """
    if not hasattr(frontend, "taggram"):
        raise ConfigError(
            f"the model's front end {frontend.name!r} has no backbone tags (--tags needs musicnn)"
        )
    probs = frontend.taggram(path)
    names = frontend.tags()
    order = np.argsort(-probs, kind="stable")
    lines = [f"{frontend.model} tags of {path} (mean over {frontend.patches} patches):"]
    lines += [f"  {probs[i]:.3f}  {names[i]}" for i in order]
    return "\n".join(lines)
