"""A resumable Optuna study over training settings, scored on the validation split.

The study lives in ``<output_dir>/study.sqlite3``; each trial trains into ``trials/NNNN/`` (in a
process of its own, :mod:`genrekit.tune.trial`) from one shared feature cache, is reported to
Optuna after every epoch and pruned by a median rule once it has trained ``prune_after`` epochs.
The best trial's settings are kept in ``best_config.json``, a config that ``balanced_trainer.py
--config`` takes. Run the same command again after Ctrl-C or a kill: finished trials stay, the
trial that was running is marked failed and its settings are tried again first.
"""

from __future__ import annotations

import fcntl
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genrekit.errors import ConfigError
from genrekit.fileio import OutputKind, check_output_dir, json_kind, prefix_kind, write_json_atomic
from genrekit.settings import Settings
from genrekit.tune.space import SearchSpace
from genrekit.tune.trial import Pruned, TrialError, run_trial

log = logging.getLogger(__name__)

STUDY_FILE = "study.sqlite3"
STUDY_NAME = "genrekit"
BEST_FILE = "best_config.json"
LOCK_FILE = "study.lock"
# What the study folder's files must look like to be written again (the output policy of genrekit.fileio).
STUDY_FILES = {
    STUDY_FILE: prefix_kind("SQLite study database", b"SQLite format 3\x00", empty=True),
    BEST_FILE: json_kind("genrekit best config (JSON)", "_study"),
    LOCK_FILE: OutputKind("genrekit study lock (an empty file)", lambda head: head == b""),
}
STARTUP_TRIALS = 4  # trials trained to the end before the pruner compares anything


def objective_value(row: dict[str, float], monitor: str, weights: dict[str, float]) -> float:
    """The study's score of one epoch: ``row[monitor]``, except ``val_score``, recomputed with ``weights``.

    The trainer's ``val_score`` weights the heads like their losses; a study that varies the loss
    weights would then compare trials on different scales, so the study scores every trial with the
    same (its base settings') weights: top and medium balanced accuracy and all-genres LRAP.
    """
    if monitor != "val_score":
        if monitor not in row:
            raise ConfigError(f"monitor {monitor!r} is not in the training log (columns: {', '.join(row)})")
        return float(row[monitor])
    parts = {"top": row.get("val_top_balanced_accuracy"), "all": row.get("val_all_lrap")}
    if "val_medium_balanced_accuracy" in row and not math.isnan(row["val_medium_balanced_accuracy"]):
        parts["medium"] = row["val_medium_balanced_accuracy"]
    total = sum(weights[k] for k in parts)
    return float(sum(weights[k] * float(v) for k, v in parts.items()) / total)


@contextmanager
def study_lock(folder: Path) -> Iterator[None]:
    """One process per study folder: a second one gets one clear error instead of racing."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK_FILE, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{folder}: another tuning process is using this study folder") from None
        yield


def open_study(folder: Path, seed: int, prune_after: int, fingerprint: dict[str, Any]) -> Any:
    """The study in ``folder`` (created or loaded), its killed trials failed and queued again.

    ``fingerprint`` (search space and base settings) is stored with a new study; a study made
    with another one is refused, naming what differs.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials: our progress line, no traceback
    storage = optuna.storages.RDBStorage(f"sqlite:///{(folder / STUDY_FILE).resolve()}")
    study = optuna.create_study(
        study_name=STUDY_NAME,
        storage=storage,
        direction="maximize",
        pruner=optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=prune_after),
        load_if_exists=True,
    )
    _check_fingerprint(study, folder, fingerprint)
    retry_killed(study, storage)
    # A fresh sampler seeded by the trials so far: a resumed study does not draw its first trials again.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=STARTUP_TRIALS)
    return study


def _check_fingerprint(study: Any, folder: Path, fingerprint: dict[str, Any]) -> None:
    saved = study.user_attrs.get("fingerprint")
    if saved is None:
        study.set_user_attr("fingerprint", fingerprint)
        return
    from genrekit.train.run import settings_differences

    diffs = []
    if saved["space"] != fingerprint["space"]:
        diffs.append("the search space")
    diffs += settings_differences(saved["settings"], Settings.build(overrides=fingerprint["settings"]))
    if diffs:
        raise ConfigError(
            f"{folder} holds a study made with other settings ({'; '.join(diffs)}): use another --output_dir"
        )


