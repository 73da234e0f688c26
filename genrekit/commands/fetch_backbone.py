"""fetch_backbone: fetch the pretrained musicnn weights from PyPI and convert them to Keras 3.

Runs `python -m pip download musicnn==0.1.0 --no-deps` (your pip index settings apply), checks the
wheel's published sha256, reads the TF1 checkpoints of MSD_musicnn and MTT_musicnn inside it and
writes Keras weights plus manifest.json (source, sha256s, tags) to --dir. Once there and verified,
running it again does nothing. Code that needs the weights also fetches them on first use.

    python fetch_backbone.py                                  # into fma_data/pretrained/musicnn
    python fetch_backbone.py --force                          # fetch and convert again
    python fetch_backbone.py --wheel ~/Downloads/musicnn-0.1.0-py3-none-any.whl   # offline
    python fetch_backbone.py --index_url https://mirror.example/simple
    python fetch_backbone.py --find_links ./wheels            # a local folder of wheels, no index
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from genrekit.cli import config_settings, script_main, script_parser, setup_logging, working_config

log = logging.getLogger("fetch_backbone")


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument(
        "--backbone", default="musicnn", choices=("musicnn",), help="the backbone (default: %(default)s)"
    )
    parser.add_argument(
        "--dir",
        default=None,
        help=f"where the converted weights go (default: {config_settings(working_config()).pretrained_dir}/<backbone>)",
    )
    parser.add_argument("--force", action="store_true", help="fetch and convert again even when present")
    parser.add_argument("--wheel", default=None, metavar="PATH", help="use this downloaded wheel, no pip run")
    parser.add_argument("--index_url", default=None, help="pip --index-url for the download")
    parser.add_argument(
        "--find_links",
        default=None,
        metavar="DIR",
        help="take the wheel from this folder only (pip --no-index)",
    )
    parser.add_argument("--verbose", action="store_true", help="debug output")
    return parser


@script_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(None, args.verbose)
    from genrekit.models.musicnn_weights import ensure_musicnn_weights

    pip_args: list[str] = []
    if args.index_url:
        pip_args += ["--index-url", args.index_url]
    if args.find_links:
        pip_args += ["--no-index", "--find-links", args.find_links]
    out = ensure_musicnn_weights(
        Path(args.dir) if args.dir else Path(config_settings(working_config()).pretrained_dir) / "musicnn",
        force=args.force,
        wheel=args.wheel,
        pip_args=pip_args,
    )
    print(f"musicnn weights ready in {out}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
