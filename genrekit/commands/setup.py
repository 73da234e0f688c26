"""setup_fma_dataset: download, verify and extract the FMA archives, safely and resumably.

Archives are downloaded into --data_dir (resumed after an interruption: run the same command
again), checked against their published sha1, and extracted into
<data_dir>/extracted/<subset>/<archive>/, which for the default --data_dir is exactly where the
other scripts look: fma_data/extracted/metadata/fma_metadata and
fma_data/extracted/fma_large/fma_large. A second run with everything in place does nothing.

    python setup_fma_dataset.py --subset metadata --symlinks      # 342 MiB: tracks.csv, genres.csv
    python setup_fma_dataset.py --subset all --symlinks --analyze # metadata + fma_large (93 GiB)
    python setup_fma_dataset.py --subset fma_small --symlinks     # 8,000 clips, 7.2 GiB
    python setup_fma_dataset.py --subset fma_large --archive ~/Downloads/fma_large.zip --cleanup
    python setup_fma_dataset.py --subset metadata --base_url http://mirror.example/fma/
    python setup_fma_dataset.py --subset demo                     # small built-in dataset, no network

--symlinks makes the default folders point at what was extracted: useful with another --data_dir,
or with fma_small / fma_medium only (the default fma_large folder then points at the smaller
subset, and the other scripts must be told that subset). --sha1 replaces the published sha1 (for a
mirror holding another release); --no_verify skips the archive check altogether.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from genrekit.cli import config_settings, script_main, script_parser, setup_logging, working_config
from genrekit.download import setup as download
from genrekit.errors import ConfigError

log = logging.getLogger("setup_fma_dataset")

CHOICES = ("metadata", "fma_small", "fma_medium", "fma_large", "fma_full", "all", "demo")


def build_parser() -> argparse.ArgumentParser:
    defaults = config_settings(working_config())
    parser = script_parser(__doc__)
    parser.add_argument(
        "--subset",
        required=True,
        choices=CHOICES,
        help="what to set up: metadata, an audio subset, all (= metadata + fma_large), or demo "
        "(the built-in demo dataset, no network)",
    )
    _add_demo_arguments(parser)
    _add_source_arguments(parser)
    parser.add_argument(
        "--symlinks",
        action="store_true",
        help=f"point the default folders ({defaults.metadata_dir}, {defaults.audio_dir}) at what was extracted",
    )
    parser.add_argument("--analyze", action="store_true", help="run fma_inspector.py on the result when done")
    parser.add_argument(
        "--retries",
        type=int,
        default=8,
        help="failed attempts in a row before a download gives up (default: 8)",
    )
    parser.add_argument("--no_progress", action="store_true", help="no progress bars (for logs)")
    parser.add_argument("--verbose", action="store_true", help="debug messages on the console")
    return parser


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = config_settings(working_config())
    parser.add_argument(
        "--demo_tracks",
        type=int,
        default=defaults.demo_tracks,
        help="--subset demo: tracks (default: %(default)s)",
    )
    parser.add_argument(
        "--demo_seconds",
        type=float,
        default=defaults.demo_clip_seconds,
        help="--subset demo: clip length in seconds (default: %(default)s; FMA's are 30)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="--subset demo: random seed (default: %(default)s)"
    )


def _add_source_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the archives come from and go, and how they are checked."""
    defaults = config_settings(working_config())
    parser.add_argument(
        "--data_dir",
        default=defaults.data_dir,
        help="where archives and extracted files go (default: %(default)s)",
    )
    parser.add_argument(
        "--base_url",
        default=None,
        help="server folder holding the archives, or a local folder (path or file://) with them; "
        "default: $FMA_BASE_URL, else the FMA server",
    )
    parser.add_argument(
        "--archive",
        action="append",
        default=[],
        metavar="PATH",
        help="an archive you already downloaded, used in place (repeat for --subset all; archives "
        "already in --data_dir are found without it)",
    )
    parser.add_argument(
        "--sha1",
        action="append",
        default=[],
        metavar="[NAME=]SHA1",
        help="expected sha1 instead of the published one (NAME=SHA1, e.g. fma_metadata.zip=..., "
        "when the subset has several archives)",
    )
    parser.add_argument("--no_verify", action="store_true", help="do not check the archives' sha1")
    parser.add_argument(
        "--cleanup",
        action="store_true",
        help="delete each archive once its extraction finished and was checked",
    )


def _parse_sha1(values: list[str]) -> dict[str, str]:
    overrides = {}
    for value in values:
        name, _, sha1 = value.rpartition("=")
        overrides[name] = sha1.strip()
    return overrides


