"""The evaluation report: every figure in ``evaluation_report.json``, a readable ``evaluation_report.md``.

Both files and the PNG plots are written under temporary names and moved into place, so an
interrupted run never leaves a half-written report behind.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrekit.fileio import (
    OutputKind,
    check_output_dir,
    json_kind,
    prefix_kind,
    write_json_atomic,
    write_text_atomic,
)

__all__ = ["PLOTS_DIR", "REPORT_JSON", "REPORT_MD", "ReportPaths", "render_markdown", "write_report"]

REPORT_JSON = "evaluation_report.json"
REPORT_MD = "evaluation_report.md"
PLOTS_DIR = "plots"  # PNGs go in this sub-folder; the Markdown links them relatively
# What an earlier report must look like to be replaced (the output policy of genrekit.fileio).
EVALUATION_JSON = json_kind("genrekit evaluation report (JSON)", "counts")
EVALUATION_MD = prefix_kind("genrekit evaluation report (Markdown)", b"# Evaluation")


def report_files(plots: bool = True) -> dict[str, OutputKind]:
    """The files :func:`write_report` writes in its folder, by relative name, with their kinds."""
    from genrekit.evaluate.plots import MATPLOTLIB_PNG, PLOT_NAMES

    files = {REPORT_JSON: EVALUATION_JSON, REPORT_MD: EVALUATION_MD}
    if plots:
        for level in ("top", "medium"):
            files.update({f"{PLOTS_DIR}/{level}_{name}.png": MATPLOTLIB_PNG for name in PLOT_NAMES})
    return files


def check_report_dir(
    out_dir: str | os.PathLike, inputs: Mapping[str | os.PathLike, str], plots: bool = True
) -> Path:
    """The output policy (:func:`genrekit.fileio.check_output_dir`) for a report folder, before any work:
    OutputPathError for a folder that is not one, or a report file there that is an input, audio,
    a link, not a regular file or not a report genrekit wrote."""
    return check_output_dir(out_dir, report_files(plots), inputs=inputs)


_LEVEL_TITLES = {"top": "Top-level genres", "medium": "Medium genres"}


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`write_report` put its files."""

    json: Path
    markdown: Path
    plots: dict[str, Path] = field(default_factory=dict)


# --- formatting ------------------------------------------------------------------------------------


