"""The README and the manual (docs/) document what the code has, and their code runs.

Every Python block runs (in a folder holding a tiny trained run, audio files and, where they can be
fetched, the musicnn weights) unless the line above it says ``<!-- not run: REASON -->``; every
command's flags exist in the script's own parser; every setting is in the generated reference;
the README stays a front page whose links all lead somewhere.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest

from genrekit.commands import COMMANDS
from genrekit.console import command_module
from genrekit.settings import Settings
from genrekit.settings_doc import MARKER, derived_docs, reference_markdown, settings_docs
from tests.conftest import REPO

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
SCRIPTS = {script: name for name, (_, script) in COMMANDS.items()}  # balanced_trainer.py -> train
NOT_RUN = re.compile(r"<!--\s*not run:\s*(.+?)\s*-->")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def code_blocks(path: Path, lang: str) -> list[tuple[int, str, str | None]]:
    """``(line, code, reason not run)`` of each fenced block of ``lang`` in ``path``."""
    text, blocks = _text(path), []
    for match in FENCE.finditer(text):
        if match.group(1) != lang:
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        reason = NOT_RUN.search(before)
        blocks.append((text.count("\n", 0, match.start()) + 1, match.group(2), reason and reason.group(1)))
    return blocks


PYTHON_BLOCKS = [
    pytest.param(path, line, code, reason, id=f"{path.relative_to(REPO)}:{line}")
    for path in PAGES
    for line, code, reason in code_blocks(path, "python")
]


# --- the Python blocks run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox(tiny_run, tmp_path_factory) -> Path:
    """A working folder as the docs assume one: runs/balanced (and runs/a, runs/b), a music folder,
    single audio files. Read-only for the blocks (each writes only its own outputs)."""
    from tests.inference_helpers import write_audio

    root = tmp_path_factory.mktemp("docs_sandbox")
    for name in ("balanced", "a", "b"):
        run = root / "runs" / name
        run.mkdir(parents=True)
        for file in ("balanced_hierarchical_genre_model.h5", "balanced_training_config.json"):
            shutil.copy(tiny_run / file, run / file)
    for i in range(3):
        write_audio(root / "music_folder" / f"song{i}.mp3", 4.0, 22050, 2, seed=10 + i)
    for i, name in enumerate(("example.mp3", "song.mp3", "track.mp3")):
        write_audio(root / name, 6.0, 22050, 1, seed=20 + i)
    return root


@pytest.mark.slow  # a tiny model is trained once for the session; the blocks predict with it
@pytest.mark.parametrize("path, line, code, reason", PYTHON_BLOCKS)
def test_python_blocks_run(path, line, code, reason, sandbox, request, monkeypatch):
    if reason:
        pytest.skip(f"{path.name}:{line} is marked not run: {reason}")
    if "musicnn" in code:  # the real weights, where the place the docs assume holds them
        weights = request.getfixturevalue("musicnn_dir")
        target = sandbox / "fma_data" / "pretrained" / "musicnn"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(weights, target_is_directory=True)
    monkeypatch.chdir(sandbox)
    exec(compile(code, f"{path.name}:{line}", "exec"), {"__name__": "__docs__"})


def test_every_python_block_is_run_or_says_why_not():
    # A block marked not run names its reason; none is marked without one.
    assert PYTHON_BLOCKS, "no Python block found"
    for param in PYTHON_BLOCKS:
        path, line, _, reason = param.values
        assert reason is None or len(reason) > 10, f"{path.name}:{line}: say why it is not run"


def test_readme_notebook_snippet_is_the_fma_readme_one():
    # The notebook API exactly as the FMA README shows it: the import, the constructor, batch_predict.
    code = "\n".join(c for _, c, _ in code_blocks(README, "python"))
    assert "from balanced_inference import MusicGenreInference" in code
    assert 'results = inference.batch_predict("music_folder/")' in code
    assert 'result["aggregated_results"]["top_genre"]["voting"]["name"]' in code


def test_readme_config_block_is_config_py():
    # The README's config.py excerpt: each line is config.py's, value for value.
    from genrekit.cli import working_config

    config = working_config(REPO)
    block = next(c for _, c, _ in code_blocks(README, "python") if "SAMPLE_RATE" in c)
    values = {t.id: ast.literal_eval(n.value) for n in ast.parse(block).body for t in n.targets}
    assert len(values) >= 15
    assert values == {name: getattr(config, name) for name in values}


# --- the commands' flags exist --------------------------------------------------------------------


def _source_flags(path: Path) -> set[str]:
    """The flags a script that is not a command declares (benchmarks, tools, examples), from its source."""
    flags = set()
    for node in ast.walk(ast.parse(_text(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and str(arg.value).startswith("--"):
                    flags |= {arg.value, "--no-" + arg.value[2:]}  # BooleanOptionalAction's twin
    return flags | {"-h", "--help"}


def _parser_flags(name: str) -> set[str]:
    parser = command_module(name).build_parser()
    return {opt for action in parser._actions for opt in action.option_strings}


def commands(text: str) -> list[str]:
    """Each shell command of the fenced blocks and inline code spans of ``text``, continuation lines joined."""
    found = []
    for match in FENCE.finditer(text):
        if match.group(1) not in ("bash", "sh", ""):
            continue
        joined = re.sub(r"\\\n\s*", " ", match.group(2))
        found += [line.strip().removeprefix("$ ") for line in joined.splitlines()]
    found += re.findall(r"`((?:python3? |genrekit )[^`]+)`", re.sub(FENCE, "", text))
    return [c for c in found if re.match(r"(\w+=\S+ )*(python3?|\.venv/bin/python|genrekit)\b", c)]


def checked_command(command: str) -> tuple[str, list[str]] | None:
    """(what the command runs, its flags that its parser lacks); None for a command of no script."""
    words = shlex.split(command, comments=True)
    while words and re.match(r"\w+=", words[0]):  # FMA_BASE_URL=... python ...
        words.pop(0)
    if words[0] == "genrekit":
        if len(words) == 1 or words[1].startswith("-"):
            return "genrekit", [w for w in words[1:] if w not in ("--version", "--help", "-h")]
        known, rest = _parser_flags(words[1]), words[2:]
        target = f"genrekit {words[1]}"
    elif len(words) > 1 and words[1].endswith(".py"):
        script, rest = words[1], words[2:]
        assert (REPO / script).is_file(), f"{command}: {script} does not exist"
        known = _parser_flags(SCRIPTS[script]) if script in SCRIPTS else _source_flags(REPO / script)
        target = script
    else:  # python -m pytest, python3 -m venv ...
        return None
    flags = [w.split("=", 1)[0] for w in rest if w.startswith("--")]
    return target, [f for f in flags if f not in known]


@pytest.mark.parametrize("path", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_commands_flags_exist_in_its_parser(path):
    checked = [(c, checked_command(c)) for c in commands(_text(path))]
    unknown = {c: bad for c, result in checked if result for bad in [result[1]] if bad}
    assert not unknown, f"{path.name}: flags the script does not have: {unknown}"


def test_commands_are_found_and_checked():
    # The checker sees the README's commands, joined lines and all, and refuses a flag that does not exist.
    found = commands(_text(README))
    assert any(c.startswith("python balanced_inference.py --model runs/quick_start --folder") for c in found)
    assert checked_command("python balanced_trainer.py --epochs 3 --batch_size=8") == ("balanced_trainer.py", [])
    assert checked_command("genrekit train --epochs 3 --no_such_flag") == ("genrekit train", ["--no_such_flag"])
    assert checked_command("FMA_BASE_URL=x python setup_fma_dataset.py --subset all") == ("setup_fma_dataset.py", [])
    assert checked_command("python benchmarks/bench_model.py --backbone ast") == ("benchmarks/bench_model.py", [])
    assert checked_command("python -m pytest -m 'not slow'") is None


# Flags each script's pages must mention (the main ones a user looks for).
DOCUMENTED_FLAGS = {
    "balanced_trainer.py": ["--batch_size", "--epochs", "--focal_loss", "--extract_only", "--shard", "--strategy", "--backbone"],
    "fma_inspector.py": ["--check_paths", "--analyze_balance", "--generate_config", "--dataset"],
    "balanced_inference.py": ["--file", "--folder", "--output", "--top_k", "--threshold", "--recursive", "--workers", "--tags"],
    "model_evaluation.py": ["--split", "--output_dir", "--subset", "--metadata", "--audio", "--weight", "--ensemble"],
    "setup_fma_dataset.py": ["--subset", "--symlinks", "--analyze", "--no_verify", "--cleanup", "--base_url"],
    "quick_start.py": ["--data", "--steps", "--smallest", "--dataset", "--backbone"],
    "tune.py": ["--demo", "--trials", "--space", "--prune_after", "--output_dir", "--epochs"],
}  # fmt: skip


@pytest.mark.parametrize("script", DOCUMENTED_FLAGS)
def test_the_main_flags_are_documented(script):
    manual = "\n".join(_text(p) for p in PAGES)
    known = _parser_flags(SCRIPTS[script])
    for flag in DOCUMENTED_FLAGS[script]:
        assert flag in known, (script, flag)
        assert flag in manual, (script, flag)


# --- the configuration reference ------------------------------------------------------------------


def test_the_reference_page_is_generated():
    page = _text(REPO / "docs" / "configuration.md")
    assert MARKER in page and "| `BATCH_SIZE`" not in page  # filled in at build time, never by hand
    assert "tools/mkdocs_hooks.py" in _text(REPO / "mkdocs.yml")


def test_every_setting_is_in_the_reference_with_its_type_and_default():
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    docs = {doc.name: doc for doc in settings_docs()}
    assert list(docs) == list(fields)
    table = reference_markdown()
    for name, doc in docs.items():
        assert ast.literal_eval(doc.default) == fields[name].default, name
        assert doc.type == fields[name].type, name  # the annotation as written
        assert doc.comment, f"{name} has no comment in settings.py"
        assert f"| `{name.upper()}` | {doc.type} |" in table, name
    assert {d.name for d in derived_docs()} == {
        n for n, v in vars(Settings).items() if isinstance(v, property)
    }


def test_the_reference_reads_comments_groups_and_shared_notes():
    source = '''
class Settings:
    # --- Paths ------------------------------------------------------
    data_dir: str = "fma_data"  # where archives go
    # a note that spans
    # two lines
    split_file_training: str = ""
    split_file_test: str = ""

    # --- Training ---------------------------------------------------
    batch_size: int = 32  # segments per batch

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.n_mels, 1)
'''
    docs = settings_docs(source)
    assert [(d.group, d.name, d.type, d.default, d.comment) for d in docs] == [
        ("Paths", "data_dir", "str", '"fma_data"', "where archives go"),
        ("Paths", "split_file_training", "str", '""', "a note that spans two lines"),
        ("Paths", "split_file_test", "str", '""', "see `SPLIT_FILE_TRAINING`"),
        ("Training", "batch_size", "int", "32", "segments per batch"),
    ]
    assert [(d.name, d.value) for d in derived_docs(source)] == [("input_shape", "(N_MELS, 1)")]
    assert "| **Training** | | | |" in reference_markdown(source)


def test_every_example_config_key_is_a_setting():
    keys = [k for k in json.loads(_text(REPO / "examples" / "example_config.json")) if not k.startswith("_")]
    assert set(keys) <= {f.name for f in dataclasses.fields(Settings)}


# --- the README is a front page, the manual a site --------------------------------------------------


def test_readme_is_a_front_page():
    assert len(_text(README).splitlines()) <= 250


def _anchors(path: Path) -> set[str]:
    """The heading anchors of a Markdown file, as MkDocs (Python-Markdown's toc) makes them."""
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", re.sub(FENCE, "", _text(path)), flags=re.M):
        slug = re.sub(r"[^\w\s-]", "", heading).strip().lower()
        anchors.add(re.sub(r"[-\s]+", "-", slug))
    return anchors


def test_readme_links_lead_somewhere():
    # The README is not part of the MkDocs build, so its links are checked here: files and anchors.
    links = re.findall(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)", _text(README))
    assert len(links) > 20
    for target, anchor in links:
        if target.startswith(("http://", "https://")):
            continue
        path = REPO / target if target else README
        assert path.is_file(), f"README links to {target}, which does not exist"
        if anchor:
            assert anchor in _anchors(path), f"README links to {target}#{anchor}: no such heading"


def test_every_page_is_in_the_sites_navigation():
    nav = _text(REPO / "mkdocs.yml")
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md"))
    assert [p for p in pages if f": {p}" not in nav] == []


def test_the_project_layout_names_every_module_of_the_package():
    page = _text(REPO / "docs" / "development.md")
    layout = page[page.index("## Project layout") :]
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
    assert not missing, f"modules the project layout (docs/development.md) does not name: {missing}"
