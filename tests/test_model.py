"""The CNN (shapes, names, dtypes, normalization, FLOPs), saving, tiny training and device set-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from genrekit.device import configure_device, make_strategy, split_cpu
from genrekit.errors import ConfigError, ModelError
from genrekit.models.cnn import build_model, count_flops, scaled_width
from genrekit.models.keras_metrics import MaskedTopKAccuracy
from genrekit.models.losses import FocalLoss, WeightedBinaryCrossEntropy, make_losses

REPO = Path(__file__).resolve().parents[1]
SHAPE = (16, 8, 1)  # tiny input: 16 mel bands x 8 frames
TINY = 0.0625  # 64/128/256/512 filters -> 4/8/16/32
N_TOP, N_MEDIUM, N_ALL = 3, 4, 5


@pytest.fixture
def float32_policy():
    """Leave the global dtype policy as it was found, whatever the test sets."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def tiny_model(**kwargs) -> keras.Model:
    return build_model(SHAPE, num_top=N_TOP, num_medium=N_MEDIUM, num_all=N_ALL, width_factor=TINY, **kwargs)


def tiny_batch(rng: np.random.Generator, n: int = 16) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    x = rng.normal(size=(n, *SHAPE)).astype(np.float32)
    y = {
        "top": np.eye(N_TOP, dtype=np.float32)[rng.integers(0, N_TOP, n)],
        "medium": np.eye(N_MEDIUM, dtype=np.float32)[rng.integers(0, N_MEDIUM, n)],
        "all": (rng.random((n, N_ALL)) > 0.6).astype(np.float32),
    }
    y["medium"][:3] = 0.0  # masked medium targets, as the label code writes them
    return x, y


def compile_tiny(model: keras.Model, learning_rate: float = 1e-3) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=make_losses(gamma=2.0, top_alpha=[1.0, 2.0, 0.5], pos_weight=[1.0, 2.0, 3.0, 4.0, 5.0]),
        loss_weights={"top": 1.0, "medium": 0.8, "all": 0.6},
        metrics={"top": [MaskedTopKAccuracy()], "medium": [MaskedTopKAccuracy()]},
    )


def test_outputs_names_shapes_dtypes(rng):
    model = tiny_model(seed=0)
    assert set(model.output) == {"top", "medium", "all"}
    out = model.predict(rng.normal(size=(2, *SHAPE)).astype(np.float32), verbose=0)
    assert {k: v.shape for k, v in out.items()} == {"top": (2, 3), "medium": (2, 4), "all": (2, 5)}
    assert all(v.dtype == np.float32 for v in out.values())
    np.testing.assert_allclose(out["top"].sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["medium"].sum(axis=1), 1.0, rtol=1e-5)
    assert np.all((out["all"] > 0) & (out["all"] < 1))
    assert out["all"].sum(axis=1).max() != pytest.approx(1.0)  # sigmoid, not a softmax
    assert [model.get_layer(f"conv{i}").filters for i in range(1, 5)] == [4, 8, 16, 32]
    assert model.get_layer("dense").units == 32
    assert model.get_layer("conv1").kernel_size == (3, 3)
    assert model.get_layer("conv1").padding == "same"


def test_mixed_precision_heads_stay_float32(rng, float32_policy):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = tiny_model()
    assert model.get_layer("conv2").compute_dtype == "float16"  # the policy did apply
    assert all(keras.backend.standardize_dtype(t.dtype) == "float32" for t in model.output.values())
    out = model(rng.normal(size=(2, *SHAPE)).astype(np.float32), training=False)
    assert {keras.backend.standardize_dtype(v.dtype) for v in out.values()} == {"float32"}
    # Losses of float32 heads compute in float32 too.
    value = FocalLoss()(np.eye(N_TOP, dtype=np.float32)[[0, 1]], out["top"])
    assert keras.backend.standardize_dtype(value.dtype) == "float32"


def test_mixed_precision_model_with_normalization_trains(rng, float32_policy):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = tiny_model(norm_mean=np.full(SHAPE[0], -30.0), norm_std=np.full(SHAPE[0], 10.0), seed=0)
    assert model.get_layer("mel_norm").compute_dtype == "float32"
    compile_tiny(model)
    assert type(model.optimizer).__name__ == "LossScaleOptimizer"
    x, y = tiny_batch(rng)
    history = model.fit(x * 10.0 - 30.0, y, epochs=1, batch_size=8, verbose=0).history
    assert np.isfinite(history["loss"][0])


def test_same_seed_same_weights():
    a, b, c = tiny_model(seed=7), tiny_model(seed=7), tiny_model(seed=8)
    np.testing.assert_array_equal(a.get_layer("conv2").kernel.numpy(), b.get_layer("conv2").kernel.numpy())
    assert not np.array_equal(a.get_layer("conv2").kernel.numpy(), c.get_layer("conv2").kernel.numpy())


