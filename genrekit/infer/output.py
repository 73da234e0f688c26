"""Where prediction results go: the resumable per-file log, the JSON or CSV report, and the
console table and summary line (schema: ``docs/inference_schema.md``).
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

from genrekit.fileio import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

RESULT_FORMAT = "genrekit-inference"
RESULT_VERSION = 1
DIGITS = 6  # probabilities are rounded to this many decimals in results


def rounded(value: float) -> float:
    """A probability as results hold it: rounded to :data:`DIGITS` decimals."""
    return round(float(value), DIGITS)


class PartialLog:
    """``<output>.partial.jsonl``: one JSON line per finished file, appended and fsync'd.

    The first line holds the run's fingerprint (model, config, settings); a log written by
    another model or with other settings is set aside and the run starts over.
    """

    def __init__(self, path: Path, fingerprint: dict[str, Any]):
        self.path = path
        self.fingerprint = fingerprint
        self.fh: io.TextIOBase | None = None

    def read(self) -> dict[str, dict[str, Any]]:
        """Entries of a previous run with the same fingerprint, by key (a torn last line is dropped)."""
        if not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        lines = data[:end].decode("utf-8", errors="replace").splitlines()
        try:
            header = json.loads(lines[0])["header"] if lines else None
        except (json.JSONDecodeError, KeyError, TypeError):
            header = None
        if header != self.fingerprint:
            log.warning("%s was written by another model or other settings: starting over", self.path)
            self.path.unlink()
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

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file()
        self.fh = open(self.path, "a", encoding="utf-8")
        if new:
            self.fh.write(json.dumps({"header": self.fingerprint}) + "\n")
            self.sync()

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        for entry in entries:
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
)


def csv_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per file (results, then errors) with the columns of :data:`CSV_COLUMNS`."""
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
            }
        )
    for key, reason in report["errors"].items():
        rows.append({**dict.fromkeys(CSV_COLUMNS, ""), "file": key, "status": "error", "error": reason})
    return rows


def to_csv(report: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return buf.getvalue()


def write_report(report: Mapping[str, Any], output: str | os.PathLike) -> Path:
    """Write a run's report atomically: CSV (one row per file) for a ``.csv`` name, JSON otherwise."""
    output = Path(output)
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
        lines.append(f"FAILED {key}: {reason}")
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
    if summary.get("with_warnings"):
        parts.append(f"{summary['with_warnings']} with warnings")
    parts.append(f"{summary['seconds']:.1f} s, {summary['files_per_second']:.2f} files/s")
    return ", ".join(parts)
