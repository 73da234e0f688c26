"""An audio spectrogram transformer (AST/PaSST style) on one log-mel segment, with the three named heads.

The segment, normalized per mel band by the training statistics, is cut into square patches by a
convolution whose kernel is its stride (``AST_PATCH``); the patches become tokens of ``AST_DIM``
values with a learned position embedding each, optionally behind a class token; ``AST_DEPTH``
pre-norm encoder blocks (multi-head self-attention, a GELU MLP, dropout, residuals) follow, then a
layer norm, the pooled token (class token or mean) and the heads ``top``, ``medium`` and ``all``
of :mod:`genrekit.models.cnn`. Built from ``keras.layers`` and genrekit's registered layers
(:mod:`genrekit.models.layers`) only, so it runs on every Keras 3 backend and loads back without
custom objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from genrekit.backend import keras
from genrekit.errors import ModelError
from genrekit.models.cnn import (
    DROPOUT_SEED_OFFSET,
    _check_head_counts,
    _check_norm_stats,
    _initializer,
    genre_heads,
)
from genrekit.models.cnn import count_flops as _dense_and_conv_flops
from genrekit.models.layers import ClassToken, PositionEmbedding

if TYPE_CHECKING:
    from genrekit.models.registry import ModelSpec

POOLINGS = ("mean", "token")  # the mean of the encoded tokens, or the class token's output
LAYER_NORM_EPSILON = 1e-6  # ViT's and AST's


def _check_sizes(
    input_shape: tuple[int, ...], patch: int, dim: int, depth: int, heads: int, mlp_ratio: int
) -> None:
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ModelError(f"input_shape={input_shape} must be (n_mels, frames, channels), all >= 1")
    for name, value in (
        ("patch", patch),
        ("dim", dim),
        ("depth", depth),
        ("heads", heads),
        ("mlp_ratio", mlp_ratio),
    ):
        if int(value) < 1:
            raise ModelError(f"{name}={value} must be >= 1")
    if patch > min(input_shape[:2]):
        raise ModelError(f"patch={patch} must be at most the segment's {input_shape[0]} x {input_shape[1]}")
    if dim % heads:
        raise ModelError(f"dim={dim} must be a multiple of heads={heads}")


def _encoder_block(x, index: int, *, heads: int, mlp_ratio: int, dropout: float, seed: int | None):
    """One pre-norm transformer block: x + attention(norm(x)), then x + mlp(norm(x))."""
    layers, dim, name = keras.layers, int(x.shape[-1]), f"block{index + 1}"
    offset = 100 + 10 * index  # initializer seeds of this block: seed + offset + 0..5

    def dropped(y, k: int, what: str):
        return layers.Dropout(
            dropout,
            seed=None if seed is None else seed + DROPOUT_SEED_OFFSET + offset + k,
            name=f"{name}_{what}",
        )(y)

    y = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_norm1")(x)
    attention = layers.MultiHeadAttention(heads, dim // heads, dropout=dropout, name=f"{name}_attention")
    y = attention(y, y)
    # MHA clones one initializer for its query, key, value and output projections: a seeded one
    # would start query, key and value identical. Each gets its own seed instead.
    for k, dense in enumerate(
        (attention.query_dense, attention.key_dense, attention.value_dense, attention.output_dense)
    ):
        dense.kernel.assign(_initializer(seed, offset + k)(dense.kernel.shape))
    x = layers.Add(name=f"{name}_add1")([x, dropped(y, 0, "drop1")])
    y = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_norm2")(x)
    y = layers.Dense(
        dim * mlp_ratio,
        activation="gelu",
        kernel_initializer=_initializer(seed, offset + 4),
        name=f"{name}_mlp1",
    )(y)
    y = dropped(y, 1, "drop2")
    y = layers.Dense(dim, kernel_initializer=_initializer(seed, offset + 5), name=f"{name}_mlp2")(y)
    return layers.Add(name=f"{name}_add2")([x, dropped(y, 2, "drop3")])


def build_model(
    input_shape: Sequence[int],
    *,
    num_top: int,
    num_medium: int,
    num_all: int,
    patch: int = 16,
    dim: int = 64,
    depth: int = 3,
    heads: int = 4,
    mlp_ratio: int = 2,
    dropout: float = 0.1,
    head_dropout: float = 0.2,
    pooling: str = "mean",
    norm_mean: Sequence[float] | np.ndarray | None = None,
    norm_std: Sequence[float] | np.ndarray | None = None,
    seed: int | None = None,
) -> keras.Model:
    """Build the spectrogram transformer with three named heads.

    Parameters
    ----------
    input_shape : sequence of int
        ``(n_mels, segment_frames, 1)``, e.g. (128, 64, 1): 16 x 16 patches make 8 x 4 = 32 tokens.
    num_top, num_medium, num_all : int
        Classes of each head (``num_medium=0``: no ``medium`` head), as :func:`genrekit.models.cnn.build_model`.
    patch : int
        Side of the square patches (kernel and stride of the patch embedding); the last row and
        column of patches are zero-padded (the band mean, after normalization) when it does not divide.
    dim, depth, heads, mlp_ratio : int
        Token width, encoder blocks, attention heads (``dim`` must be a multiple), MLP width / ``dim``.
    dropout : float
        Dropout on the attention weights and after each attention and MLP layer of the encoder.
    head_dropout : float
        Dropout on the pooled token before the heads (the trainer passes ``DENSE_DROPOUT``).
    pooling : str
        ``"mean"`` of the encoded tokens, or ``"token"``: the output of a class token.
    norm_mean, norm_std : array-like of shape (n_mels,), optional
        Training-set statistics per mel band, held by a ``Normalization`` layer (float32).
    seed : int, optional
        Seed of the initializers and dropout masks.

    Returns
    -------
    keras.Model
        A functional model named ``genre_ast`` whose outputs are ``{"top", "medium", "all"}``
        (float32 even under mixed precision).

    Raises
    ------
    ModelError
        When a shape, size, rate, pooling, class count or the statistics cannot work.
    """
    input_shape = tuple(int(d) for d in input_shape)
    _check_sizes(input_shape, patch, dim, depth, heads, mlp_ratio)
    _check_head_counts(num_top, num_medium, num_all)
    for name, rate in (("dropout", dropout), ("head_dropout", head_dropout)):
        if not 0.0 <= rate < 1.0:
            raise ModelError(f"{name}={rate} must be in [0, 1)")
    if pooling not in POOLINGS:
        raise ModelError(f"pooling={pooling!r} must be one of {', '.join(POOLINGS)}")
    stats = _check_norm_stats(norm_mean, norm_std, input_shape[0])
    layers = keras.layers

    inputs = keras.Input(shape=input_shape, name="mel")
    x = inputs
    if stats is not None:  # float32 even under mixed precision, as the CNN's
        mean, variance = stats
        x = layers.Normalization(axis=1, mean=mean, variance=variance, dtype="float32", name="mel_norm")(x)
    x = layers.Conv2D(
        dim,
        patch,
        strides=patch,
        padding="same",
        kernel_initializer=_initializer(seed, 0),
        name="patch_embed",
    )(x)
    x = layers.Reshape((int(x.shape[1]) * int(x.shape[2]), dim), name="tokens")(x)
    x = PositionEmbedding(seed=None if seed is None else seed + 1, name="position_embed")(x)
    if pooling == "token":
        x = ClassToken(seed=None if seed is None else seed + 2, name="class_token")(x)
    x = layers.Dropout(dropout, seed=None if seed is None else seed + DROPOUT_SEED_OFFSET, name="embed_drop")(
        x
    )
    for index in range(depth):
        x = _encoder_block(x, index, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout, seed=seed)
    x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="encoder_norm")(x)
    if pooling == "token":  # the class token is first: keep it, drop the patches
        x = layers.Flatten(name="pooled")(layers.Cropping1D((0, int(x.shape[1]) - 1), name="first_token")(x))
    else:
        x = layers.GlobalAveragePooling1D(name="pooled")(x)
    x = layers.Dropout(
        head_dropout, seed=None if seed is None else seed + DROPOUT_SEED_OFFSET + 1, name="head_drop"
    )(x)

    outputs = genre_heads(x, num_top, num_medium, num_all, seed)
    return keras.Model(inputs=inputs, outputs=outputs, name="genre_ast")


def build_from_spec(spec: ModelSpec) -> keras.Model:
    """The transformer of a run's settings (kind ``ast`` of :data:`genrekit.models.registry.MODELS`)."""
    s = spec.settings
    return build_model(
        spec.input_shape,
        patch=s.ast_patch,
        dim=s.ast_dim,
        depth=s.ast_depth,
        heads=s.ast_heads,
        mlp_ratio=s.ast_mlp_ratio,
        dropout=s.ast_dropout,
        head_dropout=s.dense_dropout,
        pooling=s.ast_pooling,
        **spec.head_arguments(),
    )


