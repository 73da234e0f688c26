"""Baselines on any dataset: musicnn transfer features (Pons & Serra) or MFCC statistics, with an SVM (``genrekit baseline``).

The command lives in genrekit/commands/baseline.py; this script keeps ``python baseline.py ...`` working.
"""

from genrekit.commands.baseline import *  # noqa: F403  (main, build_parser and the rest, as before)
from genrekit.commands.baseline import main

if __name__ == "__main__":
    raise SystemExit(main())