def test_normalization_layer_normalizes_each_mel_band(rng):
    mean = np.linspace(-60.0, -10.0, SHAPE[0])
    std = np.linspace(2.0, 20.0, SHAPE[0])
    std[5] = 0.0  # a constant band is left unscaled, not divided by ~0
    model = tiny_model(norm_mean=mean, norm_std=std)
    layer = model.get_layer("mel_norm")
    assert layer is model.layers[1]  # first layer after the input
    x = rng.normal(-30.0, 15.0, size=(3, *SHAPE)).astype(np.float32)
    got = keras.ops.convert_to_numpy(layer(x))
    safe_std = np.where(std == 0, 1.0, std)
    expected = (x - mean[None, :, None, None]) / safe_std[None, :, None, None]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # Without statistics there is no normalization layer at all.
    assert "mel_norm" not in [layer.name for layer in tiny_model().layers]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm_mean": np.zeros(SHAPE[0])}, "together"),
        ({"norm_mean": np.zeros(3), "norm_std": np.ones(3)}, "3 values; the input has 16 mel bands"),
        ({"norm_mean": np.zeros(SHAPE[0]), "norm_std": -np.ones(SHAPE[0])}, "negative"),
        ({"norm_mean": np.full(SHAPE[0], np.nan), "norm_std": np.ones(SHAPE[0])}, "NaN"),
        ({"conv_dropout": 1.0}, "conv_dropout"),
        ({"width_factor": 0.0}, "width_factor"),
    ],
)
def test_build_model_refuses_bad_arguments(kwargs, match):
    args = {"width_factor": TINY, **kwargs}
    with pytest.raises(ModelError, match=match):
        build_model(SHAPE, num_top=N_TOP, num_medium=N_MEDIUM, num_all=N_ALL, **args)


@pytest.mark.parametrize("empty", ["num_top", "num_all"])
def test_build_model_refuses_empty_head(empty):
    counts = {"num_top": 3, "num_medium": 2, "num_all": 5, empty: 0}
    with pytest.raises(ModelError, match=f"{empty}=0 must be >= 1"):
        build_model(SHAPE, **counts, width_factor=TINY)
    with pytest.raises(ModelError, match="num_medium=-1 must be >= 0"):
        build_model(SHAPE, num_top=3, num_medium=-1, num_all=5, width_factor=TINY)


@pytest.mark.parametrize(
    ("units", "factor", "width"), [(64, 1.0, 64), (512, 0.25, 128), (64, 0.01, 4), (96, 0.5, 48)]
)
def test_scaled_width(units, factor, width):
    assert scaled_width(units, factor) == width


def test_flops_per_segment_at_width_one():
    model = build_model((128, 64, 1), num_top=16, num_medium=150, num_all=163)
    flops = count_flops(model)
    # The conv layers dominate: 2 * (H*W*9*Cin*Cout) at 128x64, 64x32, 32x16 and 16x8.
    conv = 2 * 9 * (128 * 64 * 1 * 64 + 64 * 32 * 64 * 128 + 32 * 16 * 128 * 256 + 16 * 8 * 256 * 512)
    assert conv <= flops <= conv * 1.02
    assert 0.85e9 < flops < 0.95e9  # the README's "~0.9 GFLOP per segment"
    assert count_flops(tiny_model()) < flops / 100


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_save_load_round_trip_without_custom_objects(tmp_path, rng, suffix):
    x, y = tiny_batch(rng)
    model = tiny_model(norm_mean=np.arange(SHAPE[0], dtype=float), norm_std=np.full(SHAPE[0], 2.0), seed=3)
    compile_tiny(model)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # moves the BatchNorm statistics off their init
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = keras.saving.load_model(path)  # no custom_objects: the classes are registered
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for name in ("top", "medium", "all"):
        np.testing.assert_array_equal(before[name], after[name])
    assert isinstance(loaded.loss["top"], FocalLoss) and loaded.loss["top"].alpha == [1.0, 2.0, 0.5]
    assert isinstance(loaded.loss["all"], WeightedBinaryCrossEntropy)
    assert loaded.loss["all"].pos_weight == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(
        model.evaluate(x, y, verbose=0, return_dict=True)
    )
    np.testing.assert_array_equal(loaded.get_layer("mel_norm").mean.numpy().ravel(), np.arange(SHAPE[0]))


def test_a_few_training_steps_decrease_the_loss(rng):
    keras.utils.set_random_seed(0)
    x, y = tiny_batch(rng, n=32)
    model = tiny_model(seed=0, conv_dropout=0.0, dense_dropout=0.0)
    compile_tiny(model, learning_rate=1e-2)
    history = model.fit(x, y, epochs=8, batch_size=32, verbose=0).history
    assert history["loss"][-1] < 0.8 * history["loss"][0]
    for head in ("top", "medium", "all"):
        assert history[f"{head}_loss"][-1] < history[f"{head}_loss"][0]