def count_flops(model: keras.Model) -> int:
    """FLOPs of one forward pass of one segment (a multiply-add is 2), analytically.

    The patch embedding, the MLPs and the heads as :func:`genrekit.models.cnn.count_flops` counts
    convolutions and dense layers; each attention layer's four projections, its ``Q K^T`` and
    ``A V`` products (2 FLOPs per multiply-add) and its softmax (about 5 per score); layer norms
    about 8 per value, residual additions and position embeddings 1. Dropout costs nothing.
    """
    total = _dense_and_conv_flops(model)
    for layer in model.layers:
        if isinstance(layer, keras.layers.MultiHeadAttention):
            tokens, dim = (int(d) for d in layer.output.shape[1:])  # the query's shape
            width = layer.num_heads * layer.key_dim
            projections = 4 * tokens * (2 * dim * width + width)
            products = 2 * (2 * layer.num_heads * tokens * tokens * layer.key_dim)
            total += projections + products + 5 * layer.num_heads * tokens * tokens
        elif isinstance(layer, keras.layers.LayerNormalization):
            total += 8 * int(np.prod(layer.output.shape[1:]))
        elif isinstance(layer, keras.layers.Add | PositionEmbedding | keras.layers.GlobalAveragePooling1D):
            first = layer.input[0] if isinstance(layer.input, list) else layer.input
            total += int(np.prod(first.shape[1:]))
    return int(total)
