"""Evaluation metrics against values worked out by hand (never sklearn checked against itself)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evalmetrics_helpers import synthetic_case

from genrekit.errors import ModelError
from genrekit.evaluate.metrics import (
    LevelVocab,
    calibration,
    classification_metrics,
    confidence_distribution,
    error_analysis,
    evaluate,
    hierarchy_consistency,
    multilabel_metrics,
    performance_targets,
    temporal_stability,
)

# Four classes; "Pop" has no track and is never predicted.
VOCAB = LevelVocab(["Rock", "Jazz", "Folk", "Pop"], [12, 4, 17, 10])
Y_TRUE = [0, 0, 0, 1, 1, 2]
Y_PRED = [0, 0, 1, 1, 2, 2]
PROBS = np.array(
    [
        [0.7, 0.2, 0.1, 0.0],
        [0.6, 0.1, 0.3, 0.0],
        [0.3, 0.5, 0.2, 0.0],  # wrong, but the target is second: a top-2 hit
        [0.1, 0.8, 0.1, 0.0],
        [0.3, 0.1, 0.6, 0.0],  # wrong, target Jazz only third: a top-2 miss
        [0.1, 0.1, 0.8, 0.0],
    ]
)


def test_single_label_metrics_by_hand():
    m = classification_metrics(Y_TRUE, Y_PRED, VOCAB, probs=PROBS, k=2)
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # Recall per class: Rock 2/3, Jazz 1/2, Folk 1/1; Pop has no track and does not count.
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    # Precision: Rock 2/2, Jazz 1/2, Folk 1/2 -> F1 Rock 4/5, Jazz 1/2, Folk 2/3.
    assert m["f1_macro"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)
    assert m["f1_weighted"] == pytest.approx((3 * 4 / 5 + 2 * 1 / 2 + 1 * 2 / 3) / 6)
    assert m["precision_macro"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert m["top_k_accuracy"] == pytest.approx(5 / 6)
    rows = {r["name"]: r for r in m["per_class"]}
    assert list(rows) == ["Rock", "Jazz", "Folk", "Pop"]
    assert rows["Rock"] == {
        "index": 0,
        "name": "Rock",
        "genre_id": 12,
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(4 / 5),
        "support": 3,
        "predicted": 2,
    }
    assert (rows["Folk"]["precision"], rows["Folk"]["recall"], rows["Folk"]["f1"]) == (
        0.5,
        1.0,
        pytest.approx(2 / 3),
    )
    assert rows["Pop"] == {**rows["Pop"], "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_no_tracks_gives_none_not_nan():
    m = classification_metrics([], [], VOCAB, probs=np.zeros((0, 4)))
    assert m["n"] == 0 and m["accuracy"] is None and m["per_class"] == []


def test_error_analysis_by_hand():
    e = error_analysis([0, 0, 0, 1, 1, 2, 2], [1, 1, 0, 1, 2, 0, 2], VOCAB, n_pairs=10)
    assert e["confusion_matrix"] == [[1, 2, 0, 0], [0, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    pairs = [(p["true"], p["predicted"], p["count"], p["share_of_true"]) for p in e["confused_pairs"]]
    assert pairs == [
        ("Rock", "Jazz", 2, pytest.approx(2 / 3)),
        ("Jazz", "Folk", 1, 0.5),  # ties in count: by target index
        ("Folk", "Rock", 1, 0.5),
    ]
    rates = [(r["name"], r["errors"], r["support"], r["error_rate"]) for r in e["error_rates"]]
    assert rates == [("Rock", 2, 3, pytest.approx(2 / 3)), ("Jazz", 1, 2, 0.5), ("Folk", 1, 2, 0.5)]


def test_multilabel_metrics_by_hand():
    y_true = [[1, 0, 1, 0], [0, 1, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]]
    probs = [[0.9, 0.6, 0.4, 0.1], [0.2, 0.7, 0.1, 0.3], [0.8, 0.3, 0.2, 0.6], [0.9, 0.9, 0.9, 0.9]]
    # Predicted above 0.5: [1,1,0,0], [0,1,0,0], [1,0,0,1]; the last row has no label: left out.
    m = multilabel_metrics(y_true, probs, threshold=0.5, vocab=["a", "b", "c", "d"])
    assert (m["n"], m["excluded_no_labels"]) == (3, 1)
    assert m["hamming_loss"] == pytest.approx(3 / 12)
    assert m["jaccard_samples"] == pytest.approx((1 / 3 + 1 + 2 / 3) / 3)
    assert m["f1_micro"] == pytest.approx(8 / 11)  # TP 4, FP 1, FN 2
    assert m["f1_macro"] == pytest.approx((1 + 1 / 2 + 0 + 1) / 4)
    assert m["coverage_error"] == pytest.approx((3 + 1 + 3) / 3)
    assert m["ranking_loss"] == pytest.approx((1 / 4 + 0 + 0) / 3)
    assert m["lrap"] == pytest.approx(((1 + 2 / 3) / 2 + 1 + 1) / 3)
    assert (m["mean_true_labels"], m["mean_predicted_labels"], m["no_prediction"]) == (2.0, 5 / 3, 0)
    assert [r["name"] for r in m["per_label"]] == ["a", "b", "c", "d"]
    assert m["per_label"][2] == {**m["per_label"][2], "support": 1, "predicted": 0, "f1": 0.0}


def test_calibration_by_hand():
    # Two bins. [0, 0.5]: conf 0.2 (right), 0.4 (wrong) -> acc 0.5, conf 0.3, gap 0.2, weight 2/5.
    # (0.5, 1]: 0.6 (wrong), 0.8, 0.9 (right) -> acc 2/3, conf 2.3/3, gap 0.1, weight 3/5.
    c = calibration([0.2, 0.4, 0.6, 0.8, 0.9], [True, False, False, True, True], n_bins=2)
    assert c["ece"] == pytest.approx(2 / 5 * 0.2 + 3 / 5 * 0.1)
    assert c["mce"] == pytest.approx(0.2)
    assert [b["count"] for b in c["bins"]] == [2, 3]
    assert c["bins"][1]["accuracy"] == pytest.approx(2 / 3)
    assert c["bins"][1]["confidence"] == pytest.approx(2.3 / 3)


def test_calibration_bins_are_sklearn_calibration_curve_bins(rng):
    from sklearn.calibration import calibration_curve

    confidence = rng.uniform(0.2, 1.0, 500)
    confidence[:5] = [0.3, 0.5, 0.7, 1.0, 0.2]  # values on bin edges go where sklearn puts them
    correct = rng.random(500) < confidence
    c = calibration(confidence, correct, n_bins=10)
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    full = [b for b in c["bins"] if b["count"]]
    np.testing.assert_allclose([b["accuracy"] for b in full], prob_true)
    np.testing.assert_allclose([b["confidence"] for b in full], prob_pred)
    assert c["bins"][0]["count"] == 0 and c["bins"][0]["accuracy"] is None


def test_perfectly_calibrated_confidence_has_zero_ece():
    # 0.75 confidence, right 3 times in 4.
    assert calibration([0.75] * 4, [True, True, True, False])["ece"] == pytest.approx(0.0)


def test_confidence_distribution_splits_correct_and_wrong():
    d = confidence_distribution([0.9, 0.8, 0.3, 0.45], [True, True, False, False], n_bins=4)
    assert d["correct"]["n"] == 2 and d["correct"]["mean"] == pytest.approx(0.85)
    assert d["wrong"]["median"] == pytest.approx(0.375)
    assert d["histogram"]["correct"] == [0, 0, 0, 2]
    assert d["histogram"]["wrong"] == [0, 2, 0, 0]


def test_temporal_stability_by_hand():
    # argmax per segment: track 0 -> 0,0,1,0; track 1 -> 2,2; track 2 -> 1,0,2; track 3 none.
    probs = np.eye(3)[[0, 0, 1, 0, 2, 2, 1, 0, 2]]
    segment_track = [0, 0, 0, 0, 1, 1, 2, 2, 2]
    s = temporal_stability(
        probs, segment_track, [0, 2, 1, -1], target=[0, 2, 0, 1], vocab=["Rock", "Jazz", "Folk"], n_bins=4
    )
    assert s["per_track"] == [0.75, 1.0, pytest.approx(1 / 3), None]
    assert s["n_tracks"] == 3
    assert s["mean"] == pytest.approx((0.75 + 1 + 1 / 3) / 3)
    assert s["median"] == 0.75
    assert s["fully_stable"] == pytest.approx(1 / 3)
    # Bins of width 1/4 centred on 0, 1/4, 1/2, 3/4, 1.
    assert s["histogram"]["counts"] == [0, 1, 0, 1, 1]
    assert [(g["name"], g["tracks"]) for g in s["per_genre"]] == [("Rock", 2), ("Folk", 1)]
    assert s["per_genre"][0]["mean"] == pytest.approx((0.75 + 1 / 3) / 2)


def test_stability_histogram_keeps_tenths_in_their_bin():
    # 3/10 and 6/10 lie a rounding error below np.linspace(0, 1, 11)'s edges.
    probs = np.eye(2)[[0] * 3 + [1] * 7 + [0] * 6 + [1] * 4]
    s = temporal_stability(probs, np.repeat([0, 1], 10), [0, 0])
    assert s["histogram"]["counts"][3] == 1 and s["histogram"]["counts"][6] == 1


def test_hierarchy_consistency_by_hand():
    top = LevelVocab(["Rock", "Jazz", "Folk"], [12, 4, 17])
    medium = LevelVocab(["Punk", "Indie-Rock", "Bebop"], [25, 66, 1000], root_ids=[12, 12, 4])
    h = hierarchy_consistency([0, 0, 1, 2, 2, 1], [0, 1, 2, 0, 0, 1], top, medium)
    # (Rock, Punk) yes, (Rock, Indie-Rock) yes, (Jazz, Bebop) yes, (Folk, Punk) no twice,
    # (Jazz, Indie-Rock) no.
    assert (h["n"], h["consistent"], h["rate"]) == (6, 3, 0.5)
    assert h["inconsistent_pairs"] == [
        {"top": "Folk", "medium": "Punk", "count": 2},
        {"top": "Jazz", "medium": "Indie-Rock", "count": 1},
    ]


def test_performance_targets_pass_only_strictly_above():
    results = {
        "top": {"track": {"balanced_accuracy": 0.71, "f1_macro": 0.65, "f1_weighted": 0.80}},
        "all": {"track": {"jaccard_samples": None}},
    }
    rows = {r["metric"]: r for r in performance_targets(results)}
    assert rows["balanced_accuracy"]["passed"] is True
    assert rows["f1_macro"]["passed"] is False  # 0.65 is not > 0.65
    assert rows["f1_weighted"] == {**rows["f1_weighted"], "target": 0.75, "value": 0.80, "passed": True}
    assert rows["jaccard_samples"]["passed"] is None


def _mini_case() -> dict:
    """Five tracks, hand-checked below. Track 2 has no top target, track 4 no segment."""
    top_probs = [
        [0.8, 0.1, 0.1],  # track 0
        [0.6, 0.3, 0.1],  # track 0
        [0.2, 0.7, 0.1],  # track 1
        [0.1, 0.2, 0.7],  # track 2
        [0.5, 0.4, 0.1],  # track 3
    ]
    medium_probs = [
        [0.7, 0.2, 0.1],
        [0.6, 0.3, 0.1],
        [0.1, 0.8, 0.1],
        [0.1, 0.1, 0.8],
        [0.2, 0.3, 0.5],
    ]
    all_probs = [[0.9, 0.1, 0.2], [0.7, 0.3, 0.2], [0.1, 0.8, 0.6], [0.5, 0.5, 0.5], [0.9, 0.6, 0.1]]
    return {
        "probs": {"top": np.array(top_probs), "medium": np.array(medium_probs), "all": np.array(all_probs)},
        "segment_track": np.array([0, 0, 1, 2, 3]),
        "targets": {
            "top": np.array([0, 1, -1, 1, 2]),
            "medium": np.array([0, 1, -1, -1, 2]),
            "all": np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0], [1, 1, 0], [0, 0, 1]]),
        },
        "vocabs": {
            "top": LevelVocab(["Rock", "Jazz", "Folk"], [10, 20, 30]),
            "medium": {
                "names": ["Punk", "Indie", "Bebop"],
                "genre_ids": [101, 102, 301],
                "root_ids": [10, 10, 30],
            },
            "all": ["Rock", "Jazz", "Folk"],
        },
    }


def _changed(case: dict, part: str, head: str, value) -> dict:
    return {**case, part: {**case[part], head: value}}


def test_evaluate_excludes_and_counts_masked_tracks():
    r = evaluate(**_mini_case(), n_defective_files=7, track_ids=[2, 3, 5, 10, 20])
    assert r["counts"] == {
        "tracks": 5,
        "tracks_evaluated": 4,
        "tracks_without_segments": 1,
        "segments": 5,
        "defective_files": 7,
        "excluded": {"top_no_target": 1, "medium_no_target": 2, "all_no_labels": 1},
    }
    top = r["top"]
    # Tracks 0, 1, 3 are scored: predictions Rock, Jazz, Rock against Rock, Jazz, Jazz.
    assert top["track"]["n"] == 3
    assert top["track"]["accuracy"] == pytest.approx(2 / 3)
    # Segments of tracks 0, 1, 3: argmax Rock, Rock, Jazz, Rock against Rock, Rock, Jazz, Jazz.
    assert top["segment"]["n"] == 4 and top["segment"]["accuracy"] == pytest.approx(3 / 4)
    assert top["excluded"] == {"no_target": 1, "no_segments": 1}
    assert top["errors"]["confident_errors"] == [
        {"track": 10, "true": "Jazz", "predicted": "Rock", "confidence": pytest.approx(0.5)}
    ]
    assert r["medium"]["track"]["n"] == 2 and r["medium"]["track"]["accuracy"] == 1.0
    # Track-level predictions (top, medium): (Rock, Punk) yes, (Jazz, Indie) no, (Folk, Bebop)
    # yes, (Rock, Bebop) no.
    assert (r["hierarchy"]["track"]["consistent"], r["hierarchy"]["track"]["n"]) == (2, 4)
    assert (r["hierarchy"]["segment"]["consistent"], r["hierarchy"]["segment"]["n"]) == (3, 5)
    assert r["all"]["track"]["n"] == 3  # track 2 has no label, track 4 no segment
    assert r["all"]["segment"]["n"] == 4  # the segment of track 2 is left out
    assert {t["metric"] for t in r["targets"]} == {
        "balanced_accuracy",
        "f1_macro",
        "f1_weighted",
        "jaccard_samples",
    }


def _walk(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    else:
        yield value


def test_evaluate_returns_plain_json_for_sixteen_classes(rng):
    case = synthetic_case(rng, n_tracks=200)
    r = evaluate(**case, threshold=0.5)
    json.dumps(r, allow_nan=False)
    assert {type(v) for v in _walk(r)} <= {int, float, str, bool, type(None)}
    assert set(r) == {"counts", "settings", "top", "medium", "all", "hierarchy", "targets"}
    for level in ("top", "medium"):
        assert set(r[level]) >= {
            "track",
            "segment",
            "voting",
            "calibration",
            "confidence",
            "errors",
            "stability",
        }
    assert r["top"]["n_classes"] == 16 and len(r["top"]["errors"]["confusion_matrix"]) == 16
    assert r["top"]["track"]["n"] + r["counts"]["excluded"]["top_no_target"] == 200
    assert len(r["targets"]) == 4


def test_head_width_that_does_not_match_the_vocabulary_is_a_model_error():
    case = _mini_case()
    case["vocabs"]["top"] = LevelVocab(["Rock", "Jazz"], [10, 20])
    with pytest.raises(ModelError, match="'top' head gives 3 outputs but its vocabulary has 2"):
        evaluate(**case)


@pytest.mark.parametrize(
    ("part", "head", "value", "words"),
    [
        ("targets", "top", np.array([0, 1, -1, 1, 3]), "top_target holds indices outside -1..2"),
        ("segment_track", None, np.array([0, 0, 1, 2, 9]), "segment_track refers to track 9"),
        ("probs", "medium", np.ones((4, 3)) / 3, "segment arrays differ in length"),
        ("targets", "all", np.zeros((5, 2)), "track targets disagree"),
        ("probs", "other", np.ones((5, 3)) / 3, "probs must be keyed by heads"),
        ("vocabs", "medium", None, "no vocabulary given for the medium head"),
    ],
)
def test_inconsistent_arrays_are_refused(part, head, value, words):
    case = _mini_case()
    if head is None:
        case[part] = value
    elif value is None:
        case[part] = {h: v for h, v in case[part].items() if h != head}
    else:
        case = _changed(case, part, head, value)
    with pytest.raises(ValueError, match=words):
        evaluate(**case)


def test_a_model_without_a_medium_head_has_no_medium_section():
    case = _mini_case()
    r = evaluate(
        {h: p for h, p in case["probs"].items() if h != "medium"},
        case["targets"],
        case["vocabs"],
        case["segment_track"],
    )
    assert "medium" not in r
    assert r["counts"]["excluded"] == {"top_no_target": 1, "all_no_labels": 1}
    assert r["hierarchy"] == {"skipped": "the model has no medium head (no sub-genres in training)"}
    full = evaluate(**case)
    assert r["top"] == full["top"] and r["all"] == full["all"]
