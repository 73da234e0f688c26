"""Search training settings with Optuna on the validation split; write the best as a --config file.

    python quick_start.py --steps setup                      # the demo dataset, once
    python tune.py --demo --trials 20 --output_dir runs/tune # ~20 trials of 3 epochs on the demo
    python tune.py --demo --trials 20 --output_dir runs/tune # again after Ctrl-C or a kill: continues
    python balanced_trainer.py --config runs/tune/best_config.json --output_dir runs/tuned --epochs 10
    python model_evaluation.py --model runs/tuned/balanced_hierarchical_genre_model.h5
    python tune.py --metadata M --audio A --epochs 5 --trials 50 --space my_space.json --output_dir runs/tune_fma

The study is stored in OUTPUT_DIR/study.sqlite3; each trial trains into OUTPUT_DIR/trials/NNNN/
(its own process, trial.log) from one shared feature cache and is pruned by the median rule once
it has trained --prune_after epochs. --trials is the total: a rerun runs what is missing. The test
split is never read. A study file, best config or lock in OUTPUT_DIR that genrekit did not write
(audio, a link, a FIFO, someone's file) is refused before any work. The space is a JSON object (see genrekit/tune/space.py), default:
learning rate, width, dropout, focal gamma, sampling thresholds, medium and all-genres loss weights.
"""

from __future__ import annotations

import argparse
import sys

from genrekit.cli import (
    add_config_argument,
    add_dataset_arguments,
    add_setting_arguments,
    add_split_file_argument,
    config_values,
    script_main,
    script_parser,
    setup_logging,
    split_file_overrides,
    working_config,
)
from genrekit.settings import Settings

# The demo's recipe (quick_start.py) with few epochs per trial: 20 trials in about 30 min on 2 cores.
DEMO_TUNING = {"num_epochs": 3}
SETTING_FLAGS = [
    "batch_size", "num_epochs", "learning_rate", "patience", "use_focal_loss", "use_class_weights",
    "use_weighted_sampling", "use_logit_adjustment", "sampling_thresholds", "focal_gamma", "width_factor",
    "subset", "dataset", "workers", "seed", "cache_dir", "monitor", "lr_schedule", "backbone",
]  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = script_parser(__doc__, description="Search training settings (Optuna) on the validation split.")
    add_dataset_arguments(parser)
    parser.add_argument(
        "--demo",
        action="store_true",
        help="the demo dataset (quick_start.py --steps setup) and recipe, 3 epochs a trial",
    )
    parser.add_argument("--output_dir", default="runs/tune", help="study folder (default runs/tune)")
    parser.add_argument(
        "--trials",
        type=int,
        default=20,
        metavar="N",
        help="trials the study should hold, pruned ones included (default 20)",
    )
    parser.add_argument(
        "--space", metavar="JSON", help="search space file (default: genrekit.tune.space.DEFAULT_SPACE)"
    )
    parser.add_argument(
        "--prune_after",
        type=int,
        default=1,
        metavar="E",
        help="epochs a trial trains before it can be pruned (default 1)",
    )
    parser.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="stop starting trials after this long"
    )
    parser.add_argument("--verbose", action="store_true", help="DEBUG messages on the console")
    add_config_argument(parser)
    add_setting_arguments(parser, SETTING_FLAGS, {"num_epochs": ["--epochs"]}, config_values(working_config()))
    add_split_file_argument(parser)
    return parser  # fmt: skip


def demo_values(defaults: Settings) -> dict:
    """The demo dataset's paths and quick_start.py's demo recipe, with few epochs a trial."""
    from genrekit.commands.quickstart import DEMO_OVERRIDES, DEMO_SEGMENTS_PER_SECOND

    seconds = defaults.demo_clip_seconds
    return {
        **DEMO_OVERRIDES,
        **DEMO_TUNING,
        "duration": seconds,
        "num_segments": max(1, round(seconds * DEMO_SEGMENTS_PER_SECOND)),
        "metadata_dir": defaults.demo_metadata_dir,
        "audio_dir": defaults.demo_audio_dir,
    }


@script_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from genrekit.tune.space import read_space
    from genrekit.tune.study import tune

    space = read_space(args.space)
    base = config_values(working_config())
    defaults = Settings.build(base=base)
    if args.demo:
        base = {**base, **demo_values(defaults)}
    overrides = {key: value for key, value in vars(args).items() if key in Settings.__dataclass_fields__}
    overrides.update(split_file_overrides(args.split_file))
    settings = Settings.build(args.config, overrides, base=base)
    setup_logging(None, args.verbose)
    tune(
        settings,
        space,
        args.output_dir,
        args.trials,
        defaults=defaults,
        prune_after=args.prune_after,
        timeout=args.timeout,
        metadata_dir=args.metadata,
        audio_dir=args.audio,
        echo=lambda line: print(line, flush=True),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
