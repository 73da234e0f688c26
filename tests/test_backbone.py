"""Genre heads on pretrained musicnn embeddings: the front end, its cache, and a real tiny run.

The musicnn weights are the real ones, fetched once by the project's own command into the test
cache folder (as tests/test_musicnn.py does); the audio is the genuine FMA clip and the session's
demo dataset (3-s clips: one musicnn patch each).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from genrekit.errors import ConfigError
from genrekit.features import frontends
from genrekit.features.musicnn import OUTPUTS, MusicnnEmbeddings
from genrekit.settings import Settings
from tests.conftest import REPO
from tests.musicnn_fixtures import WEIGHTS_CACHE, musicnn_overrides

FIXTURE = REPO / "tests" / "fixtures" / "musicnn_000002.npz"


def _good_ids(demo) -> list[int]:
    """Demo tracks whose clip is whole (the demo also holds FMA's kinds of defective files)."""
    bad = {
        *demo.zero_length_ids,
        *demo.header_only_ids,
        *demo.truncated_ids,
        *demo.short_ids,
        *demo.missing_ids,
    }
    return [int(p.stem) for p in sorted(demo.audio_dir.glob("*/*.mp3")) if int(p.stem) not in bad]


def test_the_backbone_setting_chooses_the_front_end_and_its_parameters():
    assert frontends.from_settings(Settings.build()).name == "mel_segments"  # default: today's CNN
    default = Settings.build(overrides={"backbone": "musicnn"})
    assert frontends.from_settings(default).output == "max_pool"  # the layer the study chose (rows 9, 14)
    overrides = {
        "backbone": "musicnn",
        "musicnn_output": "penultimate",
        "musicnn_patches": 3,
        "pretrained_dir": "/w",
    }
    fe = frontends.from_settings(Settings.build(overrides=overrides))
    assert fe == MusicnnEmbeddings("MSD_musicnn", "penultimate", 3)  # positional, as before
    assert fe.weights_dir == "/w/musicnn"
    assert fe.row_shape == (3, 200) and fe.input_shape == (200,)
    assert fe.cache_name() == "musicnn_MSD_musicnn_penultimate_3p_v1"
    section = json.loads(json.dumps(fe.to_config()))
    assert section == {
        "name": "musicnn_embeddings",
        "params": {"model": "MSD_musicnn", "output": "penultimate", "patches": 3},
        "location": {"weights_dir": "/w/musicnn"},
    }
    back = frontends.from_config(section)
    assert back == fe and back.weights_dir == "/w/musicnn"
    # The weights' folder says where they are, not what they are: it never splits a cache.
    assert MusicnnEmbeddings(patches=3, weights_dir="/elsewhere") == fe
    assert {k: v for k, v in OUTPUTS.items()} == {
        "penultimate": 200,
        "max_pool": 753,
        "mean_pool": 753,
        "pools": 1506,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backbone": "vgg"}, "setting 'backbone' must be one of cnn, ast, musicnn"),
        ({"musicnn_output": "taggram"}, "'musicnn_output' must be one of penultimate"),
        ({"musicnn_patches": 0}, "'musicnn_patches' must be > 0"),
    ],
)
def test_bad_backbone_settings_are_refused_by_name(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Settings.build(overrides=overrides)


def test_bad_front_end_parameters_are_refused():
    with pytest.raises(ConfigError, match="missing keys \\['patches'\\]"):
        MusicnnEmbeddings.from_params({"model": "MSD_musicnn", "output": "penultimate"})
    with pytest.raises(ConfigError, match="patches=0 must be a positive integer"):
        MusicnnEmbeddings(patches=0)


@pytest.mark.parametrize("output", ["penultimate", "max_pool", "mean_pool", "pools"])
def test_embeddings_are_the_original_musicnn_outputs(weights, output):
    """The original code's outputs on its own patches (the fixture of tests/test_musicnn.py)."""
    with np.load(FIXTURE) as data:
        patches = data["patches"]
        ref = {k: data[f"MSD_musicnn.{k}"] for k in ("penultimate", "max_pool", "mean_pool")}
    ref["pools"] = np.concatenate([ref["max_pool"], ref["mean_pool"]], axis=1)  # max, then mean
    fe = MusicnnEmbeddings(output=output, patches=3, weights_dir=weights)
    got = fe.embed(patches)
    assert got.shape == (3, OUTPUTS[output]) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref[output], atol=2e-4, rtol=1e-5)


