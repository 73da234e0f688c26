"""The genre heads on a pretrained backbone's embeddings: one embedding in, three named heads out.

The counterpart of :func:`genrekit.models.cnn.build_model` for the ``musicnn`` backbone: the training
set's per-value statistics built into a ``Normalization`` layer, dropout, one shared dense layer
(``HEAD_UNITS``, ReLU, batch norm), dropout, and the heads ``top`` (softmax), ``medium``
(softmax) and ``all`` (sigmoid), computed in float32. ``keras.layers`` only, so it runs on every
Keras 3 backend; the trainer compiles it with the same losses as the CNN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from genrekit.backend import keras
from genrekit.errors import ModelError
from genrekit.models.cnn import _check_head_counts, _check_norm_stats, _initializer, genre_heads

if TYPE_CHECKING:
    from genrekit.models.registry import ModelSpec


def build_heads(
    input_shape: Sequence[int],
    *,
    num_top: int,
    num_medium: int,
    num_all: int,
    units: int = 256,
    dropout: float = 0.5,
    norm_mean: Sequence[float] | np.ndarray | None = None,
    norm_std: Sequence[float] | np.ndarray | None = None,
    seed: int | None = None,
) -> keras.Model:
    """Build the three heads on embeddings of ``input_shape`` ``(dim,)``.

    Parameters
    ----------
    input_shape : sequence of int
        ``(dim,)``, the front end's :attr:`~genrekit.features.frontends.FrontEnd.input_shape` (200 for
        musicnn's penultimate layer).
    num_top, num_medium, num_all : int
        Classes of each head (each >= 1; ``num_medium=0`` builds no ``medium`` head, for a
        collection without sub-genres, as :func:`genrekit.models.cnn.build_model`).
    units : int
        Width of the shared dense layer.
    dropout : float
        Dropout rate on the embedding and after the dense layer.
    norm_mean, norm_std : array-like of shape (dim,), optional
        Training-set statistics of each embedding value, held by the first layer.
    seed : int, optional
        Seed of the initializers and dropout masks.

    Returns
    -------
    keras.Model
        A functional model named ``genre_heads`` whose outputs are ``{"top", "medium", "all"}``.
    """
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 1 or input_shape[0] < 1:
        raise ModelError(f"input_shape={input_shape} must be (dim,) with dim >= 1")
    _check_head_counts(num_top, num_medium, num_all)
    if int(units) < 1:
        raise ModelError(f"units={units} must be >= 1")
    if not 0.0 <= dropout < 1.0:
        raise ModelError(f"dropout={dropout} must be in [0, 1)")
    stats = _check_norm_stats(norm_mean, norm_std, input_shape[0])
    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="embedding")
    x = inputs
    if stats is not None:
        mean, variance = stats
        x = layers.Normalization(
            axis=-1, mean=mean, variance=variance, dtype="float32", name="embedding_norm"
        )(x)
    x = layers.Dropout(dropout, seed=None if seed is None else seed + 1000, name="drop_in")(x)
    x = layers.Dense(int(units), activation="relu", kernel_initializer=_initializer(seed, 0), name="dense")(x)
    x = layers.BatchNormalization(name="bn_dense")(x)
    x = layers.Dropout(dropout, seed=None if seed is None else seed + 1001, name="drop_dense")(x)
    outputs = genre_heads(x, num_top, num_medium, num_all, seed)
    return keras.Model(inputs=inputs, outputs=outputs, name="genre_heads")


def build_from_spec(spec: ModelSpec) -> keras.Model:
    """The heads of a run's settings (kind ``musicnn`` of :data:`genrekit.models.registry.MODELS`)."""
    s = spec.settings
    return build_heads(spec.input_shape, units=s.head_units, dropout=s.dense_dropout, **spec.head_arguments())
