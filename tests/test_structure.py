"""genrekit's shape (issue 24): no import cycles, no module over 600 lines, no function body over 80."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PACKAGE = REPO / "genrekit"
TOOL = REPO / "tools" / "import_cycles.py"
MAX_MODULE_LINES = 600
MAX_BODY_LINES = 80


def _run_tool(package_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), str(package_dir)], capture_output=True, text=True, timeout=300
    )


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of a function's body, its docstring left out."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def test_genrekit_has_no_import_cycle():
    result = _run_tool(PACKAGE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 import cycle(s)" in result.stdout


def test_the_cycle_tool_counts_function_level_imports_but_not_type_checking_ones(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.c import x\n")
    (pkg / "c.py").write_text("def g():\n    if True:\n        from . import a\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\nimport pkg.a\n"
    )
    result = _run_tool(pkg)
    assert result.returncode == 1
    assert "pkg.a -> pkg.b -> pkg.c -> pkg.a" in result.stdout
    assert "1 import cycle(s)" in result.stdout

    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n")
    assert _run_tool(pkg).returncode == 0


def test_no_module_is_longer_than_600_lines():
    long = {
        str(p.relative_to(REPO)): n
        for p in sorted(PACKAGE.rglob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_body_is_longer_than_80_lines():
    long = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and _body_lines(node) > MAX_BODY_LINES
            ):
                long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = _body_lines(node)
    assert not long, f"function bodies over {MAX_BODY_LINES} lines (docstrings left out): {long}"
