"""The output policy and job-checked resume: nothing a user owns is overwritten, no result of another
job or of a changed file is kept, and names that are not UTF-8 are written exactly.

Real files throughout: MP3s encoded by libsndfile, a FIFO, symbolic links, /dev/null, a tiny trained
model (``tests.inference_helpers``); the scripts run through their ``main``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from pathlib import Path

import pytest

import balanced_inference
import balanced_trainer
import baseline
import fma_inspector
import model_evaluation
import quick_start
import tune
from genrekit.errors import OutputInUseError, OutputPathError
from genrekit.fileio import check_output_path, json_text
from genrekit.infer.output import CSV_REPORT, JSON_REPORT, PartialLog
from genrekit.infer.predict import MusicGenreInference
from tests.inference_helpers import build_tiny_run, write_audio

QUIET = ["--quiet", "--no_progress", "--workers", "1"]
NON_UTF8 = b"caf\xe9.mp3"  # Latin-1 "café.mp3", as an old system writes it


@pytest.fixture(scope="module")
def run(random_tiny_run) -> list[str]:
    model, config = random_tiny_run
    return ["--model", str(model), "--config", str(config)]


@pytest.fixture
def music(tmp_path) -> Path:
    """A folder of three short real MP3s."""
    folder = tmp_path / "music"
    for i, name in enumerate(("01.mp3", "02.mp3", "03.mp3")):
        write_audio(folder / name, 3.0, 11025, seed=10 + i)
    return folder


def _probabilities(result: dict) -> dict[str, float]:
    return {
        t["genre"]: t["probability"]
        for t in result["aggregated_results"]["top_genre"]["average_confidence"]["top_k"]
    }


def _same_prediction(a: dict, b: dict) -> bool:
    """The same file's prediction, batched or alone (float sums in another order: 2e-6)."""
    pa, pb = _probabilities(a), _probabilities(b)
    return pa.keys() == pb.keys() and all(abs(pa[g] - pb[g]) <= 2e-6 for g in pa)


