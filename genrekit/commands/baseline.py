"""Baselines on any dataset: musicnn transfer features (Pons & Serra) or MFCC statistics, with an SVM.

    python baseline.py --dataset folder:~/music/gtzan                  # musicnn max_pool + PCA 128 + SVM
    python baseline.py --dataset csv:~/music/manifest.csv --features mfcc   # the FMA paper's MFCCs + SVM
    python baseline.py --metadata fma_data/demo/fma_metadata --audio fma_data/demo/fma_demo \\
        --musicnn_patches 3 --duration 10                              # the quick start's demo
    python baseline.py --classifier svm                                # without class_weight="balanced"

Fits one SVM per level (top and medium genres) on the training and validation tracks and scores
the test tracks with the evaluator's figures and README targets (the split ``model_evaluation.py``
scores), so the figures of a trained model can be read against it. ``--features musicnn``
(default): MSD_musicnn's max_pool layer, averaged over ``MUSICNN_PATCHES`` 3-s patches per track,
standardized, PCA to 128 components, ``SVC(kernel="rbf")``; the features go to the feature cache
(``CACHE_DIR``) and a rerun reuses them. ``--features mfcc``: 140 MFCC statistics of the first
``DURATION`` seconds. Writes ``<output_dir>/baseline_<features>_<classifier>.json`` (and appends to
``run.log`` there); before any work, either one that is audio, a link, not a regular file or not
genrekit's own is refused.
"""

from __future__ import annotations

import argparse
import sys

from genrekit.cli import (
    LOG_FILE,
    RUN_LOG,
    add_config_argument,
    add_setting_arguments,
    add_split_file_argument,
    config_values,
    script_main,
    script_parser,
    settings_from_args,
    setup_logging,
    working_config,
)

DEFAULT_OUTPUT = "runs/baseline"


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(__doc__)
    parser.add_argument(
        "--features",
        choices=("musicnn", "mfcc"),
        default="musicnn",
        help="musicnn: max_pool + PCA 128 (Pons & Serra); mfcc: the FMA paper's statistics (default musicnn)",
    )
    parser.add_argument(
        "--classifier",
        choices=("svm_balanced", "svm"),
        default="svm_balanced",
        help="the SVM with class_weight='balanced' (default) or without",
    )
    parser.add_argument(
        "--output_dir", default=DEFAULT_OUTPUT, help=f"report folder (default {DEFAULT_OUTPUT})"
    )
    add_config_argument(parser)
    add_setting_arguments(
        parser,
        [
            "dataset",
            "metadata_dir",
            "audio_dir",
            "subset",
            "seed",
            "duration",
            "musicnn_patches",
            "pretrained_dir",
            "cache_dir",
            "workers",
            "engine",
        ],
        aliases={"metadata_dir": ["--metadata"], "audio_dir": ["--audio"]},
        base=config_values(working_config()),
    )
    add_split_file_argument(parser)
    return parser


@script_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args, base=config_values(working_config()))
    from genrekit.evaluate.baseline_run import check_baseline_output, format_result, run_baseline

    # Before any work, the log included: never write over audio, a link or a file we did not write.
    check_baseline_output(args.output_dir, args.features, args.classifier, {LOG_FILE: RUN_LOG})
    setup_logging(args.output_dir)

    result = run_baseline(
        settings,
        features=args.features,
        classifier=args.classifier,
        output_dir=args.output_dir,
        progress=sys.stderr.isatty(),
    )
    print("\n".join(format_result(result)))
    print(f"report: {result['report']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
