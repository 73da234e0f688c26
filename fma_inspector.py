"""Inspect an FMA dataset: structure, label distribution per level, balance, audio and paths (``genrekit inspect``).

The command lives in genrekit/commands/inspect.py; this script keeps ``python fma_inspector.py ...`` working.
"""

from genrekit.commands.inspect import *  # noqa: F403  (main, build_parser and the rest, as before)
from genrekit.commands.inspect import main

if __name__ == "__main__":
    raise SystemExit(main())
