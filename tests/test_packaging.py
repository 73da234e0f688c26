"""genrekit as a package: importable without the repository, its defaults inside it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import config
from genrekit import defaults, settings
from genrekit.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.slow  # a Python process that imports the package's modules

CHECK = """
import importlib.util, json, sys
import genrekit, genrekit.train.run, genrekit.infer.predict, genrekit.evaluate.evaluator, genrekit.train.run_config
import genrekit.models.musicnn_weights
from genrekit.settings import Settings
from genrekit.infer.predict import default_model_path
print(json.dumps({
    "file": genrekit.__file__,
    "config_imported": "config" in sys.modules,
    "settings": Settings.build().to_dict(),
    "model": default_model_path(),
}))
"""


def _constants(module) -> dict:
    return {k: getattr(module, k) for k in dir(module) if k.isupper() and not k.startswith("_")}


@pytest.mark.parametrize("decoy", [False, True], ids=["no-config", "foreign-config"])
def test_genrekit_imports_outside_the_repository_with_its_own_defaults(tmp_path, decoy):
    # Only the package is on the path (a link to it), not the repository root with config.py.
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    (path_dir / "genrekit").symlink_to(REPO / "genrekit", target_is_directory=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    if decoy:  # someone else's config module in the working folder is not the repository's
        (work / "config.py").write_text("BATCH_SIZE = 999\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(path_dir)
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["file"] == str(path_dir / "genrekit" / "__init__.py")
    assert not out["config_imported"]
    assert out["settings"]["batch_size"] == defaults.BATCH_SIZE
    assert out["settings"] == {**Settings.build().to_dict(), **out["settings"]}  # same keys
    assert out["model"] == os.path.join(defaults.OUTPUT_DIR, defaults.MODEL_FILENAME)


def test_config_py_and_the_package_defaults_hold_the_same_settings():
    """Edit both when a default changes: the package's are what an installed genrekit uses."""
    ours, theirs = _constants(defaults), _constants(config)
    assert sorted(ours) == sorted(theirs)
    assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in theirs.items()}
    assert ours == theirs


def test_in_the_repository_config_py_wins_over_the_package_defaults(monkeypatch, tmp_path):
    assert settings.repository_config() is config
    monkeypatch.setattr(defaults, "BATCH_SIZE", 7)
    monkeypatch.setattr(config, "BATCH_SIZE", 48)
    assert Settings.build().batch_size == 48
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"batch_size": 16}), encoding="utf-8")
    assert Settings.build(path).batch_size == 16
    assert Settings.build(path, {"batch_size": 8}).batch_size == 8
    monkeypatch.delattr(config, "BATCH_SIZE")
    assert Settings.build().batch_size == 7
