"""Genre predictions for one audio file or a whole music folder (``genrekit predict``).

The command lives in genrekit/commands/predict.py; this script keeps ``python balanced_inference.py ...`` working.
"""

from genrekit.commands.predict import *  # noqa: F403  (main, build_parser and the rest, as before)
from genrekit.commands.predict import main

if __name__ == "__main__":
    raise SystemExit(main())
