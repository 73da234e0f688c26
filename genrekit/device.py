"""Device set-up for training with the TensorFlow backend: GPU memory growth, mixed precision, strategy.

The only module of the model side that imports TensorFlow; it does so inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from genrekit.errors import ConfigError, GenrekitError

STRATEGIES = ("auto", "default", "mirrored", "multiworker")
# A dead multi-worker peer is noticed by TensorFlow's coordination service (missed heartbeats,
# measured: the survivor stops 13 s after a kill). A peer alive but stuck is not: the environment
# variable GENREKIT_COLLECTIVE_TIMEOUT (seconds) makes every collective give up after that long.
# Off by default: TensorFlow runs one extra thread per collective to time it.
COLLECTIVE_TIMEOUT_SECONDS = 0.0


def worker_role() -> tuple[str, int, bool]:
    """``(task type, task index, is_chief)`` of this process from ``TF_CONFIG`` (no TensorFlow import).

    Without ``TF_CONFIG`` the process is a single chief. As in TensorFlow's multi-worker guide, the
    chief is the ``chief`` task, or worker 0 when the cluster has no ``chief``.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return "chief", 0, True
    try:
        tf_config = json.loads(raw)
        task_type, index = tf_config["task"]["type"], int(tf_config["task"]["index"])
        has_chief = bool(tf_config["cluster"].get("chief"))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"TF_CONFIG must name the cluster and this task's type and index ({exc!r})"
        ) from None
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and not has_chief)
    return task_type, index, chief


def worker_output_dir(out: str | os.PathLike) -> Path:
    """Where this process writes a run: ``out`` for the chief; for another worker of a
    multi-worker run, a temporary folder of its own (TensorFlow's multi-worker pattern: every
    worker saves, since saving may need all of them, but only the chief's files are kept)."""
    import tempfile

    task_type, index, chief = worker_role()
    if chief:
        return Path(out)
    return Path(tempfile.mkdtemp(prefix=f"genrekit-{task_type}{index}-"))


def release_worker_output_dir(out: str | os.PathLike, written: str | os.PathLike) -> None:
    """Remove a non-chief worker's temporary folder (``written`` != ``out``) once its run is over."""
    import shutil

    if Path(written) != Path(out):
        shutil.rmtree(written, ignore_errors=True)


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
        from genrekit.backend import (
            keras,  # noqa: F401
            tf,
        )
    return tf


def _onednn_enabled() -> bool | None:
    """Whether TensorFlow runs its oneDNN CPU kernels (see genrekit.backend.ONEDNN); None if it cannot say."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a private module: other TensorFlow versions may not have it
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


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
        ``mixed_precision`` (whether it is actually on), ``onednn`` (whether TensorFlow's oneDNN CPU
        kernels are on).
    """
    tf = import_tensorflow()
    from genrekit.backend import keras

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
        "onednn": _onednn_enabled(),
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


def fit_on_strategy(model: Any, strategy: Any) -> None:
    """Let ``model.fit`` run under ``strategy``, whatever it is; call once, after compiling.

    Before training, Keras 3 (3.x, TensorFlow backend) averages the first distributed batch
    across replicas only to learn its shapes; with MultiWorkerMirroredStrategy that reduce fails
    on a nested batch ("Attempt to convert a value (PerReplica...)", keras-team/keras#20585). The
    shapes are all that build needs, so under that strategy this worker's own part of the batch is
    used instead; and each step's scalar metrics get the axis 0 along which Keras averages them
    across workers. Other strategies are left as they are.
    """
    from genrekit.backend import tf

    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    from genrekit.backend import keras

    tree = keras.tree

    def local_part(value: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def symbolic_build(iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(local_part, next(batches))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = symbolic_build

    # Keras then averages each step's logged metrics across workers along axis 0, which scalars
    # lack: give them that axis (the mean over replicas of [value] is the value's mean).
    def with_axis(step: Any) -> Any:
        def wrapped(data: Any) -> Any:
            return tree.map_structure(lambda v: tf.reshape(v, (1,)), step(data))

        return wrapped

    model.train_step = with_axis(model.train_step)
    model.test_step = with_axis(model.test_step)


@contextlib.contextmanager
def peer_failures_reported(strategy: Any) -> Any:
    """Turn a multi-worker run's lost peer (killed, crashed, unreachable) into one clear error.

    TensorFlow's coordination service notices a worker that stops sending heartbeats, and a
    collective that waits longer than ``GENREKIT_COLLECTIVE_TIMEOUT`` seconds (when set) gives up;
    either ends the survivors' step with an UNAVAILABLE, DEADLINE_EXCEEDED, ABORTED or CANCELLED
    error, raised here as a :class:`~genrekit.errors.GenrekitError` naming the cause.
    """
    from genrekit.backend import tf

    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.AbortedError)
    lost += (tf.errors.CancelledError,)
    try:
        yield
    except lost as exc:
        if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            raise
        cause = " ".join(str(exc.message or exc).split())[:300]
        raise GenrekitError(
            f"multi-worker training stopped: another worker died or cannot be reached "
            f"({type(exc).__name__}: {cause}); start every worker again to resume from the last "
            "finished epoch"
        ) from None


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
    from genrekit.backend import keras

    if keras.backend.backend() != "tensorflow" and name != "default":
        raise ConfigError(
            f"strategy={name!r} needs the TensorFlow Keras backend, not {keras.backend.backend()!r}; "
            "use strategy='default'"
        )
    from genrekit.backend import tf

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
        # A collective that waits longer than this for a peer (a killed worker) raises
        # DeadlineExceededError on the survivors instead of hanging forever.
        raw_timeout = os.environ.get("GENREKIT_COLLECTIVE_TIMEOUT", str(COLLECTIVE_TIMEOUT_SECONDS))
        try:
            timeout = float(raw_timeout)
        except ValueError:
            raise ConfigError(
                f"GENREKIT_COLLECTIVE_TIMEOUT={raw_timeout!r} must be a number of seconds"
            ) from None
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout or None)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices=devices)
