"""balanced_trainer.py end to end on demo data, and the training building blocks on real features."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import balanced_trainer
from genrekit.errors import CacheError
from genrekit.settings import Settings
from genrekit.train.run import BalancedGenreProcessor
from genrekit.train.run_config import load_training_config
from tests.conftest import REPO, tiny_overrides

pytestmark = pytest.mark.slow


def test_run_folder_holds_model_config_and_logs(tiny_run, demo_dataset):
    config = load_training_config(tiny_run / "balanced_training_config.json")
    assert (tiny_run / "balanced_hierarchical_genre_model.h5").is_file()
    for name in ("training_log.csv", "run.log", "checkpoints/best.keras"):
        assert (tiny_run / name).exists(), name
    assert any((tiny_run / "tensorboard").rglob("events.out.tfevents.*"))
    assert not (tiny_run / "backup").exists()  # a finished run leaves no backup behind
    assert config["input_shape"] == [128, 64, 1]
    assert len(config["normalization"]["mean"]) == 128
    assert config["history"]["epochs_run"] == 2
    assert config["features"]["duration"] == 3.0
    vocab = config["vocabularies"]
    assert len(vocab["top"]["names"]) == 16 and "Rock" in vocab["top"]["names"]
    # the test split is never used by training; defective files are left out and counted
    assert set(config["data"]["tracks"]) == {"training", "validation"}
    left_out = sum(config["data"]["left_out"].values())
    assert left_out == len(demo_dataset.defective_ids) - 1  # the short clip still has features
    log = pd.read_csv(tiny_run / "training_log.csv")
    assert log["epoch"].tolist() == [0, 1]
    assert {"loss", "top_loss", "val_top_balanced_accuracy"} <= set(log.columns)


def test_saved_model_loads_without_custom_objects_and_predicts_identically(tiny_run):
    import keras

    model = keras.models.load_model(tiny_run / "balanced_hierarchical_genre_model.h5")
    best = keras.models.load_model(tiny_run / "checkpoints" / "best.keras")
    x = np.random.default_rng(0).normal(-30, 15, size=(6, 128, 64, 1)).astype(np.float32)
    a, b = model.predict(x, verbose=0), best.predict(x, verbose=0)
    for head in ("top", "medium", "all"):
        np.testing.assert_array_equal(a[head], b[head])  # EarlyStopping restored the best weights
    assert a["top"].shape == (6, 16)
    np.testing.assert_allclose(a["top"].sum(axis=1), 1.0, rtol=1e-5)


def test_a_finished_run_is_not_trained_again(tiny_run, capsys):
    before = (tiny_run / "balanced_hierarchical_genre_model.h5").stat().st_mtime_ns
    config = json.loads((tiny_run / "balanced_training_config.json").read_text())
    overrides = {"output_dir": str(tiny_run), **config["settings"]}
    path = tiny_run.parent / "again.json"
    path.write_text(json.dumps(overrides))
    assert balanced_trainer.main(["--config", str(path)]) == 0
    assert (tiny_run / "balanced_hierarchical_genre_model.h5").stat().st_mtime_ns == before


def test_loss_decreases_on_real_demo_features(tiny_run):
    """A few steps on one batch of real cached features: the loss goes down."""
    import keras

    config = load_training_config(tiny_run / "balanced_training_config.json")
    settings = Settings.build(tiny_run / "balanced_training_config.json")
    processor = BalancedGenreProcessor(settings)
    processed = processor.process_fma_labels(*processor.load_fma_metadata())
    from genrekit.features.cache import FeatureCache
    from genrekit.train.run import BalancedHierarchicalModel

    cache = FeatureCache.open(config["data"]["cache_dir"], processor.feature_params())
    labels = processed.labels("training", cache.track_ids)
    weights = processor.compute_hierarchical_class_weights(processed, labels)
    n = processed.num_classes
    keras.utils.set_random_seed(0)
    builder = BalancedHierarchicalModel(
        settings.input_shape,
        num_top=n["top"],
        num_medium=n["medium"],
        num_all=n["all"],
        class_weights=weights,
        settings=settings,
        normalization=config["normalization"],
    )
    model = builder.compile_with_balanced_losses(learning_rate=1e-3)
    ids = labels.track_ids[:8]
    x = cache.read(ids).reshape(-1, 128, 64, 1).astype(np.float32)
    sub = labels.subset(np.arange(8))
    y = {
        "top": np.repeat(sub.one_hot("top", n["top"]), 10, axis=0),
        "medium": np.repeat(sub.one_hot("medium", n["medium"]), 10, axis=0),
        "all": np.repeat(sub.all.astype(np.float32), 10, axis=0),
    }
    losses = [float(model.train_on_batch(x, y, return_dict=True)["loss"]) for _ in range(15)]
    assert losses[-1] < 0.8 * losses[0], losses


def test_the_data_and_finish_steps_rebuild_the_run_config(tiny_run, tmp_path):
    """prepare_data on the finished run's cache, then finish with its model, give back its config."""
    import shutil

    import keras

    from genrekit.train.run import finish, prepare_data

    config_path = tiny_run / "balanced_training_config.json"
    saved = load_training_config(config_path)
    settings = Settings.build(config_path)  # its settings section
    data = prepare_data(settings)  # the cache is complete: nothing is extracted
    assert {s: len(v) for s, v in data.split_labels.items()} == saved["data"]["tracks"]
    assert data.left_out == saved["data"]["left_out"]
    shutil.copy(tiny_run / "training_log.csv", tmp_path)
    best = tiny_run / "checkpoints" / "best.keras"
    model = keras.models.load_model(best)  # compiled, with its optimizer's variables, as after fit
    config = finish(
        settings, data, model, tmp_path, best, device=saved["device"], splits_file=None, started=0.0
    )
    assert (tmp_path / settings.model_filename).is_file()
    assert load_training_config(tmp_path / settings.training_config_filename) == json.loads(
        json.dumps(config)
    )
    for c in (config, saved):  # when and where it ran
        del c["created"], c["history"]["seconds"], c["history"]["platform"]
    assert json.loads(json.dumps(config)) == saved


