"""Tutorial: the training API step by step, then a managed run, on the demo dataset.

    python examples/tutorial_training.py             # demo dataset (generated if absent), small model
    python examples/tutorial_training.py --small     # a one-minute version (what the tests run)

Follows the README's tutorial: BalancedGenreProcessor turns FMA metadata into the three label
levels and class weights; BalancedHierarchicalModel builds and compiles the multi-head model with
the balanced losses; ``train`` runs the whole thing with checkpoints, resume and the config file
that inference needs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from anywhere: the toolkit lives one folder up

import config  # noqa: E402  (the repository's config.py: your settings)
from genrekit.cli import config_values  # noqa: E402
from genrekit.settings import Settings  # noqa: E402
from genrekit.train.run import BalancedGenreProcessor, BalancedHierarchicalModel, train  # noqa: E402

CONFIG = config_values(config)  # the settings config.py changes
DEFAULTS = Settings.build(base=CONFIG)  # genrekit's defaults with them on top


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--metadata", default=str(REPO / DEFAULTS.demo_metadata_dir), help="FMA metadata folder"
    )
    parser.add_argument("--audio", default=str(REPO / DEFAULTS.demo_audio_dir), help="FMA audio folder")
    parser.add_argument("--output_dir", default=str(REPO / "runs" / "tutorial"), help="run folder")
    parser.add_argument("--cache_dir", default=None, help="feature cache root (default config.py CACHE_DIR)")
    parser.add_argument("--small", action="store_true", help="tiny model, 1 epoch, short demo clips")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    demo_seconds = 2.0 if args.small else DEFAULTS.demo_clip_seconds
    if not Path(args.metadata, "tracks.csv").is_file() and args.metadata == str(
        REPO / DEFAULTS.demo_metadata_dir
    ):
        from genrekit.datasets.demo.writer import write_demo_dataset

        tracks = 60 if args.small else DEFAULTS.demo_tracks
        write_demo_dataset(REPO / DEFAULTS.demo_dir, n_tracks=tracks, clip_seconds=demo_seconds)

    settings = Settings.build(
        None,
        {
            "metadata_dir": args.metadata,
            "audio_dir": args.audio,
            "duration": demo_seconds,  # the features cover the whole (short) demo clip
            "width_factor": 0.0625 if args.small else 0.125,
            "num_epochs": 1 if args.small else 10,
            "learning_rate": 1e-3,
            "oversample_threshold": 10 if args.small else 25,
            "undersample_threshold": 150,
            **({"cache_dir": args.cache_dir} if args.cache_dir else {}),
        },
        base=CONFIG,
    )

    # 1. Metadata to the three label levels (top, medium, all) and the training vocabularies.
    processor = BalancedGenreProcessor(settings)
    tracks, genres_df = processor.load_fma_metadata()
    processed_data = processor.process_fma_labels(tracks, genres_df)
    n = processed_data.num_classes
    print(f"{len(tracks)} tracks; classes per level: top {n['top']}, medium {n['medium']}, all {n['all']}")

    # 2. Class weights per level: n_samples / (n_classes * n_samples_per_class).
    class_weights = processor.compute_hierarchical_class_weights(processed_data)
    top_names = processed_data.vocabs["top"].names
    heaviest = sorted(zip(class_weights["top"], top_names, strict=True), reverse=True)[:3]
    print("largest top-genre weights: " + ", ".join(f"{name} {w:.2f}" for w, name in heaviest))

    # 3. The multi-head model with focal loss and weighted BCE.
    model_builder = BalancedHierarchicalModel(
        input_shape=(128, 64, 1),
        num_top=n["top"],
        num_medium=n["medium"],
        num_all=n["all"],
        class_weights=class_weights,
        settings=settings,
    )
    model = model_builder.build_model()
    model_builder.compile_with_balanced_losses()
    print(f"model: {model.count_params():,} parameters, outputs {list(model.output_names)}")

    # 4. The managed run: feature cache, weighted sampling, callbacks, resume, saved config.
    result = train(settings, args.output_dir)
    best = result["history"]["best"]
    print(f"validation top balanced accuracy: {best.get('val_top_balanced_accuracy', float('nan')):.3f}")
    print(f"model and config in {args.output_dir}; next: python examples/tutorial_inference.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
