"""A run folder survives a kill at any instant (issue 31, item 6).

Real trainings on the demo fixture, really killed with SIGKILL; the files a kill (or a disk) can
damage are then damaged as it would leave them: cut short, or a temporary file left beside them.
A rerun either resumes and ends with a model that loads, one log row per epoch and a true
``epochs_run``, or stops with one line naming the file and the remedy (never a traceback).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import balanced_trainer
from genrekit.models.io import load_model
from genrekit.train.run_config import load_training_config, read_training_log
from tests.conftest import tiny_overrides
from tests.test_training import _trainer_process

pytestmark = pytest.mark.slow

MODEL = "balanced_hierarchical_genre_model.h5"
CONFIG = "balanced_training_config.json"
EPOCHS = 2  # of the interrupted run, killed once its first epoch is logged
POLL = 0.02


def _run_settings(demo_dataset, tiny_run, out: Path, **extra) -> Path:
    settings = tiny_overrides(demo_dataset, out, **extra)
    settings["cache_dir"] = str(tiny_run.parent / "features")  # the session's features
    config = out.parent / f"{out.name}.json"
    config.write_text(json.dumps(settings))
    return config


def _kill_when(proc: subprocess.Popen, ready, limit: float = 400) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()``; True when it was still running then."""
    deadline = time.time() + limit
    try:
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(POLL)
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return alive


def _rows(out: Path) -> int:
    log = out / "training_log.csv"
    return len(log.read_bytes().splitlines()) - 1 if log.is_file() else 0


