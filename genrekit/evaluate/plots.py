"""Evaluation figures as PNG files, drawn headless from the dict of :func:`genrekit.evaluate.metrics.evaluate`.

Figures are built as ``matplotlib.figure.Figure`` objects rendered by the Agg canvas, never
through ``pyplot``: nothing needs a display, no global figure registry fills up, and the
matplotlib backend of a notebook that imports genrekit is left alone. Each ``plot_*`` function
takes its section of the results, the PNG's ``path`` and a ``title``; it writes the PNG under a
temporary name, moves it into place with ``os.replace`` and returns the path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.fileio import OutputKind, replacing

# The figures :func:`plot_all` draws per level (top, medium), as ``<level>_<name>.png``.
PLOT_NAMES = ("confusion", "f1", "confidence", "reliability", "stability", "confused_pairs")
# A PNG matplotlib wrote (its "Software" text chunk comes before the image data).
MATPLOTLIB_PNG = OutputKind(
    "PNG figure drawn by genrekit (matplotlib)",
    lambda head: head.startswith(b"\x89PNG") and b"Matplotlib" in head[:512],
)

__all__ = [
    "DPI",
    "confusion_view",
    "plot_all",
    "plot_confidence_histogram",
    "plot_confused_pairs",
    "plot_confusion_matrix",
    "plot_per_class_f1",
    "plot_reliability_diagram",
    "plot_stability",
]

DPI = 120
ANNOTATE_MAX = 20  # confusion matrices up to this size get a number in each cell


@contextlib.contextmanager
def _style() -> Iterator[Any]:
    """Seaborn's whitegrid look for the figures made inside, without touching global rcParams."""
    import matplotlib
    import seaborn as sns

    with matplotlib.rc_context({"font.size": 9, "axes.titlesize": 11, "axes.labelsize": 9}):
        with sns.axes_style("whitegrid"):
            yield sns


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    # The constrained layout keeps long tick labels and colour bars from overlapping.
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    with replacing(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _empty(path: str | os.PathLike, title: str, message: str) -> Path:
    """A small figure saying why there is nothing to draw, so every report link still resolves."""
    with _style():
        fig = _figure(6, 2)
        ax = fig.add_subplot()
        ax.axis("off")
        ax.set_title(title)
        ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
        return _save(fig, path)


def confusion_view(
    cm: Any,
    names: Sequence[str],
    *,
    max_classes: int | None = None,
    order: Sequence[int] | None = None,
    outside: bool = False,
) -> tuple[np.ndarray, list[str], list[str]] | None:
    """The row-normalized part of a confusion matrix that :func:`plot_confusion_matrix` draws.

    Parameters
    ----------
    cm : array of int, shape (n_classes, n_classes)
        Counts, rows = target, columns = prediction.
    names : sequence of str
    max_classes : int, optional
        Keep only this many target classes, the most frequent (ties by index).
    order : sequence of int, optional
        Display order of class indices; default alphabetical by name.
    outside : bool
        Add columns after the shown classes for the predictions that went to classes not among
        the rows (a genre without target tracks here, or one cut by ``max_classes``), so every
        row sums to 1: one column per such class, most predicted first, while the columns number at
        most ``max_classes``; the rest summed in one ``other genres (k)`` column.

    Returns
    -------
    (matrix, row_labels, col_labels) or None
        ``matrix[i, j]``: share of target class i's tracks predicted as class j, divided by the
        class's full support (without ``outside``, a row sums to less than 1 when some of its
        tracks went to classes not shown); row labels carry the support. None when no class has
        a track.
    """
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    present = np.flatnonzero(support > 0)
    if len(present) == 0:
        return None
    if max_classes is not None and len(present) > max_classes:
        present = present[np.lexsort((present, -support[present]))][:max_classes]
    if order is not None:
        rank = {int(c): i for i, c in enumerate(order)}
        shown = sorted(present.tolist(), key=lambda c: (rank.get(c, len(rank)), c))
    else:
        shown = sorted(present.tolist(), key=lambda c: (names[c].lower(), c))
    matrix = cm[np.ix_(shown, shown)] / support[shown, None]
    # Support on the rows only: the columns read as "predicted as".
    row_labels = [f"{names[i]} (n={int(support[i])})" for i in shown]
    col_labels = [names[i] for i in shown]
    if outside:
        received = cm[shown].sum(axis=0)
        received[shown] = 0
        others = np.flatnonzero(received > 0)
        others = others[np.lexsort((others, -received[others]))]
        room = len(others) if max_classes is None else max(max_classes - len(shown), 0)
        named, rest = others[:room], others[room:]
        if len(rest) == 1:  # one "other" column would hide a name for nothing
            named, rest = others, rest[:0]
        columns = [matrix, cm[np.ix_(shown, named)] / support[shown, None]]
        col_labels += [names[i] for i in named]
        if len(rest):
            columns.append(cm[np.ix_(shown, rest)].sum(axis=1, keepdims=True) / support[shown, None])
            col_labels.append(f"other genres ({len(rest)})")
        matrix = np.concatenate(columns, axis=1)
    return matrix, row_labels, col_labels


def plot_confusion_matrix(
    cm: Any,
    names: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "Confusion matrix",
    max_classes: int | None = None,
    order: Sequence[int] | None = None,
) -> Path:
    """Row-normalized confusion matrix (each row: how a target class was predicted).

    ``cm``, ``names`` and ``order`` (e.g. grouped by parent genre) are those of
    :func:`confusion_view`; with ``max_classes``, only the most frequent target classes are shown
    (rows are still normalized by each class's full support, so a row sums to less than 1 when it
    was confused with classes not shown).
    """
    view = confusion_view(cm, names, max_classes=max_classes, order=order, outside=True)
    if view is None:
        return _empty(path, title, "no tracks with a target")
    matrix, row_labels, col_labels = view
    if max_classes is not None and len(np.flatnonzero(np.asarray(cm).sum(axis=1))) > max_classes:
        title = f"{title} ({max_classes} most frequent)"
    n_rows = len(row_labels)
    n = len(col_labels)
    with _style() as sns:
        fig = _figure(max(6.0, 0.42 * n + 3.0) + 1.2, max(6.0, 0.42 * n_rows + 3.0))
        ax = fig.add_subplot()
        annotate = n <= ANNOTATE_MAX
        sns.heatmap(
            matrix * 100,
            ax=ax,
            vmin=0,
            vmax=100,
            cmap="Blues",
            square=True,
            annot=annotate,
            fmt=".0f",
            annot_kws={"fontsize": 7},
            xticklabels=col_labels,
            yticklabels=row_labels,
            linewidths=0.3 if n <= 40 else 0,
            linecolor="white",
            cbar_kws={"label": "% of the target genre's tracks", "shrink": 0.6},
        )
        if annotate:
            # Blank the zero cells: a wall of "0" hides the confusions that matter.
            for text in ax.texts:
                if text.get_text() == "0":
                    text.set_text("")
        tick_size = 8 if n <= 40 else 6
        ax.set_xticklabels(col_labels, rotation=60, ha="right", rotation_mode="anchor", fontsize=tick_size)
        ax.set_yticklabels(row_labels, rotation=0, fontsize=tick_size)
        xlabel = "predicted genre"
        if n > n_rows:
            # Predictions that left the rows' genres: kept visible, right of a separating line.
            ax.axvline(n_rows, color="0.25", linewidth=1.5)
            xlabel += " (right of the line: genres that are not rows here)"
        ax.set_xlabel(xlabel)
        ax.set_ylabel("target genre")
        ax.set_title(f"{title}\nrow-normalized, % of each target genre")
        return _save(fig, path)


def plot_per_class_f1(
    per_class: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str = "F1 per genre"
) -> Path:
    """Horizontal bars of each class's F1 (classes with support), best first, support in the label.

    ``per_class``: the rows of that name of :func:`genrekit.evaluate.metrics.classification_metrics`.
    """
    rows = [r for r in per_class if r.get("support", 0) > 0]
    if not rows:
        return _empty(path, title, "no tracks with a target")
    rows.sort(key=lambda r: (-(r["f1"] or 0.0), r["name"]))
    labels = [f"{r['name']} (n={r['support']})" for r in rows]
    f1 = np.array([r["f1"] or 0.0 for r in rows])
    n = len(rows)
    with _style() as sns:
        fig = _figure(8.0, max(3.0, 0.24 * n + 1.4))
        ax = fig.add_subplot()
        colours = sns.color_palette("RdYlGn", as_cmap=True)(f1)
        y = np.arange(n)
        ax.barh(y, f1, color=colours, edgecolor="0.3", linewidth=0.4)
        ax.set_yticks(y, labels, fontsize=8 if n <= 40 else 7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1.08)
        for yi, v in zip(y, f1, strict=True):
            ax.text(v + 0.01, yi, f"{v:.2f}", va="center", fontsize=7)
        mean = float(f1.mean())
        ax.axvline(mean, color="0.2", linestyle="--", linewidth=1, label=f"unweighted mean {mean:.2f}")
        ax.legend(loc="lower right", fontsize=8)
        ax.set_xlabel("F1")
        ax.set_title(title)
        return _save(fig, path)


def plot_confidence_histogram(
    confidence: Mapping[str, Any], path: str | os.PathLike, *, title: str = "Confidence of predictions"
) -> Path:
    """Distribution of the top-1 confidence for correct and for wrong predictions.

    Each group is drawn as its share per bin, so a small group of errors stays visible next to
    a large group of correct predictions.

    ``confidence``: the section of that name of a level
    (:func:`genrekit.evaluate.metrics.confidence_distribution`).
    """
    hist = confidence["histogram"]
    edges = np.asarray(hist["edges"])
    with _style() as sns:
        fig = _figure(7.5, 4.2)
        ax = fig.add_subplot()
        palette = sns.color_palette("colorblind")
        drawn = False
        for key, colour in (("correct", palette[2]), ("wrong", palette[3])):
            counts = np.asarray(hist[key], dtype=np.float64)
            total = counts.sum()
            if total == 0:
                continue
            stats = confidence[key]
            ax.stairs(
                counts / total,
                edges,
                fill=True,
                alpha=0.35,
                color=colour,
                label=f"{key} (n={int(total)}, median {stats['median']:.2f})",
            )
            ax.stairs(counts / total, edges, color=colour, linewidth=1.5)
            drawn = True
        if not drawn:
            return _empty(path, title, "no predictions")
        ax.set_xlim(0, 1)
        ax.set_xlabel("confidence (mean probability of the predicted genre)")
        ax.set_ylabel("share of the group's tracks")
        ax.legend(loc="upper left")
        ax.set_title(title)
        return _save(fig, path)


def plot_reliability_diagram(
    calibration: Mapping[str, Any], path: str | os.PathLike, *, title: str = "Reliability diagram"
) -> Path:
    """Accuracy against confidence per bin, with the bin counts underneath.

    ``calibration``: the section of that name of a level (:func:`genrekit.evaluate.metrics.calibration`).
    """
    bins = calibration["bins"]
    if not calibration.get("n"):
        return _empty(path, title, "no predictions")
    from matplotlib.ticker import MaxNLocator

    lower = np.array([b["lower"] for b in bins])
    upper = np.array([b["upper"] for b in bins])
    centre, width = (lower + upper) / 2, upper - lower
    full = np.array([b["count"] > 0 for b in bins])
    acc = np.array([b["accuracy"] if b["accuracy"] is not None else 0.0 for b in bins])
    conf = np.array([b["confidence"] if b["confidence"] is not None else 0.0 for b in bins])
    counts = np.array([b["count"] for b in bins])
    with _style() as sns:
        palette = sns.color_palette("colorblind")
        fig = _figure(6.0, 7.0)
        top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
        top.bar(centre[full], acc[full], width=width[full] * 0.92, color=palette[0], label="accuracy")
        top.plot(
            conf[full],
            acc[full],
            marker="o",
            color=palette[3],
            linewidth=1.2,
            label="accuracy at the bin's mean confidence",
        )
        top.plot([0, 1], [0, 1], linestyle="--", color="0.3", label="perfect calibration")
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.legend(loc="upper left", fontsize=8)
        top.set_title(f"{title}\nECE {calibration['ece']:.3f}, MCE {calibration['mce']:.3f}")
        bottom.bar(centre, counts, width=width * 0.95, color="0.55")
        bottom.yaxis.set_major_locator(MaxNLocator(integer=True))
        bottom.set_ylabel("tracks")
        bottom.set_xlabel("confidence (mean probability of the predicted genre)")
        return _save(fig, path)


def plot_stability(
    stability: Mapping[str, Any],
    path: str | os.PathLike,
    *,
    title: str = "Temporal stability",
    max_genres: int = 40,
) -> Path:
    """Histogram of per-track stability and the mean stability per target genre (lowest first).

    ``stability``: the section of that name of a level
    (:func:`genrekit.evaluate.metrics.temporal_stability`); the right panel shows the
    ``max_genres`` least stable genres.
    """
    if not stability.get("n_tracks"):
        return _empty(path, title, "no tracks")
    from matplotlib.ticker import MaxNLocator

    edges = np.asarray(stability["histogram"]["edges"])
    counts = np.asarray(stability["histogram"]["counts"])
    genres = list(stability.get("per_genre", []))[:max_genres]
    height = max(4.0, 0.24 * len(genres) + 1.6)
    with _style() as sns:
        palette = sns.color_palette("colorblind")
        fig = _figure(13.0 if genres else 7.0, height)
        axes = fig.subplots(1, 2, width_ratios=[1, 1]) if genres else [fig.add_subplot()]
        ax = axes[0]
        ax.stairs(counts, edges, fill=True, color=palette[0], alpha=0.7)
        ax.axvline(stability["mean"], color="0.2", linestyle="--", label=f"mean {stability['mean']:.2f}")
        median = stability["median"]
        ax.axvline(median, color=palette[3], linestyle=":", label=f"median {median:.2f}")
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("share of a track's segments agreeing with the track's prediction")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("tracks")
        ax.legend(loc="upper left")
        ax.set_title(f"{title}: per track (n={stability['n_tracks']})")
        if genres:
            ax = axes[1]
            y = np.arange(len(genres))
            values = [g["mean"] for g in genres]
            ax.barh(y, values, color=palette[1])
            ax.set_yticks(y, [f"{g['name']} (n={g['tracks']})" for g in genres], fontsize=8)
            ax.invert_yaxis()
            ax.set_xlim(0, 1.08)
            for yi, v in zip(y, values, strict=True):
                ax.text(v + 0.01, yi, f"{v:.2f}", va="center", fontsize=7)
            ax.set_xlabel("mean stability")
            shown = "" if len(genres) == len(stability["per_genre"]) else f", {len(genres)} least stable"
            ax.set_title(f"per target genre{shown}")
        return _save(fig, path)


def plot_confused_pairs(
    pairs: Sequence[Mapping[str, Any]], path: str | os.PathLike, *, title: str = "Most confused pairs"
) -> Path:
    """Horizontal bars of the most frequent (target -> predicted) confusions, largest first.

    ``pairs``: the ``confused_pairs`` of :func:`genrekit.evaluate.metrics.error_analysis`.
    """
    if not pairs:
        return _empty(path, title, "no confusions")
    from matplotlib.ticker import MaxNLocator

    labels = [f"{p['true']} \u2192 {p['predicted']}" for p in pairs]
    counts = [p["count"] for p in pairs]
    n = len(pairs)
    with _style() as sns:
        fig = _figure(8.0, max(3.0, 0.32 * n + 1.4))
        ax = fig.add_subplot()
        y = np.arange(n)
        ax.barh(y, counts, color=sns.color_palette("colorblind")[3])
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        top = max(counts)
        ax.set_xlim(0, top * 1.25)
        for yi, p in zip(y, pairs, strict=True):
            share = p.get("share_of_true")
            note = f"{p['count']}" + (f" ({share:.0%} of target)" if share is not None else "")
            ax.text(p["count"] + top * 0.01, yi, note, va="center", fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("tracks (target genre \u2192 predicted genre)")
        ax.set_title(title)
        return _save(fig, path)


def _grouped_order(section: Mapping[str, Any], top_names: Mapping[int, str]) -> list[int] | None:
    """Classes ordered by the name of their top-level genre, then by their own name."""
    roots = section.get("root_ids")
    if not roots:
        return None
    names = section["names"]
    key = lambda i: (top_names.get(roots[i], str(roots[i])).lower(), names[i].lower())  # noqa: E731
    return sorted(range(len(names)), key=key)


def plot_all(
    results: Mapping[str, Any], out_dir: str | os.PathLike, *, max_medium_classes: int = 30
) -> dict[str, Path]:
    """Draw every figure of an evaluation into ``out_dir``.

    Parameters
    ----------
    results : dict
        The dict of :func:`genrekit.evaluate.metrics.evaluate` (or its JSON read back).
    out_dir : path-like
        Folder of the PNG files (created).
    max_medium_classes : int
        The medium-genre confusion matrix shows this many most frequent genres (config
        ``CONFUSION_MAX_CLASSES``).

    Returns
    -------
    dict of str to Path
        Figure key (e.g. ``"top_confusion"``) to PNG path.
    """
    out = Path(out_dir)
    paths: dict[str, Path] = {}
    top = results["top"]
    top_names = dict(zip(top.get("genre_ids", []), top["names"], strict=False))
    for level, label in (("top", "top genres"), ("medium", "medium genres")):
        if level not in results:  # a model without a medium head
            continue
        section = results[level]
        order = _grouped_order(section, top_names) if level == "medium" else None
        paths[f"{level}_confusion"] = plot_confusion_matrix(
            section["errors"]["confusion_matrix"],
            section["names"],
            out / f"{level}_confusion.png",
            title=f"Confusion matrix, {label}",
            max_classes=max_medium_classes if level == "medium" else None,
            order=order,
        )
        paths[f"{level}_f1"] = plot_per_class_f1(
            section["track"]["per_class"], out / f"{level}_f1.png", title=f"F1 per genre, {label} (tracks)"
        )
        paths[f"{level}_confidence"] = plot_confidence_histogram(
            section["confidence"], out / f"{level}_confidence.png", title=f"Confidence, {label}"
        )
        paths[f"{level}_reliability"] = plot_reliability_diagram(
            section["calibration"], out / f"{level}_reliability.png", title=f"Reliability diagram, {label}"
        )
        paths[f"{level}_stability"] = plot_stability(
            section["stability"], out / f"{level}_stability.png", title=f"Temporal stability, {label}"
        )
        paths[f"{level}_confused_pairs"] = plot_confused_pairs(
            section["errors"]["confused_pairs"],
            out / f"{level}_confused_pairs.png",
            title=f"Most confused pairs, {label}",
        )
    return paths
