"""Train the hierarchical, class-balanced genre model on FMA (or the demo dataset).

    python balanced_trainer.py                                   # config.py's paths and settings
    python balanced_trainer.py --batch_size 64 --epochs 50 --focal_loss
    python balanced_trainer.py --metadata fma_data/demo/fma_metadata --audio fma_data/demo/fma_demo \\
        --width_factor 0.125 --epochs 10 --output_dir runs/demo
    python balanced_trainer.py --extract_only --shard 0/4     # features only, shard 0 of 4 (0..3)
    python balanced_trainer.py --config examples/example_config.json
    python balanced_trainer.py --dataset folder:~/music/gtzan --output_dir runs/gtzan   # your own music
    python balanced_trainer.py --model ast --ast_depth 4 --output_dir runs/ast   # the spectrogram transformer

The run folder (--output_dir) receives balanced_hierarchical_genre_model.h5,
balanced_training_config.json (everything inference and evaluation need), checkpoints/,
training_log.csv, tensorboard/ and run.log. Run the same command again after an interruption:
training resumes from the last finished epoch and the feature cache keeps what it has.
"""

from __future__ import annotations

import argparse
import logging
import sys

from genrekit.cli import (
    LOG_FILE,
    RUN_LOG,
    add_config_argument,
    add_dataset_arguments,
    add_setting_arguments,
    add_split_file_argument,
    config_values,
    script_main,
    script_parser,
    settings_from_args,
    setup_logging,
    working_config,
)
from genrekit.device import worker_role
from genrekit.errors import ConfigError
from genrekit.features.cache import parse_shard
from genrekit.fileio import check_output_dir
from genrekit.train.run import BalancedGenreProcessor, BalancedHierarchicalModel, train
from genrekit.train.run_folder import check_run_folder

__all__ = ["BalancedGenreProcessor", "BalancedHierarchicalModel", "main", "build_parser"]

log = logging.getLogger("balanced_trainer")

SETTING_FLAGS = [
    "batch_size",
    "num_epochs",
    "learning_rate",
    "patience",
    "use_focal_loss",
    "use_class_weights",
    "use_weighted_sampling",
    "use_logit_adjustment",
    "logit_adjustment_tau",
    "oversample_threshold",
    "undersample_threshold",
    "sampling_thresholds",
    "focal_gamma",
    "width_factor",
    "subset",
    "dataset",
    "workers",
    "engine",
    "seed",
    "strategy",
    "mixed_precision",
    "cache_dir",
    "monitor",
    "lr_schedule",
    "spec_augment",
    "mixup_alpha",
    "tune_thresholds",
    "backbone",
    "musicnn_model",
    "musicnn_output",
    "musicnn_patches",
    "head_units",
    "fine_tune_from",
    "fine_tune_layers",
    "fine_tune_learning_rate",
    "ast_patch",
    "ast_dim",
    "ast_depth",
    "ast_heads",
    "ast_mlp_ratio",
    "ast_dropout",
    "ast_pooling",
]
ALIASES = {
    "num_epochs": ["--epochs"],
    "use_focal_loss": ["--focal_loss"],
    "use_class_weights": ["--class_weights"],
    "use_weighted_sampling": ["--weighted_sampling"],
    "use_logit_adjustment": ["--logit_adjustment"],
    "backbone": ["--model"],
}


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(__doc__, description="Train the hierarchical, class-balanced genre model.")
    add_dataset_arguments(parser)
    add_split_file_argument(parser)
    parser.add_argument("--output_dir", help="run folder (config.py OUTPUT_DIR)")
    parser.add_argument("--extract_only", action="store_true", help="build the feature cache and stop")
    parser.add_argument(
        "--shard",
        metavar="I/N",
        help="with --extract_only: the tracks with track_id %% N == I (0 <= I < N), into parts of their own",
    )
    parser.add_argument(
        "--logical_cpus",
        type=int,
        default=0,
        metavar="N",
        help="split the CPU into N logical devices (to try --strategy mirrored without GPUs)",
    )
    parser.add_argument(
        "--retrain", action="store_true", help="train again even if --output_dir holds a finished run"
    )
    parser.add_argument("--verbose", action="store_true", help="DEBUG messages on the console")
    add_config_argument(parser)
    add_setting_arguments(parser, SETTING_FLAGS, ALIASES, config_values(working_config()))
    return parser


@script_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args, config_values(working_config()))
    shard = parse_shard(args.shard) if args.shard else None
    if shard is not None and not args.extract_only:
        raise ConfigError("--shard works with --extract_only (train on the merged cache afterwards)")
    output_dir = args.output_dir or settings.output_dir
    # The output policy, before run.log is opened and before any data are read: extracting writes
    # only run.log there; training, every file of the run folder.
    log_file = {LOG_FILE: RUN_LOG}
    if args.extract_only:
        check_output_dir(output_dir, log_file)
    else:
        check_run_folder(settings, output_dir, also=log_file)
    # In a multi-worker run only the chief writes the run folder (its run.log included).
    setup_logging(output_dir if worker_role()[2] else None, args.verbose)
    log.info("settings: %s", settings.to_dict())

    if args.extract_only:
        processor = BalancedGenreProcessor(settings, args.metadata, args.audio)
        processed = processor.load_dataset()  # any source (genrekit.datasets.base.from_settings)
        cache = processor.extract_features(processed, shard=shard)
        log.info("feature cache ready: %s (%d tracks with features)", cache.cache_dir, len(cache))
        return 0

    result = train(
        settings, output_dir, args.metadata, args.audio, logical_cpus=args.logical_cpus, retrain=args.retrain
    )
    history = result["history"]
    best, monitor = history["best"], history.get("monitor", "val_top_balanced_accuracy")
    print(
        f"done: {history['epochs_run']} epochs; best validation {monitor} {best.get(monitor, float('nan')):.3f} "
        f"(epoch {history['best_epoch']}; top balanced accuracy {best.get('val_top_balanced_accuracy', float('nan')):.3f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
