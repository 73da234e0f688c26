"""Train the hierarchical, class-balanced genre model on FMA (or the demo dataset) (``genrekit train``).

The command lives in genrekit/commands/train.py; this script keeps ``python balanced_trainer.py ...`` working.
"""

from genrekit.commands.train import *  # noqa: F403  (main, build_parser and the rest, as before)
from genrekit.commands.train import main

if __name__ == "__main__":
    raise SystemExit(main())
