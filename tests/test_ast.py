"""The audio spectrogram transformer: shapes, seeds, FLOPs, training steps, saving, a whole run."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from genrekit.errors import ConfigError, ModelError
from genrekit.models.ast import build_model, count_flops
from genrekit.models.keras_metrics import MaskedTopKAccuracy
from genrekit.models.layers import ClassToken, PositionEmbedding
from genrekit.models.losses import make_losses
from genrekit.models.registry import model_kind
from genrekit.settings import Settings
from tests.conftest import REPO, tiny_overrides

SHAPE = (16, 8, 1)  # 16 mel bands x 8 frames; patches of 4 make 4 x 2 = 8 tokens
TINY = {"patch": 4, "dim": 16, "depth": 2, "heads": 2}
N_TOP, N_MEDIUM, N_ALL = 3, 4, 5
MODEL = "balanced_hierarchical_genre_model.h5"


@pytest.fixture
def float32_policy():
    yield
    keras.mixed_precision.set_global_policy("float32")


def tiny_model(**kwargs) -> keras.Model:
    counts = {"num_top": N_TOP, "num_medium": N_MEDIUM, "num_all": N_ALL}
    return build_model(SHAPE, **{**counts, **TINY, **kwargs})


def tiny_batch(rng: np.random.Generator, n: int = 32) -> tuple[np.ndarray, dict[str, np.ndarray]]:
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
        optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=1.0),
        loss=make_losses(gamma=2.0, pos_weight=[1.0, 2.0, 3.0, 4.0, 5.0], heads=tuple(model.output)),
        loss_weights={"top": 1.0, "medium": 0.8, "all": 0.6},
        metrics={"top": [MaskedTopKAccuracy()]},
    )


@pytest.mark.parametrize("pooling", ["mean", "token"])
def test_outputs_tokens_and_heads(rng, pooling):
    model = tiny_model(seed=0, pooling=pooling)
    assert model.name == "genre_ast" and set(model.output) == {"top", "medium", "all"}
    assert tuple(model.get_layer("tokens").output.shape) == (None, 8, 16)  # (16 / 4) x (8 / 4) patches
    assert model.get_layer("patch_embed").strides == (4, 4) == model.get_layer("patch_embed").kernel_size
    encoded = model.get_layer("encoder_norm").output.shape[1]
    assert encoded == (9 if pooling == "token" else 8)  # the class token goes first
    out = model.predict(rng.normal(size=(2, *SHAPE)).astype(np.float32), verbose=0)
    assert {k: v.shape for k, v in out.items()} == {"top": (2, 3), "medium": (2, 4), "all": (2, 5)}
    np.testing.assert_allclose(out["top"].sum(axis=1), 1.0, rtol=1e-5)
    assert np.all((out["all"] > 0) & (out["all"] < 1))
    no_medium = tiny_model(num_medium=0)
    assert set(no_medium.output) == {"top", "all"}


def test_same_seed_same_weights_and_attention_projections_start_apart():
    a, b, c = tiny_model(seed=7), tiny_model(seed=7), tiny_model(seed=8)
    for x, y in zip(a.weights, b.weights, strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert not np.array_equal(
        a.get_layer("position_embed").embedding.numpy(), c.get_layer("position_embed").embedding.numpy()
    )
    attention = a.get_layer("block1_attention")
    q, k, v = (d.kernel.numpy() for d in (attention.query_dense, attention.key_dense, attention.value_dense))
    assert not np.array_equal(q, k) and not np.array_equal(k, v)  # one seeded initializer would clone them


def test_flops_per_segment_by_hand():
    # 8 x 8 input, patches of 4: 4 tokens of 8 values; one block, 2 heads of 4, MLP 16; heads 2 and 3.
    model = build_model((8, 8, 1), num_top=2, num_medium=0, num_all=3, patch=4, dim=8, depth=1, heads=2)
    t, d = 4, 8
    patch_embed = t * d * (2 * 16 + 1)
    attention = 4 * t * (2 * d * d + d) + 2 * (2 * 2 * t * t * 4) + 5 * 2 * t * t
    mlp = t * 16 * (2 * d + 1) + t * 16 + t * d * (2 * 16 + 1)  # GELU: 1 per unit
    norms = 3 * 8 * t * d
    adds = 2 * t * d + t * d + t * d  # two residuals, the position embedding, the mean pooling
    heads = 2 * (2 * d + 1) + 2 + 3 * (2 * d + 1) + 3
    assert count_flops(model) == patch_embed + attention + mlp + norms + adds + heads
    full = build_model((128, 64, 1), num_top=16, num_medium=150, num_all=163)
    assert 5e6 < count_flops(full) < 12e6  # the README's ~8.4 MFLOP, ~100x less than the CNN


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 10, "heads": 4}, "dim=10 must be a multiple of heads=4"),
        ({"patch": 9}, "patch=9 must be at most the segment's 16 x 8"),
        ({"depth": 0}, "depth=0 must be >= 1"),
        ({"dropout": 1.0}, r"dropout=1.0 must be in \[0, 1\)"),
        ({"pooling": "max"}, "pooling='max' must be one of mean, token"),
        ({"norm_mean": np.zeros(3), "norm_std": np.ones(3)}, "3 values; the input has 16 mel bands"),
        ({"num_top": 0}, "num_top=0 must be >= 1"),
    ],
)
def test_build_model_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ModelError, match=match):
        tiny_model(**kwargs)


def test_settings_choose_the_kind_and_refuse_bad_sizes():
    settings = Settings.build(overrides={"backbone": "ast", "ast_dim": 32, "ast_heads": 8})
    kind = model_kind(settings)
    assert (kind.name, kind.frontend, settings.frontend) == ("ast", "mel_segments", "mel_segments")
    assert {"ast_dim", "ast_depth", "ast_patch"} <= set(kind.settings_keys)
    with pytest.raises(
        ConfigError, match=r"^setting 'ast_dim' \(30\) must be a multiple of 'ast_heads' \(4\)$"
    ):
        Settings.build(overrides={"ast_dim": 30})
    with pytest.raises(ConfigError, match="setting 'ast_pooling' must be one of mean, token"):
        Settings.build(overrides={"ast_pooling": "cls"})


def test_trainer_and_quick_start_take_model_as_the_backbone():
    import balanced_trainer
    import quick_start

    args = balanced_trainer.build_parser().parse_args(["--model", "ast", "--ast_depth", "1"])
    assert (args.backbone, args.ast_depth) == ("ast", 1)
    args = quick_start.build_parser().parse_args(["--model", "ast"])
    settings, _ = quick_start.resolve(args)
    assert settings.backbone == "ast" and settings.frontend == "mel_segments"
    assert (
        settings.learning_rate == quick_start.AST_DEMO_OVERRIDES["learning_rate"] == 1e-3
    )  # measured on the demo
    real, _ = quick_start.resolve(quick_start.build_parser().parse_args(["--model", "ast", "--data", "real"]))
    assert real.learning_rate == Settings.build().learning_rate  # config.py's on real data


@pytest.mark.slow
def test_two_training_steps_lower_the_loss(rng):
    keras.utils.set_random_seed(0)
    x, y = tiny_batch(rng)
    model = tiny_model(seed=0, dropout=0.0, head_dropout=0.0)
    compile_tiny(model, learning_rate=3e-3)
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)  # two steps of one batch
    assert model.evaluate(x, y, verbose=0, return_dict=True)["loss"] < before


@pytest.mark.slow
def test_mixed_precision_trains_and_heads_stay_float32(rng, float32_policy):
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = tiny_model(norm_mean=np.full(SHAPE[0], -30.0), norm_std=np.full(SHAPE[0], 10.0), seed=0)
    assert model.get_layer("block1_attention").compute_dtype == "float16"  # the policy did apply
    assert model.get_layer("mel_norm").compute_dtype == "float32"
    assert all(keras.backend.standardize_dtype(t.dtype) == "float32" for t in model.output.values())
    compile_tiny(model)
    x, y = tiny_batch(rng, n=16)
    history = model.fit(x * 10.0 - 30.0, y, epochs=1, batch_size=8, verbose=0).history
    assert np.isfinite(history["loss"][0])


@pytest.mark.slow
@pytest.mark.parametrize(("suffix", "pooling"), [(".h5", "mean"), (".keras", "token")])
def test_save_load_without_custom_objects(tmp_path, rng, suffix, pooling):
    x, y = tiny_batch(rng, n=16)
    model = tiny_model(
        norm_mean=np.arange(SHAPE[0], dtype=float), norm_std=np.full(SHAPE[0], 2.0), seed=3, pooling=pooling
    )
    compile_tiny(model)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # the weights move off their initial values
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = keras.models.load_model(path)  # no custom_objects: genrekit's layers are registered
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for name in ("top", "medium", "all"):
        np.testing.assert_array_equal(before[name], after[name])
    assert isinstance(loaded.get_layer("position_embed"), PositionEmbedding)
    assert (pooling == "token") == isinstance(loaded.layers[5], ClassToken)


@pytest.mark.slow
def test_a_fresh_process_loads_it_through_the_loader(tmp_path, rng):
    """Only :func:`genrekit.models.io.load_model`'s imports register the layers in a new process."""
    x = rng.normal(size=(4, *SHAPE)).astype(np.float32)
    model = tiny_model(seed=1, pooling="token")
    model.save(tmp_path / "model.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "top.npy", model.predict(x, verbose=0)["top"])
    script = textwrap.dedent(
        f"""
        import numpy as np
        from genrekit.models.io import load_model
        model = load_model({str(tmp_path / "model.keras")!r})
        got = model.predict(np.load({str(tmp_path / "x.npy")!r}), verbose=0)["top"]
        np.testing.assert_allclose(got, np.load({str(tmp_path / "top.npy")!r}), rtol=1e-6, atol=1e-7)
        print("loaded", model.name)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded genre_ast" in done.stdout


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed here")
def test_it_trains_on_the_jax_backend(tmp_path):
    script = textwrap.dedent(
        """
        import numpy as np, keras
        assert keras.backend.backend() == "jax"
        from tests.test_ast import compile_tiny, tiny_batch, tiny_model
        model = tiny_model(seed=0)
        compile_tiny(model)
        x, y = tiny_batch(np.random.default_rng(0), n=16)
        history = model.fit(x, y, epochs=2, batch_size=8, verbose=0).history
        assert np.isfinite(history["loss"][-1])
        model.save("{path}")
        keras.models.load_model("{path}")
        print("jax ok")
        """
    ).format(path=tmp_path / "model.keras")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0 and "jax ok" in done.stdout, done.stderr[-2000:]


@pytest.mark.slow
def test_a_run_trains_evaluates_and_predicts(demo_dataset, tmp_path, capsys):
    import balanced_inference
    import balanced_trainer
    import model_evaluation

    out = tmp_path / "run"
    values = tiny_overrides(
        demo_dataset, out, num_epochs=1, backbone="ast", ast_dim=16, ast_depth=1, ast_heads=2
    )
    config = tmp_path / "config.json"
    config.write_text(json.dumps(values))
    assert balanced_trainer.main(["--config", str(config)]) == 0
    saved = json.loads((out / "balanced_training_config.json").read_text())
    assert saved["settings"]["backbone"] == "ast" and saved["settings"]["ast_dim"] == 16
    assert keras.models.load_model(out / MODEL).name == "genre_ast"
    assert balanced_trainer.main(["--config", str(config)]) == 0  # a finished run is reused as it is
    assert "finished run" in capsys.readouterr().err + (out / "run.log").read_text()

    model = str(out / MODEL)
    assert model_evaluation.main(["--model", model, "--no_plots", "--output_dir", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "evaluation_report.json").read_text())
    assert (
        report["counts"]["tracks_evaluated"] > 0 and 0.0 <= report["top"]["track"]["balanced_accuracy"] <= 1.0
    )
    bad = {*demo_dataset.zero_length_ids, *demo_dataset.header_only_ids, *demo_dataset.truncated_ids}
    bad |= {*demo_dataset.short_ids, *demo_dataset.missing_ids}
    clip = next(p for p in sorted(demo_dataset.audio_dir.glob("*/*.mp3")) if int(p.stem) not in bad)
    result = tmp_path / "pred.json"
    assert (
        balanced_inference.main(
            ["--model", model, "--file", str(clip), "--workers", "1", "--output", str(result)]
        )
        == 0
    )
    (only,) = json.loads(result.read_text())["results"].values()
    assert only["num_segments"] >= 1


def test_each_kind_of_run_is_the_same_run_whatever_the_other_kinds_settings_say():
    from genrekit.train.resume import settings_differences

    ast = Settings.build(overrides={"backbone": "ast"})
    assert settings_differences(ast.to_dict(), ast.replace(width_factor=0.5, conv_dropout=0.0)) == []
    assert settings_differences(ast.to_dict(), ast.replace(ast_depth=2)) == ["ast_depth: 3 -> 2"]
    cnn = Settings.build()
    assert settings_differences(cnn.to_dict(), cnn.replace(ast_dim=32, ast_pooling="token")) == []
    assert settings_differences(cnn.to_dict(), cnn.replace(width_factor=0.5)) == ["width_factor: 1.0 -> 0.5"]
