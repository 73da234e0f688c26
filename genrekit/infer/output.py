"""Where prediction results go: the resumable per-file log, the JSON or CSV report, and the
console table and summary line (schema: ``docs/inference_schema.md``).

The report and its ``<output>.partial.jsonl`` pass the output policy of
:func:`genrekit.fileio.check_output_path` (:func:`check_report_paths`) before any work. Names the
OS gives that are not UTF-8 are kept exactly: escaped in JSON, with their bytes in hex beside them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from genrekit.errors import OutputInUseError
from genrekit.fileio import (
    OutputKind,
    check_output_path,
    is_utf8_name,
    json_kind,
    name_bytes,
    prefix_kind,
    shown_name,
    write_json_atomic,
    write_text_atomic,
)

log = logging.getLogger(__name__)

RESULT_FORMAT = "genrekit-inference"
RESULT_VERSION = 1
DIGITS = 6  # probabilities are rounded to this many decimals in results
PARTIAL_SUFFIX = ".partial.jsonl"

# What an earlier report or partial log at the output must look like to be replaced.
JSON_REPORT = json_kind("genrekit inference report (JSON)", "format", RESULT_FORMAT)
CSV_REPORT = prefix_kind("genrekit inference report (CSV)", b"file,status,top_genre,")
PARTIAL_LOG = prefix_kind("genrekit partial log", b'{"header": ', empty=True)


def report_kind(output: str | os.PathLike) -> OutputKind:
    """CSV for a ``.csv`` name, JSON otherwise."""
    return CSV_REPORT if Path(output).suffix.lower() == ".csv" else JSON_REPORT


def partial_path(output: str | os.PathLike) -> Path:
    """The partial log of a folder run writing ``output``."""
    output = Path(output)
    return output.with_name(output.name + PARTIAL_SUFFIX)


def check_report_paths(
    output: str | os.PathLike, inputs: Mapping[str | os.PathLike, str] | None = None, *, folder: bool = True
) -> Path:
    """``output`` (and, for a ``folder`` run, its partial log) checked by the output policy
    (:func:`genrekit.fileio.check_output_path`) against the run's ``inputs``; OutputPathError if not."""
    output = check_output_path(output, report_kind(output), inputs=inputs, what="--output")
    if folder:
        check_output_path(partial_path(output), PARTIAL_LOG, inputs=inputs, what="--output's partial log")
    return output


def name_record(key: str) -> dict[str, str]:
    """``{"name_hex": <the name's bytes in hex>}`` for a name that is not valid UTF-8, else ``{}``."""
    return {} if is_utf8_name(key) else {"name_hex": name_bytes(key).hex()}


def rounded(value: float) -> float:
    """A probability as results hold it: rounded to :data:`DIGITS` decimals."""
    return round(float(value), DIGITS)


