"""The whole pipeline in one command: setup, inspection, features, training, evaluation, inference.

    python quick_start.py                      # on the built-in demo dataset (generated if absent)
    python quick_start.py --steps train,evaluate
    python quick_start.py --data real          # on config.py's FMA paths (set them up first)
    python quick_start.py --smallest           # a tiny end-to-end check (about a minute)
    python quick_start.py --dataset folder:~/music/gtzan   # your own genre folders (or csv:FILE):
                                               # genre heads on musicnn embeddings (--backbone cnn: the CNN)
    python quick_start.py --backbone musicnn   # genre heads on pretrained musicnn embeddings
    python quick_start.py --model ast          # the audio spectrogram transformer instead of the CNN

Every step reuses what an earlier run finished: the demo dataset, the feature cache, a finished
training run (``--retrain`` trains again) and the predictions of files already done. The model is
deliberately small on the demo data (``--width_factor``, default 0.125) so the whole run takes a
few minutes on a laptop CPU; use balanced_trainer.py for the full-size model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from genrekit.cli import (
    LOG_FILE,
    RUN_LOG,
    SETUP_HINTS,
    add_config_argument,
    config_settings,
    config_values,
    script_main,
    script_parser,
    setup_logging,
    working_config,
)
from genrekit.commands import COMMANDS
from genrekit.errors import ConfigError, DatasetError
from genrekit.fileio import check_output_dir
from genrekit.models.registry import BACKBONES, model_kind
from genrekit.settings import Settings, default_value, read_config_file

log = logging.getLogger("quick_start")

STEPS = ("setup", "inspect", "features", "train", "evaluate", "predict")

# Demo-data defaults: small enough for a few minutes on two CPU cores, large enough to learn.
# Measured on the 1,800-track demo (test split: 142 tracks with a top genre; benchmarks/
# bench_recipe.py, 2 cores): the README's dropout (0.25 / 0.5) starves a model this narrow
# (test top balanced accuracy 0.53 after 10 epochs); 0.1 / 0.2 reached 0.82, and batches of 16
# (twice the updates for the same segments) 0.85, medium balanced accuracy 0.31, all-genres
# Jaccard 0.48. Cosine decay from 3e-3 beat ReduceLROnPlateau at 1e-3 at the same number of steps;
# SpecAugment slowed learning (0.58 without, 0.48 with). See the closing note of issue 13.
DEMO_OVERRIDES = {
    "width_factor": 0.125,
    "conv_dropout": 0.1,
    "dense_dropout": 0.2,
    "batch_size": 16,
    "num_epochs": 10,
    "patience": 10,
    "lr_schedule": "cosine",
    "learning_rate": 3e-3,
    # The README's thresholds (100 / 5,000, config.py) scaled from fma_large to the demo's training
    # split: on the 1,800-track demo (972 labelled training tracks) they come to 2 / 124.
    "sampling_thresholds": "relative",
}
# The transformer's learning rate on the demo recipe: 1e-3 against the CNN's 3e-3 gave test top
# balanced accuracy 0.882 against 0.853, F1 macro 0.777 against 0.665, medium balanced accuracy
# 0.316 against 0.255 (one seed each, 10 epochs; docs/models.md "Audio spectrogram transformer").
AST_DEMO_OVERRIDES = {"learning_rate": 1e-3}
# FMA's segment spacing: NUM_SEGMENTS (10) per 30 s clip is 3 per 10 s demo clip (rounded).
DEMO_SEGMENTS_PER_SECOND = 10 / 30
SMALLEST = {"demo_tracks": 60, "demo_clip_seconds": 2.0, "width_factor": 0.0625, "num_epochs": 1}
# Your own music (--dataset) is real music: genre heads on musicnn embeddings, pretrained on real
# recordings, serve it better than a small CNN trained from scratch on a few hundred clips (docs/datasets.md
# "Which path for real music"). Used unless the backbone is chosen (--backbone, config.py BACKBONE,
# the --config file) or --smallest asks for the one-minute check of the small CNN.
OWN_MUSIC_BACKBONE = "musicnn"
# The heads' recipe on your own music, each unless config.py or --config sets it: row 15 of the
# study (docs/results_models.md, 5 folds over artist groups of a 2,000-track demo): heads on
# max_pool (MUSICNN_OUTPUT's default) at Adam's 1e-3, up to 24 epochs with patience 6 and the
# absolute sampling thresholds beat the musicnn transfer SVM by 0.037 [0.01, 0.08] top balanced
# accuracy, and row 9's heads (8 epochs, penultimate layer) by 0.057 [0.02, 0.10]. The demo's
# recipe above (cosine from 3e-3, relative thresholds) is the small CNN's.
OWN_MUSIC_OVERRIDES = {
    "musicnn_output": "max_pool",
    "learning_rate": 1e-3,
    "num_epochs": 24,
    "patience": 6,
    "sampling_thresholds": "absolute",
}


def build_parser() -> argparse.ArgumentParser:
    defaults = config_settings(working_config())
    parser = script_parser(
        __doc__,
        description="Run the whole pipeline: setup, inspection, features, training, evaluation, inference.",
    )
    parser.add_argument(
        "--data", choices=("demo", "real"), default="demo", help="demo dataset or FMA (default demo)"
    )
    parser.add_argument(
        "--dataset",
        metavar="SPEC",
        help="your own music instead of --data: folder:PATH (ROOT/<genre>/[<sub>/]<file>) or csv:FILE",
    )
    parser.add_argument(
        "--steps",
        default=",".join(STEPS),
        help=f"comma-separated steps to run (default all: {','.join(STEPS)})",
    )
    parser.add_argument(
        "--output_dir", default="runs/quick_start", help="run folder (default runs/quick_start)"
    )
    parser.add_argument("--cache_dir", help=f"feature cache root (default {defaults.cache_dir})")
    parser.add_argument(
        "--demo_dir", default=defaults.demo_dir, help=f"demo dataset folder (default {defaults.demo_dir})"
    )
    parser.add_argument("--demo_tracks", type=int, help=f"demo tracks (default {defaults.demo_tracks})")
    parser.add_argument(
        "--demo_seconds", type=float, help=f"demo clip length (default {defaults.demo_clip_seconds})"
    )
    parser.add_argument(
        "--width_factor", type=float, help="model width (default 0.125 on demo data, config.py on real)"
    )
    parser.add_argument(
        "--epochs", type=int, help="maximum epochs (default 10 on demo data, config.py on real)"
    )
    kinds = "; ".join(f"{name}: {model_kind({'backbone': name}).summary}" for name in BACKBONES)
    parser.add_argument(
        "--backbone",
        "--model",
        choices=BACKBONES,
        help=f"the model: {kinds} (default config.py BACKBONE)",
    )
    parser.add_argument(
        "--smallest", action="store_true", help="tiny sizes for a one-minute end-to-end check"
    )
    parser.add_argument(
        "--retrain", action="store_true", help="train again even if the run folder has a model"
    )
    add_config_argument(parser)
    return parser


def header(number: int, title: str) -> None:
    print(f"\n=== [{number}/{len(STEPS)}] {title} " + "=" * max(0, 60 - len(title)), flush=True)


def chosen(key: str, args: argparse.Namespace, base: dict) -> bool:
    """Whether config.py (``base``) or the ``--config`` file sets the setting ``key``.

    config.py shows its main settings at their defaults, so it chooses one only where it changes it.
    """
    changed = base.get(key, default_value(key)) != default_value(key)
    return changed or bool(args.config and key in read_config_file(args.config))


def own_music_backbone(args: argparse.Namespace, base: dict) -> str | None:
    """:data:`OWN_MUSIC_BACKBONE` for ``--dataset`` when nothing chose a backbone, else None."""
    if not args.dataset or args.backbone or args.smallest or chosen("backbone", args, base):
        return None
    return OWN_MUSIC_BACKBONE


def resolve(args: argparse.Namespace) -> tuple[Settings, dict]:
    """The run's settings and the paths of the dataset."""
    base = config_values(working_config())
    backbone = args.backbone or own_music_backbone(args, base)
    defaults = Settings.build(base=base)
    overrides: dict = {}
    if args.dataset:  # the demo's small model and recipe on the user's own music
        overrides.update(DEMO_OVERRIDES)
        if args.smallest:
            overrides.update(width_factor=SMALLEST["width_factor"], num_epochs=SMALLEST["num_epochs"])
        overrides["dataset"] = args.dataset
    elif args.data == "demo":
        overrides.update(DEMO_OVERRIDES)
        if args.smallest:
            overrides.update(SMALLEST)
        demo = Path(args.demo_dir)
        overrides["demo_tracks"] = args.demo_tracks or overrides.get("demo_tracks", defaults.demo_tracks)
        overrides["demo_clip_seconds"] = args.demo_seconds or overrides.get(
            "demo_clip_seconds", defaults.demo_clip_seconds
        )
        overrides["duration"] = overrides["demo_clip_seconds"]  # features cover the whole demo clip
        overrides["num_segments"] = max(1, round(overrides["duration"] * DEMO_SEGMENTS_PER_SECOND))
        overrides["metadata_dir"] = str(demo / "fma_metadata")
        overrides["audio_dir"] = str(demo / "fma_demo")
    if backbone:
        overrides["backbone"] = backbone
        if backbone == "ast" and (args.dataset or args.data == "demo"):  # the demo's recipe
            overrides.update(AST_DEMO_OVERRIDES)
        if args.data == "demo" and not args.dataset:  # musicnn's 3-s patches, as many as the demo clip holds
            overrides["musicnn_patches"] = max(1, int(overrides["demo_clip_seconds"] // 3))
        if backbone == "musicnn" and args.dataset:
            overrides.update({k: v for k, v in OWN_MUSIC_OVERRIDES.items() if not chosen(k, args, base)})
    if args.width_factor:
        overrides["width_factor"] = args.width_factor
    if args.epochs:
        overrides["num_epochs"] = args.epochs
    overrides["output_dir"] = args.output_dir
    if args.cache_dir:
        overrides["cache_dir"] = args.cache_dir
    settings = Settings.build(args.config, overrides, base=base)
    return settings, {"metadata": Path(settings.metadata_dir), "audio": Path(settings.audio_dir)}


def step_setup(args, settings: Settings, paths: dict) -> None:
    if settings.dataset != "fma":
        from genrekit.datasets import base as datasets

        labelled = datasets.from_settings(settings).load()
        counts = labelled.targets["split"].value_counts()
        print(
            f"your music: {settings.dataset}: {len(labelled.targets)} tracks, {len(labelled.tree.roots)} top "
            f"genres, {len(labelled.tree)} genres in all (training {counts.get('training', 0)}, "
            f"validation {counts.get('validation', 0)}, test {counts.get('test', 0)})"
        )
        return
    if args.data == "demo":
        from genrekit.datasets.demo.writer import write_demo_dataset

        info = write_demo_dataset(
            Path(args.demo_dir),
            n_tracks=settings.demo_tracks,
            clip_seconds=settings.demo_clip_seconds,
            seed=0,
        )
        print(
            f"demo dataset: {info.n_tracks} tracks of {info.clip_seconds:g} s, {info.n_roots} top genres, "
            f"{len(info.defective_ids)} defective files on purpose, in {info.root}"
        )
        return
    for key, hint in (("metadata", SETUP_HINTS["metadata"]), ("audio", SETUP_HINTS["audio"])):
        if not paths[key].is_dir():
            raise DatasetError(f"{key} folder {paths[key]} does not exist; set it up with: {hint}")
    print(f"FMA data found: {paths['metadata']} and {paths['audio']}")


def step_inspect(args, settings: Settings, paths: dict, out: Path) -> None:
    from genrekit.commands import inspect as fma_inspector

    source = (
        ["--dataset", settings.dataset]
        if settings.dataset != "fma"
        else ["--metadata", str(paths["metadata"]), "--audio", str(paths["audio"])]
    )
    code = fma_inspector.main(
        [
            *source,
            "--seed",
            str(settings.seed),
            "--output_dir",
            str(out / "inspection"),
            "--subset",
            settings.subset,
        ]
    )
    if code:
        raise DatasetError("inspection failed (see the message above)")


def step_features(settings: Settings, paths: dict) -> None:
    from genrekit.train.run import BalancedGenreProcessor

    processor = BalancedGenreProcessor(settings, str(paths["metadata"]), str(paths["audio"]))
    processed = processor.load_dataset()
    processor.extract_features(processed)  # the cache logs its one summary line


def step_train(args, settings: Settings, paths: dict, out: Path) -> dict:
    from genrekit.train.run import train

    if settings.backbone == "musicnn":
        print(
            f"heads of {settings.head_units} units on {settings.musicnn_model}'s {settings.musicnn_output} "
            f"embeddings ({settings.musicnn_patches} per clip), dropout {settings.dense_dropout:g}, batches of "
            f"{settings.batch_size}, learning rate {settings.learning_rate:g}"
        )
    elif settings.backbone == "ast":
        tokens = -(-settings.n_mels // settings.ast_patch) * -(-settings.segment_frames // settings.ast_patch)
        print(
            f"spectrogram transformer: {tokens} patches of {settings.ast_patch} x {settings.ast_patch}, "
            f"{settings.ast_depth} blocks of {settings.ast_dim} values and {settings.ast_heads} heads, "
            f"{settings.ast_pooling} pooling, dropout {settings.ast_dropout:g} / {settings.dense_dropout:g}, "
            f"batches of {settings.batch_size}, learning rate {settings.learning_rate:g}"
        )
    elif settings.width_factor < 1.0:
        print(
            f"model width factor {settings.width_factor:g} (the README's full model is 1.0), dropout "
            f"{settings.conv_dropout:g} / {settings.dense_dropout:g}, batches of {settings.batch_size}: small "
            "enough for a CPU in minutes; train the full model with balanced_trainer.py"
        )
    config_out = train(settings, out, str(paths["metadata"]), str(paths["audio"]), retrain=args.retrain)
    history = config_out["history"]
    best, monitor = history["best"], history.get("monitor", "val_top_balanced_accuracy")
    print(
        f"trained {history['epochs_run']} epochs; best validation {monitor} {best.get(monitor, float('nan')):.3f} "
        f"at epoch {history['best_epoch']} (top balanced accuracy {best.get('val_top_balanced_accuracy', float('nan')):.3f})"
    )
    return config_out


def step_evaluate(settings: Settings, paths: dict, out: Path) -> dict:
    from genrekit.evaluate.evaluator import evaluate_model

    fma = settings.dataset == "fma"  # own collections are read again from DATASET, not from FMA folders
    return evaluate_model(
        out / settings.model_filename,
        out / settings.training_config_filename,
        paths["metadata"] if fma else None,
        paths["audio"] if fma else None,
        "test",
        out / "evaluation",
        settings.subset,
        workers=settings.workers,
    )


def prediction_folder(settings: Settings, paths: dict, out: Path, limit: int = 40) -> Path:
    """A folder of music to predict: links to test-split clips (and the genuine FMA clip if present)."""
    from genrekit.datasets import fma

    folder = out / "music_to_predict"
    folder.mkdir(parents=True, exist_ok=True)
    if settings.dataset != "fma":  # the test split the run saved
        from genrekit.datasets.own import SPLITS_FILE, read_splits_table

        table = read_splits_table(out / SPLITS_FILE)
        sources = [Path(p) for p in table["path"][table["split"] == "test"][:limit]]
    else:
        tracks = fma.select_subset(fma.load_tracks(paths["metadata"]), settings.subset)
        sources = [fma.audio_path(paths["audio"], tid) for tid in fma.split_ids(tracks, "test")[:limit]]
    for source in sources:
        link = folder / source.name
        if source.is_file() and not link.exists():
            link.symlink_to(source.resolve())
    return folder


def step_predict(settings: Settings, paths: dict, out: Path) -> dict:
    from genrekit.infer.predict import MusicGenreInference

    folder = prediction_folder(settings, paths, out)
    inference = MusicGenreInference(
        out / settings.model_filename, out / settings.training_config_filename, workers=settings.workers
    )
    return inference.batch_predict(folder, output=out / "predictions.json", progress=True)


@script_main
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ConfigError(f"--steps: unknown step {unknown[0]!r}; steps are {', '.join(STEPS)}")
    settings, paths = resolve(args)
    if own_music_backbone(args, config_values(working_config())):
        print(
            f"your music: genre heads on pretrained MSD_musicnn {settings.musicnn_output} embeddings (learned "
            "from real recordings; docs/datasets.md 'Which path for real music'); --backbone cnn trains the small CNN "
            "from scratch instead"
        )
    out = Path(args.output_dir)
    # The output policy before run.log is opened: the folder's own files (the steps check theirs too).
    from genrekit.train.run_folder import run_files

    run = run_files(settings) if "train" in steps else {}
    check_output_dir(out, {**run, LOG_FILE: RUN_LOG})
    setup_logging(out)
    started = time.time()
    summary: dict = {}
    numbered = {name: i + 1 for i, name in enumerate(STEPS)}
    for name in STEPS:
        if name not in steps:
            continue
        header(numbered[name], name)
        t0 = time.time()
        if name == "setup":
            step_setup(args, settings, paths)
        elif name == "inspect":
            step_inspect(args, settings, paths, out)
        elif name == "features":
            step_features(settings, paths)
        elif name == "train":
            summary["train"] = step_train(args, settings, paths, out)["history"]
        elif name == "evaluate":
            summary["evaluate"] = step_evaluate(settings, paths, out)
        elif name == "predict":
            summary["predict"] = step_predict(settings, paths, out)["summary"]
        print(f"({name}: {time.time() - t0:.0f} s)", flush=True)
    print_summary(settings, out, summary, time.time() - started)
    return 0


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def print_summary(settings: Settings, out: Path, summary: dict, seconds: float) -> None:
    print("\n=== done " + "=" * 60)
    print(f"total time: {seconds / 60:.1f} min")
    model, cfg = out / settings.model_filename, out / settings.training_config_filename
    if model.is_file():
        print(f"model:       {model}")
        print(f"config:      {cfg}")
    report = out / "evaluation" / "evaluation_report.md"
    if report.is_file():
        print(f"report:      {report}")
        data = json.loads((out / "evaluation" / "evaluation_report.json").read_text())
        for level, name in (("top", "top genre"), ("medium", "medium genre")):
            if level not in data:  # a model without a medium head (no sub-genres)
                continue
            m = data[level]["track"]
            print(
                f"             test {name + ':':<13} balanced accuracy {_num(m['balanced_accuracy'])}, "
                f"F1 macro {_num(m['f1_macro'])}, F1 weighted {_num(m['f1_weighted'])}, "
                f"accuracy {_num(m['accuracy'])} ({m['n']} tracks)"
            )
        a, fixed = data["all"]["track"], data["all"].get("track_fixed_threshold")
        at_fixed = f"; {_num(fixed['jaccard_samples'])} at {fixed['threshold']:g}" if fixed else ""
        print(
            f"             test all genres:  Jaccard {_num(a['jaccard_samples'])} (tuned thresholds{at_fixed}), "
            f"LRAP {_num(a['lrap'])} ({a['n']} tracks)"
        )
        print("             README targets (test split, tracks):")
        for t in data["targets"]:
            verdict = "n/a" if t["passed"] is None else ("PASS" if t["passed"] else "FAIL")
            print(f"               {t['name']:<34} > {t['target']:.2f}   {_num(t['value']):>6}   {verdict}")
    predictions = out / "predictions.json"
    if predictions.is_file():
        s = summary.get("predict") or json.loads(predictions.read_text())["summary"]
        print(f"predictions: {predictions} ({s['processed']} files, {s['failed']} failed)")
    print("\nnext:")
    print(f"  {_command('predict')} --model {model} --config {cfg} --file your_song.mp3")
    print(f"  tensorboard --logdir {out / 'tensorboard'}")
    print(f"  {_command('train')} --help        # the full-size model, your own settings")


def _command(name: str) -> str:
    """How to run command ``name`` the way this run was started: ``genrekit NAME`` or its script."""
    if Path(sys.argv[0]).name.startswith("genrekit"):  # genrekit.console names the program so
        return f"genrekit {name}"
    return f"python {COMMANDS[name][1]}"


if __name__ == "__main__":
    sys.exit(main())