def test_pipeline_epoch_follows_the_sampling_thresholds(tiny_run):
    """One epoch through the real tf.data pipeline: per top genre, the thresholds' counts."""
    from genrekit.features.cache import FeatureCache
    from genrekit.train.pipeline import TrainingStream, training_dataset

    settings = Settings.build(tiny_run / "balanced_training_config.json")
    config = load_training_config(tiny_run / "balanced_training_config.json")
    processor = BalancedGenreProcessor(settings)
    processed = processor.process_fma_labels(*processor.load_fma_metadata())
    cache = FeatureCache.open(config["data"]["cache_dir"], processor.feature_params())
    labels = processed.labels("training", cache.track_ids)
    n = processed.num_classes
    sampler = processor.make_sampler(labels, n["top"])
    ones = {k: np.ones(n[k], np.float32) for k in ("top", "medium")}
    stream = TrainingStream(cache, labels, ones, n, 10, sampler=sampler, shuffle_block=8, seed=1)
    ds = training_dataset(stream, 32, settings.input_shape)
    top_segments = np.zeros(n["top"])
    masked = segments = 0
    for x, y, w in ds:
        assert x.shape[1:] == (128, 64, 1)
        top_segments += y["top"].numpy().sum(axis=0)
        masked += int((w["top"].numpy() == 0).sum())
        segments += len(x)
    counts = np.bincount(labels.top[labels.top >= 0], minlength=n["top"])
    expected = np.clip(counts, settings.oversample_threshold, settings.undersample_threshold)
    np.testing.assert_array_equal(top_segments / 10, expected)
    assert masked == 10 * int((labels.top < 0).sum())  # no top genre: weight 0 at the top head
    assert segments == 10 * sampler.epoch_size()
    assert len(ds) == -(-segments // 32)


def test_cache_built_with_other_parameters_is_refused(tiny_run, demo_dataset, capsys):
    config = load_training_config(tiny_run / "balanced_training_config.json")
    cache_dir = Path(config["data"]["cache_dir"])
    from genrekit.features.cache import FeatureCache
    from genrekit.features.mel import FeatureParams

    other = FeatureParams.from_dict({**config["features"], "n_mels": 64})
    with pytest.raises(CacheError, match="n_mels=128"):
        FeatureCache.open(cache_dir, other)


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--batch_size", "0"], "setting 'batch_size' must be > 0"),
        (["--subset", "huge"], "setting 'subset' must be one of"),
        (["--shard", "2/2", "--extract_only"], "shard '2/2' needs 0 <= I < N"),
        (["--shard", "1/2"], "--shard works with --extract_only"),
    ],
)
def test_impossible_settings_stop_before_training(tmp_path, flags, words, capsys):
    assert balanced_trainer.main(["--output_dir", str(tmp_path / "run"), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "run" / "balanced_hierarchical_genre_model.h5").exists()


def test_no_training_tracks_is_one_clear_line(tmp_path, demo_dataset, capsys):
    meta = tmp_path / "meta"
    meta.mkdir()
    tracks = (demo_dataset.metadata_dir / "tracks.csv").read_text()
    (meta / "tracks.csv").write_text(tracks.replace(",training,", ",validation,"))
    (meta / "genres.csv").write_text((demo_dataset.metadata_dir / "genres.csv").read_text())
    code = balanced_trainer.main(
        [
            "--metadata",
            str(meta),
            "--audio",
            str(demo_dataset.audio_dir),
            "--output_dir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 2
    assert "no training tracks" in capsys.readouterr().err


def _trainer_process(config: Path, *extra: str, stdout=subprocess.PIPE) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(REPO / "balanced_trainer.py"), "--config", str(config), *extra],
        cwd=REPO,
        env=env,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        text=True,
    )


KILL_AFTER = 3  # epochs in training_log.csv when the training process is killed
RESUME_EPOCHS = 7


@pytest.fixture(scope="module")
def killed_and_resumed(tiny_run, demo_dataset, tmp_path_factory) -> dict:
    """One real training killed with SIGKILL after epoch 3 and resumed, and the same run uninterrupted.

    Shared by the two resume tests (one killed-and-resumed training instead of two). The
    uninterrupted run trains at the same time as the killed one (one core each on 2 cores): its
    numbers do not depend on timing. Early stopping (patience 3) and LR reduction (patience 1)
    both act within the 7 epochs, so their restored state shows in the results.
    """
    root = tmp_path_factory.mktemp("resume")
    runs = {}
    for name in ("straight", "killed"):
        out = root / name
        settings = tiny_overrides(demo_dataset, out, num_epochs=RESUME_EPOCHS, patience=3, lr_patience=1,
                                  lr_factor=0.5, learning_rate=3e-3)  # fmt: skip
        settings["cache_dir"] = str(tiny_run.parent / "features")  # reuse the session's features
        config = root / f"{name}.json"
        config.write_text(json.dumps(settings))
        runs[name] = (out, config)
    out, config = runs["killed"]
    log = out / "training_log.csv"
    started = []  # every training process, killed at the end if a timeout left one running
    try:
        with open(root / "straight.out", "w") as straight_out:
            straight = _trainer_process(runs["straight"][1], stdout=straight_out)
            started.append(straight)
            proc = _trainer_process(config)
            started.append(proc)
            deadline = time.time() + 400
            while time.time() < deadline and proc.poll() is None:
                if log.is_file() and len(log.read_text().splitlines()) > KILL_AFTER:  # header, k epochs
                    break
                time.sleep(0.05)
            killed = {"alive": proc.poll() is None}
            proc.send_signal(signal.SIGKILL)
            killed["output"] = proc.communicate()[0]
            killed.update(
                epochs=pd.read_csv(log)["epoch"].tolist() if log.is_file() else [],
                backup=(out / "backup").is_dir(),
                callback_state=(out / "backup" / "callback_state.json").is_file(),
                model=(out / "balanced_hierarchical_genre_model.h5").exists(),
            )
            resumed = _trainer_process(config)
            started.append(resumed)
            output = resumed.communicate(timeout=600)[0]
            straight.wait(timeout=600)
    finally:
        for left in started:
            if left.poll() is None:
                left.kill()
                left.wait()
    return {
        "killed": killed,
        "resumed": {"code": resumed.returncode, "output": output, "out": out},
        "straight": {
            "code": straight.returncode,
            "output": (root / "straight.out").read_text(),
            "out": runs["straight"][0],
        },
    }


def test_killed_run_resumes_at_the_next_epoch(killed_and_resumed):
    """A real training process killed with SIGKILL after epoch k resumes at epoch k+1."""
    killed, resumed = killed_and_resumed["killed"], killed_and_resumed["resumed"]
    assert killed["alive"], killed["output"]
    epochs_before = killed["epochs"]
    assert epochs_before[:KILL_AFTER] == list(range(KILL_AFTER)) and killed["backup"]
    assert not killed["model"]

    output = resumed["output"]
    assert resumed["code"] == 0, output
    assert "resuming the interrupted run" in output
    epochs = pd.read_csv(resumed["out"] / "training_log.csv")["epoch"].tolist()
    assert epochs == list(range(len(epochs))) and len(epochs) > len(epochs_before)  # none redone or skipped
    resumed_at = f"Epoch {len(epochs_before) + 1}/{RESUME_EPOCHS}"
    assert resumed_at in output and f"Epoch 1/{RESUME_EPOCHS}" not in output


def test_mirrored_strategy_on_two_logical_cpus(tiny_run, demo_dataset, tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "config.json"
    settings = tiny_overrides(demo_dataset, out, num_epochs=1, strategy="mirrored")
    settings["cache_dir"] = str(tiny_run.parent / "features")
    config.write_text(json.dumps(settings))
    proc = _trainer_process(config, "--logical_cpus", "2")
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert "MirroredStrategy" in (out / "run.log").read_text() or "replicas" in output
    result = load_training_config(out / "balanced_training_config.json")
    assert result["history"]["epochs_run"] == 1


def test_resumed_run_ends_like_an_uninterrupted_one(killed_and_resumed):
    """Killed after epoch 3 (SIGKILL) and resumed: same best epoch, best score and final learning rate.

    Early stopping, LR reduction and the best checkpoint must come back with their state (patience
    counts, best scores), not start afresh; batches, augmentation and dropout masks are drawn per epoch.
    """
    runs = killed_and_resumed
    assert runs["straight"]["code"] == 0, runs["straight"]["output"]
    assert runs["killed"]["alive"] and runs["killed"]["callback_state"], runs["killed"]["output"]
    output, out = runs["resumed"]["output"], runs["resumed"]["out"]
    assert runs["resumed"]["code"] == 0, output
    assert "restored the state of early stopping" in (out / "run.log").read_text()

    straight = load_training_config(runs["straight"]["out"] / "balanced_training_config.json")["history"]
    resumed = load_training_config(out / "balanced_training_config.json")["history"]
    assert resumed["best_epoch"] == straight["best_epoch"], output
    assert resumed["best"]["val_score"] == pytest.approx(straight["best"]["val_score"], abs=1e-9)
    assert resumed["epochs_run"] == straight["epochs_run"]
    assert resumed["last"]["learning_rate"] == pytest.approx(straight["last"]["learning_rate"], rel=1e-6)
    a = pd.read_csv(runs["straight"]["out"] / "training_log.csv")
    b = pd.read_csv(out / "training_log.csv")
    np.testing.assert_allclose(b["val_score"], a["val_score"], atol=1e-9)


def test_a_finished_run_with_other_settings_is_refused(tiny_run, tmp_path, capsys):
    config = json.loads((tiny_run / "balanced_training_config.json").read_text())
    overrides = {"output_dir": str(tiny_run), **config["settings"], "learning_rate": 0.02, "workers": 1}
    path = tmp_path / "changed.json"
    path.write_text(json.dumps(overrides))
    before = (tiny_run / "balanced_hierarchical_genre_model.h5").stat().st_mtime_ns
    assert balanced_trainer.main(["--config", str(path)]) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("settings: ")]
    assert len(err) == 1 and "learning_rate: 0.0001 -> 0.02" in err[0] and "--retrain" in err[0], err
    assert "workers" not in err[0]  # does not shape the model
    assert (tiny_run / "balanced_hierarchical_genre_model.h5").stat().st_mtime_ns == before


def test_tuned_thresholds_are_saved_and_used_by_inference(tiny_run, demo_dataset):
    from genrekit.infer.predict import MusicGenreInference

    config = load_training_config(tiny_run / "balanced_training_config.json")
    section = config["thresholds"]
    n_all = len(config["vocabularies"]["all"]["genre_ids"])
    assert section["method"] == "validation, prior-corrected" and len(section["all"]) == n_all
    assert isinstance(section["include_top"], bool)
    assert section["jaccard"] >= section["jaccard_thresholds_only"]  # the rule is kept only if better
    assert section["jaccard"] >= section["jaccard_at_default"]  # chosen on those same tracks
    # One t, corrected for the positive weight each genre was trained with (saved beside).
    from genrekit.evaluate.thresholds import corrected_thresholds

    pos_weight = np.asarray(config["balancing"]["class_weights"]["all"])
    np.testing.assert_allclose(section["all"], corrected_thresholds(section["t"], pos_weight), rtol=1e-5)
    model = tiny_run / "balanced_hierarchical_genre_model.h5"
    inference = MusicGenreInference(model, workers=1)
    np.testing.assert_array_equal(inference.thresholds, section["all"])
    bad = set(demo_dataset.defective_ids)
    clip = next(p for p in sorted(demo_dataset.audio_dir.rglob("*.mp3")) if int(p.stem) not in bad)
    result = inference.predict_file(clip)
    probs = {g["genre"]: g["probability"] for g in result["aggregated_results"]["all_genres"]["labels"]}
    names = config["vocabularies"]["all"]["names"]
    for name, p in probs.items():
        assert p > section["all"][names.index(name)]
    assert MusicGenreInference(model, threshold=0.3, workers=1).thresholds.tolist() == [0.3] * n_all


def test_logit_adjustment_trains_saves_its_priors_and_loads_back(tiny_run, demo_dataset):
    """--logit_adjustment: the softmax heads train with LogitAdjustedLoss on the training class mix."""
    import keras

    from genrekit.models.losses import LogitAdjustedLoss

    out = tiny_run.parent / "logit_adjusted"
    overrides = tiny_overrides(demo_dataset, out, use_weighted_sampling=False, use_focal_loss=False)
    path = tiny_run.parent / "logit_adjusted.json"
    path.write_text(json.dumps(overrides))
    assert (
        balanced_trainer.main(["--config", str(path), "--logit_adjustment", "--logit_adjustment_tau", "0.5"])
        == 0
    )
    config = load_training_config(out / "balanced_training_config.json")
    assert config["balancing"]["use_logit_adjustment"] is True
    assert config["balancing"]["logit_adjustment_tau"] == 0.5
    # Priors: the training tracks' class frequencies, counted here from the metadata.
    settings = Settings.build(None, overrides)
    processor = BalancedGenreProcessor(settings)
    processed = processor.process_fma_labels(*processor.load_fma_metadata())
    cache_ids = processor.extract_features(processed).track_ids
    labels = processed.labels("training", cache_ids)
    counts = np.bincount(labels.top[labels.top >= 0], minlength=len(processed.vocabs["top"])).astype(float)
    counts[counts == 0] = 0.5
    np.testing.assert_allclose(config["balancing"]["priors"]["top"], counts / counts.sum(), rtol=1e-6)
    log = pd.read_csv(out / "training_log.csv")
    assert np.isfinite(log["top_loss"]).all()
    model = keras.models.load_model(out / "balanced_hierarchical_genre_model.h5")  # compiled, as saved
    loss = model.loss["top"] if isinstance(model.loss, dict) else None
    assert isinstance(loss, LogitAdjustedLoss) and loss.tau == 0.5
    np.testing.assert_allclose(loss.prior, config["balancing"]["priors"]["top"], rtol=1e-5)
