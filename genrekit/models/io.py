"""Loading a trained model for prediction, shared by inference and evaluation.

The check that a model belongs to its training config is :func:`genrekit.train.run_config.check_model`.
"""

from __future__ import annotations

import os
from typing import Any

from genrekit.errors import ModelError


def load_model(model_path: str | os.PathLike, *, configure: bool = True) -> Any:
    """Load a saved model for prediction (the custom losses and metrics are registered first).

    ``configure``: set the device up for prediction first (float32, GPU memory growth); False
    keeps the policy a training has set (a fine-tuning run loads its heads under mixed precision).

    Raises
    ------
    ModelError
        When the file is not a Keras model that loads.
    """
    from genrekit.device import configure_device

    if configure:
        configure_device(mixed_precision=False)  # TensorFlow imported quietly, GPU memory growth on
    import genrekit.models.keras_metrics  # noqa: F401  (registers the custom metric classes)
    import genrekit.models.layers  # noqa: F401  (registers the custom layer classes)
    import genrekit.models.losses  # noqa: F401  (registers the custom loss classes)
    from genrekit.backend import keras

    # compile=False: evaluation only predicts; the optimizer state is not needed.
    try:
        return keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # h5py, zipfile and Keras raise many kinds for a bad file
        cause = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, whatever the library wrote
        raise ModelError(f"{model_path}: cannot load the model ({cause})") from None
