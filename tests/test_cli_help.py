"""Every script answers --help as a real process, without importing TensorFlow."""

import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = [
    "setup_fma_dataset.py",
    "fetch_backbone.py",
    "fma_inspector.py",
    "balanced_trainer.py",
    "balanced_inference.py",
    "model_evaluation.py",
    "quick_start.py",
    "examples/tutorial_training.py",
    "examples/tutorial_inference.py",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{script!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(REPO / script)!r}, run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code in (0, None), exc.code\n"
        "assert 'tensorflow' not in sys.modules, 'TensorFlow imported by --help'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
