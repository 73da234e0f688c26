"""Model kinds: what the trainer builds for a run's settings, named in :data:`MODELS`.

A :class:`ModelKind` names its builder (a ``"module:function"`` that makes the Keras model from a
:class:`ModelSpec`: input shape, classes per head, settings, normalization statistics, priors),
the front end it takes (:data:`genrekit.features.frontends.FRONTENDS`), the settings it refuses,
the settings that shape only its runs, the setting of the learning rate it trains at, and where
the normalization statistics built into it come from. The trainer, the resume policy and
:attr:`genrekit.settings.Settings.frontend` ask :func:`model_kind` and never branch on the kind.

A kind is chosen by the ``backbone`` setting; a kind with ``chosen_by`` is chosen instead of its
backbone's plain kind when that setting is set (fine-tuning: ``fine_tune_from``).

Adding a model is one new module plus one entry here. A spectrogram transformer on log-mel
segments, say: ``genrekit/models/transformer.py`` with ``build_from_spec(spec)``, and ::

    ModelKind("transformer", backbone="transformer", frontend="mel_segments",
              builder="genrekit.models.transformer:build_from_spec",
              settings_keys=("transformer_depth", "transformer_heads"))

Its ``backbone`` value becomes a valid setting (:data:`BACKBONES`), the trainer builds, compiles
and saves it like any other, and its own settings (new fields of :class:`genrekit.settings.Settings`)
decide only whether a run of its kind is the same run. Builders are imported only when a model
is built, so this module imports no Keras.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from genrekit.errors import ConfigError

if TYPE_CHECKING:
    from genrekit.datasets.base import LabelledDataset
    from genrekit.settings import Settings

# Where the statistics of the model's Normalization layer come from.
NORM_FROM_CACHE = "cache"  # the training split's cached features (the front end's norm_stats)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a builder gets: everything the data gives the model, and the run's settings.

    ``num_classes`` holds one count per level (``top``, ``medium``, ``all``; ``medium`` 0: no
    medium head); ``normalization`` is ``{"mean": [...], "std": [...]}``; ``priors`` the class
    priors of the softmax heads (logit adjustment).
    """

    input_shape: tuple[int, ...]
    num_classes: Mapping[str, int]
    settings: Settings
    normalization: Mapping[str, Any] | None = None
    priors: Mapping[str, Any] | None = None

    def head_arguments(self) -> dict[str, Any]:
        """The keywords the builders of genrekit's models share: classes per head, statistics, seed."""
        norm = self.normalization or {}
        return {
            "num_top": self.num_classes["top"],
            "num_medium": self.num_classes["medium"],
            "num_all": self.num_classes["all"],
            "norm_mean": norm.get("mean"),
            "norm_std": norm.get("std"),
            "seed": self.settings.seed,
        }


def _load(target: str) -> Callable[..., Any]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclasses.dataclass(frozen=True)
class ModelKind:
    """One kind of model the trainer builds.

    Parameters
    ----------
    name : str
        Its key in :data:`MODELS`.
    backbone : str
        The value of the ``backbone`` setting that chooses it.
    builder : str
        ``"module:function"``; the function takes a :class:`ModelSpec` and returns the uncompiled
        ``keras.Model`` whose outputs are the dict of the heads.
    frontend : str
        The front end (:data:`genrekit.features.frontends.FRONTENDS`) that makes its input.
    chosen_by : str, optional
        A setting that, when set, chooses this kind over the plain kind of its backbone.
    summary : str
        What it is, in a few words (``chosen_by``'s error message says it).
    refuses : mapping
        Setting -> why it cannot work with this kind; refused when the setting is on.
    settings_keys : tuple of str
        Settings that shape only this kind's runs: a finished or interrupted run of another
        kind is the same run whatever they say (:func:`genrekit.train.resume.settings_differences`).
    path_keys : tuple of str
        Those of its settings that name a file or folder (runs compare them as resolved paths).
    learning_rate : str
        The setting of the learning rate it trains at.
    norm : str
        Where its normalization statistics come from: :data:`NORM_FROM_CACHE`, or
        ``"module:function"`` taking ``(settings, processed)`` and returning them, called before
        features are extracted (it may check the source and refuse it).
    check_output : str, optional
        ``"module:function"`` taking ``(settings, out)``: refuses a run folder before anything
        else (fine-tuning: never into the run it starts from).
    """

    name: str
    backbone: str
    builder: str
    frontend: str
    chosen_by: str | None = None
    summary: str = ""
    refuses: Mapping[str, str] = dataclasses.field(default_factory=dict)
    settings_keys: tuple[str, ...] = ()
    path_keys: tuple[str, ...] = ()
    learning_rate: str = "learning_rate"
    norm: str = NORM_FROM_CACHE
    check_output: str | None = None

    def build(self, spec: ModelSpec) -> Any:
        """The Keras model of ``spec`` (its builder, imported now)."""
        return _load(self.builder)(spec)

    def check_settings(self, settings: Settings) -> None:
        """Refuse the settings this kind cannot train with (:attr:`refuses`), naming the first."""
        for key, why in self.refuses.items():
            if getattr(settings, key):
                raise ConfigError(f"{key} {why}: not for the {self.backbone} backbone")

    def base_learning_rate(self, settings: Settings) -> float:
        return getattr(settings, self.learning_rate)

    @property
    def norm_from_cache(self) -> bool:
        return self.norm == NORM_FROM_CACHE

    def source_norm(self, settings: Settings, processed: LabelledDataset) -> dict[str, Any]:
        """The normalization statistics of a kind that does not compute them on the cache."""
        return _load(self.norm)(settings, processed)

    def check_output_dir(self, settings: Settings, out: Any) -> None:
        if self.check_output is not None:
            _load(self.check_output)(settings, out)