@pytest.fixture(scope="module")
def interrupted(tiny_run, demo_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """(run folder, config) of a real 2-epoch training killed with SIGKILL once epoch 1 is logged."""
    out = tmp_path_factory.mktemp("interrupted") / "run"
    config = _run_settings(demo_dataset, tiny_run, out, num_epochs=EPOCHS)
    proc = _trainer_process(config)
    assert _kill_when(proc, lambda: _rows(out) >= 1), "the training ended before it was killed"
    assert (out / "backup" / "latest.weights.h5").is_file() and not (out / MODEL).exists()
    return out, config


def _copy(run: tuple[Path, Path], dest: Path) -> tuple[Path, Path]:
    out, config = run
    shutil.copytree(out, dest / out.name, symlinks=True)
    settings = json.loads(config.read_text())
    settings["output_dir"] = str(dest / out.name)
    copied = dest / config.name
    copied.write_text(json.dumps(settings))
    return dest / out.name, copied


def _cut(path: Path) -> None:
    """Keep the first half of ``path``, as a kill during an in-place write leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _leave_temporary_best(out: Path) -> None:
    """A kill during the atomic save of the best checkpoint leaves its temporary file, cut."""
    writer = subprocess.Popen(["true"])  # a process that has ended: the killed writer
    writer.wait()
    best = out / "checkpoints" / "best.keras"
    (best.parent / f".best.{writer.pid}.tmp.keras").write_bytes(best.read_bytes()[:1000])


def _lose_last_row(out: Path) -> None:
    """A kill after the backup of epoch 1 and before its CSV row: the row is not in the log."""
    log = out / "training_log.csv"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))


def _half_row(out: Path) -> None:
    """A log written in place by an older genrekit, killed mid-row: half of the next epoch's row."""
    log = out / "training_log.csv"
    last = log.read_bytes().splitlines(keepends=True)[-1]
    with open(log, "ab") as fh:
        fh.write(b"1" + last[1 : len(last) // 2])


def _error_lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return [line for line in captured.err.splitlines() if line.startswith("error:")]


def _assert_finished(out: Path, epochs: int) -> None:
    """One log row per epoch 0..epochs-1, a true epochs_run, a model that loads, no leftovers."""
    assert [row["epoch"] for row in read_training_log(out / "training_log.csv")] == list(range(epochs))
    assert load_training_config(out / CONFIG)["history"]["epochs_run"] == epochs
    model = load_model(out / MODEL)
    assert model.input_shape == (None, 128, 64, 1)
    assert not (out / "backup").exists()
    assert not [p.name for p in out.rglob(".*.tmp*")]


@pytest.mark.parametrize(
    "damage",
    [_leave_temporary_best, _lose_last_row, _half_row],
    ids=["temporary_best", "lost_row", "half_row"],
)
def test_interrupted_run_resumes_past_what_a_kill_leaves(interrupted, tmp_path, damage, capsys):
    out, config = _copy(interrupted, tmp_path)
    damage(out)
    assert balanced_trainer.main(["--config", str(config)]) == 0, _error_lines(capsys)
    assert "resuming the interrupted run" in (out / "run.log").read_text()
    _assert_finished(out, EPOCHS)


@pytest.mark.parametrize(
    "name",
    ["checkpoints/best.keras", "backup/latest.weights.h5", "backup/callback_state.json", "run_settings.json"],
)
def test_a_damaged_file_of_an_interrupted_run_is_one_line_naming_it(interrupted, tmp_path, name, capsys):
    out, config = _copy(interrupted, tmp_path)
    _cut(out / name)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert balanced_trainer.main(["--config", str(config)]) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and str(out / name) in errors[0] and "--retrain" in errors[0], errors
    # Stopped before any work: nothing was written or removed, so the remedy still has it all.
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "run.log"} == {
        p: t for p, t in before.items() if p.name != "run.log"
    }


def test_retrain_is_the_remedy_the_line_names(interrupted, tmp_path, capsys):
    out, config = _copy(interrupted, tmp_path)
    _cut(out / "checkpoints" / "best.keras")
    assert balanced_trainer.main(["--config", str(config), "--retrain"]) == 0, _error_lines(capsys)
    _assert_finished(out, EPOCHS)


@pytest.mark.parametrize("name", [MODEL, CONFIG])
def test_a_damaged_finished_run_is_not_nothing_to_do(tiny_run, tmp_path, name, capsys):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out, symlinks=True)
    settings = {**load_training_config(out / CONFIG)["settings"], "output_dir": str(out)}
    config = tmp_path / "again.json"
    config.write_text(json.dumps(settings))
    _cut(out / name)
    cut = (out / name).read_bytes()
    assert balanced_trainer.main(["--config", str(config)]) == 2
    errors = _error_lines(capsys)
    assert len(errors) == 1 and str(out / name) in errors[0] and "--retrain" in errors[0], errors
    assert (out / name).read_bytes() == cut  # left as it is for the user to look at


def test_a_run_killed_while_finishing_finishes_without_training_again(
    tiny_run, demo_dataset, tmp_path, capsys
):
    """Killed after fit, while the model is finished (thresholds chosen): the rerun only finishes."""
    out = tmp_path / "run"
    config = _run_settings(demo_dataset, tiny_run, out, num_epochs=2)
    proc = _trainer_process(config)
    run_log = out / "run.log"
    finishing = lambda: run_log.is_file() and "thresholds chosen" in run_log.read_text()  # noqa: E731
    assert _kill_when(proc, finishing), "the training ended before it was killed"
    assert _rows(out) == 2 and not (out / CONFIG).exists()
    assert balanced_trainer.main(["--config", str(config)]) == 0, _error_lines(capsys)
    assert "Epoch 1/2" not in capsys.readouterr().out
    _assert_finished(out, 2)


def test_only_the_temporaries_of_writers_no_longer_running_are_leftovers(tmp_path):
    from genrekit.fileio import leftover_temporaries, temporary_beside

    ended = subprocess.Popen(["true"])
    ended.wait()
    mine = temporary_beside(tmp_path / "best.keras")  # this process: a writer still running
    left = tmp_path / f".latest.{ended.pid}.tmp.weights.h5"
    for path in (mine, left, tmp_path / "best.keras", tmp_path / f".notes.{ended.pid}.txt"):
        path.write_bytes(b"x")
    assert leftover_temporaries(tmp_path) == [left]


def test_a_backup_written_by_keras_backup_and_restore_resumes_at_its_epoch(tmp_path):
    """Interrupted runs of a genrekit before this one have Keras' backup: the epoch in a JSON file."""
    import keras

    from genrekit.errors import ModelError
    from genrekit.train.run_folder import read_backup

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save_weights(tmp_path / "latest.weights.h5")
    with pytest.raises(ModelError, match="latest.weights.h5: damaged .*--retrain"):
        read_backup(tmp_path)
    (tmp_path / "training_metadata.json").write_text('{"epoch": 3, "batch": 0}')
    backup = read_backup(tmp_path)
    assert (backup.epoch, backup.done) == (3, False)