def _fails_with_one_line(capsys, code: int, *words: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "Traceback" not in err and len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(w in lines[0] for w in words), (words, lines[0])
    return lines[0]


# --- the policy on its own ---------------------------------------------------------------------------


def test_policy_refuses_what_is_not_ours_and_accepts_our_own(tmp_path, music):
    song = music / "01.mp3"
    notes = tmp_path / "notes.json"
    notes.write_text('{"my": "notes"}\n')
    disguised = tmp_path / "mix.json"  # audio by its bytes, whatever its name
    disguised.write_bytes(song.read_bytes())
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    link = tmp_path / "link.json"
    link.symlink_to(notes)
    cases = {
        song: "is an audio file",
        disguised: "is an audio file (MP",
        notes: "exists and is not a genrekit inference report (JSON)",
        fifo: "is a FIFO (named pipe), not a regular file",
        link: "is a symbolic link to",
        Path("/dev/null"): "is a character device, not a regular file",
        tmp_path: "is a folder, not a file",
        tmp_path / "notes.json" / "x.json": "is not a folder",
    }
    for path, words in cases.items():
        with pytest.raises(OutputPathError, match=None) as caught:
            check_output_path(path, JSON_REPORT, what="--output")
        assert words in str(caught.value) and str(path) in str(caught.value), str(caught.value)
    with pytest.raises(OutputPathError, match=r"is --file \(.*\), an input of this run"):
        check_output_path(tmp_path / "x.csv", CSV_REPORT, inputs={tmp_path / "x.csv": "--file"})
    ours = tmp_path / "ours.json"
    ours.write_text(json_text({"format": "genrekit-inference", "version": 1}, indent=2) + "\n")
    assert check_output_path(ours, JSON_REPORT) == ours
    assert check_output_path(tmp_path / "new" / "r.json", JSON_REPORT) == tmp_path / "new" / "r.json"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and notes.read_text() == '{"my": "notes"}\n'


# --- inference: the output is never an input, audio or someone's file ---------------------------------


@pytest.mark.parametrize("form", ["file", "folder"])
def test_output_that_is_the_input_song_is_refused_before_the_model_loads(run, music, tmp_path, capsys, form):
    song = music / "01.mp3"
    before = song.read_bytes()
    source = ["--file", str(song)] if form == "file" else ["--folder", str(music)]
    code = balanced_inference.main([*run, *source, "--output", str(song), *QUIET])
    _fails_with_one_line(capsys, code, str(song))
    assert song.read_bytes() == before
    # Before the model is loaded: a model that cannot load is never reached.
    broken = tmp_path / "broken" / "model.h5"
    broken.parent.mkdir()
    broken.write_bytes(b"not a model")
    argv = ["--model", str(broken), "--config", run[3], *source, "--output", str(song), *QUIET]
    _fails_with_one_line(capsys, balanced_inference.main(argv), str(song), "input")
    assert song.read_bytes() == before


def test_fifo_link_device_and_a_users_file_at_output_are_left_alone(run, music, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    link = tmp_path / "link.json"
    link.symlink_to(notes)
    mine = tmp_path / "mine.csv"
    mine.write_text("name,genre\nx,rock\n")
    cases = [
        (fifo, "FIFO"),
        (link, "symbolic link"),
        (Path("/dev/null"), "character device"),
        (mine, "not a genrekit inference report (CSV)"),
        (notes, "not a genrekit inference report (JSON)"),
    ]
    for output, words in cases:
        for source in (["--file", str(music / "02.mp3")], ["--folder", str(music)]):
            code = balanced_inference.main([*run, *source, "--output", str(output), *QUIET])
            _fails_with_one_line(capsys, code, str(output), words)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and link.is_symlink()
    assert notes.read_text() == "my notes\n" and mine.read_text() == "name,genre\nx,rock\n"
    # The partial log beside a folder run's report passes the same policy.
    (tmp_path / "r.json.partial.jsonl").symlink_to(notes)
    code = balanced_inference.main(
        [*run, "--folder", str(music), "--output", str(tmp_path / "r.json"), *QUIET]
    )
    _fails_with_one_line(capsys, code, "r.json.partial.jsonl", "symbolic link")
    assert notes.read_text() == "my notes\n"


# --- inference: resume only the same job ---------------------------------------------------------------


def test_same_job_overwrites_its_own_report_and_another_job_is_refused(
    run, music, tmp_path, capsys, random_tiny_run
):
    out = tmp_path / "r.json"
    folder_b = tmp_path / "B"
    write_audio(folder_b / "01.mp3", 3.0, 11025, seed=99)  # same name as A's 01.mp3, other music
    a = [*run, "--folder", str(music), "--output", str(out), *QUIET]
    assert balanced_inference.main(a) == 0
    assert balanced_inference.main(a) == 0  # our own report: resumed and rewritten
    first = json.loads(out.read_text())
    assert first["summary"]["resumed"] == 3 and set(first["results"]) == {"01.mp3", "02.mp3", "03.mp3"}
    capsys.readouterr()
    b = [*run, "--folder", str(folder_b), "--output", str(out), *QUIET]
    _fails_with_one_line(
        capsys, balanced_inference.main(b), str(out), "another job", str(music.resolve()), "--overwrite"
    )
    assert json.loads(out.read_text()) == first  # A's report untouched
    # A --file run is another job too, and so is another model.
    one = [*run, "--file", str(music / "01.mp3"), "--output", str(out), *QUIET]
    _fails_with_one_line(capsys, balanced_inference.main(one), "another job")
    other_model, other_config = build_tiny_run(tmp_path / "other_run", seed=1)
    other = [
        "--model",
        str(other_model),
        "--config",
        str(other_config),
        "--folder",
        str(music),
        "--output",
        str(out),
    ]
    _fails_with_one_line(capsys, balanced_inference.main([*other, *QUIET]), "another job", "model")
    assert json.loads(out.read_text()) == first
    # --overwrite starts a new report, saying so; nothing of A's is kept.
    assert balanced_inference.main([*b, "--overwrite"]) == 0
    assert "another job" in capsys.readouterr().err
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"01.mp3"} and report["summary"]["resumed"] == 0
    assert report["run"]["folder"] == str(folder_b.resolve())
    fresh = MusicGenreInference(*random_tiny_run).predict_file(folder_b / "01.mp3")
    assert _same_prediction(report["results"]["01.mp3"], fresh)
    assert not _same_prediction(first["results"]["01.mp3"], fresh)  # A's 01.mp3 is other music


def test_changed_file_is_recomputed_and_removed_file_is_dropped(run, music, tmp_path, random_tiny_run):
    out = tmp_path / "r.json"
    (music / "04.mp3").write_bytes(b"")  # an error, later filled
    argv = [*run, "--folder", str(music), "--output", str(out), *QUIET]
    assert balanced_inference.main(argv) == 0
    before = json.loads(out.read_text())
    assert set(before["errors"]) == {"04.mp3"}
    write_audio(music / "02.mp3", 3.0, 11025, seed=77)  # new bytes and mtime
    os.utime(music / "02.mp3", ns=(before["files"]["02.mp3"]["mtime_ns"] + 10**9,) * 2)
    write_audio(music / "04.mp3", 3.0, 11025, seed=78)
    (music / "03.mp3").unlink()
    assert balanced_inference.main(argv) == 0
    after = json.loads(out.read_text())
    summary = after["summary"]
    assert (summary["resumed"], summary["recomputed"], summary["dropped"]) == (1, 2, 1)
    assert set(after["results"]) == set(after["files"]) == {"01.mp3", "02.mp3", "04.mp3"}
    assert after["errors"] == {} and after["results"]["01.mp3"] == before["results"]["01.mp3"]
    inference = MusicGenreInference(*random_tiny_run)
    for name in ("02.mp3", "04.mp3"):
        assert _same_prediction(after["results"][name], inference.predict_file(music / name)), name
        assert after["files"][name]["size"] == (music / name).stat().st_size
    # Same size, another mtime (a file restored from a backup) is recomputed too.
    os.utime(music / "01.mp3", ns=(1, 1))
    assert balanced_inference.main(argv) == 0
    assert json.loads(out.read_text())["summary"]["recomputed"] == 1


def test_partial_log_keeps_file_identity_and_a_changed_file_is_not_taken_from_it(run, music, tmp_path):
    inference = MusicGenreInference(run[1], run[3])
    out = tmp_path / "r.json"
    report = inference.batch_predict(music, output=out, workers=1)
    # An interrupted run of the same job: its partial log holds 01 and 02, no report yet.
    partial = PartialLog(
        tmp_path / "r.json.partial.jsonl", report["run"]["fingerprint"], {"folder": str(music.resolve())}
    )
    partial.open()
    partial.append(
        [{"key": k, "result": report["results"][k], **report["files"][k]} for k in ("01.mp3", "02.mp3")]
    )
    partial.close()
    out.unlink()
    write_audio(music / "02.mp3", 2.0, 11025, seed=5)
    again = inference.batch_predict(music, output=out, workers=1)
    assert (again["summary"]["resumed"], again["summary"]["recomputed"]) == (1, 1)
    assert again["results"]["02.mp3"]["duration_seconds"] == pytest.approx(2.0, abs=0.05)


def test_csv_report_is_replaced_with_a_warning_never_reused(run, music, tmp_path, capsys):
    out = tmp_path / "r.csv"
    argv = [*run, "--folder", str(music), "--output", str(out), *QUIET]
    assert balanced_inference.main(argv) == 0
    assert balanced_inference.main(argv) == 0
    err = capsys.readouterr().err
    assert "replacing the earlier CSV report" in err and err.count("3 to do, 0 kept from an earlier run") == 2
    assert len(list(csv.DictReader(out.open()))) == 3


def test_another_jobs_partial_log_is_refused_not_discarded(run, music, tmp_path, capsys):
    out = tmp_path / "r.json"
    partial = tmp_path / "r.json.partial.jsonl"
    partial.write_text(
        json.dumps({"header": {"format": "genrekit-inference"}, "input": {"folder": "/A"}}) + "\n"
    )
    argv = [*run, "--folder", str(music), "--output", str(out), *QUIET]
    _fails_with_one_line(capsys, balanced_inference.main(argv), str(partial), "another job")
    assert partial.exists()
    assert balanced_inference.main([*argv, "--overwrite"]) == 0 and not partial.exists()


# --- names that are not UTF-8 ----------------------------------------------------------------------------


def test_name_that_is_not_utf8_is_written_exactly_to_json_and_csv_and_resumes(run, music, tmp_path, capsys):
    odd = os.fsdecode(os.path.join(os.fsencode(music), NON_UTF8))
    Path(odd).write_bytes((music / "01.mp3").read_bytes())
    key = os.fsdecode(NON_UTF8)
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    assert balanced_inference.main([*run, "--folder", str(music), "--output", str(out_json), *QUIET[1:]]) == 0
    assert "caf\\xe9.mp3" in capsys.readouterr().out  # the table shows the byte, on any console
    assert balanced_inference.main([*run, "--folder", str(music), "--output", str(out_csv), *QUIET]) == 0
    raw = out_json.read_bytes()
    raw.decode("utf-8")  # valid UTF-8 text
    assert b"caf\\udce9.mp3" in raw
    report = json.loads(raw)
    entries = {**report["results"], **report["errors"]}
    assert key in entries and os.fsencode(key) == NON_UTF8
    assert bytes.fromhex(report["files"][key]["name_hex"]) == NON_UTF8
    assert "name_hex" not in report["files"]["01.mp3"]
    rows = {r["file"]: r for r in csv.DictReader(io.StringIO(out_csv.read_bytes().decode("utf-8")))}
    assert bytes.fromhex(rows["caf\ufffd.mp3"]["file_hex"]) == NON_UTF8 and rows["01.mp3"]["file_hex"] == ""
    capsys.readouterr()
    argv = [*run, "--folder", str(music), "--output", str(out_json), "--json", *QUIET[1:]]
    assert balanced_inference.main(argv) == 0
    again = json.loads(out_json.read_bytes())
    assert again["summary"]["resumed"] == 4 and again["summary"]["recomputed"] == 0
    assert json.loads(capsys.readouterr().out)["files"][key]["name_hex"] == NON_UTF8.hex()


def test_partial_log_carries_a_name_that_is_not_utf8(tmp_path):
    from genrekit.infer.folder import ResultLog

    key = os.fsdecode(NON_UTF8)
    log = ResultLog(
        tmp_path / "r.json", {"threshold": 0.5}, {"folder": "/m"}, {key: {"size": 3, "mtime_ns": 7}}
    )
    assert log.done() == {}
    log.add(key, None, "empty file (0 bytes)")
    log.close()
    line = (tmp_path / "r.json.partial.jsonl").read_bytes().splitlines()[1]
    entry = json.loads(line)
    assert bytes.fromhex(entry["name_hex"]) == NON_UTF8 and os.fsencode(entry["key"]) == NON_UTF8
    read = PartialLog(tmp_path / "r.json.partial.jsonl", {"threshold": 0.5}, {"folder": "/m"}).read()
    assert read[key]["size"] == 3 and read[key]["mtime_ns"] == 7


# --- the other scripts' outputs pass the same policy ------------------------------------------------------


def test_evaluation_report_folder_is_checked_before_any_work(run, music, tmp_path, capsys):
    out = tmp_path / "ev"
    out.mkdir()
    report = out / "evaluation_report.json"
    report.write_bytes((music / "01.mp3").read_bytes())
    argv = ["--model", run[1], "--output_dir", str(out), "--workers", "1"]
    _fails_with_one_line(capsys, model_evaluation.main([*argv, "--no_plots"]), str(report), "audio file")
    assert report.read_bytes() == (music / "01.mp3").read_bytes()
    report.unlink()
    plot = out / "plots" / "top_f1.png"
    plot.parent.mkdir()
    plot.symlink_to(music / "02.mp3")
    _fails_with_one_line(capsys, model_evaluation.main(argv), str(plot), "symbolic link")


def test_baseline_report_and_log_are_checked_before_any_work(music, tmp_path, capsys):
    out = tmp_path / "base"
    out.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    (out / "baseline_mfcc_svm.json").symlink_to(notes)
    argv = [
        "--features",
        "mfcc",
        "--classifier",
        "svm",
        "--output_dir",
        str(out),
        "--dataset",
        f"folder:{music}",
    ]
    _fails_with_one_line(capsys, baseline.main(argv), "baseline_mfcc_svm.json", "symbolic link")
    (out / "baseline_mfcc_svm.json").unlink()
    os.mkfifo(out / "run.log")  # opening it for the log would block forever
    _fails_with_one_line(capsys, baseline.main(argv), "run.log", "FIFO")
    assert notes.read_text() == "mine\n"


def test_tuning_outputs_are_checked_before_any_work(music, tmp_path, capsys):
    out = tmp_path / "tune"
    out.mkdir()
    best = out / "best_config.json"
    best.write_bytes((music / "03.mp3").read_bytes())
    code = tune.main(["--demo", "--trials", "1", "--output_dir", str(out)])
    _fails_with_one_line(capsys, code, str(best), "audio file")
    assert best.read_bytes() == (music / "03.mp3").read_bytes() and not (out / "study.sqlite3").exists()


def _no_data(tmp_path) -> list[str]:
    """Dataset folders that do not exist: a run that reads its data first fails on them instead."""
    return ["--metadata", str(tmp_path / "no_metadata"), "--audio", str(tmp_path / "no_audio")]


def test_inspector_outputs_are_checked_before_the_dataset_is_read(music, tmp_path, capsys):
    out = tmp_path / "inspection"
    out.mkdir()
    report = out / "inspection_report.json"
    report.write_text("my own notes\n")
    argv = [*_no_data(tmp_path), "--output_dir", str(out)]
    _fails_with_one_line(capsys, fma_inspector.main(argv), str(report), "not a genrekit inspection report")
    assert report.read_text() == "my own notes\n" and sorted(out.iterdir()) == [report]
    song = music / "01.mp3"
    before = song.read_bytes()
    code = fma_inspector.main([*_no_data(tmp_path), "--generate_config", str(song)])
    _fails_with_one_line(capsys, code, "--generate_config", str(song), "audio file")
    assert song.read_bytes() == before


def test_trainer_run_folder_is_checked_before_data_preparation(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    log = out / "training_log.csv"
    log.write_text("my training diary\n")
    for extra in ([], ["--retrain"]):  # --retrain removes our own training log, never the user's
        code = balanced_trainer.main([*_no_data(tmp_path), "--output_dir", str(out), *extra])
        _fails_with_one_line(capsys, code, str(log), "not a genrekit training log")
        assert log.read_text() == "my training diary\n" and sorted(out.iterdir()) == [log]
    log.unlink()
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    (out / "run.log").symlink_to(notes)  # the log would be appended to the notes through the link
    code = balanced_trainer.main([*_no_data(tmp_path), "--output_dir", str(out)])
    _fails_with_one_line(capsys, code, "run.log", "symbolic link")
    assert notes.read_text() == "mine\n" and sorted(out.iterdir()) == [out / "run.log"]


def test_quick_start_run_log_is_checked_before_any_step(tmp_path, capsys):
    out = tmp_path / "quick"
    out.mkdir()
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    (out / "run.log").symlink_to(notes)
    config = tmp_path / "config.json"  # FMA folders that do not exist: the setup step fails on them
    config.write_text(
        json.dumps({"metadata_dir": str(tmp_path / "no_meta"), "audio_dir": str(tmp_path / "no_audio")})
    )
    argv = ["--data", "real", "--steps", "setup", "--output_dir", str(out), "--config", str(config)]
    code = quick_start.main(argv)
    _fails_with_one_line(capsys, code, "run.log", "symbolic link")
    assert notes.read_text() == "mine\n"


def test_another_kind_of_our_own_reports_is_not_taken_for_this_one(tmp_path):
    evaluation = tmp_path / "evaluation_report.json"
    evaluation.write_text(json_text({"counts": {"tracks": 1}}, indent=2))
    with pytest.raises(OutputPathError, match="not a genrekit inference report"):
        check_output_path(evaluation, JSON_REPORT)
    with pytest.raises(OutputInUseError):
        raise OutputInUseError("an OutputPathError too")
