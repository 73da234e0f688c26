"""Plots and the JSON + Markdown report, drawn for a 16-class synthetic evaluation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from evalmetrics_helpers import synthetic_case

from genrekit.evaluate import plots
from genrekit.evaluate.metrics import evaluate
from genrekit.evaluate.report import PLOTS_DIR, REPORT_JSON, REPORT_MD, render_markdown, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = [
    f"{level}_{kind}"
    for level in ("top", "medium")
    for kind in ("confusion", "f1", "confidence", "reliability", "stability", "confused_pairs")
]


@pytest.fixture(scope="module")
def results() -> dict:
    return evaluate(**synthetic_case(np.random.default_rng(7), n_tracks=300), n_defective_files=4)


@pytest.fixture(scope="module")
def report(results, tmp_path_factory):
    return write_report(results, tmp_path_factory.mktemp("report"), max_medium_classes=12)


def _read_png(path: Path) -> np.ndarray:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    # Not a blank canvas: something was drawn.
    assert image[..., :3].std() > 0.01
    return image


@pytest.mark.parametrize("key", FIGURES)
def test_every_figure_is_a_readable_png(report, key):
    path = report.plots[key]
    assert path.parent.name == PLOTS_DIR and path.stat().st_size > 0
    _read_png(path)


def test_no_temporary_files_are_left_behind(report):
    folder = report.json.parent
    leftovers = [p.name for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_figures_grow_with_the_number_of_classes(report):
    top = _read_png(report.plots["top_f1"])  # 16 classes
    medium = _read_png(report.plots["medium_f1"])  # 40 classes, most with tracks
    assert medium.shape[0] > top.shape[0]


def test_json_has_every_section(report, results):
    data = json.loads(report.json.read_text(encoding="utf-8"))
    assert data == results
    assert set(data) == {"counts", "settings", "top", "medium", "all", "hierarchy", "targets"}
    assert data["counts"]["defective_files"] == 4


def test_markdown_links_images_that_exist(report):
    text = report.markdown.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == len(FIGURES)
    for link in links:
        assert not Path(link).is_absolute()
        assert (report.markdown.parent / link).is_file(), link


def test_markdown_has_the_sections_a_reader_needs(report, results):
    text = report.markdown.read_text(encoding="utf-8")
    for heading in (
        "## Performance targets",
        "## Headline",
        "## Data",
        "## Top-level genres: per genre",
        "## Medium genres: per genre",
        "## All genres (multi-label)",
        "## Hierarchy",
        "## Confidence and calibration",
        "## Temporal stability",
        "## Errors",
    ):
        assert heading in text
    assert "| Defective files left out before evaluation (could not be decoded) | 4 |" in text
    excluded = results["counts"]["excluded"]["top_no_target"]
    assert f"(left out of top-genre metrics) | {excluded} |" in text
    for row in results["targets"]:
        verdict = "**PASS**" if row["passed"] else "**FAIL**"
        assert re.search(
            rf"\| {re.escape(row['name'])} \| > {row['target']:.2f} \| [0-9.]+ \| {re.escape(verdict)} \|",
            text,
        )
    # Every top genre with tracks has its row.
    for r in results["top"]["track"]["per_class"]:
        if r["support"]:
            assert f"| {r['name']} | {r['genre_id']} | {r['support']} |" in text


def test_markdown_without_plots_has_no_image_links(results):
    text = render_markdown(results)
    assert "![" not in text and "## Headline" in text


def test_a_new_report_replaces_the_old_one(results, tmp_path):
    (tmp_path / REPORT_MD).write_text("stale", encoding="utf-8")
    (tmp_path / REPORT_JSON).write_text("stale", encoding="utf-8")
    paths = write_report(results, tmp_path, plots=False)
    assert paths.markdown.read_text(encoding="utf-8").startswith("# Evaluation report")
    assert json.loads(paths.json.read_text(encoding="utf-8"))["counts"] == results["counts"]
    assert paths.plots == {}


@pytest.mark.parametrize(
    "draw",
    [
        lambda p: plots.plot_confused_pairs([], p),
        lambda p: plots.plot_per_class_f1([{"name": "Rock", "support": 0, "f1": 0.0}], p),
        lambda p: plots.plot_confusion_matrix(np.zeros((3, 3)), ["a", "b", "c"], p),
        lambda p: plots.plot_stability({"n_tracks": 0}, p),
    ],
)
def test_empty_sections_still_give_a_png(draw, tmp_path):
    path = draw(tmp_path / "figure.png")
    assert path == tmp_path / "figure.png"
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_confusion_view_keeps_the_most_frequent_classes_normalized_by_full_support():
    cm = np.diag([45, 1, 30, 2, 40])
    cm[0, 1] = 5  # 5 of a's 50 tracks went to b, which is not shown
    cm[4, 0] = 10
    matrix, rows, cols = plots.confusion_view(cm, list("edcba"), max_classes=3)
    # Kept: indices 0 (50), 4 (50), 2 (30), shown alphabetically by name: a (4), c (2), e (0).
    assert cols == ["a", "c", "e"]
    assert rows == ["a (n=50)", "c (n=30)", "e (n=50)"]
    np.testing.assert_allclose(matrix, [[0.8, 0, 0.2], [0, 1, 0], [0, 0, 0.9]])
    assert plots.confusion_view(cm, list("edcba"), order=[2, 1, 0, 4, 3])[2] == ["c", "d", "e", "a", "b"]
    assert plots.confusion_view(np.zeros((2, 2)), ["x", "y"]) is None
