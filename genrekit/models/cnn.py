"""The hierarchical genre CNN: one mel segment in, three named heads out (``top``, ``medium``, ``all``).

Built from ``keras.layers`` only, so it runs on every Keras 3 backend; this module is only about
the model, so it imports Keras at the top.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from genrekit.backend import keras
from genrekit.errors import ModelError

if TYPE_CHECKING:
    from genrekit.models.registry import ModelSpec

# The README's architecture at width 1.0: three pooled conv blocks, one unpooled, one dense layer.
CONV_FILTERS = (64, 128, 256, 512)
DENSE_UNITS = 512
KERNEL_SIZE = (3, 3)
POOL_SIZE = (2, 2)
MIN_WIDTH = 4  # no layer is narrower than this, whatever the width factor
OUTPUT_NAMES = ("top", "medium", "all")
# A band whose training-set std is below this is left unscaled (as scikit-learn's StandardScaler
# does), so a constant band cannot blow up at inference when it is not constant any more.
MIN_NORM_STD = 1e-8
# Dropout seeds start this far above the initializer seeds (seed + layer offset, offsets < 1000),
# so no dropout layer draws the same random stream as a layer's initializer.
DROPOUT_SEED_OFFSET = 1000


def scaled_width(units: int, width_factor: float) -> int:
    """Return ``units`` scaled by ``width_factor``, rounded, and never below ``MIN_WIDTH``.

    Parameters
    ----------
    units : int
        The README's width (filters or dense units) at width factor 1.0.
    width_factor : float
        Scale; 1.0 keeps the README's widths, 0.0625 turns 64 filters into 4.

    Returns
    -------
    int
        The width of the layer.
    """
    if not width_factor > 0:
        raise ModelError(f"width_factor={width_factor} must be > 0")
    return max(MIN_WIDTH, int(round(units * width_factor)))


def _initializer(seed: int | None, offset: int) -> keras.initializers.Initializer:
    # Every layer gets its own seed so equally shaped layers do not start identical.
    return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)


def _check_head_counts(num_top: int, num_medium: int, num_all: int) -> None:
    """Classes per head: top and all >= 1; medium >= 0 (0: no medium head)."""
    for name, count in (("num_top", num_top), ("num_medium", num_medium), ("num_all", num_all)):
        if int(count) < (0 if name == "num_medium" else 1):
            raise ModelError(f"{name}={count} must be >= {0 if name == 'num_medium' else 1}")


def _check_norm_stats(
    norm_mean: Sequence[float] | np.ndarray | None,
    norm_std: Sequence[float] | np.ndarray | None,
    n_bands: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Validate the per-band statistics and return (mean, variance) as float32, or None."""
    if norm_mean is None and norm_std is None:
        return None
    if norm_mean is None or norm_std is None:
        raise ModelError("norm_mean and norm_std must be given together (per-band training statistics)")
    mean = np.asarray(norm_mean, dtype=np.float64).reshape(-1)
    std = np.asarray(norm_std, dtype=np.float64).reshape(-1)
    for name, values in (("norm_mean", mean), ("norm_std", std)):
        if values.shape != (n_bands,):
            raise ModelError(f"{name} has {values.size} values; the input has {n_bands} mel bands")
        if not np.all(np.isfinite(values)):
            raise ModelError(f"{name} contains NaN or infinite values")
    if np.any(std < 0):
        raise ModelError(f"norm_std contains negative values (min {std.min()})")
    std = np.where(std < MIN_NORM_STD, 1.0, std)
    return mean.astype(np.float32), (std**2).astype(np.float32)


def genre_heads(x, num_top: int, num_medium: int, num_all: int, seed: int | None) -> dict:
    """The three named float32 heads on the features ``x``, as every model of genrekit has them.

    ``top`` and ``medium`` are softmax heads, ``all`` a sigmoid head; ``num_medium`` 0 leaves the
    medium head out (a collection without sub-genres). Their initializers are seeded apart.
    """
    layers = keras.layers
    heads = (("top", num_top, "softmax"), ("medium", num_medium, "softmax"), ("all", num_all, "sigmoid"))
    return {
        name: layers.Dense(
            int(units),
            activation=activation,
            dtype="float32",
            kernel_initializer=_initializer(seed, 20 + k),
            name=name,
        )(x)
        for k, (name, units, activation) in enumerate(heads)
        if units
    }


