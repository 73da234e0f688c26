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
    "tune.py",
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


def _long_flags(path):
    """The ``--flags`` a script declares with ``add_argument``, read from its source."""
    import ast

    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert "add_argument" in path.read_text(encoding="utf-8"), f"{path}: no argument parser found"
    return [
        arg.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"
        for arg in node.args
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--")
    ]


@pytest.mark.parametrize(
    "script", SCRIPTS + sorted(str(p.relative_to(REPO)) for p in (REPO / "benchmarks").glob("bench_*.py"))
)
def test_flags_are_underscored(script):
    # One spelling for every command of the project: --data_dir, as in the scripts, never --data-dir.
    flags = _long_flags(REPO / script)
    assert [f for f in flags if "-" in f[2:]] == []
