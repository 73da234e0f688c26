"""A folder run's bookkeeping: what an earlier run of the same job already did, the log of
finished files, and the report's summary (schema: ``docs/inference_schema.md``).

A job is what made a report: the model's fingerprint (model file, training config, the settings
that shape results) and the input (the resolved folder, or the single file). A run resumes from
``<output>.partial.jsonl`` (:class:`~genrekit.infer.output.PartialLog`) and from a finished JSON
report of the same job only; a report or log of another job is refused unless ``overwrite``.
An earlier result is kept only while its file's size and modification time are those recorded
with it (:func:`resume_plan`); :class:`ResultLog` appends finished files to the partial log a
handful at a time.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrekit.errors import OutputInUseError
from genrekit.infer.output import RESULT_FORMAT, RESULT_VERSION, PartialLog, name_record, partial_path

__all__ = [
    "ResultLog",
    "ResumePlan",
    "file_identity",
    "files_section",
    "folder_report",
    "in_order",
    "previous_report",
    "resume_plan",
    "summary",
]

log = logging.getLogger(__name__)

SYNC_FILES = 8  # the partial log is fsync'd after this many files ...
SYNC_SECONDS = 1.0  # ... or this long after the last fsync, whichever comes first
INPUT_KEYS = ("folder", "file")  # the ``run`` keys that name a report's input


def file_identity(path: str | os.PathLike) -> dict[str, int] | None:
    """``{"size", "mtime_ns"}`` of the file at ``path`` (a link followed); None if it cannot be read."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def report_job(report: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """``(fingerprint, input)`` of a report: what made it."""
    run = report.get("run", {})
    return run.get("fingerprint"), {k: run[k] for k in INPUT_KEYS if k in run}


def job_difference(old: tuple[Any, dict[str, Any]] | None, new: tuple[Any, dict[str, Any]]) -> str:
    """In a few words, how the job of an earlier report differs from this one."""
    if old is None:
        return "it cannot be read"
    (old_fp, old_in), (new_fp, new_in) = old, new
    if old_in != new_in:
        kind, where = next(iter(old_in.items()), ("input", "?"))
        return f"{kind} {where}"
    if not isinstance(old_fp, dict) or old_fp.get("model") != new_fp.get("model"):
        model = old_fp.get("model") if isinstance(old_fp, dict) else None
        return f"model {model}" if model else "another model"
    diffs = [k for k in sorted(set(old_fp) | set(new_fp)) if old_fp.get(k) != new_fp.get(k)]
    return "another " + ", ".join(diffs)


def previous_report(
    output: Path, fingerprint: Mapping[str, Any], where: Mapping[str, Any], overwrite: bool = False
) -> dict[str, dict[str, Any]]:
    """Entries of a finished report at ``output`` made by the same job (``fingerprint`` and
    ``where``, its input), with the identity recorded for each file.

    A JSON report of another job, or one that cannot be read, raises OutputInUseError; with
    ``overwrite`` it is ignored (and later replaced), with a warning. A CSV report records no job:
    its rows are never reused and it is replaced, with a note.
    """
    if not output.is_file():
        return {}
    if output.suffix.lower() == ".csv":
        log.warning(
            "%s: replacing the earlier CSV report (a CSV report records no job: its rows are not reused)",
            output,
        )
        return {}
    try:
        old = json.loads(output.read_text(encoding="utf-8"))
        job = report_job(old)
        results, errors, files = old["results"], old["errors"], old.get("files", {})
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
        job = None
    new = (dict(fingerprint), dict(where))
    if job != new:
        why = job_difference(job, new)
        if not overwrite:
            raise OutputInUseError(
                f"{output} holds the report of another job ({why}); give another --output, or pass "
                f"--overwrite to replace it"
            )
        log.warning("%s: starting a new report in place of another job's (%s) (--overwrite)", output, why)
        return {}
    entries = {k: {"key": k, "result": v, **files.get(k, {})} for k, v in results.items()}
    entries.update({k: {"key": k, "error": v, **files.get(k, {})} for k, v in errors.items()})
    return entries


@dataclass
class ResumePlan:
    """What a run keeps from earlier runs: ``kept`` entries by key, the keys ``changed`` since
    (recomputed) and the keys whose files are ``gone`` (dropped)."""

    kept: dict[str, dict[str, Any]] = field(default_factory=dict)
    changed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)


def resume_plan(
    previous: Mapping[str, Mapping[str, Any]], identities: Mapping[str, dict[str, int] | None]
) -> ResumePlan:
    """Sort earlier entries: kept while the file's size and mtime are the recorded ones."""
    plan = ResumePlan()
    for key, entry in previous.items():
        if key not in identities:
            plan.gone.append(key)
        elif identities[key] is not None and identities[key] == _identity_of(entry):
            plan.kept[key] = dict(entry)
        else:
            plan.changed.append(key)
    return plan


def _identity_of(entry: Mapping[str, Any]) -> dict[str, Any] | None:
    if "size" not in entry or "mtime_ns" not in entry:  # a report of before identities: recompute
        return None
    return {"size": entry["size"], "mtime_ns": entry["mtime_ns"]}


def files_section(
    keys: Iterable[str], identities: Mapping[str, dict[str, int] | None]
) -> dict[str, dict[str, Any]]:
    """The report's ``files``: per file, its identity when predicted and, for a name that is not
    UTF-8, its bytes in hex."""
    return {key: {**(identities.get(key) or {}), **name_record(key)} for key in keys}