_FINE_TUNING = ("fine_tune_from", "fine_tune_layers", "fine_tune_learning_rate")
# The musicnn kinds' own: a CNN or AST run is resumed whatever they say (their default may change).
_MUSICNN = ("musicnn_model", "musicnn_output", "musicnn_patches", "head_units")
_AST = ("ast_patch", "ast_dim", "ast_depth", "ast_heads", "ast_mlp_ratio", "ast_dropout", "ast_pooling")
_NO_SPEC_AUGMENT = MappingProxyType({"spec_augment": "masks mel bands and frames"})

# Kind name -> ModelKind. One entry per model; the first of a backbone without chosen_by is its plain kind.
MODELS: Mapping[str, ModelKind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            ModelKind(
                "cnn",
                backbone="cnn",
                builder="genrekit.models.cnn:build_from_spec",
                frontend="mel_segments",
                summary="the CNN on log-mel segments",
                settings_keys=("width_factor", "conv_dropout"),
            ),
            ModelKind(
                "ast",
                backbone="ast",
                builder="genrekit.models.ast:build_from_spec",
                frontend="mel_segments",
                summary="an audio spectrogram transformer on log-mel segments",
                settings_keys=_AST,
            ),
            ModelKind(
                "musicnn",
                backbone="musicnn",
                builder="genrekit.models.heads:build_from_spec",
                frontend="musicnn_embeddings",
                summary="genre heads on cached musicnn embeddings",
                refuses=_NO_SPEC_AUGMENT,
                settings_keys=_MUSICNN,
            ),
            ModelKind(
                "musicnn_fine_tuned",
                backbone="musicnn",
                builder="genrekit.models.finetune:build_from_spec",
                frontend="musicnn_patches",
                chosen_by="fine_tune_from",
                summary="fine-tunes musicnn",
                refuses=_NO_SPEC_AUGMENT,
                # its embedding layer and head width come from the heads run it starts from
                settings_keys=("musicnn_model", "musicnn_patches") + _FINE_TUNING,
                path_keys=("fine_tune_from",),
                learning_rate="fine_tune_learning_rate",
                norm="genrekit.models.finetune:source_norm",  # the heads run's statistics
                check_output="genrekit.models.finetune:check_output_dir",
            ),
        )
    }
)
BACKBONES = tuple(dict.fromkeys(kind.backbone for kind in MODELS.values()))  # values of the setting


def kind_named(name: str) -> ModelKind:
    """The kind of a name in :data:`MODELS`; ConfigError naming the known ones for another name."""
    if not isinstance(name, str) or name not in MODELS:
        raise ConfigError(f"model kind {name!r} is not one of {', '.join(MODELS)}")
    return MODELS[name]


def _value(settings: Settings | Mapping[str, Any], key: str, default: Any = None) -> Any:
    if isinstance(settings, Mapping):
        return settings.get(key, default)
    return getattr(settings, key, default)


def model_kind(settings: Settings | Mapping[str, Any]) -> ModelKind:
    """The kind a run's settings train (a :class:`~genrekit.settings.Settings` or a saved settings dict).

    Raises
    ------
    ConfigError
        For a ``backbone`` no kind answers.
    """
    backbone = _value(settings, "backbone", "cnn")  # runs saved before backbones trained the CNN
    kinds = [kind for kind in MODELS.values() if kind.backbone == backbone]
    if not kinds:
        raise ConfigError(f"setting 'backbone' must be one of {', '.join(BACKBONES)}, got {backbone!r}")
    chosen = [kind for kind in kinds if kind.chosen_by and _value(settings, kind.chosen_by)]
    return chosen[0] if chosen else next(kind for kind in kinds if kind.chosen_by is None)


def check_choice(values: Mapping[str, Any]) -> None:
    """Refuse a setting that chooses a kind of another backbone (``fine_tune_from`` with the CNN)."""
    for kind in MODELS.values():
        if kind.chosen_by and values[kind.chosen_by] and values["backbone"] != kind.backbone:
            raise ConfigError(
                f"setting {kind.chosen_by!r} {kind.summary}: it needs 'backbone' {kind.backbone!r}, "
                f"got {values['backbone']!r}"
            )


def kind_only_keys() -> frozenset[str]:
    """Settings that shape the runs of one kind only (every kind's :attr:`ModelKind.settings_keys`)."""
    return frozenset(key for kind in MODELS.values() for key in kind.settings_keys)


def kind_path_keys() -> frozenset[str]:
    """Settings of a model kind that name a file or folder (every kind's :attr:`ModelKind.path_keys`)."""
    return frozenset(key for kind in MODELS.values() for key in kind.path_keys)
