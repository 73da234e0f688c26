"""Hyper-parameter search (genrekit.tune, tune.py): the checked space, a real 2-trial study whose best
config trains, and a study killed with SIGKILL mid-trial that continues when run again."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, tiny_overrides
from tests.process_helpers import alive, children

SPACE = {
    "learning_rate": {"low": 1e-3, "high": 1e-2, "log": True},
    "dense_dropout": {"choices": [0.0, 0.2]},
    "medium_loss_weight": {"low": 0.2, "high": 1.0},
}


@pytest.mark.parametrize(
    "space, words",
    [
        ({"learing_rate": {"low": 1e-3, "high": 1e-2}}, ["'learing_rate'", "not a setting"]),
        ({"learning_rate": {"low": 1e-2, "high": 1e-2}}, ["'learning_rate'", "empty range"]),
        ({"focal_gamma": {"low": 3.0, "high": 1.0}}, ["'focal_gamma'", "empty range", "low 3.0"]),
        ({"oversample_threshold": {"low": 2.5, "high": 10}}, ["'oversample_threshold'", "an integer"]),
        ({"width_factor": {"choices": []}}, ["'width_factor'", "non-empty list"]),
        ({"width_factor": {"choices": [0.5, "wide"]}}, ["'width_factor'", "'wide'", "must be a number"]),
        ({"learning_rate": {"low": 0.0, "high": 1e-2, "log": True}}, ["log scale", "low > 0"]),
        ({"use_focal_loss": {"low": 0, "high": 1}}, ["'use_focal_loss'", "give choices"]),
        ({"output_dir": {"choices": ["a", "b"]}}, ["'output_dir'", "cannot be searched"]),
        ({"learning_rate": {"low": 1e-3}}, ["needs low and high"]),
        ({}, ["no settings to search"]),
    ],
)
def test_a_bad_search_space_is_one_line_naming_the_setting(space, words):
    from genrekit.errors import ConfigError
    from genrekit.tune.space import parse_space

    with pytest.raises(ConfigError) as info:
        parse_space(space, "space.json")
    message = str(info.value)
    assert "\n" not in message and message.startswith("space.json")
    for word in words:
        assert word in message


def test_the_default_space_is_valid_and_integer_settings_draw_integers():
    import optuna

    from genrekit.tune.space import DEFAULT_SPACE, parse_space

    space = parse_space()
    assert space.names == tuple(DEFAULT_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = space.suggest(study.ask())
    assert isinstance(params["oversample_threshold"], int) and 25 <= params["oversample_threshold"] <= 400
    assert params["width_factor"] in (0.0625, 0.125)
    assert 3e-4 <= params["learning_rate"] <= 1e-2


def test_tune_py_prints_a_bad_space_file_in_one_line(tmp_path, capsys):
    import tune

    bad = tmp_path / "space.json"
    bad.write_text(json.dumps({"dropout": {"low": 0.1, "high": 0.5}}))
    assert tune.main(["--space", str(bad), "--output_dir", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'dropout' is not a setting" in err and str(bad) in err
    assert not (tmp_path / "study" / "study.sqlite3").exists()  # checked before anything is made


def test_the_study_score_weighs_the_heads_with_the_base_weights_not_the_trials():
    from genrekit.tune.study import objective_value

    row = {"val_top_balanced_accuracy": 0.6, "val_medium_balanced_accuracy": 0.3, "val_all_lrap": 0.9}
    # (1.0 * 0.6 + 0.8 * 0.3 + 0.6 * 0.9) / 2.4 = 1.38 / 2.4
    assert objective_value(row, "val_score", {"top": 1.0, "medium": 0.8, "all": 0.6}) == pytest.approx(0.575)
    assert objective_value(row, "val_top_balanced_accuracy", {}) == 0.6


def _study_trials(folder: Path):
    import optuna

    return optuna.load_study(study_name="genrekit", storage=f"sqlite:///{folder / 'study.sqlite3'}").trials


def _tune_process(config: Path, folder: Path, space: Path, trials: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "tune.py"), "--config", str(config), "--space", str(space)]
        + ["--output_dir", str(folder), "--trials", str(trials)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def _wait_for(condition, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.time() + seconds
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"tune.py ended early: {proc.stdout.read()}")
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_study_killed_mid_trial_continues_and_its_best_config_builds(demo_dataset, tmp_path):
    """Two trials of one epoch in a real tune.py process, SIGKILLed while trial 1 trains; the rerun
    keeps trial 0, fails trial 1 and retries its settings, and writes a best config that builds."""
    from optuna.trial import TrialState

    config, space, folder = tmp_path / "tiny.json", tmp_path / "space.json", tmp_path / "study"
    config.write_text(json.dumps(tiny_overrides(demo_dataset, tmp_path / "unused", num_epochs=1)))
    space.write_text(json.dumps(SPACE))
    proc = _tune_process(config, folder, space, 2)
    _wait_for(lambda: (folder / "trials" / "0001" / "trial_request.json").is_file(), proc, 400)
    # Waited for, not slept for: on a loaded machine the trial's process may take seconds to start.
    _wait_for(lambda: bool(children(proc.pid)), proc, 120)
    trainers = children(proc.pid)
    assert trainers, "the trial's training process should be running"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 60
    while any(alive(pid) for pid in trainers) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in trainers), "the trial's training outlived the killed study"
    before = {t.number: t for t in _study_trials(folder)}
    assert before[0].state == TrialState.COMPLETE and before[1].state == TrialState.RUNNING

    rerun = _tune_process(config, folder, space, 2)
    output = rerun.communicate(timeout=400)[0]
    assert rerun.returncode == 0, output
    after = {t.number: t for t in _study_trials(folder)}
    assert len(after) == 3  # trial 0 kept, trial 1 failed, trial 2 retries its settings
    assert after[0].state == TrialState.COMPLETE and after[0].value == before[0].value
    assert after[1].state == TrialState.FAIL
    assert after[2].state == TrialState.COMPLETE and after[2].user_attrs["retry_of"] == 1
    assert after[2].params == before[1].params
    assert "1 trials finished, 1 to run" in output and "trial 2 [2/2]: value" in output, output
    _check_best_config(folder, after, demo_dataset)

    again = _tune_process(config, folder, space, 2).communicate(timeout=400)[0]
    assert "2 trials finished, 0 to run" in again and len(_study_trials(folder)) == 3


def _check_best_config(folder: Path, trials: dict, demo) -> None:
    """best_config.json: the best trial's values on the base settings, a config Settings.build takes;
    the trial's value is its epoch's score recomputed from its log with the base weights."""
    from genrekit.settings import Settings
    from genrekit.tune.study import objective_value
    from genrekit.tune.trial import read_epochs

    best_file = folder / "best_config.json"
    written = json.loads(best_file.read_text())
    best = Settings.build(best_file)  # the _study note is ignored, every other key is a setting
    trial = trials[written["_study"]["best_trial"]]
    assert trial.value == max(t.value for t in trials.values() if t.value is not None)
    assert best.learning_rate == trial.params["learning_rate"]
    assert best.medium_loss_weight == trial.params["medium_loss_weight"]
    assert best.width_factor == 0.0625 and best.metadata_dir == str(demo.metadata_dir)
    assert "output_dir" not in written and written["_study"]["best_value"] == trial.value
    rows = read_epochs(folder / "trials" / f"{trial.number:04d}" / "training_log.csv")
    base = Settings.build()  # the tiny config keeps the package's loss weights
    assert len(rows) == 1
    assert math.isclose(trial.value, objective_value(rows[0], "val_score", base.loss_weights))
    assert trial.intermediate_values[1] == pytest.approx(trial.value)


def test_a_study_made_with_another_space_is_refused_by_name(tmp_path):
    from genrekit.errors import ConfigError
    from genrekit.settings import Settings
    from genrekit.tune.space import parse_space
    from genrekit.tune.study import open_study

    settings = Settings.build(overrides={"num_epochs": 2})
    space = parse_space(SPACE)
    first = {"space": space.to_dict(), "settings": settings.to_dict()}
    study = open_study(tmp_path, 0, 1, first)
    assert study.user_attrs["fingerprint"] == first
    other = {
        "space": parse_space({"focal_gamma": {"low": 0.0, "high": 3.0}}).to_dict(),
        "settings": first["settings"],
    }
    with pytest.raises(ConfigError, match="other settings \\(the search space\\)"):
        open_study(tmp_path, 0, 1, other)
    longer = {"space": first["space"], "settings": settings.replace(num_epochs=5).to_dict()}
    with pytest.raises(ConfigError, match="num_epochs: 2 -> 5"):
        open_study(tmp_path, 0, 1, longer)


def test_opening_a_study_fails_and_requeues_killed_and_interrupted_trials_once(tmp_path):
    from optuna.trial import TrialState

    from genrekit.settings import Settings
    from genrekit.tune.space import parse_space
    from genrekit.tune.study import open_study

    space = parse_space(SPACE)
    fingerprint = {"space": space.to_dict(), "settings": Settings.build().to_dict()}
    study = open_study(tmp_path, 0, 1, fingerprint)
    done = study.ask()
    space.suggest(done)
    study.tell(done, 0.5)
    killed = study.ask()  # left RUNNING, as a SIGKILL leaves it
    killed_params = space.suggest(killed)
    stopped = study.ask()  # Ctrl-C: optuna fails it, the objective marks it interrupted
    stopped_params = space.suggest(stopped)
    stopped.set_user_attr("interrupted", True)
    study.tell(stopped, state=TrialState.FAIL)

    study = open_study(tmp_path, 0, 1, fingerprint)
    states = [t.state for t in study.trials]
    assert states == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.WAITING,
        TrialState.WAITING,
    ]
    again = open_study(tmp_path, 0, 1, fingerprint)  # opened once more: nothing queued twice
    assert len(again.trials) == 5
    retries = [again.ask(), again.ask()]  # the queued trials come first, with their settings
    assert [t.user_attrs["retry_of"] for t in retries] == [1, 2]
    assert [space.suggest(t) for t in retries] == [killed_params, stopped_params]