def test_configure_device_never_mixed_on_cpu(float32_policy):
    import tensorflow as tf

    summary = configure_device(mixed_precision=True)
    has_gpu = bool(tf.config.list_physical_devices("GPU"))
    assert summary["mixed_precision"] is has_gpu
    assert summary["policy"] == keras.mixed_precision.global_policy().name
    assert summary["policy"] == ("mixed_float16" if has_gpu else "float32")
    json.dumps(summary)  # loggable as is
    assert configure_device(mixed_precision=False)["policy"] == "float32"


ONEDNN_CASES = {None: True, "0": False}  # the user's TF_ENABLE_ONEDNN_OPTS -> kernels on


@pytest.fixture(scope="module")
def onednn_processes():
    """One fresh process per case, all started at once (each mostly imports TensorFlow).

    In each, the variable is read once, when TensorFlow is imported (by genrekit.backend), and
    importing genrekit alone changes no environment variable.
    """
    code = (
        "import os, genrekit\n"
        "before = dict(os.environ)\n"
        "import genrekit.settings, genrekit.datasets.labels, genrekit.features.cache\n"
        "assert dict(os.environ) == before, 'importing genrekit changed the environment'\n"
        "from genrekit.device import configure_device\n"
        "print(configure_device(mixed_precision=False)['onednn'])\n"
    )
    procs = {}
    for user_value in ONEDNN_CASES:
        env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
        if user_value is not None:
            env["TF_ENABLE_ONEDNN_OPTS"] = user_value
        procs[user_value] = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=Path(__file__).resolve().parents[1],
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    results = {}
    for user_value, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        results[user_value] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize("user_value, expected", list(ONEDNN_CASES.items()))
def test_genrekit_turns_onednn_on_unless_the_user_chose(onednn_processes, user_value, expected):
    returncode, out, err = onednn_processes[user_value]
    assert returncode == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == str(expected)


@pytest.mark.gpu
def test_configure_device_mixed_on_gpu(float32_policy):
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        pytest.skip("no GPU on this machine")
    summary = configure_device(mixed_precision=True)
    assert summary["policy"] == "mixed_float16" and summary["gpus"]


def test_make_strategy_refuses_unknown_and_missing_tf_config(monkeypatch):
    with pytest.raises(ConfigError, match="strategy='mirored' is not one of"):
        make_strategy("mirored")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs the TF_CONFIG environment variable"):
        make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{cluster")
    with pytest.raises(ConfigError, match="TF_CONFIG is not valid JSON"):
        make_strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {}}')
    with pytest.raises(ConfigError, match="'cluster' and 'task'"):
        make_strategy("multiworker")


def test_default_strategies_on_one_device():
    import tensorflow as tf

    if len(tf.config.list_physical_devices("GPU")) > 1:
        pytest.skip("auto picks MirroredStrategy with several GPUs")
    assert make_strategy("auto").num_replicas_in_sync == 1
    assert make_strategy("default") is tf.distribute.get_strategy()


def test_split_cpu_after_initialisation_is_refused():
    import tensorflow as tf

    tf.config.list_logical_devices()  # initialises the devices in this process
    with pytest.raises(ConfigError, match="already initialised"):
        split_cpu(2)


MIRRORED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from genrekit.device import make_strategy, split_cpu

    devices = split_cpu(2)  # before anything initialises TensorFlow's devices
    import keras
    from genrekit.models.losses import make_losses
    from genrekit.models.cnn import build_model

    strategy = make_strategy("mirrored")
    with strategy.scope():
        model = build_model((16, 8, 1), num_top=3, num_medium=4, num_all=5, width_factor=0.0625, seed=0)
        weights = {"top": 1.0, "medium": 0.8, "all": 0.6}
        model.compile(optimizer="adam", loss=make_losses(), loss_weights=weights)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 16, 8, 1)).astype("float32")
    y = {
        "top": np.eye(3, dtype="float32")[rng.integers(0, 3, 16)],
        "medium": np.eye(4, dtype="float32")[rng.integers(0, 4, 16)],
        "all": (rng.random((16, 5)) > 0.5).astype("float32"),
    }
    history = model.fit(x, y, batch_size=8, epochs=1, steps_per_epoch=2, verbose=0).history
    variable = model.get_layer("conv1").kernel
    print(json.dumps({
        "devices": devices,
        "replicas": strategy.num_replicas_in_sync,
        "strategy": type(strategy).__name__,
        "distributed_variable": type(getattr(variable, "value", variable)).__name__,
        "loss": history["loss"],
    }))
    """
)


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus_trains():
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", MIRRORED_SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(result["devices"]) == 2
    assert result["strategy"] == "MirroredStrategy"
    assert result["replicas"] == 2
    assert result["distributed_variable"] == "MirroredVariable"  # built inside the strategy's scope
    assert len(result["loss"]) == 1 and np.isfinite(result["loss"][0])
