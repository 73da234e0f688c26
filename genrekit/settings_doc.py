"""The configuration reference, read from the source of :class:`genrekit.settings.Settings`.

Every setting's name, type, default and comment come from ``genrekit/settings.py`` as written
(its ``# --- Group ---`` lines give the groups), so the manual's reference page
(``docs/configuration.md``, filled in by ``tools/mkdocs_hooks.py``) cannot drift from the code.
The source is parsed, never imported: the docs build needs no TensorFlow, no numpy.

    python -m genrekit.settings_doc          # the reference as Markdown, on stdout
"""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import tokenize
from pathlib import Path

SETTINGS_SOURCE = Path(__file__).with_name("settings.py")
#: Where the generated table goes in the reference page.
MARKER = "<!-- settings-reference -->"
_GROUP = re.compile(r"^#\s*---\s*(.+?)\s*-*$")


@dataclasses.dataclass(frozen=True)
class SettingDoc:
    """One setting as the source writes it: ``default`` is the source text of its value."""

    group: str
    name: str
    type: str
    default: str
    comment: str


@dataclasses.dataclass(frozen=True)
class DerivedDoc:
    """A property of ``Settings``: computed from the settings, not one of them."""

    name: str
    value: str
    comment: str


def _comments(source: str) -> dict[int, str]:
    """Line number -> the comment on that line (without ``#``), from the tokenizer."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0]: tok.string for tok in tokens if tok.type == tokenize.COMMENT}


def _settings_class(tree: ast.Module) -> ast.ClassDef:
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Settings")


def _comment_above(lines: list[str], comments: dict[int, str], lineno: int) -> tuple[list[str], str | None]:
    """The comment lines right above ``lineno`` (a field's own note) and the group header above them."""
    above, group, row = [], None, lineno - 1
    while row >= 1 and lines[row - 1].strip().startswith("#"):
        text = comments[row].lstrip("#").strip()
        match = _GROUP.match(comments[row])
        if match:
            group = match.group(1)
            break
        above.insert(0, text)
        row -= 1
    return above, group


def settings_docs(source: str | None = None) -> list[SettingDoc]:
    """Every field of ``Settings`` in source order, with its group, type, default and comment.

    A field's comment is the comment block right above it (when there is one) followed by the
    comment on its own line; a field with neither points to the field whose note above it covers it.
    """
    source = SETTINGS_SOURCE.read_text(encoding="utf-8") if source is None else source
    lines, comments = source.splitlines(), _comments(source)
    docs, group, noted = [], "", ""
    for node in _settings_class(ast.parse(source)).body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above, header = _comment_above(lines, comments, node.lineno)
        group = header or group
        own = comments.get(node.end_lineno, "").lstrip("#").strip()
        if above:
            noted = node.target.id
        elif not own and noted:  # a note written once above a run of fields (the split lists)
            own = f"see `{noted.upper()}`"
        docs.append(
            SettingDoc(
                group=group,
                name=node.target.id,
                type=ast.unparse(node.annotation),
                default=ast.get_source_segment(source, node.value),
                comment=" ".join([*above, own]).strip(),
            )
        )
    return docs


class _Settings(ast.NodeTransformer):
    """``self.n_mels`` -> ``N_MELS``; an f-string -> its parts joined with ``+``."""

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            return ast.Name(node.attr.upper())
        return self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        parts = [self.visit(v.value) if isinstance(v, ast.FormattedValue) else v for v in node.values]
        joined = parts[0]
        for part in parts[1:]:
            joined = ast.BinOp(joined, ast.Add(), part)
        return joined


def _plain(doc: str) -> str:
    """A docstring's first paragraph as Markdown: ``x`` and :role:`x` become `x`."""
    text = doc.split("\n\n")[0].replace("\n", " ")
    return re.sub(r"(?::\w+:)?`{1,2}~?([^`]+)`{1,2}", r"`\1`", text)


def derived_docs(source: str | None = None) -> list[DerivedDoc]:
    """The properties of ``Settings``: their value (the expression a one-line property returns,
    settings in upper case, when it depends on settings only) and their docstring."""
    source = SETTINGS_SOURCE.read_text(encoding="utf-8") if source is None else source
    docs = []
    for node in _settings_class(ast.parse(source)).body:
        if not isinstance(node, ast.FunctionDef) or not any(
            isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list
        ):
            continue
        body = [n for n in node.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        value = ""
        if len(body) == 1 and isinstance(body[0], ast.Return):
            value = ast.unparse(_Settings().visit(body[0].value))
            value = "" if "self" in value or "(" in value.lstrip("(") else value
        docs.append(DerivedDoc(name=node.name, value=value, comment=_plain(ast.get_docstring(node) or "")))
    return docs


def _cell(text: str) -> str:
    """Table-safe text: no pipe ends a cell early, no ``<genre>`` is read as an HTML tag."""
    return text.replace("|", "\\|").replace("<", "&lt;")


def reference_markdown(source: str | None = None) -> str:
    """The reference table: a row per setting (name, type, default, comment), a header row per group,
    then the derived values."""
    rows = ["| setting | type | default | meaning |", "|---|---|---|---|"]
    group = None
    for doc in settings_docs(source):
        if doc.group != group:
            group = doc.group
            rows.append(f"| **{_cell(group)}** | | | |")
        rows.append(f"| `{doc.name.upper()}` | {doc.type} | `{_cell(doc.default)}` | {_cell(doc.comment)} |")
    rows += ["", "Derived values (properties of `Settings`, e.g. `settings.input_shape`: computed, not settings):", ""]
    rows += ["| name | value | meaning |", "|---|---|---|"]
    for doc in derived_docs(source):
        value = f"`{_cell(doc.value)}`" if doc.value else ""
        rows.append(f"| `{doc.name.upper()}` | {value} | {_cell(doc.comment)} |")
    return "\n".join(rows) + "\n"


def fill_reference(markdown: str) -> str:
    """``markdown`` with :data:`MARKER` replaced by :func:`reference_markdown` (unchanged without it)."""
    return markdown.replace(MARKER, reference_markdown()) if MARKER in markdown else markdown


if __name__ == "__main__":
    print(reference_markdown(), end="")