class ResultLog:
    """The partial log of a folder run (None: no output, nothing is logged), written in batches.

    :meth:`done` gives what earlier runs of the same job finished; :meth:`add` takes every
    finished file (the ``on_result`` of
    :meth:`~genrekit.infer.predict.MusicGenreInference.predict_files`) with the file's identity
    (``identities``): one fsync per handful of files, not per file, cheap, and little is ever lost.
    """

    def __init__(
        self,
        output: Path | None,
        fingerprint: dict[str, Any],
        where: Mapping[str, Any] | None = None,
        identities: Mapping[str, dict[str, int] | None] | None = None,
    ):
        self.output = output
        self.where = dict(where or {})
        self.partial = None
        if output is not None:
            self.partial = PartialLog(partial_path(output), fingerprint, self.where)
        self.fingerprint = fingerprint
        self.identities = dict(identities or {})
        self.batch: list[dict[str, Any]] = []
        self.last_sync = time.perf_counter()

    def done(self, overwrite: bool = False) -> dict[str, dict[str, Any]]:
        """Entries of earlier runs of this job (finished report, then partial log), by key; opens
        the log. OutputInUseError for another job's report or log, unless ``overwrite``."""
        if self.partial is None:
            return {}
        previous = previous_report(self.output, self.fingerprint, self.where, overwrite)
        previous.update(self.partial.read(overwrite))
        self.partial.open()
        return previous

    def add(self, key: str, result: dict[str, Any] | None, error: str | None) -> None:
        entry = {"key": key, "result": result} if error is None else {"key": key, "error": error}
        self.batch.append({**entry, **(self.identities.get(key) or {}), **name_record(key)})
        if len(self.batch) >= SYNC_FILES or time.perf_counter() - self.last_sync > SYNC_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.partial is not None and self.batch:
            self.partial.append(self.batch)
        self.batch.clear()
        self.last_sync = time.perf_counter()

    def close(self) -> None:
        self.flush()
        if self.partial is not None:
            self.partial.close()

    def remove(self) -> None:
        """Delete the partial log (the report is written)."""
        if self.partial is not None:
            self.partial.path.unlink(missing_ok=True)


def in_order(
    keys: Iterable[str],
    new_results: Mapping[str, Any],
    new_errors: Mapping[str, str],
    previous: Mapping[str, Mapping[str, Any]],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Results and errors by key in the order of ``keys``, this run's before an earlier run's."""
    results, errors = {}, {}
    for key in keys:
        if key in new_results:
            results[key] = new_results[key]
        elif key in new_errors:
            errors[key] = new_errors[key]
        elif key in previous:
            entry = previous[key]
            if entry.get("error") is not None:
                errors[key] = entry["error"]
            else:
                results[key] = entry["result"]
    return results, errors


def summary(
    results: Mapping[str, Any],
    errors: Mapping[str, str],
    *,
    files_found: int,
    skipped_non_audio: int,
    resumed: int,
    seconds: float,
    done_now: int,
    work_seconds: float,
    recomputed: int = 0,
    dropped: int = 0,
) -> dict[str, Any]:
    """The ``summary`` of a report: counts, time, speed and how often each top genre came out.

    ``resumed`` results were kept from an earlier run of the same job, ``recomputed`` earlier
    ones were made again because their file changed, ``dropped`` ones left out: their file is gone.
    """
    top_counts: dict[str, int] = {}
    for res in results.values():
        name = res["aggregated_results"]["top_genre"]["average_confidence"]["name"]
        top_counts[name] = top_counts.get(name, 0) + 1
    return {
        "files_found": files_found,
        "audio_files": files_found - skipped_non_audio,
        "processed": len(results),
        "failed": len(errors),
        "skipped_non_audio": skipped_non_audio,
        "resumed": resumed,
        "recomputed": recomputed,
        "dropped": dropped,
        "with_warnings": sum(1 for r in results.values() if r["warnings"]),
        "segments": sum(r["num_segments"] for r in results.values()),
        "seconds": round(seconds, 3),
        "files_per_second": round(done_now / work_seconds, 3) if done_now and work_seconds > 0 else 0.0,
        "top_genre_counts": dict(sorted(top_counts.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def folder_report(
    run: Mapping[str, Any],
    results: Mapping[str, Any],
    errors: Mapping[str, str],
    skipped: list[str],
    summary: Mapping[str, Any],
    files: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A report of the folder schema (``files``: :func:`files_section`)."""
    return {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "run": dict(run),
        "results": dict(results),
        "errors": dict(errors),
        "skipped": skipped,
        "files": dict(files or {}),
        "summary": dict(summary),
    }


def collect_answers(
    answers: Iterable[tuple[str, dict[str, Any] | None, str | None]],
    total: int,
    on_result: Callable[[str, dict[str, Any] | None, str | None], None] | None = None,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Sort ``(key, result, error)`` answers into ``(results, errors)`` by key, calling
    ``on_result`` for each as it comes and counting it on a progress bar of ``total`` files."""
    from tqdm.auto import tqdm

    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    bar = tqdm(total=total, unit="file", disable=not progress, dynamic_ncols=True, smoothing=0.05)
    try:
        for key, result, error in answers:
            if error is None:
                results[key] = result
            else:
                errors[key] = error
            if on_result is not None:
                on_result(key, result, error)
            bar.update(1)
    finally:
        bar.close()
    return results, errors
