"""One trial of a study: a training in its own process, watched epoch by epoch and stopped when pruned.

The parent (:mod:`genrekit.tune.study`) starts ``python -m genrekit.tune.trial REQUEST.json``,
which runs :func:`genrekit.train.run.train` into the trial's folder. After each epoch the parent
reads the new row of the folder's ``training_log.csv``, reports it to Optuna and ends the process
when the pruner says so: no hook inside the trainer is needed, and every trial starts with a
fresh TensorFlow. The child ends itself when its parent dies (its stdin closes), so a killed
study leaves no training behind.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genrekit.errors import GenrekitError

REQUEST_FILE = "trial_request.json"
LOG_FILE = "trial.log"
POLL_SECONDS = 0.5


class TrialError(GenrekitError):
    """A trial whose training process failed (its log names the cause)."""


class Pruned(Exception):
    """The pruner stopped a trial after ``epochs`` epochs."""

    def __init__(self, epochs: int):
        super().__init__(f"pruned after {epochs} epochs")
        self.epochs = epochs


def read_epochs(path: Path) -> list[dict[str, float]]:
    """The complete rows of a training_log.csv that may still be written (a last partial line is left)."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = []
    for row in csv.DictReader(io.StringIO(text)):
        rows.append({k: float(v) if v not in ("", None) else float("nan") for k, v in row.items()})
    return rows


def run_trial(
    request: dict[str, Any],
    folder: Path,
    on_epoch: Callable[[int, dict[str, float]], bool],
) -> list[dict[str, float]]:
    """Train ``request`` in a child process into ``folder``; return the epochs' rows.

    ``on_epoch(epoch_number, row)`` is called for every new row (epoch_number from 1); when it
    returns True the training is ended and :class:`Pruned` is raised.

    Raises
    ------
    Pruned
        When ``on_epoch`` asked for it.
    TrialError
        When the training process exits with an error (the last line of its log in the message).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REQUEST_FILE).write_text(json.dumps(request, indent=1), encoding="utf-8")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    log_path = folder / LOG_FILE
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "genrekit.tune.trial", str(folder / REQUEST_FILE)],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    seen: list[dict[str, float]] = []
    try:
        while True:
            done = proc.poll() is not None
            rows = read_epochs(Path(request["output_dir"]) / "training_log.csv")
            for row in rows[len(seen) :]:
                seen.append(row)
                if on_epoch(len(seen), row):
                    raise Pruned(len(seen))
            if done:
                break
            time.sleep(POLL_SECONDS)
    finally:
        _end(proc)
    if proc.returncode != 0:
        raise TrialError(
            f"trial training in {folder} failed (exit {proc.returncode}): {_last_line(log_path)}"
        )
    return seen


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(empty log)"])[-1].strip()


def _exit_with_parent() -> None:
    """End this process when the parent's end of stdin closes (the study was killed or ended)."""

    def watch() -> None:
        try:  # os.read, not sys.stdin: a thread blocked in a buffered read would stall shutdown
            while os.read(0, 4096):
                pass
        finally:
            os._exit(75)

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """The child: train the request in ``argv[0]`` (see :func:`run_trial`)."""
    argv = sys.argv[1:] if argv is None else argv
    _exit_with_parent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    from genrekit.settings import Settings
    from genrekit.train.run import train

    settings = Settings.build(overrides=request["settings"])
    try:
        train(
            settings,
            request["output_dir"],
            request.get("metadata_dir"),
            request.get("audio_dir"),
            cache_dir=request.get("cache_dir"),
        )
    except GenrekitError as exc:
        print(f"error: {exc}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
