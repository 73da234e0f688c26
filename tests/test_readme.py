"""The README documents what the code has: every constant, every example key, every script's flags."""

import dataclasses
import json
import re

import pytest

import balanced_inference
import balanced_trainer
import fma_inspector
import model_evaluation
import quick_start
import setup_fma_dataset
import tune
from genrekit.settings import Settings
from tests.conftest import REPO

README = (REPO / "README.md").read_text()


def test_every_setting_is_in_the_reference():
    constants = [f.name.upper() for f in dataclasses.fields(Settings)]
    missing = [n for n in constants if f"`{n}`" not in README]
    assert not missing, missing


def test_every_example_config_key_is_documented():
    keys = [
        k
        for k in json.loads((REPO / "examples" / "example_config.json").read_text())
        if not k.startswith("_")
    ]
    missing = [k for k in keys if f"`{k.upper()}`" not in README]
    assert not missing, missing


@pytest.mark.parametrize(
    "script, flags",
    [
        (
            balanced_trainer,
            [
                "--batch_size",
                "--epochs",
                "--focal_loss",
                "--extract_only",
                "--shard",
                "--strategy",
                "--backbone",
            ],
        ),
        (fma_inspector, ["--check_paths", "--analyze_balance", "--generate_config", "--dataset"]),
        (
            balanced_inference,
            [
                "--file",
                "--folder",
                "--output",
                "--top_k",
                "--threshold",
                "--recursive",
                "--workers",
                "--tags",
            ],
        ),
        (
            model_evaluation,
            ["--split", "--output_dir", "--subset", "--metadata", "--audio", "--weight", "--ensemble"],
        ),
        (
            setup_fma_dataset,
            ["--subset", "--symlinks", "--analyze", "--no_verify", "--cleanup", "--base_url"],
        ),
        (quick_start, ["--data", "--steps", "--smallest", "--dataset", "--backbone"]),
        (tune, ["--demo", "--trials", "--space", "--prune_after", "--output_dir", "--epochs"]),
    ],
)
def test_flags_in_the_readme_exist(script, flags):
    help_text = script.build_parser().format_help()
    for flag in flags:
        assert flag in help_text, (script.__name__, flag)
        assert flag in README, flag


def test_readme_commands_name_real_scripts():
    scripts = set(re.findall(r"python (\w+\.py)", README))
    assert scripts, "no commands found"
    for name in scripts:
        assert (REPO / name).is_file() or (REPO / "examples" / name).is_file(), name


def test_the_project_layout_names_every_module_of_the_package():
    layout = README[README.index("## Project layout") : README.index("## License")]
    package = REPO / "genrekit"
    missing = [
        str(path.relative_to(REPO))
        for path in sorted(package.rglob("*.py"))
        if path.name != "__init__.py" and not re.search(rf"\b{re.escape(path.stem)}\b", layout)
    ]
    missing += [
        str(path.relative_to(REPO)) + "/"
        for path in sorted(package.rglob("__init__.py"))
        if path.parent != package and f"{path.parent.name}/" not in layout
    ]
    assert not missing, f"modules the README's project layout does not name: {missing}"