def build_model(
    input_shape: Sequence[int],
    *,
    num_top: int,
    num_medium: int,
    num_all: int,
    width_factor: float = 1.0,
    conv_dropout: float = 0.25,
    dense_dropout: float = 0.5,
    norm_mean: Sequence[float] | np.ndarray | None = None,
    norm_std: Sequence[float] | np.ndarray | None = None,
    seed: int | None = None,
) -> keras.Model:
    """Build the hierarchical CNN with three named heads.

    Architecture (the README's, at ``width_factor=1.0``): optional per-band normalization; three
    blocks of Conv2D (64, 128, 256 filters) + BatchNorm + MaxPool 2x2 + Dropout(conv_dropout);
    Conv2D 512 + BatchNorm + GlobalAveragePooling + Dropout(dense_dropout); Dense 512 + BatchNorm
    + Dropout(dense_dropout); heads ``top`` (softmax over ``num_top``), ``medium`` (softmax over
    ``num_medium``) and ``all`` (sigmoid over ``num_all``). Convolutions are 3x3 with "same"
    padding and ReLU applied before the BatchNorm, as in the README. The heads compute in
    float32 even under a mixed_float16 policy, so probabilities and losses stay accurate.

    Parameters
    ----------
    input_shape : sequence of int
        ``(n_mels, segment_frames, 1)``, e.g. ``config.INPUT_SHAPE`` = (128, 64, 1).
    num_top, num_medium, num_all : int
        Classes of the top-level, medium and all-genres heads (each >= 1; ``num_medium=0`` builds
        the model without a ``medium`` head, for a collection without sub-genres).
    width_factor : float
        Scales every conv and dense width (rounded, at least 4); 1.0 = 64/128/256/512 and 512.
    conv_dropout, dense_dropout : float
        Dropout rates after the pooled conv blocks, and after pooling and the dense layer.
    norm_mean, norm_std : array-like of shape (n_mels,), optional
        Training-set mean and std of each mel band. When given, the first layer is a
        ``keras.layers.Normalization`` over the mel axis holding them, so the saved model
        normalizes its own input. Bands with std 0 are left unscaled.
    seed : int, optional
        Seed of the weight initializers and dropout masks.

    Returns
    -------
    keras.Model
        A functional model named ``genre_cnn`` whose outputs are the dict
        ``{"top": ..., "medium": ..., "all": ...}``.

    Raises
    ------
    ModelError
        When a shape, a class count, a rate or the normalization statistics cannot work.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ModelError(f"input_shape={input_shape} must be (n_mels, frames, channels), all >= 1")
    _check_head_counts(num_top, num_medium, num_all)
    for name, rate in (("conv_dropout", conv_dropout), ("dense_dropout", dense_dropout)):
        if not 0.0 <= rate < 1.0:
            raise ModelError(f"{name}={rate} must be in [0, 1)")
    stats = _check_norm_stats(norm_mean, norm_std, input_shape[0])
    filters = [scaled_width(n, width_factor) for n in CONV_FILTERS]
    dense_units = scaled_width(DENSE_UNITS, width_factor)
    layers = keras.layers

    def dropout_seed(offset: int) -> int | None:
        return None if seed is None else seed + DROPOUT_SEED_OFFSET + offset

    inputs = keras.Input(shape=input_shape, name="mel")
    x = inputs
    if stats is not None:
        # float32 even under mixed precision: dB values and their statistics need the range.
        mean, variance = stats
        x = layers.Normalization(axis=1, mean=mean, variance=variance, dtype="float32", name="mel_norm")(x)
    for i, n_filters in enumerate(filters):
        x = layers.Conv2D(
            n_filters,
            KERNEL_SIZE,
            padding="same",
            activation="relu",
            kernel_initializer=_initializer(seed, i),
            name=f"conv{i + 1}",
        )(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        if i < len(filters) - 1:
            x = layers.MaxPooling2D(POOL_SIZE, name=f"pool{i + 1}")(x)
            x = layers.Dropout(conv_dropout, seed=dropout_seed(i), name=f"drop{i + 1}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dense_dropout, seed=dropout_seed(10), name="drop_gap")(x)
    x = layers.Dense(dense_units, activation="relu", kernel_initializer=_initializer(seed, 10), name="dense")(
        x
    )
    x = layers.BatchNormalization(name="bn_dense")(x)
    x = layers.Dropout(dense_dropout, seed=dropout_seed(11), name="drop_dense")(x)

    outputs = genre_heads(x, num_top, num_medium, num_all, seed)
    return keras.Model(inputs=inputs, outputs=outputs, name="genre_cnn")


def build_from_spec(spec: ModelSpec) -> keras.Model:
    """The CNN of a run's settings (kind ``cnn`` of :data:`genrekit.models.registry.MODELS`)."""
    s = spec.settings
    return build_model(
        spec.input_shape,
        width_factor=s.width_factor,
        conv_dropout=s.conv_dropout,
        dense_dropout=s.dense_dropout,
        **spec.head_arguments(),
    )


def count_flops(model: keras.Model) -> int:
    """Count the floating-point operations of one forward pass of one segment, analytically.

    A multiply-add counts as 2 FLOPs. Convolutions and dense layers are counted exactly
    (weights and bias); BatchNorm (inference: 2 per element), normalization, pooling and
    activations are added as one or two operations per element. Dropout costs nothing at
    inference.

    Parameters
    ----------
    model : keras.Model
        A built model, e.g. from :func:`build_model`.

    Returns
    -------
    int
        FLOPs per segment (batch size 1).
    """
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        out_shape = layer.output.shape
        out_elems = int(np.prod([d for d in out_shape[1:]]))
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1]
            total += out_elems * (2 * kh * kw * c_in + (1 if layer.use_bias else 0))
            total += out_elems if layer.activation is not keras.activations.linear else 0
        elif isinstance(layer, keras.layers.Dense):
            n_in = layer.input.shape[-1]
            total += out_elems * (2 * n_in + (1 if layer.use_bias else 0))
            # softmax/sigmoid/relu: a few operations per unit; count 1 (small either way).
            total += out_elems if layer.activation is not keras.activations.linear else 0
        elif isinstance(layer, keras.layers.BatchNormalization | keras.layers.Normalization):
            total += 2 * out_elems
        elif isinstance(layer, keras.layers.MaxPooling2D):
            ph, pw = layer.pool_size
            total += out_elems * (ph * pw - 1)
        elif isinstance(layer, keras.layers.GlobalAveragePooling2D):
            total += int(np.prod(layer.input.shape[1:]))
    return int(total)
