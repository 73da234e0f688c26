"""balanced_inference: genre predictions for one audio file or a whole music folder.

    python balanced_inference.py --model balanced_hierarchical_genre_model.h5 \\
        --config balanced_training_config.json --file example.mp3
    python balanced_inference.py --model runs/balanced/balanced_hierarchical_genre_model.h5 \\
        --folder music_folder/ --recursive --output results.json
    python balanced_inference.py --model ... --folder music_folder/ --output results.csv --top_k 5
    python balanced_inference.py --model runs/musicnn/balanced_hierarchical_genre_model.h5 \\
        --file example.mp3 --tags
    python balanced_inference.py --model runs/musicnn --folder music_folder/ --tags --quiet
    python balanced_inference.py --model runs/a --model runs/b:2 --folder music_folder/ --output ens.json
    python balanced_inference.py --ensemble ensemble.json --file example.mp3

Without --config, balanced_training_config.json next to the model is used. A folder run appends
every finished file to <output>.partial.jsonl: after Ctrl-C or a crash, run the same command
again and the files already done are skipped (a file changed since is predicted again). An
--output holding another job's report (another folder, file, model or settings) is refused
unless --overwrite; the input files, audio, links, FIFOs and files genrekit did not write are
never overwritten. --output x.csv writes one row per file. Several
--model (or --ensemble) average the runs' probabilities (see docs/ensembles.md).
"""

from __future__ import annotations

import argparse
import logging
import sys

from genrekit.cli import (
    add_ensemble_arguments,
    add_setting_arguments,
    config_settings,
    config_values,
    ensemble_from_args,
    run_files,
    script_main,
    setup_logging,
    working_config,
)
from genrekit.errors import AudioDecodeError, ConfigError
from genrekit.infer.predict import MusicGenreInference  # the notebook API; imports no TensorFlow

__all__ = ["MusicGenreInference", "main", "build_parser"]

log = logging.getLogger("balanced_inference")


# The settings a flag may override at inference (the rest come from the model's training config).
INFERENCE_KEYS = ("top_k", "threshold", "workers", "engine", "inference_batch_size", "inference_segment_hop")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model",
        metavar="H5",
        action="append",
        help="trained model (default: OUTPUT_DIR/MODEL_FILENAME of config.py, where training saves it); "
        "repeat for an ensemble (a run folder or PATH:WEIGHT then too)",
    )
    add_ensemble_arguments(parser)
    parser.add_argument(
        "--config",
        metavar="JSON",
        help="training config (default: balanced_training_config.json next to the model); a plain "
        "settings file overrides inference settings and the training config is read next to the model",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--file", metavar="AUDIO", help="one audio file (MP3, WAV, FLAC, OGG...)")
    source.add_argument("--folder", metavar="DIR", help="a folder of audio files")
    parser.add_argument(
        "--output", metavar="PATH", help="write results: JSON, or one row per file for a .csv name"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an --output that holds the report of another job (another folder, file, model or "
        "settings) with a new one; without it such an output is refused",
    )
    parser.add_argument("--recursive", action="store_true", help="include sub-folders of --folder")
    add_setting_arguments(
        parser,
        INFERENCE_KEYS,
        aliases={"inference_batch_size": ["--batch_size"], "inference_segment_hop": ["--segment_hop"]},
        base=config_values(working_config()),
    )
    parser.add_argument(
        "--tags",
        action="store_true",
        help="also print the pretrained backbone's own tags (models trained with --backbone musicnn): all 50 "
        "with --file, the TOP_K most likely of each file with --folder",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-file table, only the summary")
    parser.add_argument("--no_progress", dest="progress", action="store_false", help="no progress bar")
    parser.add_argument("--json", dest="print_json", action="store_true", help="print the JSON report")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug logging, and the audio decoders' own messages"
    )
    return parser


def print_tags(inference, file: str | None, report: dict) -> None:
    """The backbone's own tags: all 50 of ``file``, or the TOP_K most likely of each file of a folder run."""
    from genrekit.features.musicnn import format_tags, format_top_tags

    if file is not None:
        if not report["errors"]:
            print(format_tags(inference.frontend, file))
        return
    files = {key: res["file"] for key, res in sorted(report["results"].items())}
    print(format_top_tags(inference.frontend, files, inference.top_k))


def _inputs(args: argparse.Namespace, ensemble, model: str | None, config_path: str | None) -> dict:
    """``path -> role`` of every file the run reads: an output must be none of them."""
    inputs = {args.file: "--file"} if args.file else {args.folder: "--folder"}
    if args.config:
        inputs[args.config] = "--config"
    if args.ensemble:
        inputs[args.ensemble] = "--ensemble"
    if ensemble is None:
        inputs.update({model: "the model", config_path: "the model's training config"})
    else:
        for i, member in enumerate(ensemble.members, 1):
            inputs.update(
                {member.model_path: f"member {i}'s model", member.config_path: f"member {i}'s config"}
            )
    return inputs


def _predictor(args: argparse.Namespace, overrides: dict, defaults):
    """The model (or ensemble) of ``args``, loaded once the output path has passed the policy."""
    from genrekit.infer.output import check_report_paths
    from genrekit.infer.predict import MusicGenreInference

    ensemble = ensemble_from_args(args, defaults)
    model = config_path = None
    if ensemble is None:
        model, config_path = run_files(args.model[0] if args.model else None, args.config, defaults)
    if args.output:  # before any work: never write over an input, audio or a file we did not write
        check_report_paths(args.output, _inputs(args, ensemble, model, config_path), folder=bool(args.folder))
    if ensemble is None:
        return MusicGenreInference(model, config_path, **overrides)
    if args.tags:
        raise ConfigError("--tags prints one backbone's own tags: give one --model")
    from genrekit.infer.ensemble import EnsembleInference

    return EnsembleInference(ensemble, **overrides)


@script_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(verbose=args.verbose)
    from genrekit.fileio import json_text, shown_name
    from genrekit.infer.output import format_summary, format_table

    overrides = {key: getattr(args, key) for key in INFERENCE_KEYS}
    defaults = config_settings(working_config())
    if overrides["workers"] is None:  # this machine's worker count, not the training machine's
        overrides["workers"] = defaults.workers
    if overrides["engine"] is None:  # likewise: config.py's ENGINE, not the training's
        overrides["engine"] = defaults.engine
    inference = _predictor(args, overrides, defaults)
    if args.tags:  # before any work: a model without backbone tags is refused at once
        from genrekit.features.musicnn import check_tags

        check_tags(inference.frontend)
    inference.decoder_messages = args.verbose  # libmpg123's notes, in every mode alike
    if args.file:
        report = inference.predict_one_report(args.file, output=args.output, overwrite=args.overwrite)
    else:
        report = inference.batch_predict(
            args.folder, output=args.output, recursive=args.recursive, progress=args.progress,
            overwrite=args.overwrite,
        )  # fmt: skip
    if args.print_json:
        print(json_text(report, indent=2, ensure_ascii=False))
    elif not args.quiet:
        table = format_table(report["results"], report["errors"] if args.folder else {})
        if table:
            print(table)
    print(format_summary(report["summary"]), file=sys.stderr)
    if args.tags:
        print_tags(inference, args.file, report)
    if args.output:
        log.info("results written to %s", args.output)
    for key, res in report["results"].items():
        for warning in res["warnings"]:
            log.log(logging.WARNING if args.file else logging.DEBUG, "%s: %s", shown_name(key), warning)
    if args.file and report["errors"]:
        raise AudioDecodeError(f"{args.file}: {next(iter(report['errors'].values()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