def test_a_clip_gives_one_embedding_per_patch_spread_over_it(weights, real_clip):
    """30-s FMA clip, 10 patches of 187 frames over 1,876 frames: starts 0, 187, ..., 1689 (by hand:
    segment_starts spreads (1876 - 187) = 1689 over 9 gaps of 187.67, rounded)."""
    fe = MusicnnEmbeddings(patches=10, weights_dir=weights)
    patches = fe.patches_of(real_clip)
    assert patches.shape == (10, 187, 96)
    from genrekit.models.musicnn import musicnn_patches

    # musicnn's own non-overlapping patches from frame 0: the first patch is the same one.
    np.testing.assert_allclose(patches[0], musicnn_patches(real_clip)[0], atol=1e-5)
    rows = fe.load(real_clip)
    assert rows.shape == (10, 200) and np.isfinite(rows).all()
    np.testing.assert_allclose(rows[:3], fe.embed(patches[:3]), atol=1e-5)


def test_the_embedding_cache_resumes_and_lists_a_defective_file(weights, demo_dataset, tmp_path):
    from genrekit.datasets.fma import audio_path
    from genrekit.features.cache import FeatureCache, cache_folder, ensure_cache

    fe = MusicnnEmbeddings(patches=2, weights_dir=weights)
    folder = cache_folder(tmp_path / "features", demo_dataset.audio_dir, fe)
    assert folder.name == "musicnn_MSD_musicnn_penultimate_2p_v1"
    ids = _good_ids(demo_dataset)[:6]
    items = [(t, audio_path(demo_dataset.audio_dir, t)) for t in ids]
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3" + b"\0" * 7 + b"not audio" * 100)
    first = ensure_cache(folder, items[:3], fe, workers=1, progress=False)
    assert (first.cached, first.done, first.defective) == (0, 3, 0)
    second = ensure_cache(folder, [*items, (999_001, bad)], fe, workers=1, progress=False)
    assert (second.cached, second.done, second.defective) == (3, 3, 1)  # only the new ones ran
    with FeatureCache.open(folder, fe) as cache:
        assert sorted(cache.track_ids.tolist()) == sorted(ids)
        row = cache.read([ids[4]])[0].astype(np.float32)
        np.testing.assert_allclose(row, fe.load(items[4][1]), atol=0.02, rtol=2e-3)  # float16 storage
        (failure,) = cache.failures
    assert failure.track_id == 999_001 and failure.status == "defective" and failure.path == str(bad)
    with open(second.failures_csv[-1], newline="", encoding="utf-8") as fh:
        assert [r["track_id"] for r in csv.DictReader(fh)] == ["999001"]
    # A cache of another output is refused, never mixed.
    from genrekit.errors import CacheError

    with pytest.raises(CacheError, match="other feature parameters: output='penultimate'"):
        FeatureCache.open(folder, MusicnnEmbeddings(output="max_pool", patches=2))


