"""Evaluate a trained genre model on FMA's test split: every figure in JSON, a readable report, plots.

    python model_evaluation.py --model runs/balanced/balanced_hierarchical_genre_model.h5
    python model_evaluation.py --model balanced_hierarchical_genre_model.h5 \\
        --config balanced_training_config.json \\
        --metadata fma_data/extracted/metadata/fma_metadata \\
        --audio fma_data/extracted/fma_large/fma_large
    python model_evaluation.py --model runs/demo/balanced_hierarchical_genre_model.h5 --split validation
    python model_evaluation.py --model runs/a --model runs/b --weight 2 --weight 1
    python model_evaluation.py --ensemble ensemble.json

--output_dir (default <run folder>/evaluation, <run folder>/evaluation_<split> for other splits)
receives evaluation_report.json (every figure), evaluation_report.md (tables and figures) and
plots/*.png (an ensemble's: <first member's run folder>/evaluation_ensemble). Without --config, balanced_training_config.json next to the model is used; --metadata
and --audio default to the folders the model was trained on. Features come from the training's
feature cache, which is completed for tracks it lacks; defective files are left out and counted.
Before any work, a report file in --output_dir that is audio, a link, not a regular file, an input
or not a report genrekit wrote is refused (one line); reports are written atomically.

This script only parses arguments: :mod:`genrekit.evaluate.evaluator` evaluates the saved model on the split,
and :mod:`genrekit.evaluate.metrics` computes the figures from its probabilities.
"""

from __future__ import annotations

import argparse
import logging
import sys

from genrekit.cli import (
    add_dataset_arguments,
    add_ensemble_arguments,
    config_settings,
    ensemble_from_args,
    run_files,
    script_main,
    script_parser,
    setup_logging,
    working_config,
)
from genrekit.settings import SPLITS, SUBSETS

log = logging.getLogger("model_evaluation")

WORKERS_HELP = "processes decoding audio missing from the feature cache (default: config.py WORKERS)"


def build_parser() -> argparse.ArgumentParser:
    defaults = config_settings(working_config())
    parser = script_parser(__doc__)
    parser.add_argument(
        "--model",
        action="append",
        help=f"the trained model, or its run folder (default {defaults.output_dir}/{defaults.model_filename}); "
        "repeat for an ensemble",
    )
    add_ensemble_arguments(parser)
    parser.add_argument(
        "--config",
        help=f"its training config (default: {defaults.training_config_filename} next to the model)",
    )
    add_dataset_arguments(parser, default="default: the training's")
    parser.add_argument(
        "--split", default=defaults.split, choices=SPLITS, help="FMA split to evaluate (default %(default)s)"
    )
    parser.add_argument(
        "--subset", choices=SUBSETS, help="FMA subset (default: the one the model was trained on)"
    )
    parser.add_argument("--output_dir", help="report folder (default <run folder>/evaluation)")
    parser.add_argument("--workers", type=int, metavar="N", help=WORKERS_HELP)
    parser.add_argument("--no_plots", action="store_true", help="write the JSON and Markdown report only")
    parser.add_argument("--verbose", action="store_true", help="DEBUG messages on the console")
    return parser


@script_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from genrekit.evaluate.evaluator import default_output_dir, evaluate_model, format_headline
    from genrekit.evaluate.report import REPORT_MD

    defaults = config_settings(working_config())
    ensemble = ensemble_from_args(args, defaults)
    workers = defaults.workers if args.workers is None else args.workers
    if ensemble is not None:
        return _evaluate_ensemble(ensemble, args, workers)
    model, config_path = run_files(args.model[0] if args.model else None, args.config, defaults)
    output_dir = args.output_dir or default_output_dir(model, args.split)
    setup_logging(None, args.verbose)
    results = evaluate_model(
        model,
        config_path,
        args.metadata,
        args.audio,
        args.split,
        output_dir,
        args.subset,
        workers=workers,
        plots=not args.no_plots,
    )
    print(format_headline(results))
    print(f"\nreport: {output_dir}/{REPORT_MD}")
    return 0


def _evaluate_ensemble(ensemble, args: argparse.Namespace, workers: int) -> int:
    from genrekit.evaluate.ensemble import default_ensemble_output_dir, evaluate_ensemble
    from genrekit.evaluate.evaluator import format_headline
    from genrekit.evaluate.report import REPORT_MD

    output_dir = args.output_dir or default_ensemble_output_dir(ensemble, args.split)
    setup_logging(None, args.verbose)
    results = evaluate_ensemble(
        ensemble,
        args.metadata,
        args.audio,
        args.split,
        output_dir,
        args.subset,
        workers=workers,
        plots=not args.no_plots,
    )
    print(format_headline(results))
    for member in results["run"]["ensemble"]["members"]:
        print(f"  member {member['model']} (weight {member['normalized_weight']:.3f})")
    print(f"\nreport: {output_dir}/{REPORT_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
