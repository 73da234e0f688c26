"""setup_fma_dataset: not yet available in this version of the toolkit.

python setup_fma_dataset.py --help
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=__doc__.splitlines()[0])


def main(argv: list[str] | None = None) -> int:
    build_parser().parse_args(argv)
    print("setup_fma_dataset.py is not yet available in this version of the toolkit", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