@pytest.mark.slow
def test_heads_train_on_embeddings_and_the_run_records_its_front_end(musicnn_run, demo_dataset):
    import keras

    config = json.loads((musicnn_run / "balanced_training_config.json").read_text())
    assert config["frontend"]["name"] == "musicnn_embeddings"
    assert config["frontend"]["params"] == {"model": "MSD_musicnn", "output": "penultimate", "patches": 2}
    assert config["settings"]["backbone"] == "musicnn" and config["input_shape"] == [200]
    assert config["history"]["epochs_run"] == 2
    assert len(config["normalization"]["mean"]) == 200
    model = keras.models.load_model(musicnn_run / "balanced_hierarchical_genre_model.h5")
    assert model.name == "genre_heads" and model.input_shape == (None, 200)
    # The heads' normalization holds the training embeddings' statistics, per value.
    norm = model.get_layer("embedding_norm")
    np.testing.assert_allclose(np.ravel(norm.mean), config["normalization"]["mean"], rtol=1e-5, atol=1e-5)
    widths = {k: len(config["vocabularies"][k]["genre_ids"]) for k in ("top", "medium", "all")}
    pred = model.predict(np.zeros((3, 200), np.float32), verbose=0)
    assert {k: v.shape for k, v in pred.items()} == {k: (3, n) for k, n in widths.items()}
    np.testing.assert_allclose(pred["top"].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_evaluation_inference_and_tags_from_the_saved_run(musicnn_run, demo_dataset, tmp_path, capsys):
    import balanced_inference
    import model_evaluation
    from genrekit.datasets.fma import audio_path

    model = str(musicnn_run / "balanced_hierarchical_genre_model.h5")
    assert model_evaluation.main(["--model", model, "--no_plots", "--output_dir", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "evaluation_report.json").read_text())
    counts = report["counts"]
    assert (
        counts["tracks_evaluated"] > 0 and counts["segments"] == 2 * counts["tracks_evaluated"]
    )  # 2 patches
    assert 0.0 <= report["top"]["track"]["balanced_accuracy"] <= 1.0

    clip = audio_path(demo_dataset.audio_dir, _good_ids(demo_dataset)[0])
    capsys.readouterr()
    out_json = tmp_path / "pred.json"
    code = balanced_inference.main(
        ["--model", model, "--file", str(clip), "--tags", "--workers", "1", "--output", str(out_json)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(out_json.read_text())["results"]
    (only,) = result.values()
    assert only["num_segments"] == 2  # one prediction per musicnn patch
    lines = printed[printed.index("MSD_musicnn tags of") :].splitlines()
    assert len(lines) == 51  # the heading and the backbone's own 50 tags
    probs = [float(line.split()[0]) for line in lines[1:]]
    assert probs == sorted(probs, reverse=True) and 0.0 <= probs[-1] <= probs[0] <= 1.0
    from genrekit.models.musicnn_weights import musicnn_tags

    assert sorted(line.split(None, 1)[1] for line in lines[1:]) == sorted(
        musicnn_tags("MSD_musicnn", WEIGHTS_CACHE)
    )


def test_tags_of_a_cnn_model_are_refused_in_one_line():
    from genrekit.features.musicnn import format_tags

    with pytest.raises(ConfigError, match="front end 'mel_segments' has no backbone tags"):
        format_tags(frontends.MelSegments(), "x.mp3")


def test_bench_balancing_row_9_is_the_default_balancing_on_musicnn_heads():
    from tests.test_bench_balancing import load_bench

    bench = load_bench()
    rows = {r.key: r for r in bench.ROWS}
    fold = bench.Fold(0, "/folds/0", {})
    heads = bench.nn_settings(rows["9"], {"duration": 5.0}, fold)
    cnn = bench.nn_settings(rows["5"], {"duration": 5.0}, fold)
    assert (heads.backbone, heads.musicnn_patches, heads.metadata_dir) == ("musicnn", 1, "/folds/0")
    assert cnn.backbone == "cnn"
    switches = ("use_class_weights", "use_weighted_sampling", "use_focal_loss", "use_logit_adjustment")
    assert (
        [getattr(heads, k) for k in switches]
        == [getattr(cnn, k) for k in switches]
        == [True, True, True, False]
    )


# --- fine-tuning (FINE_TUNE_FROM) ------------------------------------------------------------------


def test_fine_tuning_reads_patches_and_its_settings_are_checked_by_name():
    from genrekit.features.musicnn import MusicnnPatches

    settings = Settings.build(
        overrides={
            "backbone": "musicnn",
            "musicnn_patches": 2,
            "fine_tune_from": "runs/heads",
            "pretrained_dir": "/w",
        }
    )
    fe = frontends.from_settings(settings)
    assert fe == MusicnnPatches("MSD_musicnn", 2) and fe.weights_dir == "/w/musicnn"
    assert fe.row_shape == (2, 187, 96) and fe.input_shape == (187, 96)
    assert fe.cache_name() == "musicnn_patches_MSD_musicnn_2p_v1"
    section = json.loads(json.dumps(fe.to_config()))
    assert section["params"] == {"model": "MSD_musicnn", "patches": 2}
    assert frontends.from_config(section) == fe
    with pytest.raises(
        ConfigError, match="'fine_tune_from' fine-tunes musicnn: it needs 'backbone' 'musicnn'"
    ):
        Settings.build(overrides={"fine_tune_from": "runs/heads"})
    with pytest.raises(ConfigError, match="'fine_tune_layers' must be one of backend, midend, all"):
        Settings.build(overrides={"fine_tune_layers": "top"})
    with pytest.raises(ConfigError, match="'fine_tune_learning_rate' must be > 0"):
        Settings.build(overrides={"fine_tune_learning_rate": 0.0})


def test_which_backbone_layers_learn():
    from genrekit.models.finetune import learning_layers

    assert learning_layers("backend", "penultimate") == ("penultimate_dense",)
    assert learning_layers("midend", "penultimate") == (
        "midend_1",
        "midend_2",
        "midend_3",
        "penultimate_dense",
    )
    assert learning_layers("midend", "pools") == ("midend_1", "midend_2", "midend_3")  # pools come first
    assert learning_layers("all", "max_pool") is None
    with pytest.raises(ConfigError, match="the heads take 'max_pool', which comes before it"):
        learning_layers("backend", "max_pool")


@pytest.mark.parametrize(("output", "layers"), [("penultimate", "midend"), ("pools", "all")])
def test_the_fine_tuned_model_starts_as_the_frozen_pipeline_and_trains_only_its_layers(
    weights, output, layers
):
    """Before any step, patches -> fine-tuned model equals embeddings -> heads (the frozen path);
    one real training step changes the layers that learn and nothing else."""
    import keras

    from genrekit.models.finetune import build_fine_tuned
    from genrekit.models.heads import build_heads
    from genrekit.models.musicnn_weights import load_musicnn

    with np.load(FIXTURE) as data:
        patches = data["patches"]  # (3, 187, 96), the genuine FMA clip
    dim = OUTPUTS[output]
    heads = build_heads((dim,), num_top=4, num_medium=3, num_all=6, units=16, seed=1)
    backbone = load_musicnn("MSD_musicnn", weights)
    frozen = MusicnnEmbeddings(output=output, patches=3, weights_dir=weights).embed(patches)
    want = heads.predict(frozen, verbose=0)
    model = build_fine_tuned(backbone, heads, output=output, layers=layers)
    got = model.predict(patches, verbose=0)
    assert model.output_names and set(got) == {"top", "medium", "all"}
    for level in got:
        np.testing.assert_allclose(got[level], want[level], atol=1e-5)

    learning = {layer.name for layer in backbone.layers if layer.trainable and layer.weights}
    expected = {"midend_1", "midend_2", "midend_3", "penultimate_dense"} if layers == "midend" else None
    if expected is not None:
        assert learning == expected
    else:  # all: every conv before the pools, never a batch norm
        convs = {f"timbral_{w}" for w in (38, 67)} | {f"temporal_{n}" for n in (128, 64, 32)}
        assert learning == convs | {"midend_1", "midend_2", "midend_3"}  # the pools come before the back end
        assert not any(
            name.endswith("_bn") or name in ("input_bn", "pool_bn", "penultimate") for name in learning
        )
    before = {
        layer.name: [w.numpy().copy() for w in layer.weights] for layer in backbone.layers if layer.weights
    }
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss={
            "top": "sparse_categorical_crossentropy",
            "medium": "sparse_categorical_crossentropy",
            "all": "binary_crossentropy",
        },
    )
    y = {"top": np.array([0, 1, 2]), "medium": np.array([0, 1, 2]), "all": np.eye(6, dtype=np.float32)[:3]}
    model.train_on_batch(patches, y)
    for layer in backbone.layers:
        if not layer.weights:
            continue
        changed = any(
            not np.array_equal(a, w.numpy()) for a, w in zip(before[layer.name], layer.weights, strict=True)
        )
        assert changed == (layer.name in learning), layer.name  # batch norms' moving statistics too


@pytest.mark.slow
def test_fine_tuning_a_heads_run_end_to_end(musicnn_run, demo_dataset, tmp_path, capsys):
    """balanced_trainer --fine_tune_from the heads run: a run of its own, evaluated and used like any."""
    import keras

    import balanced_inference
    import balanced_trainer
    import model_evaluation
    from genrekit.datasets.fma import audio_path

    out = tmp_path / "ft"
    values = musicnn_overrides(
        demo_dataset,
        out,
        fine_tune_from=str(musicnn_run),
        fine_tune_layers="backend",
        num_epochs=1,
        cache_dir=str(musicnn_run.parent.parent / "features"),
    )
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(values))
    assert balanced_trainer.main(["--config", str(config_file)]) == 0
    config = json.loads((out / "balanced_training_config.json").read_text())
    heads_config = json.loads((musicnn_run / "balanced_training_config.json").read_text())
    assert config["frontend"]["name"] == "musicnn_patches" and config["input_shape"] == [187, 96]
    assert config["settings"]["fine_tune_from"] == str(musicnn_run)
    # The heads keep the statistics of the embeddings they were trained on.
    assert config["normalization"]["mean"] == heads_config["normalization"]["mean"]
    # Only the dense layer of the penultimate embedding learnt in the backbone: the others are musicnn's.
    model = keras.models.load_model(out / "balanced_hierarchical_genre_model.h5", compile=False)
    heads = keras.models.load_model(musicnn_run / "balanced_hierarchical_genre_model.h5", compile=False)
    from genrekit.models.musicnn_weights import load_musicnn

    pretrained = load_musicnn("MSD_musicnn", WEIGHTS_CACHE)
    tuned = model.get_layer("MSD_musicnn")
    for name in ("timbral_38", "midend_2", "pool_bn"):
        for a, b in zip(tuned.get_layer(name).weights, pretrained.get_layer(name).weights, strict=True):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(
        tuned.get_layer("penultimate_dense").weights[0].numpy(),
        pretrained.get_layer("penultimate_dense").weights[0].numpy(),
    )
    assert not np.array_equal(
        model.get_layer("genre_heads").get_layer("dense").weights[0].numpy(),
        heads.get_layer("dense").weights[0].numpy(),
    )

    model_path = str(out / "balanced_hierarchical_genre_model.h5")
    assert (
        model_evaluation.main(["--model", model_path, "--no_plots", "--output_dir", str(tmp_path / "ev")])
        == 0
    )
    counts = json.loads((tmp_path / "ev" / "evaluation_report.json").read_text())["counts"]
    assert counts["tracks_evaluated"] > 0 and counts["segments"] == 2 * counts["tracks_evaluated"]
    clip = audio_path(demo_dataset.audio_dir, _good_ids(demo_dataset)[0])
    pred = tmp_path / "pred.json"
    capsys.readouterr()
    argv = ["--model", model_path, "--file", str(clip), "--workers", "1", "--output", str(pred), "--tags"]
    assert balanced_inference.main(argv) == 0
    (only,) = json.loads(pred.read_text())["results"].values()
    assert only["num_segments"] == 2
    tags = capsys.readouterr().out.split("MSD_musicnn tags of", 1)[1].splitlines()
    assert len(tags) == 51  # the pretrained checkpoint's 50 tags, after the heading's rest

    # Fine-tuning into the heads run's own folder would overwrite it: refused.
    config_file.write_text(json.dumps({**values, "output_dir": str(musicnn_run)}))
    assert balanced_trainer.main(["--config", str(config_file), "--retrain"]) == 2
    assert "is the output folder itself" in capsys.readouterr().err
    assert json.loads((musicnn_run / "balanced_training_config.json").read_text()) == heads_config

    # Heads of another checkpoint, or a folder without a run: one line, before anything is extracted.
    capsys.readouterr()
    config_file.write_text(
        json.dumps({**values, "musicnn_model": "MTT_musicnn", "output_dir": str(tmp_path / "x")})
    )
    assert balanced_trainer.main(["--config", str(config_file)]) == 2
    assert "its heads take MSD_musicnn, this run asks musicnn_model MTT_musicnn" in capsys.readouterr().err
    config_file.write_text(
        json.dumps({**values, "fine_tune_from": str(tmp_path), "output_dir": str(tmp_path / "y")})
    )
    assert balanced_trainer.main(["--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert "holds no finished run" in err and "train the heads first" in err
    assert not (
        musicnn_run.parent.parent / "features" / "fma_demo" / "musicnn_patches_MTT_musicnn_2p_v1"
    ).exists()


def test_bench_balancing_row_10_fine_tunes_row_9_of_the_same_fold(tmp_path):
    from tests.test_bench_balancing import load_bench

    bench = load_bench()
    rows = {r.key: r for r in bench.ROWS}
    fold = bench.Fold(3, "/folds/3", {})
    tuned = bench.nn_settings(rows["10"], {"duration": 5.0, "num_epochs": 8}, fold, tmp_path)
    heads = bench.nn_settings(rows["9"], {"duration": 5.0, "num_epochs": 8}, fold, tmp_path)
    assert tuned.fine_tune_from == str(tmp_path / "runs" / "row9_fold3") and heads.fine_tune_from == ""
    assert (tuned.num_epochs, heads.num_epochs) == (bench.FINE_TUNE_EPOCHS, 8)
    assert (tuned.fine_tune_layers, tuned.fine_tune_learning_rate) == ("midend", 1e-5)  # config.py's
    assert bench.REQUIRES["10"] == ("9",) and bench.REQUIRES["12"] == (
        "5",
        "9",
    )  # row 12 averages rows 5 and 9
    assert heads.musicnn_output == "penultimate"  # rows 9-10 keep the layer they were measured on