class PartialLog:
    """``<output>.partial.jsonl``: one JSON line per finished file, appended and fsync'd.

    The first line records the job (``{"header": fingerprint, "input": {"folder": ...}}``: model,
    config, settings, input root). A log of another job is refused (:class:`OutputInUseError`),
    or with ``overwrite`` removed, with a warning; a log cut before its first line ends holds no
    result and is removed.
    """

    def __init__(self, path: Path, fingerprint: dict[str, Any], where: Mapping[str, Any] | None = None):
        self.path = path
        self.fingerprint = fingerprint
        self.where = dict(where or {})
        self.fh: io.TextIOBase | None = None

    def read(self, overwrite: bool = False) -> dict[str, dict[str, Any]]:
        """Entries of an earlier run of the same job, by key (a torn last line is dropped)."""
        if not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end == 0:  # killed while writing the header: nothing was finished
            self.path.unlink()
            return {}
        lines = data[:end].decode("utf-8", errors="replace").splitlines()
        try:
            first = json.loads(lines[0])
            job = (first["header"], first.get("input"))
        except (json.JSONDecodeError, KeyError, TypeError):
            job = None
        if job != (self.fingerprint, self.where):
            self._another_job(overwrite)
            return {}
        if end < len(data):  # a line cut by a crash: drop it so appends start on a new line
            with open(self.path, "r+b") as fh:
                fh.truncate(end)
        entries = {}
        for line in lines[1:]:
            try:
                entry = json.loads(line)
                entries[entry["key"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        return entries

    def _another_job(self, overwrite: bool) -> None:
        if not overwrite:
            raise OutputInUseError(
                f"{self.path} holds the unfinished results of another job (another folder, model or "
                f"settings); finish that run, or pass --overwrite to discard them"
            )
        log.warning("%s: discarding the unfinished results of another job (--overwrite)", self.path)
        self.path.unlink()

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file()
        self.fh = open(self.path, "a", encoding="utf-8")
        if new:
            self.fh.write(json.dumps({"header": self.fingerprint, "input": self.where}) + "\n")
            self.sync()

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:  # ASCII JSON: a name that is not UTF-8 is escaped, and exact
            self.fh.write(json.dumps(entry) + "\n")
        self.sync()

    def sync(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


CSV_COLUMNS = (
    "file",
    "status",
    "top_genre",
    "top_confidence",
    "top_genre_voting",
    "top_vote_share",
    "medium_genre",
    "medium_confidence",
    "medium_path",
    "hierarchy_consistent",
    "labels",
    "num_segments",
    "duration_seconds",
    "warnings",
    "content",
    "error",
    "file_hex",
)


def csv_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per file (results, then errors) with the columns of :data:`CSV_COLUMNS`.

    ``file`` is the name as UTF-8 text (a byte that is not UTF-8 shown as U+FFFD); ``file_hex``
    holds the name's exact bytes in hex when it is not valid UTF-8 (else it is empty).
    """
    rows = []
    for key, res in report["results"].items():
        agg = res["aggregated_results"]
        top, medium = agg["top_genre"], agg["medium_genre"]  # medium None: the model has no medium head
        medium_avg = medium["average_confidence"] if medium else {"name": "", "confidence": "", "path": ""}
        consistent = res["hierarchy"]["consistent"]
        rows.append(
            {
                "file": key,
                "status": "ok",
                "top_genre": top["average_confidence"]["name"],
                "top_confidence": top["average_confidence"]["confidence"],
                "top_genre_voting": top["voting"]["name"],
                "top_vote_share": top["voting"]["share"],
                "medium_genre": medium_avg["name"],
                "medium_confidence": medium_avg["confidence"],
                "medium_path": medium_avg["path"],
                "hierarchy_consistent": "" if consistent is None else consistent,
                "labels": ";".join(label["genre"] for label in agg["all_genres"]["labels"]),
                "num_segments": res["num_segments"],
                "duration_seconds": res["duration_seconds"],
                "warnings": " | ".join(res["warnings"]),
                "content": (res.get("content") or {}).get("flag") or "",  # not music: silence, noise...
                "error": "",
                **_csv_name(key),
            }
        )
    for key, reason in report["errors"].items():
        rows.append({**dict.fromkeys(CSV_COLUMNS, ""), **_csv_name(key), "status": "error", "error": reason})
    return rows


def _csv_name(key: str) -> dict[str, str]:
    text = name_bytes(key).decode("utf-8", errors="replace")
    return {"file": text, "file_hex": name_record(key).get("name_hex", "")}


def to_csv(report: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return buf.getvalue()


def write_report(report: Mapping[str, Any], output: str | os.PathLike) -> Path:
    """Write a run's report atomically: CSV (one row per file) for a ``.csv`` name, JSON otherwise.

    The output policy is checked again (something may have appeared there during the run).
    """
    output = check_output_path(output, report_kind(output), what="--output")
    if output.suffix.lower() == ".csv":
        write_text_atomic(output, to_csv(report))
    else:
        write_json_atomic(output, report, ensure_ascii=False)
    return output


def format_table(results: Mapping[str, Any], errors: Mapping[str, str] | None = None, width: int = 40) -> str:
    """A plain-text table: file, top genre, confidence, medium genre, labels; then the errors.

    Without a medium head (no result has a medium genre) the medium-genre column is left out.
    """

    def cut(text: str, n: int) -> str:
        text = shown_name(text)  # a name that is not UTF-8 prints on any console
        return text if len(text) <= n else "..." + text[-(n - 3) :]

    with_medium = any(res["aggregated_results"].get("medium_genre") for res in results.values())
    header = ("file", "top genre", "conf", "medium genre", "labels")
    rows = []
    for key, res in results.items():
        agg = res["aggregated_results"]
        avg = agg["top_genre"]["average_confidence"]
        medium = agg["medium_genre"]["average_confidence"]["path"] if agg.get("medium_genre") else "-"
        labels = ", ".join(label["genre"] for label in agg["all_genres"]["labels"]) or "-"
        mark = " (!)" if res["hierarchy"]["consistent"] is False else ""
        rows.append((cut(key, width), avg["name"], f"{avg['confidence']:.2f}", medium + mark, labels))
    if not with_medium:
        header = header[:3] + header[4:]
        rows = [row[:3] + row[4:] for row in rows]
    lines = []
    if rows:
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
        lines.append(fmt.format(*header))
        lines.append(fmt.format(*("-" * w for w in widths)))
        lines.extend(fmt.format(*row) for row in rows)
        if any(res["hierarchy"]["consistent"] is False for res in results.values()):
            lines.append("(!) the medium genre is not under the top genre in the genre tree")
    for key, reason in (errors or {}).items():
        lines.append(f"FAILED {shown_name(key)}: {reason}")
    return "\n".join(lines)


def format_summary(summary: Mapping[str, Any]) -> str:
    """One line: files done, failed, skipped, speed."""
    parts = [
        f"{summary['processed']} file(s) done",
        f"{summary['failed']} failed",
    ]
    if summary.get("skipped_non_audio"):
        parts.append(f"{summary['skipped_non_audio']} non-audio skipped")
    if summary.get("resumed"):
        parts.append(f"{summary['resumed']} kept from an earlier run")
    if summary.get("recomputed"):
        parts.append(f"{summary['recomputed']} recomputed (changed since the earlier run)")
    if summary.get("dropped"):
        parts.append(f"{summary['dropped']} earlier result(s) dropped (file gone)")
    if summary.get("with_warnings"):
        parts.append(f"{summary['with_warnings']} with warnings")
    parts.append(f"{summary['seconds']:.1f} s, {summary['files_per_second']:.2f} files/s")
    return ", ".join(parts)