@script_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    defaults = config_settings(working_config())
    if args.retries < 0:
        raise ConfigError(f"--retries {args.retries} must be >= 0")
    setup_logging(None, args.verbose)
    data_dir = Path(args.data_dir)
    if args.subset == "demo":
        return _demo(data_dir, args.demo_tracks, args.demo_seconds, args.seed)

    if args.no_verify:
        log.warning("--no_verify: the archives' sha1 will not be checked")
    results = download.setup_dataset(
        args.subset,
        data_dir,
        sha1_overrides=_parse_sha1(args.sha1),
        local_archives=args.archive,
        base_url=args.base_url,
        verify=not args.no_verify,
        cleanup=args.cleanup,
        progress=not args.no_progress,
        download_options={"retries": args.retries},
    )
    metadata_dir = audio_dir = None
    for result in results:
        state = "already in place" if result.already_done else "ready"
        print(f"{result.archive.top}: {state} in {result.folder}")
        bad = [p for p in result.problems if p.status != "repaired"]
        if bad:
            print(f"  {len(bad)} file(s) differ from the archive's checksums: see {result.report}")
        if result.archive.key == "metadata":
            metadata_dir = result.folder
        elif result.archive.key in download.AUDIO_STAND_INS:
            audio_dir = result.folder

    if args.symlinks:
        for line in download.link_default_layout(data_dir, defaults.metadata_dir, defaults.audio_dir):
            print(line)
        # Name the folders by their default paths when the links now lead there.
        if metadata_dir is not None and Path(defaults.metadata_dir).resolve() == metadata_dir.resolve():
            metadata_dir = Path(defaults.metadata_dir)
        if audio_dir is not None and Path(defaults.audio_dir).resolve() == audio_dir.resolve():
            audio_dir = Path(defaults.audio_dir)
    if metadata_dir is None and Path(defaults.metadata_dir).is_dir():
        metadata_dir = Path(defaults.metadata_dir)
    if audio_dir is None and Path(defaults.audio_dir).is_dir():
        audio_dir = Path(defaults.audio_dir)
    flags = _flags(metadata_dir, audio_dir)
    if flags:
        print(f"use it with: python fma_inspector.py {flags}")
    if args.analyze:
        return _analyze(metadata_dir, audio_dir)
    return 0


def _flags(metadata_dir: Path | None, audio_dir: Path | None) -> str:
    flags = []
    if metadata_dir is not None:
        flags.append(f"--metadata {metadata_dir}")
    if audio_dir is not None:
        flags.append(f"--audio {audio_dir}")
    return " ".join(flags)


def _demo(data_dir: Path, n_tracks: int, clip_seconds: float, seed: int) -> int:
    root = data_dir / "demo"
    try:
        from genrekit.datasets.demo.writer import write_demo_dataset
    except ImportError:
        print("the demo dataset is not available yet in this version of the toolkit", file=sys.stderr)
        return 1
    info = write_demo_dataset(root=root, n_tracks=n_tracks, clip_seconds=clip_seconds, seed=seed)
    print(
        f"{info.n_tracks} tracks of {info.clip_seconds:g} s in {info.n_roots} top genres; "
        f"{len(info.defective_ids)} defective files on purpose (like FMA's)"
    )
    flags = f"--metadata {root / 'fma_metadata'} --audio {root / 'fma_demo'}"
    print(f"demo dataset written to {root}; use it with:")
    for script in ("fma_inspector.py", "balanced_trainer.py", "model_evaluation.py"):
        print(f"  python {script} {flags}")
    return 0


def _analyze(metadata_dir: Path | None, audio_dir: Path | None) -> int:
    if metadata_dir is None:
        print("--analyze: no metadata folder to analyse (set up --subset metadata first)", file=sys.stderr)
        return 1
    argv = ["--metadata", str(metadata_dir)]
    if audio_dir is not None:
        argv += ["--audio", str(audio_dir)]
    try:
        from genrekit.commands import inspect as fma_inspector
    except ImportError:
        print("--analyze: fma_inspector.py is not available; the dataset itself is ready", file=sys.stderr)
        return 1
    print(f"running: python fma_inspector.py {' '.join(argv)}")
    try:
        code = fma_inspector.main(argv)
    except SystemExit as exc:  # an inspector without these flags exits through argparse
        code = exc.code if isinstance(exc.code, int) else 1
    if code:
        print(f"--analyze: fma_inspector.py exited with {code}; the dataset itself is ready", file=sys.stderr)
    return code or 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