def retry_killed(study: Any, storage: Any) -> list[int]:
    """Mark the trials a killed process left RUNNING as failed, and queue the settings of those
    and of trials stopped by Ctrl-C again (once each). Returns the numbers of the trials queued.

    Only one process uses a study folder (:func:`study_lock`), so every RUNNING trial found on
    opening was killed.
    """
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    study_id = storage.get_study_id_from_name(study.study_name)
    queued = []
    for frozen in trials:
        if frozen.state == TrialState.RUNNING:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
        elif not (frozen.state == TrialState.FAIL and frozen.user_attrs.get("interrupted")):
            continue
        if frozen.params and frozen.number not in retried:
            study.enqueue_trial(frozen.params, user_attrs={"retry_of": frozen.number})
            queued.append(frozen.number)
        log.warning(
            "trial %d was stopped while running: marked failed, its settings queued again", frozen.number
        )
    return queued


def make_objective(
    settings: Settings,
    space: SearchSpace,
    folder: Path,
    paths: dict[str, str | None],
) -> Callable[[Any], float]:
    """The Optuna objective: train the trial's settings, report each epoch, return the best score."""
    import optuna

    weights = settings.loss_weights

    def objective(trial: Any) -> float:
        params = space.suggest(trial)
        out = folder / "trials" / f"{trial.number:04d}"
        trial.set_user_attr("folder", str(out.relative_to(folder)))
        best = -math.inf

        def on_epoch(epoch: int, row: dict[str, float]) -> bool:
            nonlocal best
            best = max(best, objective_value(row, settings.monitor, weights))
            trial.report(best, step=epoch)
            return epoch < settings.num_epochs and trial.should_prune()

        try:
            trial_settings = settings.replace(**params)  # ConfigError: a combination the settings refuse
            request = {"settings": trial_settings.to_dict(), "output_dir": str(out), **paths}
            run_trial(request, out, on_epoch)
            if best == -math.inf:
                raise TrialError(f"trial training in {out} logged no epoch")
        except (TrialError, ConfigError) as exc:
            trial.set_user_attr("error", str(exc))  # for the progress line; the study goes on
            raise
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)  # queued again by the next run (retry_killed)
            raise
        except Pruned as exc:
            trial.set_user_attr("epochs", exc.epochs)
            raise optuna.TrialPruned(str(exc)) from None
        return best

    return objective


