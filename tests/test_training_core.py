"""The training core's contracts: loss normalization, global clipping, the monitored score, batch
composition, augmentation, tuned thresholds, resume state and stale-run refusal (issue 13)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from genrekit.datasets.labels import EncodedLabels
from genrekit.errors import ConfigError
from genrekit.evaluate.thresholds import (
    choose_thresholds,
    corrected_thresholds,
    decide,
    thresholds_of,
    top_columns,
)
from genrekit.models.losses import FocalLoss, WeightedBinaryCrossEntropy
from genrekit.settings import Settings
from genrekit.train.augment import AugmentPlan, apply_augmentation, mixup, spec_augment
from genrekit.train.pipeline import TrainingStream
from genrekit.train.run import settings_differences, validation_metrics

# --- 1. loss normalization ------------------------------------------------------------------------


def test_focal_loss_is_normalized_by_the_weight_of_labelled_rows():
    """Class weights and masked rows (weight 0): sum(w * loss) / sum(w), not / batch size."""
    y_true = np.array([[0, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1]], np.float32)  # row 1 masked
    y_pred = np.array([[0.2, 0.7, 0.1], [0.9, 0.05, 0.05], [0.3, 0.5, 0.2], [0.1, 0.1, 0.8]], np.float32)
    w = np.array([2.0, 0.0, 1.0, 0.5], np.float32)
    ce = np.array([-np.log(0.7), 0.0, -np.log(0.3), -np.log(0.8)])
    expected = (w * ce).sum() / w.sum()  # = 1.2106 / 3.5 by hand
    got = float(FocalLoss(gamma=0.0)(y_true, y_pred, sample_weight=w))
    assert got == pytest.approx(expected, rel=1e-6)
    # The same labelled rows with more masked rows around them give the same loss.
    more = float(
        FocalLoss(gamma=0.0)(
            np.concatenate([y_true, np.zeros((4, 3), np.float32)]),
            np.concatenate([y_pred, np.full((4, 3), 1 / 3, np.float32)]),
            sample_weight=np.concatenate([w, np.zeros(4, np.float32)]),
        )
    )
    assert more == pytest.approx(expected, rel=1e-6)


def test_focal_loss_of_a_batch_without_labels_is_zero():
    y = np.zeros((3, 4), np.float32)
    p = np.full((3, 4), 0.25, np.float32)
    assert float(FocalLoss()(y, p, sample_weight=np.zeros(3, np.float32))) == 0.0


def test_weighted_bce_is_normalized_by_the_sample_weights():
    y = np.array([[1, 0], [0, 1]], np.float32)
    p = np.array([[0.8, 0.4], [0.5, 0.9]], np.float32)
    w = np.array([3.0, 1.0], np.float32)
    rows = np.array([-(np.log(0.8) + np.log(0.6)) / 2, -(np.log(0.5) + np.log(0.9)) / 2])
    got = float(WeightedBinaryCrossEntropy()(y, p, sample_weight=w))
    assert got == pytest.approx((w * rows).sum() / w.sum(), rel=1e-6)


def test_compiled_model_loss_uses_the_same_normalization(rng):
    """Through model.compile / evaluate: each head's loss is its weighted mean over labelled rows."""
    from genrekit.models.cnn import build_model

    keras.utils.set_random_seed(0)
    model = build_model((16, 8, 1), num_top=3, num_medium=4, num_all=5, width_factor=0.0625, seed=0)
    model.compile(loss={"top": FocalLoss(gamma=0.0), "medium": FocalLoss(gamma=0.0),
                        "all": WeightedBinaryCrossEntropy()}, loss_weights={"top": 1.0, "medium": 0.0, "all": 0.0})  # fmt: skip
    x = rng.normal(size=(6, 16, 8, 1)).astype(np.float32)
    top = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 2]]
    top[[1, 4]] = 0  # masked rows
    w_top = np.array([1.0, 0.0, 2.0, 1.0, 0.0, 0.5], np.float32)
    y = {"top": top, "medium": np.eye(4, dtype=np.float32)[[0] * 6], "all": np.ones((6, 5), np.float32)}
    sw = {"top": w_top, "medium": np.ones(6, np.float32), "all": np.ones(6, np.float32)}
    loss = model.evaluate(x, y, sample_weight=sw, batch_size=6, verbose=0, return_dict=True)["loss"]
    p = model.predict(x, verbose=0)["top"]
    ce = -np.log(np.clip((top * p).sum(axis=1), 1e-7, 1))
    ce[[1, 4]] = 0
    assert loss == pytest.approx((w_top * ce).sum() / w_top.sum(), rel=1e-4)


