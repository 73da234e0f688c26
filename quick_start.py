"""The whole pipeline in one command: setup, inspection, features, training, evaluation, inference (``genrekit quickstart``).

The command lives in genrekit/commands/quickstart.py; this script keeps ``python quick_start.py ...`` working.
"""

from genrekit.commands.quickstart import *  # noqa: F403  (main, build_parser and the rest, as before)
from genrekit.commands.quickstart import main

if __name__ == "__main__":
    raise SystemExit(main())
