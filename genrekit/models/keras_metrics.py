"""Training-time metrics of the softmax heads that skip masked tracks (all-zero one-hot rows).

Keras' ``CategoricalAccuracy`` scores an all-zero row as class 0, so a masked medium target would
count as right whenever class 0 is predicted; these metrics leave such rows out. ``keras.ops``
only, registered so saved models load back. They run inside Keras on tensors while training;
the figures of a finished model are :mod:`genrekit.evaluate.metrics` (numpy, scikit-learn).
"""

from __future__ import annotations

from typing import Any

from genrekit.backend import keras

ops = keras.ops


@keras.saving.register_keras_serializable(package="genrekit")
class MaskedTopKAccuracy(keras.metrics.Metric):
    """Share of labelled rows whose true class is among the ``k`` highest predictions.

    Rows whose one-hot target is all zero (masked) are ignored; ``sample_weight`` weighs the
    others. With no labelled row seen, the result is 0.

    Parameters
    ----------
    k : int
        1 for plain accuracy.
    name : str
        Metric name (shown in logs as ``<output>_<name>``).
    dtype : str
        Dtype of the state variables.
    """

    def __init__(self, k: int = 1, name: str | None = None, dtype: str = "float32") -> None:
        super().__init__(name=name or ("accuracy" if k == 1 else f"top{k}_accuracy"), dtype=dtype)
        self.k = int(k)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        labelled = ops.cast(ops.sum(y_true, axis=-1) > 0, "float32")
        true_class = ops.cast(ops.argmax(y_true, axis=-1), "int32")
        hit = ops.cast(ops.in_top_k(true_class, y_pred, self.k), "float32")
        weight = labelled
        if sample_weight is not None:
            weight = weight * ops.reshape(ops.cast(sample_weight, "float32"), ops.shape(labelled))
        self.correct.assign_add(ops.sum(hit * weight))
        self.total.assign_add(ops.sum(weight))

    def result(self) -> Any:
        return ops.divide_no_nan(self.correct, self.total)

    def reset_state(self) -> None:
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self) -> dict[str, Any]:
        return {"k": self.k, "name": self.name, "dtype": self.dtype}