def tune(
    settings: Settings,
    space: SearchSpace,
    output_dir: str | Path,
    n_trials: int,
    *,
    defaults: Settings | None = None,
    prune_after: int = 1,
    timeout: float | None = None,
    metadata_dir: str | None = None,
    audio_dir: str | None = None,
    cache_dir: str | None = None,
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the study until it holds ``n_trials`` finished (complete or pruned) trials.

    ``settings`` are the base of every trial (each trains ``settings.num_epochs`` epochs at most);
    ``defaults`` (config.py's) decides which of them ``best_config.json`` repeats: the ones that
    differ, plus the best trial's values. ``echo`` gets one progress line per trial. Returns the
    summary that is also written as the ``_study`` note of the best config.

    Raises
    ------
    ConfigError
        For a bad ``n_trials`` or ``prune_after``, a study folder in use or made with other settings.
    """
    if n_trials < 1:
        raise ConfigError(f"n_trials={n_trials} must be a positive integer")
    if not 1 <= prune_after <= settings.num_epochs:
        raise ConfigError(
            f"prune_after={prune_after} must be between 1 and num_epochs ({settings.num_epochs})"
        )
    folder = check_output_dir(output_dir, STUDY_FILES)  # before any work
    settings = settings.replace(
        **{k: v for k, v in (("metadata_dir", metadata_dir), ("audio_dir", audio_dir)) if v}
    )
    paths = {"cache_dir": str(Path(cache_dir or settings.cache_dir).resolve())}
    fingerprint = {"space": space.to_dict(), "settings": settings.to_dict()}
    with study_lock(folder):
        study = open_study(folder, settings.seed, prune_after, fingerprint)
        remaining = n_trials - len(_finished(study))
        echo(
            f"study {folder / STUDY_FILE}: {len(_finished(study))} trials finished, {remaining} to run "
            f"(up to {settings.num_epochs} epochs each, pruning from epoch {prune_after}); space: {space.describe()}"
        )
        if remaining > 0:
            prepare_cache(settings, paths["cache_dir"])
            progress = Progress(n_trials, echo, lambda s: write_best(s, folder, settings, defaults, n_trials))
            study.optimize(
                make_objective(settings, space, folder, paths),
                n_trials=remaining,
                timeout=timeout,
                catch=(TrialError, ConfigError),
                callbacks=[progress],
                gc_after_trial=True,
            )
        summary = write_best(study, folder, settings, defaults, n_trials)
    echo(_closing_line(summary, folder))
    return summary


def prepare_cache(settings: Settings, cache_dir: str) -> None:
    """Build the feature cache every trial shares, once, before the first trial (and check the data)."""
    from genrekit.train.run import BalancedGenreProcessor

    processor = BalancedGenreProcessor(settings)
    processor.extract_features(processor.load_dataset(), cache_dir=cache_dir)


def _finished(study: Any) -> list[Any]:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


class Progress:
    """The progress line of each trial: number, outcome, score, best so far, seconds, settings."""

    def __init__(self, n_trials: int, echo: Callable[[str], None], on_complete: Callable[[Any], Any]):
        self.n_trials, self.echo, self.on_complete = n_trials, echo, on_complete

    def __call__(self, study: Any, frozen: Any) -> None:
        from optuna.trial import TrialState

        seconds = (frozen.datetime_complete - frozen.datetime_start).total_seconds()
        if frozen.state == TrialState.COMPLETE:
            outcome = f"value {frozen.value:.4f}"
            self.on_complete(study)
        elif frozen.state == TrialState.PRUNED:
            last = frozen.intermediate_values
            outcome = f"pruned after {max(last)} epochs at {last[max(last)]:.4f}" if last else "pruned"
        else:
            outcome = f"failed: {frozen.user_attrs.get('error', 'stopped')}"
        try:
            best = f"best {study.best_value:.4f} (trial {study.best_trial.number})"
        except ValueError:
            best = "no best yet"
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in frozen.params.items())
        self.echo(
            f"trial {frozen.number} [{len(_finished(study))}/{self.n_trials}]: {outcome}; {best}; "
            f"{seconds:.0f} s; {params}"
        )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_best(
    study: Any, folder: Path, settings: Settings, defaults: Settings | None, n_trials: int
) -> dict[str, Any]:
    """Write ``best_config.json`` (atomically) from the best complete trial; return the study summary."""
    from optuna.trial import TrialState

    counts = {state.name.lower(): 0 for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name.lower() in counts:
            counts[trial.state.name.lower()] += 1
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    summary: dict[str, Any] = {"study": str(folder / STUDY_FILE), "trials": counts, "n_trials": n_trials}
    if not complete:
        return summary
    best = study.best_trial
    base = defaults.to_dict() if defaults is not None else {}
    values = {k: v for k, v in settings.to_dict().items() if k != "output_dir" and base.get(k, object()) != v}
    values.update(best.params)
    summary.update(
        best_trial=best.number,
        best_value=best.value,
        monitor=settings.monitor,
        best_folder=best.user_attrs.get("folder"),
        epochs_per_trial=settings.num_epochs,
        config=str(folder / BEST_FILE),
    )
    Settings.build(overrides=values)  # what balanced_trainer.py --config will build: checked here
    write_json_atomic(folder / BEST_FILE, {"_study": summary, **values})
    return summary


def _closing_line(summary: dict[str, Any], folder: Path) -> str:
    counts = ", ".join(f"{n} {state}" for state, n in summary["trials"].items())
    if "best_trial" not in summary:
        return f"no trial finished yet ({counts}); run the same command again to continue"
    return (
        f"best: trial {summary['best_trial']}, {summary['monitor']} {summary['best_value']:.4f} ({counts}); "
        f"config {summary['config']}: train it with  python balanced_trainer.py --config {summary['config']} "
        f"--output_dir {folder / 'best'} --epochs N  (the trials trained {summary['epochs_per_trial']})"
    )
