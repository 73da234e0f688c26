"""Device set-up for training with the TensorFlow backend: GPU memory growth, mixed precision, strategy.

The only module of the model side that imports TensorFlow; it does so inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

from genrekit.errors import ConfigError

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


@contextlib.contextmanager
def _quiet_stderr():
    """Capture the process's stderr (file descriptor 2) for TensorFlow's C++ start-up chatter.

    What was captured is shown only if the block raises. ``GENREKIT_TF_VERBOSE=1`` turns it off.
    """
    import sys
    import tempfile

    if os.environ.get("GENREKIT_TF_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow() -> Any:
    """Import TensorFlow and Keras with TensorFlow's C++ start-up chatter kept off the console.

    TensorFlow 2.21 prints oneDNN and CUDA-probing lines to the process's stderr before its log
    level applies (``TF_CPP_MIN_LOG_LEVEL`` does not silence them); they are shown only if the
    import fails.
    """
    with _quiet_stderr():
        import keras  # noqa: F401
        import tensorflow as tf
    return tf


def configure_device(mixed_precision: bool) -> dict[str, Any]:
    """List the GPUs, turn on memory growth, and choose the Keras precision policy.

    ``mixed_float16`` is set only when ``mixed_precision`` is on and a GPU is present: on a CPU
    float16 is slower, not faster, so the policy is ``float32`` there. Call it before building
    the model (the policy applies to layers created afterwards).

    Parameters
    ----------
    mixed_precision : bool
        ``settings.mixed_precision``: whether mixed precision is wanted where it helps.

    Returns
    -------
    dict
        A summary for the run log: ``backend``, ``tensorflow``, ``keras`` versions, ``gpus``
        (name and compute capability of each), ``memory_growth`` (True when it was set on every
        GPU, False when TF had already initialised them, None without GPUs), ``policy`` and
        ``mixed_precision`` (whether it is actually on).
    """
    tf = import_tensorflow()
    import keras

    with _quiet_stderr():  # on a machine without CUDA drivers, TF logs a failed cuInit here
        gpus = tf.config.list_physical_devices("GPU")
    growth: bool | None = None
    if gpus:
        growth = True
        for gpu in gpus:
            try:
                tf.config.experimental.set_memory_growth(gpu, True)
            except RuntimeError:
                # Devices already initialised (a second call in one process): keep what is set.
                growth = False
    details = []
    for gpu in gpus:
        info = tf.config.experimental.get_device_details(gpu)
        details.append(
            {
                "device": gpu.name,
                "name": info.get("device_name", "unknown"),
                "compute_capability": list(info.get("compute_capability", ())),
            }
        )
    use_mixed = bool(mixed_precision and gpus)
    policy = "mixed_float16" if use_mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return {
        "backend": keras.backend.backend(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "gpus": details,
        "memory_growth": growth,
        "policy": policy,
        "mixed_precision": use_mixed,
        "mixed_precision_requested": bool(mixed_precision),
    }


def split_cpu(n_devices: int) -> list[str]:
    """Split the CPU into ``n_devices`` logical devices, e.g. to test MirroredStrategy without GPUs.

    Must be called before TensorFlow initialises its devices, so in practice first thing in a
    fresh process.

    Parameters
    ----------
    n_devices : int
        Number of logical CPU devices (>= 1).

    Returns
    -------
    list of str
        The logical CPU device names, e.g. ``["/device:CPU:0", "/device:CPU:1"]``.

    Raises
    ------
    ConfigError
        When ``n_devices`` < 1 or TensorFlow's devices are already initialised.
    """
    if int(n_devices) < 1:
        raise ConfigError(f"n_devices={n_devices} must be >= 1")
    tf = import_tensorflow()

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(int(n_devices))]
        )
    except RuntimeError as exc:
        raise ConfigError(
            f"cannot split the CPU into {n_devices} logical devices: TensorFlow's devices are already "
            "initialised (call split_cpu first in a fresh process)"
        ) from exc
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def make_strategy(name: str = "auto") -> Any:
    """Return the ``tf.distribute`` strategy called ``name``.

    Parameters
    ----------
    name : {"auto", "default", "mirrored", "multiworker"}
        ``auto``: MirroredStrategy over all GPUs when there are two or more, else the default
        strategy. ``default``: the default (single device) strategy. ``mirrored``:
        MirroredStrategy over all GPUs, or over all logical CPU devices when there is no GPU.
        ``multiworker``: MultiWorkerMirroredStrategy, configured by the ``TF_CONFIG`` environment
        variable of each worker.

    Returns
    -------
    tf.distribute.Strategy
        Build and compile the model inside ``strategy.scope()``.

    Raises
    ------
    ConfigError
        For an unknown name, a Keras backend other than TensorFlow, or ``multiworker`` without a
        valid ``TF_CONFIG``.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"strategy={name!r} is not one of {', '.join(STRATEGIES)}")
    import keras

    if keras.backend.backend() != "tensorflow" and name != "default":
        raise ConfigError(
            f"strategy={name!r} needs the TensorFlow Keras backend, not {keras.backend.backend()!r}; "
            "use strategy='default'"
        )
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multiworker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise ConfigError(
                "strategy='multiworker' needs the TF_CONFIG environment variable on every worker, e.g. "
                '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}'
            )
        try:
            tf_config = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"TF_CONFIG is not valid JSON ({exc.msg} at position {exc.pos})") from exc
        if not isinstance(tf_config, dict) or "cluster" not in tf_config or "task" not in tf_config:
            raise ConfigError("TF_CONFIG must be a JSON object with 'cluster' and 'task' keys")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=devices)
