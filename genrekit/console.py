"""The ``genrekit`` command: ``genrekit NAME [flags]`` runs one of the scripts' commands.

    genrekit --version
    genrekit quickstart --smallest                 # = python quick_start.py --smallest
    genrekit predict --model runs/balanced --folder music/ --output results.json
    genrekit train --help                          # each command's own flags

Each subcommand is the script's own parser and main (:mod:`genrekit.commands`), so a flag means the
same under both names. It reads the ``config.py`` of the folder you run it in, when there is one.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Sequence

from genrekit import __version__
from genrekit.commands import COMMANDS


def usage() -> str:
    """The overview ``genrekit`` and ``genrekit --help`` print: every command and its script."""
    width = max(map(len, COMMANDS))
    lines = [
        "usage: genrekit [--version] [-h] COMMAND [flags]",
        "",
        "Hierarchical, class-balanced music-genre classification. Commands (each takes --help):",
        "",
    ]
    for name, (_, script) in COMMANDS.items():
        summary = re.sub(r"^\w+: ", "", (command_module(name).__doc__ or "").strip().splitlines()[0])
        summary = summary[:1].upper() + summary[1:]
        lines.append(f"  {name:<{width}}  {summary}")
        lines.append(f"  {'':<{width}}  (also: python {script})")
    lines += ["", "A config.py in the working folder is read first (your settings on top of the defaults)."]
    return "\n".join(lines)


def command_module(name: str):
    """The module of subcommand ``name`` (its ``build_parser`` and ``main``)."""
    return importlib.import_module(f"genrekit.commands.{COMMANDS[name][0]}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``genrekit``: ``--version``, the overview, or one subcommand with the rest of ``argv``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(f"genrekit {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: genrekit has no command {name!r}; the commands are {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    # argparse names the program after sys.argv[0]: say "genrekit train" in usage lines and errors.
    saved = sys.argv[0]
    sys.argv[0] = f"genrekit {name}"
    try:
        return command_module(name).main(rest)
    finally:
        sys.argv[0] = saved


if __name__ == "__main__":
    sys.exit(main())