def _num(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _pct(x: Any, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


def _cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(headers) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = [
        "| " + " | ".join(_cell(h) for h in headers) + " |",
        "| " + " | ".join(marks[a] for a in align) + " |",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _image(plots: Mapping[str, str], key: str, alt: str) -> str:
    # A blank line after each image keeps renderers from packing large images onto one line.
    return f"![{alt}]({plots[key]})\n\n" if key in plots else ""


# --- sections ----------------------------------------------------------------------------------------


def _counts(results: Mapping[str, Any]) -> str:
    c = results["counts"]
    ex = c["excluded"]
    rows = [
        ("Tracks given", c["tracks"]),
        ("Tracks evaluated (with at least one segment)", c["tracks_evaluated"]),
        ("Segments", c["segments"]),
        ("Defective files left out before evaluation (could not be decoded)", c["defective_files"]),
        ("Tracks without segments (left out everywhere)", c["tracks_without_segments"]),
        ("Tracks without a top-genre target (left out of top-genre metrics)", ex["top_no_target"]),
        (
            "Tracks without a medium-genre target (left out of medium-genre metrics)",
            ex.get("medium_no_target"),
        ),
        ("Tracks without any genre label (left out of all-genres metrics)", ex["all_no_labels"]),
    ]
    rows = [row for row in rows if row[1] is not None]  # no medium row without a medium head
    return "## Data\n\n" + _table(["", "count"], rows) + "\n"


def _single_label_table(results: Mapping[str, Any]) -> str:
    rows = []
    for level in single_label_levels(results):
        for unit in ("track", "segment"):
            m = results[level][unit]
            rows.append(
                (
                    f"{_LEVEL_TITLES[level]}, {unit}s",
                    m["n"],
                    _num(m["accuracy"]),
                    _num(m["balanced_accuracy"]),
                    _num(m["f1_macro"]),
                    _num(m["f1_weighted"]),
                    _num(m["top_k_accuracy"]),
                )
            )
    k = results["settings"]["top_k"]
    return _table(
        ["Head", "n", "accuracy", "balanced accuracy", "F1 macro", "F1 weighted", f"top-{k} accuracy"], rows
    )


_MULTI_LABEL_COLUMNS = (
    "Head",
    "n",
    "Hamming loss",
    "Jaccard (samples)",
    "F1 micro",
    "F1 macro",
    "LRAP",
    "coverage error",
    "ranking loss",
)


def _multi_label_table(results: Mapping[str, Any]) -> str:
    rows = []
    for unit in ("track", "segment"):
        m = results["all"][unit]
        rows.append(
            (
                f"All genres, {unit}s",
                m["n"],
                _num(m["hamming_loss"], 4),
                _num(m["jaccard_samples"]),
                _num(m["f1_micro"]),
                _num(m["f1_macro"]),
                _num(m["lrap"]),
                _num(m["coverage_error"], 2),
                _num(m["ranking_loss"], 4),
            )
        )
    return _table(_MULTI_LABEL_COLUMNS, rows)


def _thresholds_note(results: Mapping[str, Any]) -> str:
    threshold = results["settings"]["threshold"]
    fixed = results["all"].get("track_fixed_threshold")
    if not fixed:
        return f"All-genres labels are predicted above a probability of {threshold:g}. "
    return (
        "All-genres labels are predicted above per-genre thresholds chosen on the validation split "
        f"(saved with the model); at the fixed threshold {threshold:g} the track Jaccard index would be "
        f"{_num(fixed['jaccard_samples'])} (F1 micro {_num(fixed['f1_micro'])}). "
    )


def _headline(results: Mapping[str, Any]) -> str:
    return (
        "## Headline\n\n"
        "Track figures average each track's segment probabilities, as inference does; segment "
        "figures score every segment against its track's target.\n\n"
        f"{_single_label_table(results)}\n\n{_multi_label_table(results)}\n\n"
        f"{_thresholds_note(results)}"
        "F1 macro averages over the classes present in the targets or the predictions.\n"
    )


def _targets(results: Mapping[str, Any]) -> str:
    rows = []
    for t in results["targets"]:
        verdict = "n/a" if t["passed"] is None else ("**PASS**" if t["passed"] else "**FAIL**")
        rows.append((t["name"], f"> {t['target']:.2f}", _num(t["value"]), verdict))
    passed = sum(1 for t in results["targets"] if t["passed"])
    return (
        "## Performance targets\n\n"
        f"{passed} of {len(results['targets'])} targets of the README met (measured on tracks).\n\n"
        + _table(["Metric", "target", "measured", "result"], rows, "lrrc")
        + "\n"
    )


def single_label_levels(results: Mapping[str, Any]) -> tuple[str, ...]:
    """The single-label levels evaluated: ``top``, and ``medium`` when the model has a medium head."""
    return tuple(level for level in ("top", "medium") if level in results)


def _per_class(results: Mapping[str, Any], level: str, plots: Mapping[str, str]) -> str:
    if level not in results:
        return ""
    section = results[level]
    per_class = [r for r in section["track"]["per_class"] if r["support"] > 0]
    per_class.sort(key=lambda r: (-r["support"], r["name"]))
    stability = {g["index"]: g["mean"] for g in section["stability"]["per_genre"]}
    rows = [
        (
            r["name"],
            r["genre_id"],
            r["support"],
            r["predicted"],
            _num(r["precision"]),
            _num(r["recall"]),
            _num(r["f1"]),
            _num(stability.get(r["index"])),
        )
        for r in per_class
    ]
    absent = len(section["track"]["per_class"]) - len(per_class)
    note = f"\n{absent} classes have no track in this set and are not listed.\n" if absent else ""
    v = section["voting"]
    title = _LEVEL_TITLES[level]
    return (
        f"## {title}: per genre\n\n"
        f"Tracks, sorted by support. Stability: mean share of a track's segments that agree with "
        f"the track's prediction.\n\n"
        + _table(
            ["Genre", "genre id", "support", "predicted", "precision", "recall", "F1", "stability"], rows
        )
        + f"\n{note}\n"
        + _image(plots, f"{level}_f1", f"F1 per genre, {title.lower()}")
        + "\n"
        + _image(plots, f"{level}_confusion", f"Confusion matrix, {title.lower()}")
        + f"\nMajority voting instead of averaging: accuracy {_num(v['accuracy'])}, balanced accuracy "
        f"{_num(v['balanced_accuracy'])}, F1 macro {_num(v['f1_macro'])}; voting picks the same genre "
        f"as averaging for {_pct(v['agreement_with_average'])} of the tracks.\n"
    )


def _all_genres(results: Mapping[str, Any], max_rows: int = 25) -> str:
    m = results["all"]["track"]
    rows = [
        (r["name"], r["support"], r["predicted"], _num(r["precision"]), _num(r["recall"]), _num(r["f1"]))
        for r in m["per_label"][:max_rows]
    ]
    more = len(m["per_label"]) - len(rows)
    note = f"\n{more} more labels in `{REPORT_JSON}`.\n" if more > 0 else ""
    return (
        "## All genres (multi-label)\n\n"
        f"On average a track has {_num(m['mean_true_labels'], 2)} true labels and "
        f"{_num(m['mean_predicted_labels'], 2)} predicted; {m['no_prediction']} of {m['n']} tracks "
        f"have no label above the threshold. Micro precision {_num(m['precision_micro'])}, micro "
        f"recall {_num(m['recall_micro'])}.\n\n"
        f"The {len(rows)} most frequent labels:\n\n"
        + _table(["Genre", "support", "predicted", "precision", "recall", "F1"], rows)
        + f"\n{note}"
    )


def _hierarchy(results: Mapping[str, Any]) -> str:
    h = results["hierarchy"]
    if "skipped" in h:
        return f"## Hierarchy\n\nNot checked: {h['skipped']}.\n"
    t, s = h["track"], h["segment"]
    text = (
        "## Hierarchy\n\n"
        "How often the predicted medium genre lies under the predicted top-level genre.\n\n"
        + _table(
            ["", "consistent", "of", "rate"],
            [
                ("Tracks", t["consistent"], t["n"], _pct(t["rate"])),
                ("Segments", s["consistent"], s["n"], _pct(s["rate"])),
            ],
        )
        + "\n"
    )
    if t["inconsistent_pairs"]:
        rows = [(p["top"], p["medium"], p["count"]) for p in t["inconsistent_pairs"]]
        text += "\nMost frequent inconsistent predictions (tracks):\n\n"
        text += _table(["predicted top genre", "predicted medium genre", "tracks"], rows, "llr") + "\n"
    return text


def _calibration(results: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    text = "## Confidence and calibration\n\n"
    text += (
        "Confidence is the track's mean probability of its predicted genre. ECE: expected "
        f"calibration error over {results['settings']['calibration_bins']} equal-width bins "
        "(0 is perfect); MCE: the largest gap of a bin.\n\n"
    )
    rows = []
    for level in single_label_levels(results):
        cal, conf = results[level]["calibration"], results[level]["confidence"]
        rows.append(
            (
                _LEVEL_TITLES[level],
                _num(cal["ece"]),
                _num(cal["mce"]),
                _num(conf["correct"]["median"]),
                _num(conf["wrong"]["median"]),
            )
        )
    text += _table(["Head", "ECE", "MCE", "median confidence, correct", "median confidence, wrong"], rows)
    text += "\n\n"
    for level in single_label_levels(results):
        title = _LEVEL_TITLES[level].lower()
        text += _image(plots, f"{level}_reliability", f"Reliability diagram, {title}")
        text += _image(plots, f"{level}_confidence", f"Confidence of correct and wrong predictions, {title}")
        text += "\n"
    return text


def _stability(results: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    text = (
        "## Temporal stability\n\n"
        "Share of a track's segments whose own prediction agrees with the track's prediction.\n\n"
    )
    rows = []
    for level in single_label_levels(results):
        s = results[level]["stability"]
        rows.append(
            (
                _LEVEL_TITLES[level],
                s["n_tracks"],
                _num(s["mean"]),
                _num(s["median"]),
                _num(s["std"]),
                _pct(s["fully_stable"]),
            )
        )
    text += _table(["Head", "tracks", "mean", "median", "std", "all segments agree"], rows) + "\n\n"
    for level in single_label_levels(results):
        text += _image(plots, f"{level}_stability", f"Temporal stability, {_LEVEL_TITLES[level].lower()}")
        text += "\n"
    return text


def _errors(results: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    text = "## Errors\n\n"
    for level in single_label_levels(results):
        title = _LEVEL_TITLES[level]
        e = results[level]["errors"]
        text += f"### {title}: most confused pairs\n\n"
        pairs = e["confused_pairs"]
        rows = [(p["true"], p["predicted"], p["count"], _pct(p["share_of_true"])) for p in pairs]
        text += (
            _table(["target genre", "predicted genre", "tracks", "share of the target genre"], rows, "llrr")
            if rows
            else "No confusions."
        ) + "\n\n"
        text += _image(plots, f"{level}_confused_pairs", f"Most confused pairs, {title.lower()}") + "\n"
        worst = e["error_rates"][:10]
        if worst:
            rows = [(r["name"], r["errors"], r["support"], _pct(r["error_rate"])) for r in worst]
            text += f"### {title}: highest error rates\n\n"
            text += _table(["genre", "errors", "support", "error rate"], rows) + "\n\n"
        if e.get("confident_errors"):
            confident = e["confident_errors"]
            rows = [(r["track"], r["true"], r["predicted"], _num(r["confidence"])) for r in confident]
            text += f"### {title}: most confident errors\n\n"
            text += _table(["track", "target genre", "predicted genre", "confidence"], rows, "rllr") + "\n\n"
    return text


def render_markdown(
    results: Mapping[str, Any], plots: Mapping[str, str] | None = None, *, title: str = "Evaluation report"
) -> str:
    """The Markdown report of an evaluation.

    Parameters
    ----------
    results : mapping
        The dict of :func:`genrekit.evaluate.metrics.evaluate`.
    plots : mapping of str to str, optional
        Figure key (as returned by :func:`genrekit.evaluate.plots.plot_all`) to the image link, relative
        to the Markdown file; figures not given are left out.
    title : str

    Returns
    -------
    str
    """
    plots = dict(plots or {})
    parts = [
        f"# {title}\n",
        f"Full figures: `{REPORT_JSON}`.\n",
        _targets(results),
        _headline(results),
        _counts(results),
        _per_class(results, "top", plots),
        _per_class(results, "medium", plots),
        _all_genres(results),
        _hierarchy(results),
        _calibration(results, plots),
        _stability(results, plots),
        _errors(results, plots),
    ]
    return "\n".join(parts).rstrip() + "\n"


def write_report(
    results: Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    plots: bool = True,
    title: str = "Evaluation report",
    max_medium_classes: int = 30,
) -> ReportPaths:
    """Write ``evaluation_report.json``, the PNG plots and ``evaluation_report.md`` into ``out_dir``.

    Parameters
    ----------
    results : mapping
        The dict of :func:`genrekit.evaluate.metrics.evaluate`.
    out_dir : path-like
        Folder of the report (created); plots go in its ``plots/`` sub-folder.
    plots : bool
        Draw the figures (matplotlib and seaborn are imported only then).
    title : str
        First heading of the Markdown file.
    max_medium_classes : int
        Most frequent medium genres shown in their confusion matrix (config
        ``CONFUSION_MAX_CLASSES``).

    Returns
    -------
    ReportPaths
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / REPORT_JSON
    # allow_nan=False: a NaN would make the file unreadable by strict JSON parsers.
    write_json_atomic(json_path, results, allow_nan=False)
    plot_paths: dict[str, Path] = {}
    if plots:
        from genrekit.evaluate.plots import plot_all

        plot_paths = plot_all(results, out / PLOTS_DIR, max_medium_classes=max_medium_classes)
    links = {key: path.relative_to(out).as_posix() for key, path in plot_paths.items()}
    md_path = out / REPORT_MD
    write_text_atomic(md_path, render_markdown(results, links, title=title))
    return ReportPaths(json=json_path, markdown=md_path, plots=plot_paths)
