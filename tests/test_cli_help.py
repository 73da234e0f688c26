"""Every script answers --help as a real process, without importing TensorFlow.

One process runs every script's --help in turn (runpy, as ``python script.py --help`` would), so
that the interpreter and genrekit start once instead of nine times; each script is still its own
test. A script that imports TensorFlow is named, and the scripts after it run in a fresh process,
so one offender cannot hide or blame another.
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = [
    "setup_fma_dataset.py",
    "fetch_backbone.py",
    "baseline.py",
    "fma_inspector.py",
    "balanced_trainer.py",
    "balanced_inference.py",
    "model_evaluation.py",
    "quick_start.py",
    "tune.py",
    "examples/tutorial_training.py",
    "examples/tutorial_inference.py",
]

# Runs each script named on its command line with --help, in order, and writes one JSON line per
# script: its exit code, what it printed, an error, and whether it was the one to import TensorFlow.
# It stops after a script that imported TensorFlow: the rest need a process without it.
_DRIVER = r"""
import contextlib, io, json, runpy, sys, traceback

for script in sys.argv[1:]:
    out, err = io.StringIO(), io.StringIO()
    sys.argv = [script, "--help"]
    code, error = None, ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            error = traceback.format_exc()
    tf = "tensorflow" in sys.modules
    print(json.dumps({"script": script, "code": code, "stdout": out.getvalue(),
                      "stderr": err.getvalue(), "error": error, "tensorflow": tf}), flush=True)
    if tf:
        break
"""


@pytest.fixture(scope="module")
def help_runs() -> dict[str, dict]:
    """What each script's --help did, keyed by script; as few processes as the scripts allow."""
    runs: dict[str, dict] = {}
    while len(runs) < len(SCRIPTS):
        todo = [s for s in SCRIPTS if s not in runs]
        result = subprocess.run(
            [sys.executable, "-c", _DRIVER, *todo], cwd=REPO, capture_output=True, text=True, timeout=300
        )
        done = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"script"')]
        for run in done:
            runs[run["script"]] = run
        if not done:  # the process died before the first script answered: blame that one
            runs[todo[0]] = {"script": todo[0], "code": result.returncode, "stdout": "",
                             "stderr": result.stderr, "error": "the process died", "tensorflow": False}  # fmt: skip
    return runs


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script, help_runs):
    run = help_runs[script]
    assert not run["error"], run["error"] + run["stderr"]
    assert run["code"] in (0, None), run["stderr"]
    assert not run["tensorflow"], f"{script}: TensorFlow imported by --help"
    assert run["stdout"].startswith("usage:"), run["stdout"][:500]


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
    "script",
    [s for s in SCRIPTS if s.startswith("examples/")]
    + sorted(str(p.relative_to(REPO)) for p in (REPO / "genrekit" / "commands").glob("[!_]*.py"))
    + sorted(str(p.relative_to(REPO)) for p in (REPO / "benchmarks").glob("bench_*.py")),
)
def test_flags_are_underscored(script):
    # One spelling for every command of the project: --data_dir, as in the scripts, never --data-dir.
    flags = _long_flags(REPO / script)
    assert [f for f in flags if "-" in f[2:]] == []
