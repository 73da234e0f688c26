"""Search training settings with Optuna on the validation split; write the best as a --config file (``genrekit tune``).

The command lives in genrekit/commands/tune.py; this script keeps ``python tune.py ...`` working.
"""

from genrekit.commands.tune import *  # noqa: F403  (main, build_parser and the rest, as before)
from genrekit.commands.tune import main

if __name__ == "__main__":
    raise SystemExit(main())