# --- 2. global clipping --------------------------------------------------------------------------------


def test_optimizer_clips_by_global_norm():
    from genrekit.train.run import BalancedHierarchicalModel

    settings = Settings.build(overrides={"width_factor": 0.0625, "clip_norm": 0.7})
    model = BalancedHierarchicalModel(
        (16, 8, 1), num_top=3, num_medium=4, num_all=5, settings=settings
    ).compile_with_balanced_losses()
    assert model.optimizer.global_clipnorm == pytest.approx(0.7)
    assert model.optimizer.clipnorm is None


def test_global_clipping_scales_all_gradients_together():
    """Two variables with gradients 3 and 4 (global norm 5), clip 1: both scaled by 1/5."""
    a, b = keras.Variable([0.0]), keras.Variable([0.0])
    opt = keras.optimizers.SGD(learning_rate=1.0, global_clipnorm=1.0)
    opt.apply_gradients([(keras.ops.convert_to_tensor([3.0]), a), (keras.ops.convert_to_tensor([4.0]), b)])
    np.testing.assert_allclose([float(a.numpy()[0]), float(b.numpy()[0])], [-0.6, -0.8], rtol=1e-6)


# --- 3. the monitored score ----------------------------------------------------------------------------------


def _labels(top, medium, all_):
    n = len(top)
    return EncodedLabels(np.arange(n), np.asarray(top), np.asarray(medium), np.asarray(all_, np.uint8))


def test_validation_score_combines_the_heads_like_their_losses():
    # 4 tracks, one segment each. Top: 3 of 4 right, classes {0: 2/2, 1: 1/2} -> balanced 0.75.
    top_p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    # Medium: tracks 0, 1 masked; 2 right, 3 wrong -> balanced accuracy over classes {0, 2}: 0.5.
    med_p = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]], float)
    # All: every track's true label ranked first -> LRAP 1.0.
    all_p = np.array([[0.9, 0.1], [0.8, 0.3], [0.2, 0.7], [0.1, 0.6]])
    labels = _labels([0, 0, 1, 1], [-1, -1, 2, 0], [[1, 0], [1, 0], [0, 1], [0, 1]])
    m = validation_metrics({"top": top_p, "medium": med_p, "all": all_p}, np.arange(4), labels, 0.5,
                           {"top": 1.0, "medium": 0.8, "all": 0.6})  # fmt: skip
    assert m["val_top_balanced_accuracy"] == pytest.approx(0.75)
    assert m["val_medium_balanced_accuracy"] == pytest.approx(0.5)
    assert m["val_all_lrap"] == pytest.approx(1.0)
    assert m["val_score"] == pytest.approx((1.0 * 0.75 + 0.8 * 0.5 + 0.6 * 1.0) / 2.4)


def test_monitor_is_a_checked_setting_and_a_trainer_flag():
    import balanced_trainer

    args = balanced_trainer.build_parser().parse_args(["--monitor", "val_top_balanced_accuracy"])
    assert args.monitor == "val_top_balanced_accuracy"
    assert Settings.build().monitor == "val_score"
    with pytest.raises(ConfigError, match="monitor"):
        Settings.build(overrides={"monitor": "val_loss_of_nothing"})


# --- 4. batch composition ----------------------------------------------------------------------------


