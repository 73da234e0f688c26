"""Keras layers of genrekit's own that its models are built from, registered for saving.

Each is a ``keras.layers.Layer`` subclass with ``get_config``, registered with
``keras.saving.register_keras_serializable(package="genrekit")``, so a saved ``.keras`` or ``.h5``
model loads back without ``custom_objects`` once this module is imported
(:func:`genrekit.models.io.load_model` imports it). ``keras.ops`` only: any Keras backend.
"""

from __future__ import annotations

from typing import Any

from genrekit.backend import keras


@keras.saving.register_keras_serializable(package="genrekit")
class PositionEmbedding(keras.layers.Layer):
    """Adds a learned embedding per token position to a ``(batch, tokens, dim)`` sequence.

    Parameters
    ----------
    seed : int, optional
        Seed of the initializer (truncated normal, std 0.02, as ViT and AST start them).
    """

    def __init__(self, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.seed = seed

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.embedding = self.add_weight(
            name="embedding",
            shape=(1, int(input_shape[-2]), int(input_shape[-1])),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02, seed=self.seed),
        )

    def call(self, inputs: Any) -> Any:
        return inputs + keras.ops.cast(self.embedding, inputs.dtype)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="genrekit")
class ClassToken(keras.layers.Layer):
    """Puts one learned token before a ``(batch, tokens, dim)`` sequence: ``tokens + 1`` come out.

    The class token of ViT and AST: after the encoder its output summarises the whole segment.

    Parameters
    ----------
    seed : int, optional
        Seed of the initializer (truncated normal, std 0.02).
    """

    def __init__(self, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.seed = seed

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        self.token = self.add_weight(
            name="token",
            shape=(1, 1, int(input_shape[-1])),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02, seed=self.seed),
        )

    def call(self, inputs: Any) -> Any:
        batch = keras.ops.shape(inputs)[0]
        token = keras.ops.broadcast_to(keras.ops.cast(self.token, inputs.dtype), (batch, 1, inputs.shape[-1]))
        return keras.ops.concatenate([token, inputs], axis=1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        tokens = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], tokens, input_shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}
