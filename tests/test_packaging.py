"""genrekit as a package: importable without the repository, its defaults inside it; config.py is the scripts'."""

from __future__ import annotations

import ast
import dataclasses
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


def test_no_library_module_imports_the_cli_or_config_py():
    for path in sorted((REPO / "genrekit").rglob("*.py")):
        if path.name == "cli.py" and path.parent == REPO / "genrekit":
            continue
        imports = _imports(path)
        assert "genrekit.cli" not in imports, f"{path.relative_to(REPO)} imports genrekit.cli"
        assert "config" not in imports, f"{path.relative_to(REPO)} imports config"


def test_config_py_names_only_settings_of_the_right_type():
    """config.py's settings, and the ones it lists commented out, are real settings of the right type."""
    assert set(config_values(config)) <= {f.name for f in dataclasses.fields(Settings)}
    text = (REPO / "config.py").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^#\s*([A-Z][A-Z0-9_]*) = (.+?)(?:  #.*)?$", text, flags=re.M))
    assert listed, "config.py lists the settings a user changes, commented"
    checked_settings({name.lower(): ast.literal_eval(value) for name, value in listed.items()}, "config.py")


def test_config_py_does_not_repeat_the_defaults():
    # Its settings are the user's changes: the defaults live once, in genrekit.settings.Settings.
    assert all(value != default_value(key) for key, value in config_values(config).items())