class ArraySource:
    """Cache stand-in: track i's segments are filled with the value i (float16 exact below 2048)."""

    def __init__(self, n_tracks: int, segments: int = 4, shape=(4, 2)):
        self.segments, self.shape = segments, shape
        self.reads: list[int] = []

    def read(self, track_ids):
        ids = np.asarray(track_ids)
        self.reads.append(len(ids))
        out = np.empty((len(ids), self.segments, *self.shape), np.float16)
        out[:] = ids[:, None, None, None]
        return out


def _stream(n_tracks=1024, segments=4, artist_size=16, **kw):
    labels = _labels(np.arange(n_tracks) // 128 % 8, np.full(n_tracks, -1), np.zeros((n_tracks, 2)))
    stream = TrainingStream(ArraySource(n_tracks, segments), labels, {"top": np.ones(8), "medium": np.ones(1)},
                            {"top": 8, "medium": 1, "all": 2}, segments, shuffle_block=64, seed=3,
                            batch_size=32, **kw)  # fmt: skip
    artist = np.arange(n_tracks) // artist_size  # albums: consecutive ids, as FMA's
    return stream, artist


def test_batches_look_like_uniform_random_draws():
    """Distinct artists per batch close to a uniform draw of the same size (consecutive ids are albums)."""
    stream, artist = _stream()
    per_batch = []
    for x, _, _, _ in stream.batches():
        tracks = x[:, 0, 0].astype(np.int64)
        per_batch.append(len(set(artist[tracks].tolist())))
    rng = np.random.default_rng(0)
    n_seg = 1024 * 4
    uniform = [len(set(artist[rng.choice(n_seg, 32, replace=False) // 4].tolist())) for _ in range(2000)]
    assert np.mean(per_batch) >= 0.95 * np.mean(uniform), (np.mean(per_batch), np.mean(uniform))
    # One read per window of 1,024 tracks (blocks of 64 neighbouring tracks in this stream).
    assert min(stream.source.reads) == 1024


def test_every_segment_once_per_epoch_and_epochs_are_reproducible():
    stream, _ = _stream(n_tracks=300, segments=3)
    seen = np.concatenate([x[:, 0, 0] for x, *_ in stream.batches()]).astype(int)
    assert sorted(seen.tolist()) == sorted(np.repeat(np.arange(300), 3).tolist())
    again, _ = _stream(n_tracks=300, segments=3)
    again.epoch = 0
    first = [x.copy() for x, *_ in again.batches()]
    np.testing.assert_array_equal(np.concatenate(first)[:, 0, 0].astype(int), seen)
    second = np.concatenate([x[:, 0, 0] for x, *_ in again.batches()]).astype(int)
    assert not np.array_equal(second, seen)  # epoch 1 is another order
    assert stream.steps() == -(-300 * 3 // 32) == len(first)


# --- augmentation ----------------------------------------------------------------------------------------------


def test_spec_augment_masks_exactly_the_drawn_bands_with_the_band_means():
    x = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    params = {"time_start": np.array([[1], [0]], np.int32), "time_width": np.array([[2], [0]], np.int32),
              "freq_start": np.array([[3], [0]], np.int32), "freq_width": np.array([[1], [2]], np.int32)}  # fmt: skip
    fill = np.array([-1.0, -2.0, -3.0, -4.0], np.float32)
    out = keras.ops.convert_to_numpy(spec_augment(x, params, fill))
    expected = x.copy()
    expected[0, :, 1:3] = fill[:, None]
    expected[0, 3, :] = -4.0
    expected[1, 0:2, :] = fill[:2, None]
    np.testing.assert_array_equal(out, expected)


def test_mixup_keeps_the_weighted_loss_of_each_pair():
    """y and w mixed so that w * CE(y_mix) = lam * w_i * CE(y_i) + (1 - lam) * w_j * CE(y_j)."""
    x = np.array([[[1.0]], [[3.0]], [[5.0]]], np.float32)
    y = {
        "top": np.array([[1, 0], [0, 1], [0, 0]], np.float32),
        "all": np.array([[1, 0], [0, 1], [1, 1]], np.float32),
    }
    w = {"top": np.array([2.0, 1.0, 0.0], np.float32), "all": np.ones(3, np.float32)}
    partner, lam = np.array([1, 2, 0], np.int32), np.array([0.25, 0.5, 1.0], np.float32)
    xm, ym, wm = (
        keras.tree.map_structure(keras.ops.convert_to_numpy, v) for v in mixup(x, y, w, partner, lam)
    )
    np.testing.assert_allclose(xm[:, 0, 0], [0.25 * 1 + 0.75 * 3, 0.5 * 3 + 0.5 * 5, 5.0])
    # row 0: w = 0.25*2 + 0.75*1 = 1.25, y = (0.5*[1,0] + 0.75*[0,1]) / 1.25
    np.testing.assert_allclose(wm["top"], [1.25, 0.5, 0.0])
    np.testing.assert_allclose(ym["top"][0], [0.4, 0.6], rtol=1e-6)
    np.testing.assert_allclose(ym["top"][1], [0.0, 1.0], rtol=1e-6)  # partner masked: its own target
    np.testing.assert_array_equal(ym["top"][2], [0.0, 0.0])  # a masked row with lam 1 stays masked
    np.testing.assert_allclose(ym["all"][0], [0.25, 0.75])
    p = np.array([0.6, 0.4])
    ce = lambda t: -(t * np.log(p)).sum()
    assert wm["top"][0] * ce(ym["top"][0]) == pytest.approx(
        0.25 * 2 * ce(y["top"][0]) + 0.75 * 1 * ce(y["top"][1])
    )


def test_augmentation_parameters_are_drawn_per_epoch_and_reproducible():
    plan = AugmentPlan(time_masks=2, time_mask_frames=4, freq_masks=2, freq_mask_bands=3, mixup_alpha=1.0)
    a = plan.draw(np.random.default_rng((1, 2, 3)), 8, 16, 10)
    b = plan.draw(np.random.default_rng((1, 2, 3)), 8, 16, 10)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert (a["time_start"] + a["time_width"] <= 10).all() and (a["freq_start"] + a["freq_width"] <= 16).all()
    assert sorted(a["partner"].tolist()) == list(range(8))
    x = np.zeros((8, 16, 10), np.float32)
    y = {"top": np.eye(8, 2, dtype=np.float32)}
    out = apply_augmentation(x, y, {"top": np.ones(8, np.float32)}, a, np.ones(16, np.float32), plan)
    assert keras.ops.convert_to_numpy(out[0]).max() == 1.0  # masks filled with the band means (1)


# --- 5. thresholds of the all-genres head ------------------------------------------------------------------


def test_corrected_thresholds_undo_the_positive_weight():
    # sigmoid(logit(t) + log w) = t w / (t w + 1 - t): t = 0.5, w = 4 gives 0.8; w = 1 keeps t.
    np.testing.assert_allclose(corrected_thresholds(0.5, np.array([4.0, 1.0])), [0.8, 0.5])
    np.testing.assert_allclose(corrected_thresholds(0.2, np.array([3.0])), [0.6 / (0.6 + 0.8)])
    from genrekit.errors import ModelError

    with pytest.raises(ModelError, match="pos_weight"):
        corrected_thresholds(0.5, np.array([0.0]))


def test_thresholds_are_one_value_tuned_on_validation_and_corrected_per_genre():
    # Genre 0 was trained with pos_weight 9 (its probabilities shifted up), genre 1 with 1.
    # At t = 0.5 the thresholds are 0.9 and 0.5: every track's genres come out right (Jaccard 1);
    # at t = 0.45 genre 0's threshold is 0.45 * 9 / (0.45 * 9 + 0.55) = 0.880 and track 3 (0.89)
    # gains a false genre 0; at t = 0.55 genre 1's threshold passes 0.52 (track 2 loses it).
    # The last track has no genre at all: it is left out (its 0.99s would count as false positives).
    y = np.array([[1, 0], [1, 1], [0, 1], [0, 1], [0, 0]])
    p = np.array([[0.95, 0.1], [0.93, 0.7], [0.3, 0.52], [0.89, 0.6], [0.99, 0.99]])
    out = choose_thresholds(y, p, pos_weight=np.array([9.0, 1.0]), default=0.5)
    assert out["t"] == pytest.approx(0.5)
    np.testing.assert_allclose(out["all"], [0.9, 0.5])
    assert out["n_tracks"] == 4
    assert out["jaccard"] == pytest.approx(1.0)
    # At the fixed 0.5, track 3 has genre 0 too (Jaccard 1/2): (1 + 1 + 1 + 0.5) / 4.
    assert out["jaccard_at_default"] == pytest.approx(3.5 / 4)
    # Without a positive weight the same probabilities get one shared threshold (t itself).
    plain = choose_thresholds(y, p, default=0.5)
    assert len(set(plain["all"])) == 1 and plain["all"][0] == pytest.approx(plain["t"])


def test_include_top_is_kept_only_when_it_scores_better_on_validation():
    # Columns: genre 0 and 1 are top genres (their all-genres columns 0 and 1), column 2 a subgenre.
    columns = top_columns([10, 20], [10, 20, 30])
    assert columns.tolist() == [0, 1]
    # Decisions: thresholds, then the top head's genre set as well.
    p = np.array([[0.2, 0.1, 0.9], [0.1, 0.1, 0.1]])
    got = decide(p, 0.5, np.array([0, 1]), columns)
    assert got.tolist() == [[True, False, True], [False, True, False]]
    assert decide(p, 0.5).tolist() == [[False, False, True], [False, False, False]]
    # Track 0 is genres {0, 2}, track 1 genre {1}: the all head finds the subgenre (0.9) but its
    # top genres are weak (0.2, 0.1; any t that admits them also admits track 1's 0.1s and more),
    # while the top head is right on both: with the rule every track is exact (Jaccard 1).
    y = np.array([[1, 0, 1], [0, 1, 0]])
    out = choose_thresholds(y, p, top_class=np.array([0, 1]), columns=columns)
    assert out["include_top"] is True and out["jaccard"] == pytest.approx(1.0)
    assert out["jaccard_thresholds_only"] < 1.0
    # A top head that is wrong on both tracks is not worth its rule.
    worse = choose_thresholds(y, p, top_class=np.array([1, 0]), columns=columns)
    assert worse["include_top"] is False and worse["jaccard"] == worse["jaccard_thresholds_only"]


def test_multilabel_metrics_with_include_top_by_hand():
    from genrekit.evaluate.metrics import multilabel_metrics

    y = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0]])  # the last row has no genre: left out
    p = np.array([[0.2, 0.1, 0.9], [0.1, 0.1, 0.1], [0.9, 0.9, 0.9]])
    columns = np.array([0, 1])
    plain = multilabel_metrics(y, p, threshold=0.5)
    ruled = multilabel_metrics(y, p, threshold=0.5, top_class=np.array([0, 1, 0]), columns=columns)
    # Plain: track 0 predicts {2} of {0, 2} (1/2), track 1 nothing of {1} (0): Jaccard 0.25.
    assert plain["jaccard_samples"] == pytest.approx(0.25) and plain["no_prediction"] == 1
    # With the top head's genres both tracks are exact.
    assert ruled["jaccard_samples"] == pytest.approx(1.0) and ruled["no_prediction"] == 0
    assert ruled["n"] == 2


def test_thresholds_of_a_config():
    assert thresholds_of({"threshold": 0.4}, 3).tolist() == [0.4, 0.4, 0.4]
    assert thresholds_of({"thresholds": {"all": [0.2, 0.7]}}, 2, override=0.3).tolist() == [0.3, 0.3]
    assert thresholds_of({"thresholds": {"all": [0.2, 0.7]}}, 2).tolist() == [0.2, 0.7]
    from genrekit.errors import ModelError

    with pytest.raises(ModelError, match="thresholds"):
        thresholds_of({"thresholds": {"all": [0.2]}}, 2)


# --- 7. stale reuse ----------------------------------------------------------------------------------------


def test_settings_differences_name_the_keys_that_shape_a_model():
    saved = Settings.build().to_dict()
    changed = Settings.build(overrides={"learning_rate": 3e-3, "workers": 1, "threshold": 0.3})
    assert settings_differences(saved, changed) == ["learning_rate: 0.0001 -> 0.003"]
    assert settings_differences(json.loads(json.dumps(saved)), Settings.build()) == []


def test_fine_tuning_settings_shape_only_fine_tuning_runs(tmp_path, monkeypatch):
    heads = {"backbone": "musicnn"}
    saved = Settings.build(overrides=heads).to_dict()
    # A heads run is the same run whatever FINE_TUNE_LAYERS / FINE_TUNE_LEARNING_RATE say.
    other = Settings.build(overrides={**heads, "fine_tune_layers": "all", "fine_tune_learning_rate": 1e-4})
    assert settings_differences(saved, other) == []
    # A fine-tuning run: they count, and its source is compared as a resolved path.
    monkeypatch.chdir(tmp_path)
    tuned = Settings.build(overrides={**heads, "fine_tune_from": "runs/heads"}).to_dict()
    same = Settings.build(overrides={**heads, "fine_tune_from": str(tmp_path / "runs" / "heads")})
    assert settings_differences(tuned, same) == []
    assert settings_differences(tuned, same.replace(fine_tune_layers="all")) == [
        "fine_tune_layers: 'midend' -> 'all'"
    ]
    assert settings_differences(saved, same) == [f"fine_tune_from: '' -> '{tmp_path / 'runs' / 'heads'}'"]


def test_repeats_of_an_oversampled_track_never_share_a_block():
    from genrekit.train.pipeline import layered_blocks

    rows = np.array([5, 1, 5, 3, 5, 1, 9, 2])
    blocks = layered_blocks(rows, 2)
    # first draws sorted in blocks of 2, then the second draws, then the third
    assert [b.tolist() for b in blocks] == [[1, 2], [3, 5], [9], [1, 5], [5]]
    assert all(len(set(b.tolist())) == len(b) for b in blocks)
    assert sorted(np.concatenate(blocks).tolist()) == sorted(rows.tolist())


# --- 8. the steps of train() ------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["plateau", "cosine"])
def test_the_callbacks_step_gives_the_deciders_of_the_monitor_in_their_order(tmp_path, schedule):
    from genrekit.train.callbacks import (
        CallbackState,
        EpochLog,
        EpochSetter,
        RunBackup,
        ValidationMetrics,
        training_callbacks,
    )

    settings = Settings.build(overrides={"monitor": "val_top_f1_macro", "lr_schedule": schedule})
    stream, _ = _stream(n_tracks=64)
    labels = _labels(np.zeros(4, int), np.full(4, -1), np.zeros((4, 2)))
    steps = training_callbacks(settings, stream, stream.source, labels, tmp_path)
    deciders = ["BestCheckpoint", "EarlyStopping"] + (["ReduceLROnPlateau"] if schedule == "plateau" else [])
    assert [type(cb).__name__ for cb in steps.deciders] == deciders
    assert steps.monitor == "val_top_f1_macro" and {cb.monitor for cb in steps.deciders} == {steps.monitor}
    assert steps.best_path == tmp_path / "checkpoints" / "best.keras"
    # The validation figures first, the deciders' state after them and before the backup, the CSV row last.
    kinds = [type(cb) for cb in steps.callbacks]
    assert (
        kinds[:2] == [EpochSetter, ValidationMetrics]
        and steps.callbacks[2 : 2 + len(deciders)] == steps.deciders
    )
    assert kinds[2 + len(deciders) :] == [CallbackState, RunBackup, EpochLog, type(steps.callbacks[-1])]
    assert type(steps.callbacks[-1]).__name__ == "TensorBoard"
    state = steps.callbacks[2 + len(deciders)]
    assert state.path == tmp_path / "backup" / "callback_state.json" and state.deciders == steps.deciders
