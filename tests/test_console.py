"""The `genrekit` command: its subcommands are the scripts' own parsers; --version; config.py of the
working folder; --help of every subcommand without TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from genrekit import __version__
from genrekit.commands import COMMANDS
from genrekit.console import command_module, main
from tests.conftest import REPO


def _flags(parser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_subcommand_is_its_scripts_parser(name):
    # `genrekit NAME` and `python SCRIPT.py` run the same build_parser and main.
    script = __import__(COMMANDS[name][1].removesuffix(".py"))
    module = command_module(name)
    assert script.main is module.main and script.build_parser is module.build_parser
    assert len(_flags(module.build_parser())) > 1
    assert (REPO / COMMANDS[name][1]).is_file()


def test_version_and_overview(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"genrekit {__version__}"
    assert main([]) == 0
    overview = capsys.readouterr().out
    for name, (_, script) in COMMANDS.items():
        assert f"  {name} " in overview and f"python {script}" in overview


def test_an_unknown_command_is_one_line(capsys):
    assert main(["trian"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no command 'trian'" in err and "train" in err


def test_usage_names_the_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--no_such_flag"])
    assert exc.value.code == 2
    assert "usage: genrekit train" in capsys.readouterr().err


def test_the_working_folders_config_py_is_read(tmp_path, monkeypatch, capsys):
    # Run from any folder: its config.py (when there is one) sets the defaults the help shows.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "default 32 (config.py BATCH_SIZE)" in capsys.readouterr().out  # no config.py: the package's
    (tmp_path / "config.py").write_text("BATCH_SIZE = 7\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "default 7 (config.py BATCH_SIZE)" in capsys.readouterr().out


def test_a_bad_config_py_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.py").write_text("BATCH_SISE = 7\n", encoding="utf-8")
    assert main(["train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: config.py: unknown setting 'batch_sise'")
    (tmp_path / "config.py").write_text("BATCH_SIZE = = 7\n", encoding="utf-8")
    assert main(["predict", "--file", "x.mp3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {tmp_path / 'config.py'}: cannot be read as Python (SyntaxError")


_DRIVER = r"""
import contextlib, io, json, sys
from genrekit.commands import COMMANDS
from genrekit.console import main
for name in COMMANDS:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main([name, "--help"])
        except SystemExit as exc:
            code = exc.code
    print(json.dumps({"name": name, "code": code, "usage": out.getvalue().splitlines()[0]}))
print(json.dumps({"tensorflow": "tensorflow" in sys.modules}))
"""


def test_every_subcommand_answers_help_without_tensorflow(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1] == {"tensorflow": False}
    for line in lines[:-1]:
        assert line["code"] == 0 and line["usage"].startswith(f"usage: genrekit {line['name']} "), line


def test_quickstart_suggests_commands_the_way_it_was_started(monkeypatch):
    # After `pip install .` from an empty folder there is no balanced_inference.py to suggest.
    from genrekit.commands.quickstart import _command

    monkeypatch.setattr(sys, "argv", ["genrekit quickstart"])
    assert _command("predict") == "genrekit predict"
    monkeypatch.setattr(sys, "argv", [str(REPO / "quick_start.py")])
    assert _command("predict") == "python balanced_inference.py"
