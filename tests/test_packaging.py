"""genrekit as a package: importable without the repository, its defaults inside it; config.py is the scripts'."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

import config
from genrekit.cli import config_values
from genrekit.settings import Settings, checked_settings, default_value
from tests.conftest import REPO

CHECK = """
import importlib.util, json, sys
import genrekit, genrekit.train.run, genrekit.infer.predict, genrekit.evaluate.evaluator, genrekit.train.run_config
import genrekit.models.musicnn_weights
from genrekit.settings import Settings
from genrekit.infer.predict import default_model_path
print(json.dumps({
    "file": genrekit.__file__,
    "config_imported": "config" in sys.modules,
    "cli_imported": "genrekit.cli" in sys.modules,
    "settings": Settings.build().to_dict(),
    "model": default_model_path(),
}))
"""


@pytest.mark.slow  # a Python process that imports the package's modules
@pytest.mark.parametrize("where", ["no-config", "foreign-config", "repository"])
def test_genrekit_imports_anywhere_with_its_own_defaults(tmp_path, where):
    # Only the package is on the path (a link to it), or the repository itself with its config.py:
    # either way the library reads no config module.
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "genrekit").symlink_to(REPO / "genrekit", target_is_directory=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    if where == "foreign-config":  # someone else's config module in the working folder
        (work / "config.py").write_text("BATCH_SIZE = 999\n", encoding="utf-8")
    if where == "repository":
        path_dir = work = REPO
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(path_dir)
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["file"] == str(path_dir / "genrekit" / "__init__.py")
    assert not out["config_imported"] and not out["cli_imported"]
    assert out["settings"] == Settings().to_dict()  # the package defaults, keys in the same order
    assert list(out["settings"]) == list(Settings().to_dict())
    assert out["model"] == os.path.join(default_value("output_dir"), default_value("model_filename"))


@pytest.mark.slow  # builds and installs the package
def test_pip_install_holds_the_package_only_and_its_defaults(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "requirements.txt"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "genrekit", src / "genrekit", ignore=shutil.ignore_patterns("__pycache__"))
    site = tmp_path / "site"
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
    ]
    done = subprocess.run(
        [*pip, "--target", str(site), str(src)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (site / "genrekit" / "settings.py").is_file() and not (site / "config.py").exists()
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(site)}
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["file"] == str(site / "genrekit" / "__init__.py")
    assert out["settings"] == Settings().to_dict() and not out["config_imported"]


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


# The command layer: the scripts' commands, the `genrekit` entry point and what they share.
COMMAND_LAYER = ("genrekit/cli.py", "genrekit/console.py", "genrekit/commands/")


def test_no_library_module_imports_the_command_layer_or_config_py():
    for path in sorted((REPO / "genrekit").rglob("*.py")):
        name, imports = path.relative_to(REPO).as_posix(), _imports(path)
        assert "config" not in imports, f"{name} imports config (commands read it with working_config)"
        if name.startswith(COMMAND_LAYER):
            continue
        for layer in ("genrekit.cli", "genrekit.console", "genrekit.commands"):
            assert not any(i == layer or i.startswith(layer + ".") for i in imports), f"{name} imports {layer}"


# The main parameters the FMA README's config.py shows with their values, in its groups.
MAIN_PARAMETERS = {
    "sample_rate": 22050, "duration": 30.0, "n_mels": 128, "hop_length": 512, "num_segments": 10,
    "batch_size": 32, "learning_rate": 1e-4, "num_epochs": 100, "patience": 15,
    "use_class_weights": True, "use_weighted_sampling": True, "use_focal_loss": True,
    "oversample_threshold": 100, "undersample_threshold": 5000, "mixed_precision": True,
}  # fmt: skip


def test_config_py_shows_the_main_parameters_at_their_defaults():
    # config.py reads like the FMA README's: the main parameters with their values, uncommented,
    # and every value it sets is the package default (the defaults live once, in Settings).
    values = config_values(config)
    assert {key: values.get(key) for key in MAIN_PARAMETERS} == MAIN_PARAMETERS
    assert {key: value for key, value in values.items() if value != default_value(key)} == {}


def test_config_py_lists_only_real_settings_in_its_comments():
    """The settings config.py lists commented out, as examples, are real settings of the right type."""
    text = (REPO / "config.py").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^#\s*([A-Z][A-Z0-9_]*) = (.+?)(?:  #.*)?$", text, flags=re.M))
    assert listed, "config.py lists more settings a user changes, commented"
    checked_settings({name.lower(): ast.literal_eval(value) for name, value in listed.items()}, "config.py")
