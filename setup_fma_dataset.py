"""Download, verify and extract the FMA archives, safely and resumably (``genrekit setup``).

The command lives in genrekit/commands/setup.py; this script keeps ``python setup_fma_dataset.py ...`` working.
"""

from genrekit.commands.setup import *  # noqa: F403  (main, build_parser and the rest, as before)
from genrekit.commands.setup import main

if __name__ == "__main__":
    raise SystemExit(main())
