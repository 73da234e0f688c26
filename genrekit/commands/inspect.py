"""Inspect an FMA dataset: structure, label distribution per level, balance, audio and paths.

    python fma_inspector.py                                    # full analysis of config.py's paths
    python fma_inspector.py --metadata fma_data/demo/fma_metadata --audio fma_data/demo/fma_demo
    python fma_inspector.py --analyze_balance                  # per class: count, share, weight, action
    python fma_inspector.py --generate_config balancing.json   # balancing config for --config
    python fma_inspector.py --check_paths                      # which paths are wrong, and the fix
    python fma_inspector.py --dataset folder:~/music/gtzan     # your own genre folders (or csv:FILE)

The analysis is printed and written to ``<output_dir>/inspection_report.json`` with one PNG of the
class distribution per level.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genrekit.cli import (
    SETUP_HINTS,
    add_config_argument,
    add_dataset_arguments,
    add_setting_arguments,
    add_split_file_argument,
    config_values,
    require_dir,
    script_main,
    script_parser,
    settings_from_args,
    working_config,
)

DEFAULT_REPORT_DIR = "inspection"  # inside the run folder (config.py OUTPUT_DIR)


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(
        __doc__, description="Inspect an FMA dataset: label levels, balance, audio files and paths."
    )
    add_dataset_arguments(parser)
    add_split_file_argument(parser)
    parser.add_argument(
        "--output_dir", help="where the report and plots go (default: <OUTPUT_DIR>/inspection)"
    )
    parser.add_argument(
        "--generate_config",
        nargs="?",
        const="balancing_config.json",
        metavar="JSON",
        help="write the balancing configuration (default name balancing_config.json)",
    )
    parser.add_argument("--check_paths", action="store_true", help="check every configured path and exit")
    parser.add_argument(
        "--analyze_balance", action="store_true", help="per-class balance table at each level"
    )
    parser.add_argument("--rows", type=int, default=25, help="rows shown per level in tables (default 25)")
    parser.add_argument("--no_audio_probe", action="store_true", help="skip the audio-file probe")
    parser.add_argument("--no_plots", action="store_true", help="do not write PNG plots")
    add_config_argument(parser)
    add_setting_arguments(
        parser,
        [
            "subset",
            "dataset",
            "seed",
            "oversample_threshold",
            "undersample_threshold",
            "sampling_thresholds",
            "max_class_weight",
            "use_class_weights",
            "use_weighted_sampling",
            "use_focal_loss",
        ],
        base=config_values(working_config()),
    )
    return parser


def _print_table(table, rows: int) -> None:
    shown = table.head(rows)
    print(
        shown[["genre", "train_tracks", "share", "weight", "sampling", "all_tracks"]].to_string(
            index=False, formatters={"share": "{:.2%}".format, "weight": "{:.3f}".format}
        )
    )
    if len(table) > rows:
        print(f"  ... {len(table) - rows} more (use --rows {len(table)} to see all)")


def run_check_paths(settings, args) -> int:
    from genrekit.datasets.analysis import check_paths

    rows = check_paths(settings, args.metadata, args.audio)
    bad = 0
    for row in rows:
        mark = "ok " if row["ok"] else "BAD"
        line = f"[{mark}] {row['name']}: {row['path']}"
        if not row["ok"]:
            line += f" ({row['problem']}) -> run: {row['fix']}"
            bad += "optional" not in row["name"]
        print(line)
    print("all required paths are in place" if not bad else f"{bad} required path(s) need fixing")
    return 1 if bad else 0


def _load(settings, args):
    """``(dataset, what to call it)``: the dataset exactly as the trainer sees it."""
    from genrekit.datasets.analysis import load_dataset

    if settings.dataset == "fma":
        metadata = require_dir(args.metadata or settings.metadata_dir, "metadata", SETUP_HINTS["metadata"])
        audio = Path(args.audio or settings.audio_dir)
        return load_dataset(settings, metadata, audio), metadata
    return load_dataset(settings), settings.dataset  # a user's own source (genrekit.datasets.own)


def print_balance(ds, settings, rows: int) -> None:
    """The per-class balance table of each level and how the thresholds were set."""
    from genrekit.datasets.analysis import level_table, sampling_thresholds

    for level in ("top", "medium", "all"):
        table = level_table(ds, level, settings)
        counts = table.train_tracks.to_numpy()
        if level not in ds.heads:  # fewer than two classes: the model has no head for it
            print(f"\n== {level} level: {len(table)} classes: no {level} head (needs at least 2) ==")
            continue
        print(
            f"\n== {level} level: {len(table)} classes, imbalance {counts.max() / max(counts.min(), 1):.1f}x =="
        )
        _print_table(table, rows)
    th = sampling_thresholds(ds, settings)
    how = (
        f"relative: {th['given'][0]} / {th['given'][1]} for fma_large scaled to "
        f"{th['labelled_training_tracks']} labelled training tracks"
        if th["mode"] == "relative"
        else "absolute"
    )
    print(
        f"\nweights: n_samples / (n_classes * n_samples_per_class), clipped at {settings.max_class_weight}; "
        f"sampling: top genres under {th['oversample']} training tracks are oversampled, "
        f"over {th['undersample']} undersampled (thresholds {how})."
    )


def print_report(report: dict, ds, metadata, subset: str) -> None:
    """The analysis in a few lines: splits, genre tree, label coverage, levels and audio."""
    print(f"dataset: {metadata} (subset {subset}: {report['n_tracks']} tracks)")
    print("tracks per split: " + ", ".join(f"{k} {v}" for k, v in report["tracks_per_split"].items()))
    tree = report["genre_tree"]
    print(
        f"genre tree: {tree['genres']} genres, {tree['roots']} roots, {tree['non_roots']} non-roots, depth {tree['max_depth']}"
    )
    print(
        f"genre_top set for {report['genre_top_coverage']:.1%} of tracks (the rest have no top-level target); "
        f"medium target for {report['medium_coverage']:.1%}; {report['multi_root_tracks']} tracks span several roots"
    )
    print(
        f"labels per track: mean {report['labels_per_track']['mean']:.2f}, max {report['labels_per_track']['max']}"
    )
    if report["artists_in_several_splits"]:
        print(f"warning: {len(report['artists_in_several_splits'])} artists appear in more than one split")
    if report["skipped_tracks"]:
        print(f"warning: {len(report['skipped_tracks'])} tracks skipped (unparsable genre lists)")
    for level, info in report["levels"].items():
        print(
            f"{level:>6}: {info['n_classes']:3d} classes, imbalance {info['imbalance_ratio']:.1f}x "
            f"(largest {info['largest']['genre']} {info['largest']['train_tracks']}, "
            f"smallest {info['smallest']['genre']} {info['smallest']['train_tracks']} training tracks)"
        )
    if "medium" not in report["levels"]:
        print(
            f"{'medium':>6}: {len(ds.vocabs['medium']):3d} classes: no medium head (no sub-genres to learn)"
        )
    if "audio" in report:
        a = report["audio"]
        if not a["exists"]:
            print(f"audio: folder {a['audio_dir']} does not exist; create it with: {SETUP_HINTS['audio']}")
        else:
            print(
                f"audio: {a['ok']} present, {a['missing']} missing, {a['empty']} empty, {a['unreadable']} unreadable"
            )


@script_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args, config_values(working_config()))
    if args.check_paths:
        return run_check_paths(settings, args)

    from genrekit.datasets import analysis
    from genrekit.datasets.analysis import analyze, balance_config, plot_distributions, write_json

    out_dir = Path(args.output_dir or Path(settings.output_dir) / DEFAULT_REPORT_DIR)
    # The output policy (genrekit.fileio), before the dataset is read: nothing of the user's is overwritten.
    if args.generate_config:
        analysis.check_balancing_path(args.generate_config)
    elif not args.analyze_balance:
        analysis.check_report_dir(out_dir, plots=not args.no_plots)
    ds, metadata = _load(settings, args)
    if args.generate_config:
        out = Path(args.generate_config)
        write_json(balance_config(ds, settings), out)
        print(
            f"balancing configuration written to {out}; use it with: python balanced_trainer.py --config {out}"
        )
        return 0
    if args.analyze_balance:
        print_balance(ds, settings, args.rows)
        return 0

    report = analyze(ds, settings, probe_audio_dir=not args.no_audio_probe)
    print_report(report, ds, metadata, settings.subset)
    if not args.no_plots:
        report["plots"] = [str(p) for p in plot_distributions(ds, settings, out_dir)]
    write_json(report, out_dir / analysis.REPORT_NAME)
    print(f"report written to {out_dir / analysis.REPORT_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
