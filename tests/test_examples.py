"""examples/: the config accepted by every script, the two tutorials run as written (small mode)."""

import importlib.util
import json

import pytest

import balanced_inference
import balanced_trainer
import fma_inspector
import quick_start
import setup_fma_dataset
from genrekit.cli import settings_from_args
from genrekit.settings import Settings
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "example_config.json"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_config_holds_valid_settings():
    data = json.loads(EXAMPLE.read_text())
    settings = Settings.build(EXAMPLE)
    for key, value in data.items():
        if not key.startswith("_"):
            assert getattr(settings, key) == value, key


@pytest.mark.parametrize("script", [fma_inspector, balanced_trainer, quick_start])
def test_every_settings_script_accepts_the_example_config(script):
    args = script.build_parser().parse_args(["--config", str(EXAMPLE)])
    assert settings_from_args(args).batch_size == 32


def test_inspector_and_setup_scripts_run_with_the_example_config(tmp_path):
    # --check_paths answers 0 or 1 (paths present or not); a config error would be 2
    assert fma_inspector.main(["--config", str(EXAMPLE), "--check_paths"]) in (0, 1)
    assert setup_fma_dataset.build_parser().parse_args(["--subset", "demo"]).subset == "demo"


@pytest.mark.slow
def test_tutorials_run_as_written(smallest_demo, tmp_path, capsys):
    # --small on the demo it writes itself when none is there: 60 tracks of 2 s (shared, read-only)
    demo_dataset = smallest_demo
    out = tmp_path / "tutorial"
    training = _load("tutorial_training")
    code = training.main(
        [
            "--small",
            "--metadata",
            str(demo_dataset.metadata_dir),
            "--audio",
            str(demo_dataset.audio_dir),
            "--output_dir",
            str(out),
            "--cache_dir",
            str(tmp_path / "features"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "classes per level: top 16" in printed
    outputs = next(line for line in printed.splitlines() if line.startswith("model:"))
    assert all(f"'{head}'" in outputs for head in ("top", "medium", "all"))
    assert (out / "balanced_hierarchical_genre_model.h5").is_file()

    inference = _load("tutorial_inference")
    folder = min(p for p in demo_dataset.audio_dir.iterdir() if p.is_dir())  # 000/ in a larger demo
    assert (
        inference.main(
            ["--model", str(out / "balanced_hierarchical_genre_model.h5"), "--folder", str(folder)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "files," in printed and "segments; medium genre" in printed


@pytest.mark.slow
def test_inference_accepts_the_example_config_next_to_a_model(tiny_run, demo_dataset, capsys):
    clip = next(demo_dataset.audio_dir.rglob("*.mp3"))
    code = balanced_inference.main(
        [
            "--model",
            str(tiny_run / "balanced_hierarchical_genre_model.h5"),
            "--config",
            str(EXAMPLE),
            "--file",
            str(clip),
        ]
    )
    assert code == 0
    assert clip.name in capsys.readouterr().out
