"""Tutorial: genre predictions with a trained model, for one file and for a whole folder.

    python examples/tutorial_inference.py                        # the tutorial_training.py model
    python examples/tutorial_inference.py --model runs/quick_start/balanced_hierarchical_genre_model.h5 \\
        --folder fma_data/demo/fma_demo/000

Follows the README's API example. The config file next to the model holds everything that
shaped it (audio parameters, normalization, genre vocabularies), so nothing else is needed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import config  # noqa: E402  (the repository's config.py: your settings)
from genrekit.cli import config_settings  # noqa: E402
from genrekit.infer.predict import MusicGenreInference  # noqa: E402

DEFAULTS = config_settings(config)  # genrekit's defaults with config.py's values on top


def build_parser() -> argparse.ArgumentParser:
    run = REPO / "runs" / "tutorial"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(run / DEFAULTS.model_filename), help="trained model")
    parser.add_argument("--config", default=None, help="training config (default: next to the model)")
    parser.add_argument("--folder", default=str(REPO / DEFAULTS.demo_audio_dir), help="music folder")
    parser.add_argument("--limit", type=int, default=10, help="files to show")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config_path = args.config or str(Path(args.model).with_name(DEFAULTS.training_config_filename))

    inference = MusicGenreInference(model_path=args.model, config_path=config_path, workers=DEFAULTS.workers)
    results = inference.batch_predict(args.folder, recursive=True)

    for filename, result in list(results["results"].items())[: args.limit]:
        top_genre = result["aggregated_results"]["top_genre"]["voting"]["name"]
        confidence = result["aggregated_results"]["top_genre"]["average_confidence"]["confidence"]
        medium = result["aggregated_results"]["medium_genre"]["voting"]["name"]
        print(f"{Path(filename).name}: {top_genre} ({confidence:.2f}), {medium}")
    summary = results["summary"]
    print(
        f"{summary['processed']} files, {summary['failed']} failed, {summary['files_per_second']:.1f} files/s"
    )

    # One file: the same result, with the prediction of every segment and the genre's place in the tree.
    first = next(iter(results["results"]))
    one = inference.predict_file(results["results"][first]["file"])
    hierarchy = one["hierarchy"]
    print(
        f"{Path(first).name}: {one['num_segments']} segments; medium genre {hierarchy['medium_path']} "
        f"({'consistent' if hierarchy['consistent'] else 'not under'} the top genre {hierarchy['top_genre']})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
