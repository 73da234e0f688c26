"""Inference: files and folders through a tiny trained model, the JSON schema, kill and resume, refusals."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import balanced_inference
from genrekit.errors import AudioDecodeError, ModelError, OutputInUseError
from genrekit.features.audio_files import decode_file, list_audio_files, plan_segments
from genrekit.features.mel import FeatureParams, load_segments
from genrekit.infer.output import PartialLog
from genrekit.infer.predict import MusicGenreInference
from tests.inference_helpers import FEATURES, training_config, vocabularies, write_audio

REPO = Path(__file__).resolve().parents[1]
PARAMS = FeatureParams(**FEATURES)


@pytest.fixture(scope="module")
def tiny_run(random_tiny_run) -> tuple[Path, Path]:
    """(model, training config) of a tiny model trained a few steps on random data (shared)."""
    return random_tiny_run


@pytest.fixture(scope="module")
def inference(tiny_run) -> MusicGenreInference:
    model, config = tiny_run
    return MusicGenreInference(model_path=model, config_path=config)


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """Good files in nested folders and several formats, plus the bad cases a music folder holds."""
    root = tmp_path / "music"
    write_audio(root / "a.mp3", 5.0, 44100, 2, seed=1)
    write_audio(root / "sub" / "b.wav", 4.0, 48000, 1, seed=2)
    write_audio(root / "sub" / "deeper" / "c.flac", 6.0, 22050, 2, seed=3)
    write_audio(root / "d.ogg", 5.0, 16000, 1, seed=4)
    good = (root / "a.mp3").read_bytes()
    (root / "corrupt.mp3").write_bytes(good[:400] + bytes(range(256)) * 8)  # header, then garbage
    (root / "sub" / "empty.mp3").write_bytes(b"")
    (root / "notes.txt").write_text("not music\n")
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    (root / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    return root


GOOD = {"a.mp3", "sub/b.wav", "sub/deeper/c.flac", "d.ogg"}


# --- segments -----------------------------------------------------------------------------------


def test_clip_gives_training_segments(tmp_path):
    path = write_audio(tmp_path / "clip.wav", 5.0, 44100, 2)
    decoded = decode_file("clip.wav", path, PARAMS)
    assert decoded.error is None
    assert decoded.info["segment_mode"] == "clip" and decoded.info["warnings"] == []
    # Exactly training's features, rounded to float16 as the training cache stores them.
    np.testing.assert_array_equal(decoded.segments, load_segments(path, PARAMS).astype(np.float16))


def test_file_a_little_over_the_clip_length_is_cut_as_in_training(tmp_path):
    params = FeatureParams(**{**FEATURES, "duration": 4.0})
    path = write_audio(tmp_path / "x.wav", 4.6, 11025)
    decoded = decode_file("x.wav", path, params)
    assert decoded.info["segment_mode"] == "clip"
    np.testing.assert_array_equal(decoded.segments, load_segments(path, params).astype(np.float16))


def test_short_file_gives_fewer_segments_and_a_warning(tmp_path):
    path = write_audio(tmp_path / "short.wav", 1.5, 11025)
    decoded = decode_file("short.wav", path, PARAMS)
    # 1.5 s = 16538 samples -> 65 frames of hop 256 -> 4 whole segments of 16 frames.
    assert decoded.segments.shape == (4, 32, 16)
    assert decoded.info["segment_mode"] == "short"
    assert "4 segment(s) instead of 10" in decoded.info["warnings"][0]


def test_too_short_file_is_a_clear_error(tmp_path):
    path = write_audio(tmp_path / "tiny.wav", 0.2, 11025)
    decoded = decode_file("tiny.wav", path, PARAMS)
    assert decoded.segments is None
    assert decoded.error.startswith("too short: 0.20 s")


def test_long_track_is_covered_over_its_whole_length(tmp_path):
    path = write_audio(tmp_path / "long.flac", 45.0, 11025)
    spread = decode_file("long.flac", path, PARAMS)
    assert spread.info["segment_mode"] == "track"
    assert len(spread.segments) == PARAMS.num_segments
    starts = spread.info["segment_starts"]
    assert starts[0] == 0.0 and starts[-1] > 44.0  # the last segment ends at the end of the track
    hopped = decode_file("long.flac", path, PARAMS, hop_seconds=2.0)
    # 45 s -> 1938 frames; a segment every round(2 s / 256 samples) = 86 frames: ceil(1923 / 86).
    assert len(hopped.segments) == 23
    assert np.allclose(np.diff(hopped.info["segment_starts"]), 86 * 256 / 11025, atol=1e-3)


def test_plan_segments_matches_the_hand_worked_placement():
    # The real clip: 1,321,967 samples at 44.1 kHz = ceil(/4) = 330,492 at 11,025 Hz (under the
    # 30 s cap of 330,750), 1 + 330492 // 256 = 1291 frames; 10 starts spread over 0..1275.
    plan = plan_segments(1_321_967, 44100, PARAMS)
    assert plan.mode == "clip"
    assert plan.starts.tolist() == np.round(np.linspace(0, 1275, 10)).astype(int).tolist()
    # 40 s: over the clip length, a track: 1 + 441000 // 256 = 1723 frames, spread over 0..1707.
    plan = plan_segments(40 * 11025, 11025, PARAMS)
    assert plan.mode == "track" and plan.starts[-1] == 1707 and plan.seconds == 40.0
    with pytest.raises(AudioDecodeError, match="too short"):
        plan_segments(1000, 11025, PARAMS)


def test_folder_listing_skips_hidden_and_sorts(mixed_folder):
    audio, other = list_audio_files(mixed_folder, recursive=True)
    rel = [p.relative_to(mixed_folder).as_posix() for p in audio]
    assert rel == sorted(GOOD | {"corrupt.mp3", "sub/empty.mp3"})
    assert [p.name for p in other] == ["cover.jpg", "notes.txt"]
    flat, _ = list_audio_files(mixed_folder)
    assert {p.name for p in flat} == {"a.mp3", "corrupt.mp3", "d.ogg"}


# --- predictions ---------------------------------------------------------------------------------


def test_real_clip_gives_a_complete_result(inference, real_clip):
    result = inference.predict_file(real_clip)
    assert result["file"] == str(real_clip.resolve())
    assert result["segment_mode"] == "clip" and result["num_segments"] == 10
    assert result["duration_seconds"] == pytest.approx(1_321_967 / 44100, abs=1e-3)
    assert (result["sample_rate"], result["channels"]) == (44100, 2)
    assert result["warnings"] == []
    vocabs = inference.vocabs
    agg = result["aggregated_results"]
    for key, level in (("top_genre", "top"), ("medium_genre", "medium")):
        vote, avg = agg[key]["voting"], agg[key]["average_confidence"]
        assert vote["name"] in vocabs[level].names and avg["name"] in vocabs[level].names
        assert 1 <= vote["votes"] <= 10 and vote["share"] == pytest.approx(vote["votes"] / 10)
        assert len(avg["top_k"]) == 3 and avg["top_k"][0]["genre"] == avg["name"]
        assert avg["path"] == vocabs[level].paths[vocabs[level].names.index(avg["name"])]
    # The aggregated confidence is the mean of the model's own outputs on training's features.
    segments = load_segments(real_clip, inference.params).astype(np.float16).astype(np.float32)
    probs = inference.model.predict_on_batch(segments[..., None])
    mean = np.asarray(probs["top"]).mean(axis=0)
    avg = agg["top_genre"]["average_confidence"]
    assert avg["confidence"] == pytest.approx(mean.max(), abs=1e-5)
    assert avg["name"] == vocabs["top"].names[int(mean.argmax())]
    labels = agg["all_genres"]["labels"]
    expected = np.asarray(probs["all"]).mean(axis=0) > inference.threshold
    assert [label["genre"] for label in labels] == sorted(
        (vocabs["all"].names[i] for i in np.flatnonzero(expected)),
        key=lambda name: -np.asarray(probs["all"]).mean(axis=0)[vocabs["all"].names.index(name)],
    )
    hierarchy = result["hierarchy"]
    assert hierarchy["medium_path"].endswith(hierarchy["medium_genre"])
    root_ok = hierarchy["medium_path"].split(" > ")[0] == hierarchy["top_genre"]
    assert hierarchy["consistent"] is root_ok


def test_folder_gives_results_errors_and_skips(inference, mixed_folder):
    report = inference.batch_predict(mixed_folder, recursive=True, workers=2)
    assert set(report["results"]) == GOOD
    assert set(report["errors"]) == {"corrupt.mp3", "sub/empty.mp3"}
    assert report["errors"]["sub/empty.mp3"] == "empty file (0 bytes)"
    assert "corrupt" in report["errors"]["corrupt.mp3"] or "truncated" in report["errors"]["corrupt.mp3"]
    assert report["skipped"] == ["cover.jpg", "notes.txt"]
    summary = report["summary"]
    assert (summary["processed"], summary["failed"], summary["skipped_non_audio"]) == (4, 2, 2)
    assert summary["files_found"] == 8 and summary["resumed"] == 0
    assert summary["segments"] == 40 and summary["files_per_second"] > 0
    assert sum(summary["top_genre_counts"].values()) == 4
    flat = inference.batch_predict(mixed_folder, workers=2)
    assert set(flat["results"]) == {"a.mp3", "d.ogg"} and set(flat["errors"]) == {"corrupt.mp3"}


def test_folder_predictions_equal_predict_file(inference, mixed_folder):
    report = inference.batch_predict(mixed_folder, recursive=True, workers=2)
    for key, batched in report["results"].items():
        alone = inference.predict_file(mixed_folder / key)
        for head in ("top_genre", "medium_genre"):
            a, b = alone["aggregated_results"][head], batched["aggregated_results"][head]
            assert a["voting"] == b["voting"]
            assert a["average_confidence"]["name"] == b["average_confidence"]["name"]
            for x, y in zip(a["average_confidence"]["top_k"], b["average_confidence"]["top_k"], strict=True):
                assert x["genre"] == y["genre"] and x["probability"] == pytest.approx(
                    y["probability"], abs=2e-6
                )
        for x, y in zip(alone["segment_predictions"], batched["segment_predictions"], strict=True):
            assert x["top_genre"]["name"] == y["top_genre"]["name"]
            assert x["start_seconds"] == y["start_seconds"]


def test_readme_api_example_runs_as_written(tiny_run, tmp_path, monkeypatch):
    model, config = tiny_run
    for i in range(3):
        write_audio(tmp_path / "music_folder" / f"song{i}.mp3", 4.0, 22050, 2, seed=10 + i)
    monkeypatch.chdir(tmp_path)
    seen = {}
    # --- as in the README ---
    inference = MusicGenreInference(model_path=str(model), config_path=str(config))
    results = inference.batch_predict("music_folder/")
    for filename, result in results["results"].items():
        top_genre = result["aggregated_results"]["top_genre"]["voting"]["name"]
        confidence = result["aggregated_results"]["top_genre"]["average_confidence"]["confidence"]
        # --- end of the README's example ---
        seen[filename] = (top_genre, confidence)
    assert set(seen) == {"song0.mp3", "song1.mp3", "song2.mp3"}
    for top_genre, confidence in seen.values():
        assert top_genre in inference.vocabs["top"].names and 0 < confidence <= 1


def test_include_top_lists_the_top_heads_genre_with_the_saved_thresholds(tiny_run, tmp_path):
    # Thresholds nothing reaches: with include_top, the file's and every segment's genres are
    # exactly the top head's genre (the tree's top genres are in the all vocabulary too); a
    # threshold the user gives drops the rule with the saved thresholds.
    model, config = tiny_run
    cfg = json.loads(Path(config).read_text(encoding="utf-8"))
    n_all = len(cfg["vocabularies"]["all"]["genre_ids"])
    cfg["thresholds"] = {"method": "validation, prior-corrected", "t": 0.5, "all": [0.999999] * n_all,
                         "include_top": True}  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / Path(model).name).write_bytes(Path(model).read_bytes())
    (run / "balanced_training_config.json").write_text(json.dumps(cfg), encoding="utf-8")
    clip = write_audio(tmp_path / "a.wav", 5.0, 22050, 1, seed=7)
    inference = MusicGenreInference(model_path=run / Path(model).name)
    assert inference.include_top and inference.run_settings()["include_top"] is True
    result = inference.predict_file(clip)
    top = result["aggregated_results"]["top_genre"]["average_confidence"]["name"]
    assert [x["genre"] for x in result["aggregated_results"]["all_genres"]["labels"]] == [top]
    for segment in result["segment_predictions"]:
        assert segment["all_genres"] == [segment["top_genre"]["name"]]
    plain = MusicGenreInference(model_path=run / Path(model).name, threshold=0.999999)
    assert not plain.include_top
    assert plain.predict_file(clip)["aggregated_results"]["all_genres"]["labels"] == []


# --- the report's schema -------------------------------------------------------------------------

SEGMENT = {"index": int, "start_seconds": float, "top_genre": dict, "medium_genre": dict, "all_genres": list}
VOTING = {
    "index": int,
    "name": str,
    "genre_id": int,
    "path": str,
    "votes": int,
    "share": float,
    "n_segments": int,
}
AVERAGE = {"index": int, "name": str, "genre_id": int, "path": str, "confidence": float, "top_k": list}
RESULT = {
    "file": str,
    "duration_seconds": float,
    "sample_rate": int,
    "channels": int,
    "segment_mode": str,
    "num_segments": int,
    "warnings": list,
    "content": dict,
    "segment_predictions": list,
    "aggregated_results": dict,
    "hierarchy": dict,
}
HIERARCHY = {
    "top_genre": str,
    "medium_genre": str,
    "medium_path": str,
    "medium_root": str,
    "consistent": bool,
}
SUMMARY = {
    "files_found": int,
    "audio_files": int,
    "processed": int,
    "failed": int,
    "skipped_non_audio": int,
    "resumed": int,
    "recomputed": int,
    "dropped": int,
    "with_warnings": int,
    "segments": int,
    "seconds": float,
    "files_per_second": float,
    "top_genre_counts": dict,
}
CONTENT = {  # flag: str or None; the last two measures are None for silence
    "flag": (str, type(None)),
    "span_seconds": float,
    "peak_dbfs": float,
    "level_dbfs": float,
    "quiet_share": float,
    "longest_sound_seconds": float,
    "change_vs_noise": (float, type(None)),
    "jitter_db": (float, type(None)),
}
REPORT = {
    "format": str,
    "version": int,
    "run": dict,
    "results": dict,
    "errors": dict,
    "skipped": list,
    "files": dict,
}
FILE_ENTRY = {"size": int, "mtime_ns": int}


def check(obj: dict, spec: dict, where: str) -> None:
    assert set(obj) == set(spec), f"{where}: keys {sorted(obj)} != {sorted(spec)}"
    for key, kind in spec.items():
        value = obj[key]
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        if kind is float or (isinstance(kind, tuple) and float in kind and value is not None):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        assert ok, f"{where}.{key}: {value!r} is not {kind}"


def test_json_report_schema_is_complete_and_documented(inference, mixed_folder, tmp_path):
    write_audio(mixed_folder / "short.wav", 1.5, 11025, seed=5)
    output = tmp_path / "out" / "results.json"
    inference.batch_predict(mixed_folder, output=output, recursive=True, workers=2)
    report = json.loads(output.read_text())
    check(report, {**REPORT, "summary": dict}, "report")
    check(report["summary"], SUMMARY, "summary")
    assert report["format"] == "genrekit-inference" and report["version"] == 1
    assert set(report["run"]) >= {"folder", "model", "config", "settings", "fingerprint", "created"}
    assert all(isinstance(v, str) for v in report["errors"].values())
    assert set(report["files"]) == set(report["results"]) | set(report["errors"])
    for key, entry in report["files"].items():
        check(entry, FILE_ENTRY, f"files {key}")
        assert entry["size"] == (mixed_folder / key).stat().st_size
    assert report["summary"]["with_warnings"] == 1
    for key, result in report["results"].items():
        check(result, RESULT, key)
        assert len(result["segment_predictions"]) == result["num_segments"] > 0
        for seg in result["segment_predictions"]:
            check(seg, SEGMENT, f"{key} segment")
            check(seg["top_genre"], {"name": str, "probability": float}, f"{key} segment top")
        agg = result["aggregated_results"]
        assert set(agg) == {"top_genre", "medium_genre", "all_genres"}
        for head in ("top_genre", "medium_genre"):
            assert set(agg[head]) == {"voting", "average_confidence"}
            check(agg[head]["voting"], VOTING, f"{key} {head} voting")
            check(agg[head]["average_confidence"], AVERAGE, f"{key} {head} average")
            for entry in agg[head]["average_confidence"]["top_k"]:
                check(entry, {"genre": str, "probability": float}, f"{key} {head} top_k")
        check(agg["all_genres"], {"threshold": float, "labels": list}, f"{key} all_genres")
        for label in agg["all_genres"]["labels"]:
            check(label, {"genre": str, "probability": float, "genre_id": int, "path": str}, key)
            assert label["probability"] > agg["all_genres"]["threshold"]
        check(result["hierarchy"], HIERARCHY, f"{key} hierarchy")
        check(result["content"], CONTENT, f"{key} content")
    assert (
        report["results"]["short.wav"]["warnings"]
        and report["results"]["short.wav"]["segment_mode"] == "short"
    )
    # Every key the report uses is described in the documentation.
    doc = (REPO / "docs" / "inference_schema.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    specs = (REPORT, SUMMARY, RESULT, SEGMENT, VOTING, AVERAGE, HIERARCHY, CONTENT, FILE_ENTRY)
    keys = set().union(*specs) | {"name_hex", "file_hex"}
    assert keys - documented == set()
    assert not output.with_name("results.json.partial.jsonl").exists()


def test_csv_output_has_one_row_per_file(inference, mixed_folder, tmp_path):
    output = tmp_path / "results.csv"
    report = inference.batch_predict(mixed_folder, output=output, recursive=True, workers=2)
    rows = list(csv.DictReader(output.open()))
    assert {r["file"] for r in rows} == GOOD | {"corrupt.mp3", "sub/empty.mp3"}
    by_file = {r["file"]: r for r in rows}
    assert by_file["sub/empty.mp3"]["status"] == "error" and by_file["sub/empty.mp3"]["error"]
    a = report["results"]["a.mp3"]["aggregated_results"]["top_genre"]["average_confidence"]
    assert by_file["a.mp3"]["top_genre"] == a["name"]
    assert float(by_file["a.mp3"]["top_confidence"]) == pytest.approx(a["confidence"])


# --- interrupted runs ------------------------------------------------------------------------------


def _children(pid: int) -> set[int]:
    kids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.add(int(stat.parent.name))
    return kids


@pytest.mark.slow
def test_killed_run_resumes_and_skips_done_files(tiny_run, tmp_path):
    model, config = tiny_run
    folder = tmp_path / "many"
    n = 150
    for i in range(n):
        write_audio(folder / f"{i:03d}.wav", 4.0, 11025, seed=i)
    output = tmp_path / "results.json"
    partial = tmp_path / "results.json.partial.jsonl"
    args = ["--model", str(model), "--config", str(config), "--folder", str(folder), "--output", str(output)]
    # One file per model batch, so the run takes long enough to be caught halfway.
    cmd = [sys.executable, str(REPO / "balanced_inference.py"), *args, "--batch_size", "10", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kids: set[int] = set()
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if partial.exists() and partial.read_bytes().count(b"\n") >= 10:
                kids = _children(proc.pid)
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL, (
            f"the run was not killed halfway: {proc.stderr.read()[-2000:]}"
        )
        # The decoding workers notice their parent is gone and exit.
        deadline = time.monotonic() + 60  # they check for their parent every 0.5 s; slower under load
        while kids and time.monotonic() < deadline:
            kids = {pid for pid in kids if Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)}
            time.sleep(0.1)
        assert not kids, f"worker processes {kids} outlived the killed run"
    finally:
        for pid in kids:
            with_suppress_kill(pid)
        proc.stderr.close()
    assert not output.exists()
    lines = partial.read_bytes().split(b"\n")
    done_before = {json.loads(line)["key"] for line in lines[1:] if line.strip()}
    assert 8 <= len(done_before) < n
    with partial.open("a") as fh:  # a line torn by the kill must not break the resume
        fh.write('{"key": "torn", "resu')

    assert balanced_inference.main([*args, "--workers", "2", "--no_progress", "--quiet"]) == 0
    report = json.loads(output.read_text())
    assert set(report["results"]) == {f"{i:03d}.wav" for i in range(n)}
    assert report["summary"]["resumed"] == len(done_before)
    assert report["summary"]["processed"] == n and report["summary"]["failed"] == 0
    assert not partial.exists()
    # A third run finds everything done in the finished report.
    again = MusicGenreInference(model, config).batch_predict(folder, output=output)
    assert again["summary"]["resumed"] == n and again["results"] == report["results"]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def with_suppress_kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_partial_log_of_another_job_is_refused_or_discarded_with_overwrite(tmp_path):
    path = tmp_path / "r.json.partial.jsonl"
    where = {"folder": str(tmp_path / "A")}
    first = PartialLog(path, {"threshold": 0.5}, where)
    first.open()
    first.append([{"key": "a.mp3", "error": "empty file (0 bytes)"}])
    first.close()
    assert set(PartialLog(path, {"threshold": 0.5}, where).read()) == {"a.mp3"}
    for fingerprint, other in (({"threshold": 0.3}, where), ({"threshold": 0.5}, {"folder": "/B"})):
        with pytest.raises(OutputInUseError, match="unfinished results of another job"):
            PartialLog(path, fingerprint, other).read()
        assert path.exists()
    assert PartialLog(path, {"threshold": 0.3}, where).read(overwrite=True) == {}
    assert not path.exists()


# --- refusals --------------------------------------------------------------------------------------


def test_mismatched_vocabulary_is_refused_before_any_work(tiny_run, tmp_path):
    model, config = tiny_run
    cfg = json.loads(config.read_text())
    vocab = cfg["vocabularies"]["medium"]
    cfg["vocabularies"]["medium"] = {k: v[:-1] if isinstance(v, list) else v for k, v in vocab.items()}
    bad = tmp_path / "other_config.json"
    bad.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match=r"medium head has 6 outputs, the config's vocabulary 5 genres"):
        MusicGenreInference(model, bad)


def test_mismatched_input_shape_is_refused(tiny_run, tmp_path):
    model, _ = tiny_run
    features = {**FEATURES, "segment_frames": 32}
    cfg = training_config(model.name, vocabularies(), input_shape=(32, 32, 1), features=features)
    bad = tmp_path / "wide.json"
    bad.write_text(json.dumps(cfg))
    with pytest.raises(
        ModelError, match=r"model input shape \(32, 16, 1\) != config input_shape \(32, 32, 1\)"
    ):
        MusicGenreInference(model, bad)


def test_config_of_another_training_is_refused(tiny_run, tmp_path):
    model, config = tiny_run
    cfg = json.loads(config.read_text())
    cfg["normalization"]["mean"] = [-35.0] * FEATURES["n_mels"]
    bad = tmp_path / "retrained.json"
    bad.write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="normalization statistics differ from the config's"):
        MusicGenreInference(model, bad)


def test_missing_files_are_one_clear_error(tiny_run, tmp_path, capsys):
    model, config = tiny_run
    with pytest.raises(ModelError, match="model file not found"):
        MusicGenreInference(tmp_path / "nope.h5", config)
    with pytest.raises(ModelError, match="config file not found"):
        MusicGenreInference(model, tmp_path / "nope.json")
    lonely = tmp_path / "lonely.h5"
    lonely.write_bytes(model.read_bytes())
    with pytest.raises(ModelError, match="no --config given and no balanced_training_config.json"):
        MusicGenreInference(lonely)
    code = balanced_inference.main(["--model", str(tmp_path / "nope.h5"), "--file", "x.mp3"])
    assert code == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path / 'nope.h5'}: model file not found (train one with balanced_trainer.py)"
    )


def test_config_next_to_the_model_and_plain_settings_file(tiny_run, tmp_path, real_clip):
    model, _ = tiny_run
    settings = tmp_path / "my_settings.json"
    settings.write_text(json.dumps({"threshold": 0.2, "top_k": 2}))
    inference = MusicGenreInference(model, settings)
    assert inference.config_path == model.parent / "balanced_training_config.json"
    assert (inference.threshold, inference.top_k) == (0.2, 2)
    result = inference.predict_file(real_clip)
    assert len(result["aggregated_results"]["top_genre"]["average_confidence"]["top_k"]) == 2
    assert result["aggregated_results"]["all_genres"]["threshold"] == 0.2
    assert MusicGenreInference(model, top_k=5).top_k == 5  # no --config: the one beside the model


# --- the script ------------------------------------------------------------------------------------


def test_script_file_and_folder(tiny_run, mixed_folder, tmp_path, capsys):
    model, config = tiny_run
    base = ["--model", str(model), "--config", str(config)]
    assert balanced_inference.main([*base, "--file", str(mixed_folder / "a.mp3"), "--top_k", "2"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0].split() == ["file", "top", "genre", "conf", "medium", "genre", "labels"]
    assert out.out.splitlines()[2].startswith("a.mp3 ")
    assert "1 file(s) done, 0 failed" in out.err
    code = balanced_inference.main([*base, "--file", str(mixed_folder / "sub" / "empty.mp3")])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("empty.mp3: empty file (0 bytes)")
    output = tmp_path / "r.json"
    args = [*base, "--folder", str(mixed_folder), "--recursive", "--output", str(output), "--no_progress"]
    assert balanced_inference.main([*args, "--workers", "1"]) == 0
    out = capsys.readouterr()
    assert "FAILED corrupt.mp3" in out.out and "FAILED sub/empty.mp3: empty file (0 bytes)" in out.out
    assert "4 file(s) done, 2 failed, 2 non-audio skipped" in out.err
    assert set(json.loads(output.read_text())["results"]) == GOOD
    # A report written inside the music folder is neither music nor a skipped file on the rerun.
    inside = mixed_folder / "results.json"
    assert (
        balanced_inference.main([*base, "--folder", str(mixed_folder), "--output", str(inside), "--quiet"])
        == 0
    )
    assert (
        balanced_inference.main([*base, "--folder", str(mixed_folder), "--output", str(inside), "--quiet"])
        == 0
    )
    report = json.loads(inside.read_text())
    assert report["skipped"] == ["cover.jpg", "notes.txt"] and report["summary"]["resumed"] == 3
