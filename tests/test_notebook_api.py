"""The two notebook snippets of the README run as written, from the checkout (issue 31, item 8).

Each test reads the snippet's text from the documentation (README.md or a page of docs/, found by
its import line, so the docs can move it) and executes it, in a folder laid out as a user's
checkout would be: the data where the snippet's default paths look, a run where it names one.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from genrekit.errors import ConfigError
from tests.conftest import REPO
from tests.inference_helpers import write_audio

TRAINING_IMPORT = "from balanced_trainer import BalancedGenreProcessor, BalancedHierarchicalModel"
INFERENCE_IMPORT = "from balanced_inference import MusicGenreInference"

# The tutorial of the seed's README, as issue 6 quoted it ("must run as written"): fma_large's
# class counts written by hand. Kept verbatim to show what becomes of them on other data.
SEED_TRAINING_SNIPPET = """\
from balanced_trainer import BalancedGenreProcessor, BalancedHierarchicalModel
processor = BalancedGenreProcessor()
tracks, genres_df = processor.load_fma_metadata()
processed_data = processor.process_fma_labels(tracks, genres_df)
class_weights = processor.compute_hierarchical_class_weights(processed_data)
model_builder = BalancedHierarchicalModel(input_shape=(128, 64, 1), num_top=16,
    num_medium=147, num_all=161, class_weights=class_weights)
model = model_builder.build_model()
model_builder.compile_with_balanced_losses()
"""


def documented_snippets(first_line: str) -> list[str]:
    """Every distinct ```python block of README.md and docs/ whose first line is ``first_line``."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    blocks = [
        b
        for page in pages
        for b in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    ]
    found = list(dict.fromkeys(b for b in blocks if b.startswith(first_line + "\n")))
    assert found, f"no documented snippet starts with {first_line!r}"
    return found


def run_snippet(code: str) -> dict:
    namespace: dict = {"__name__": "__notebook__"}
    exec(compile(code, "<documented snippet>", "exec"), namespace)  # noqa: S102 - the documented code itself
    return namespace


@pytest.fixture
def checkout_with_data(smallest_demo, tmp_path, monkeypatch) -> Path:
    """A folder where ``BalancedGenreProcessor()``'s default metadata folder holds a demo's FMA metadata."""
    shutil.copytree(smallest_demo.metadata_dir, tmp_path / "fma_data/extracted/metadata/fma_metadata")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.slow
def test_the_training_snippet_runs_as_written_and_its_model_trains(checkout_with_data):
    import keras

    for code in documented_snippets(TRAINING_IMPORT):
        ns = run_snippet(code)
        n, model = ns["processed_data"].num_classes, ns["model"]
        assert n["top"] >= 2 and n["all"] >= 2 and ns["model_builder"].model is model
        widths = dict(zip(model.output_names, (o.shape[-1] for o in model.outputs), strict=True))
        assert widths == {level: count for level, count in n.items() if count}
        # One step on the data's own labels: heads, class weights and losses fit together.
        labels = ns["processed_data"].labels("training").subset(np.arange(8))
        y = {"top": labels.one_hot("top", n["top"]), "medium": labels.one_hot("medium", n["medium"]),
             "all": labels.all.astype(np.float32)}  # fmt: skip
        x = keras.random.normal((8, 128, 64, 1), seed=0)
        loss = model.train_on_batch(x, {k: y[k] for k in ns["model_builder"].heads}, return_dict=True)["loss"]
        assert np.isfinite(float(loss))


@pytest.mark.slow
def test_the_seeds_fixed_class_counts_are_refused_by_name(checkout_with_data):
    # Before: a model with 147/161-wide heads and 26/46 class weights, built and compiled without
    # a word; the first training step failed on shapes far from the cause.
    with pytest.raises(ConfigError, match=r"num_medium=147 but class_weights\['medium'\] has \d+ classes"):
        run_snippet(SEED_TRAINING_SNIPPET)


@pytest.mark.slow
def test_the_inference_snippet_runs_as_written(random_tiny_run, tmp_path, monkeypatch):
    model, config = random_tiny_run
    for run in ("runs/balanced", "runs/a", "runs/b"):
        (tmp_path / run).mkdir(parents=True)
        shutil.copy(model, tmp_path / run / "balanced_hierarchical_genre_model.h5")
        shutil.copy(config, tmp_path / run / "balanced_training_config.json")
    for i in range(3):
        write_audio(tmp_path / "music_folder" / f"song{i}.mp3", 4.0, 22050, 2, seed=10 + i)
    write_audio(tmp_path / "example.mp3", 4.0, 22050, 1, seed=20)
    monkeypatch.chdir(tmp_path)
    for code in documented_snippets(INFERENCE_IMPORT):
        ns = run_snippet(code)
        inference = ns["inference"]
        assert type(inference).__module__ == "genrekit.infer.predict"
        assert sorted(ns["results"]["results"]) == ["song0.mp3", "song1.mp3", "song2.mp3"]
        assert ns["results"]["errors"] == {}
        assert ns["top_genre"] in inference.vocabs["top"].names and 0 < ns["confidence"] <= 1
        if "one" in ns:
            assert (
                ns["one"]["aggregated_results"]["top_genre"]["voting"]["name"]
                in inference.vocabs["top"].names
            )
        if "both" in ns:  # the ensemble's result has the single model's schema
            assert set(ns["both"]) == set(ns["one"])


def test_the_scripts_export_the_notebook_classes_without_importing_tensorflow():
    import subprocess
    import sys

    code = f"import sys\n{TRAINING_IMPORT}\n{INFERENCE_IMPORT}\nprint('tensorflow' in sys.modules)\n"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
