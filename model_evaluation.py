"""Evaluate a trained genre model on FMA's test split: every figure in JSON, a readable report, plots (``genrekit evaluate``).

The command lives in genrekit/commands/evaluate.py; this script keeps ``python model_evaluation.py ...`` working.
"""

from genrekit.commands.evaluate import *  # noqa: F403  (main, build_parser and the rest, as before)
from genrekit.commands.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
