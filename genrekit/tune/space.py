"""The search space of a hyper-parameter study: which settings vary, over which range, checked.

A space is a JSON object keyed by setting names (:class:`genrekit.settings.Settings`)::

    {"learning_rate": {"low": 3e-4, "high": 1e-2, "log": true},
     "width_factor": {"choices": [0.0625, 0.125]},
     "oversample_threshold": {"low": 25, "high": 400, "log": true}}

A number setting takes ``low`` and ``high`` (and ``log``, ``step``); any setting takes ``choices``.
Integer settings are drawn as integers. Keys starting with ``_`` are notes and are ignored.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

from genrekit.errors import ConfigError
from genrekit.settings import Settings, checked_settings, default_value

# Measured defaults for the demo and a first look at FMA: the recipe's knobs that matter most.
# The top head's loss weight stays 1 (the scale the others are read against; tuning all three
# only repeats the learning rate). Thresholds are read as set for fma_large when
# SAMPLING_THRESHOLDS is "relative" (the demo's recipe), so the same space fits both.
DEFAULT_SPACE: dict[str, dict[str, Any]] = {
    "learning_rate": {"low": 3e-4, "high": 1e-2, "log": True},
    "width_factor": {"choices": [0.0625, 0.125]},
    "conv_dropout": {"low": 0.0, "high": 0.3},
    "dense_dropout": {"low": 0.0, "high": 0.5},
    "focal_gamma": {"low": 0.0, "high": 4.0},
    "oversample_threshold": {"low": 25, "high": 400, "log": True},
    "undersample_threshold": {"low": 1000, "high": 10000, "log": True},
    "medium_loss_weight": {"low": 0.2, "high": 1.5},
    "all_loss_weight": {"low": 0.2, "high": 1.5},
}
# Settings a study must not vary: where things are written or read, and what only evaluation uses.
NOT_TUNABLE = frozenset(
    {
        "output_dir", "cache_dir", "data_dir", "demo_dir", "metadata_dir", "audio_dir", "pretrained_dir",
        "dataset", "subset", "workers", "engine", "strategy", "split", "model_filename", "training_config_filename",
        "monitor", "num_epochs", "seed",
    }
)  # fmt: skip
RANGE_KEYS = {"low", "high", "log", "step"}


@dataclasses.dataclass(frozen=True)
class Dimension:
    """One setting's range: ``choices``, or ``low``..``high`` (``log`` scale, optional ``step``)."""

    name: str
    kind: type
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial draws for this setting."""
        if self.choices is not None:
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind is int:
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {list(self.choices)}"
        return f"{self.name} {self.low:g}..{self.high:g}{' (log)' if self.log else ''}"


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The checked dimensions of a study, in the order they were given."""

    dimensions: tuple[Dimension, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dimensions)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One value per setting, drawn by ``trial``."""
        return {d.name: d.suggest(trial) for d in self.dimensions}

    def describe(self) -> str:
        return "; ".join(d.describe() for d in self.dimensions)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out = {}
        for d in self.dimensions:
            if d.choices is not None:
                out[d.name] = {"choices": list(d.choices)}
            else:
                out[d.name] = {
                    "low": d.low,
                    "high": d.high,
                    "log": d.log,
                    **({"step": d.step} if d.step else {}),
                }
        return out


def parse_space(values: Mapping[str, Any] | None = None, source: str = "search space") -> SearchSpace:
    """A :class:`SearchSpace` from a mapping (default :data:`DEFAULT_SPACE`).

    Raises
    ------
    ConfigError
        In one line naming the source, the setting and the problem: an unknown or untunable setting,
        an empty or inverted range, a value of the wrong type, an empty choice list.
    """
    values = DEFAULT_SPACE if values is None else values
    if not isinstance(values, Mapping):
        raise ConfigError(f"{source}: must be a JSON object of setting -> range, got {type(values).__name__}")
    dims = [parse_dimension(name, spec, source) for name, spec in values.items() if not name.startswith("_")]
    if not dims:
        raise ConfigError(f"{source}: no settings to search")
    return SearchSpace(tuple(dims))


def parse_dimension(name: str, spec: Any, source: str = "search space") -> Dimension:
    """One checked dimension (see :func:`parse_space`)."""
    where = f"{source}: {name!r}"
    if name not in Settings.__dataclass_fields__:
        raise ConfigError(f"{where} is not a setting (see config.py for the names)")
    if name in NOT_TUNABLE:
        raise ConfigError(f"{where} cannot be searched (paths, data and the study's own settings stay fixed)")
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be an object with low/high or choices, got {spec!r}")
    kind = type(default_value(name))
    if "choices" in spec:
        return _choices(name, kind, spec, where)
    unknown = sorted(set(spec) - RANGE_KEYS)
    if unknown or not {"low", "high"} <= set(spec):
        raise ConfigError(
            f"{where} needs low and high (and optionally log, step) or choices, got keys {sorted(spec)}"
        )
    if kind not in (int, float):
        raise ConfigError(f"{where} is a {kind.__name__} setting: give choices, not a range")
    low, high = (_number(name, kind, spec[key], where, key) for key in ("low", "high"))
    if not low < high:
        raise ConfigError(f"{where} has an empty range: low {low!r} must be below high {high!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where} log must be true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{where} on a log scale needs low > 0, got {low!r}")
    step = spec.get("step")
    if step is not None:
        step = _number(name, kind, step, where, "step")
        if step <= 0 or log:
            raise ConfigError(f"{where} step must be > 0 and cannot be combined with log, got {step!r}")
    return Dimension(name, kind, float(low), float(high), log, step)


def _choices(name: str, kind: type, spec: Mapping[str, Any], where: str) -> Dimension:
    if set(spec) != {"choices"}:
        raise ConfigError(f"{where} takes choices alone, got keys {sorted(spec)}")
    choices = spec["choices"]
    if not isinstance(choices, list | tuple) or not choices:
        raise ConfigError(f"{where} choices must be a non-empty list, got {choices!r}")
    checked = []
    for value in choices:
        try:
            checked.append(checked_settings({name: value})[name])
        except ConfigError as exc:
            raise ConfigError(f"{where} choice {value!r}: {exc}") from None
    if len(set(map(repr, checked))) != len(checked):
        raise ConfigError(f"{where} choices repeat a value: {choices!r}")
    return Dimension(name, kind, choices=tuple(checked))


def _number(name: str, kind: type, value: Any, where: str, key: str) -> float:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or (kind is int and not isinstance(value, int)):
        wanted = "an integer" if kind is int else "a number"
        raise ConfigError(f"{where} {key} must be {wanted} (the setting is a {kind.__name__}), got {value!r}")
    return value


def read_space(path: str | os.PathLike | None) -> SearchSpace:
    """The space in the JSON file ``path``, or :data:`DEFAULT_SPACE` when None."""
    if path is None:
        return parse_space()
    from genrekit.fileio import read_json

    return parse_space(read_json(path, error=ConfigError, what="search space file"), str(path))
