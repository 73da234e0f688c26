"""Loading a trained model and checking that it belongs to its training config.

Shared by inference and evaluation: a model/config pair that does not match (input shape, head
sizes, normalization statistics) is one clear :class:`~genrekit.errors.ModelError` before any work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.labels import LEVELS


def load_model(model_path: str | os.PathLike) -> Any:
    """Load a saved model for prediction (the custom losses and metrics are registered first).

    Raises
    ------
    ModelError
        When the file is not a Keras model that loads.
    """
    from genrekit.device import configure_device

    configure_device(mixed_precision=False)  # TensorFlow imported quietly, GPU memory growth on
    import keras

    import genrekit.keras_metrics  # noqa: F401  (registers the custom metric classes)
    import genrekit.losses  # noqa: F401  (registers the custom loss classes)

    # compile=False: evaluation only predicts; the optimizer state is not needed.
    try:
        return keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # h5py, zipfile and Keras raise many kinds for a bad file
        raise ModelError(f"{model_path}: cannot load the model ({type(exc).__name__}: {exc})") from None


def _output_widths(model: Any) -> dict[str, int]:
    outputs = model.output
    if isinstance(outputs, Mapping):
        return {str(k): int(v.shape[-1]) for k, v in outputs.items()}
    tensors = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {str(name): int(t.shape[-1]) for name, t in zip(model.output_names, tensors, strict=False)}


def _normalization_problems(model: Any, stats: Mapping[str, Any]) -> list[str]:
    """The model normalizes its own input: its Normalization layer must hold the config's statistics.

    Two trainings on the same vocabularies give models with equal shapes; their statistics differ.
    """
    from genrekit.model import MIN_NORM_STD

    if "mean" not in stats or "std" not in stats:
        return []
    layer = next((x for x in model.layers if type(x).__name__ == "Normalization"), None)
    if layer is None:
        return ["the config has normalization statistics but the model has no Normalization layer"]
    mean = np.asarray(stats["mean"], np.float64).ravel()
    std = np.asarray(stats["std"], np.float64).ravel()
    variance = np.where(std < MIN_NORM_STD, 1.0, std) ** 2
    held_mean = np.asarray(layer.mean, np.float64).ravel()
    held_var = np.asarray(layer.variance, np.float64).ravel()
    if held_mean.shape != mean.shape or held_var.shape != variance.shape:
        return [f"the model normalizes {held_mean.size} mel bands, the config's statistics {mean.size}"]
    # float32 storage in the model against float64 JSON in the config: compare loosely.
    if not (
        np.allclose(held_mean, mean, rtol=1e-4, atol=1e-3) and np.allclose(held_var, variance, rtol=1e-3)
    ):
        return [
            "the model's normalization statistics differ from the config's (the config of another training)"
        ]
    return []


def check_model(
    model: Any,
    training_config: Mapping[str, Any],
    model_path: str | os.PathLike,
    config_path: str | os.PathLike,
) -> None:
    """Refuse a model that does not belong to its training config.

    Checks the input shape, the width of each head against its vocabulary, and the normalization
    statistics built into the model.

    Raises
    ------
    ModelError
        One error naming both files and every difference.
    """
    problems = []
    expected = tuple(int(d) for d in training_config["input_shape"])
    features = training_config.get("features") or {}
    if features and expected[:2] != (features.get("n_mels"), features.get("segment_frames")):
        problems.append(
            f"the config's input_shape {expected} disagrees with its features "
            f"({features.get('n_mels')} mels x {features.get('segment_frames')} frames)"
        )
    shape = model.input_shape
    got = tuple(shape[1:]) if isinstance(shape, tuple) else None
    if got != expected:
        problems.append(f"model input shape {got} != config input_shape {expected}")
    widths = _output_widths(model)
    for level in LEVELS:
        size = len(training_config["vocabularies"][level]["genre_ids"])
        if level not in widths:
            problems.append(f"model has no output named {level!r} (outputs: {sorted(widths)})")
        elif widths[level] != size:
            problems.append(
                f"{level} head has {widths[level]} outputs, the config's vocabulary {size} genres"
            )
    problems.extend(_normalization_problems(model, training_config.get("normalization") or {}))
    if problems:
        raise ModelError(
            f"model {model_path} does not match training config {config_path}: " + "; ".join(problems)
        )
