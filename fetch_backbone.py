"""Fetch the pretrained musicnn weights from PyPI and convert them to Keras 3 (``genrekit fetch-backbone``).

The command lives in genrekit/commands/fetch_backbone.py; this script keeps ``python fetch_backbone.py ...`` working.
"""

from genrekit.commands.fetch_backbone import *  # noqa: F403  (main, build_parser and the rest, as before)
from genrekit.commands.fetch_backbone import main

if __name__ == "__main__":
    raise SystemExit(main())
