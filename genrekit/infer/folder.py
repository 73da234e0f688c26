"""A folder run's bookkeeping: what an interrupted run already did, the log of finished files,
and the report's summary (schema: ``docs/inference_schema.md``).

An interrupted run resumes from ``<output>.partial.jsonl`` (:class:`~genrekit.infer.output.PartialLog`)
and from a finished JSON report made with the same model and settings; :class:`ResultLog` appends
finished files to the partial log a handful at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from genrekit.infer.output import RESULT_FORMAT, RESULT_VERSION, PartialLog

__all__ = ["ResultLog", "folder_report", "in_order", "previous_report", "summary"]

SYNC_FILES = 8  # the partial log is fsync'd after this many files ...
SYNC_SECONDS = 1.0  # ... or this long after the last fsync, whichever comes first


def previous_report(output: Path, fingerprint: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Entries of a finished JSON report at ``output`` made with the same model and settings."""
    if output.suffix.lower() == ".csv" or not output.is_file():
        return {}
    try:
        old = json.loads(output.read_text(encoding="utf-8"))
        if old.get("run", {}).get("fingerprint") != fingerprint:
            return {}
        entries = {k: {"key": k, "result": v} for k, v in old["results"].items()}
        entries.update({k: {"key": k, "error": v} for k, v in old["errors"].items()})
        return entries
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
        return {}


class ResultLog:
    """The partial log of a folder run (None: no output, nothing is logged), written in batches.

    :meth:`done` gives what earlier runs finished; :meth:`add` takes every finished file (the
    ``on_result`` of :meth:`~genrekit.infer.predict.MusicGenreInference.predict_files`): one
    fsync per handful of files, not per file, cheap, and little is ever lost.
    """

    def __init__(self, output: Path | None, fingerprint: dict[str, Any]):
        self.output = output
        self.partial = None
        if output is not None:
            self.partial = PartialLog(output.with_name(output.name + ".partial.jsonl"), fingerprint)
        self.fingerprint = fingerprint
        self.batch: list[dict[str, Any]] = []
        self.last_sync = time.perf_counter()

    def done(self) -> dict[str, dict[str, Any]]:
        """Entries of earlier runs (finished report, then partial log), by key; opens the log."""
        if self.partial is None:
            return {}
        previous = previous_report(self.output, self.fingerprint)
        previous.update(self.partial.read())
        self.partial.open()
        return previous

    def add(self, key: str, result: dict[str, Any] | None, error: str | None) -> None:
        self.batch.append({"key": key, "result": result} if error is None else {"key": key, "error": error})
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
) -> dict[str, Any]:
    """The ``summary`` of a report: counts, time, speed and how often each top genre came out."""
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
) -> dict[str, Any]:
    """A report of the folder schema."""
    return {
        "format": RESULT_FORMAT,
        "version": RESULT_VERSION,
        "run": dict(run),
        "results": dict(results),
        "errors": dict(errors),
        "skipped": skipped,
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
