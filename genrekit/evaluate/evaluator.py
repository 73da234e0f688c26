"""Evaluation of a trained model on one of FMA's splits, from its saved model and training config.

:func:`evaluate_model` checks the model against ``balanced_training_config.json``, takes the
split's tracks from the metadata, their features from the training's feature cache (completed if
needed), encodes the targets with the vocabularies saved at training time, and writes the report
of :mod:`genrekit.evaluate.report` with a "run" section that says exactly what was evaluated.

The second of three evaluation layers: the figures come from :mod:`genrekit.evaluate.metrics`, and
``model_evaluation.py`` is the command line over :func:`evaluate_model`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import genrekit
from genrekit.datasets.labels import LEVELS, MASKED, GenreTree, Vocabulary, encode
from genrekit.errors import ConfigError, DatasetError, ModelError
from genrekit.evaluate.metrics import MULTI_LABEL_HEADS, evaluate
from genrekit.evaluate.thresholds import include_top_of, thresholds_of
from genrekit.fileio import file_digest, write_text_atomic
from genrekit.models.io import load_model
from genrekit.paths import NAME_ERRORS, SETUP_HINTS, require_dir
from genrekit.settings import SPLITS, SUBSETS, Settings, default_value
from genrekit.train.run_config import check_model, load_training_config

__all__ = [
    "check_model",
    "check_vocabularies",
    "default_output_dir",
    "evaluate_model",
    "format_headline",
    "load_model",
    "resolve_config",
]

log = logging.getLogger(__name__)

RUN_SECTION = "run"  # key of the evaluation's provenance in the report JSON
MAX_LISTED_FAILURES = 50  # left-out files listed by name in the Markdown report


# --- files, model and config -------------------------------------------------------------------------


def default_output_dir(model_path: str | os.PathLike, split: str = "test") -> Path:
    """``<run folder>/evaluation`` for the test split, ``<run folder>/evaluation_<split>`` otherwise.

    Other splits get their own folder so that a validation report never replaces the test report.
    """
    name = "evaluation" if split == "test" else f"evaluation_{split}"
    return Path(model_path).parent / name


def resolve_config(
    model_path: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
    *,
    config_name: str | None = None,
) -> Path:
    """The training config: ``config_path``, or the one next to the model (named ``config_name``,
    default the setting ``training_config_filename``).

    Raises
    ------
    ModelError
        When the model file or the config is missing.
    """
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"{model_path}: model file not found (train one with balanced_trainer.py)")
    if config_path is not None:
        return Path(config_path)
    name = config_name or default_value("training_config_filename")
    beside = model_path.parent / name
    if not beside.is_file():
        raise ModelError(
            f"no --config given and no {name} next to the model in {model_path.parent}; pass --config"
        )
    return beside


def check_vocabularies(vocabs: Mapping[str, Vocabulary], tree: GenreTree, genres_path: Path) -> None:
    """Refuse metadata whose genre tree is not the one the model was trained on.

    Every genre of the saved vocabularies must exist in ``genres.csv`` with the same title and
    parent; otherwise the targets would be encoded against the wrong classes.

    Raises
    ------
    DatasetError
        Naming the first disagreeing genres.
    """
    bad = []
    for level in LEVELS:
        v = vocabs[level]
        for gid, name, parent in zip(v.genre_ids, v.names, v.parent_ids, strict=True):
            if gid not in tree.parent:
                bad.append(f"{gid} {name!r} is not in it")
            elif tree.title[gid] != name or tree.parent[gid] != parent:
                bad.append(
                    f"{gid} is {name!r} (parent {parent}) for the model, {tree.title[gid]!r} "
                    f"(parent {tree.parent[gid]}) there"
                )
    if bad:
        unique = list(dict.fromkeys(bad))
        raise DatasetError(
            f"{genres_path} is not the genre tree the model was trained on: genre "
            + "; ".join(unique[:5])
            + (f" (and {len(unique) - 5} more)" if len(unique) > 5 else "")
        )


def _same_folder(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


# --- evaluation ---------------------------------------------------------------------------------------


def evaluate_model(
    model_path: str | os.PathLike,
    config_path: str | os.PathLike | None = None,
    metadata_dir: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
    split: str | None = None,
    output_dir: str | os.PathLike | None = None,
    subset: str | None = None,
    *,
    workers: int | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Evaluate a trained model on one of FMA's splits and write the report.

    Parameters
    ----------
    model_path : path-like
        The saved model (``.h5`` or ``.keras``).
    config_path : path-like, optional
        Its training config; default ``balanced_training_config.json`` next to the model.
    metadata_dir, audio_dir : path-like, optional
        Default: the folders the model was trained on (the config's ``data`` section), then the
        settings' ``metadata_dir`` / ``audio_dir`` defaults.
    split : {"test", "validation", "training"}
        FMA's official split to evaluate; default the setting ``split`` (the test split; the script passes config.py's).
    output_dir : path-like, optional
        Default :func:`default_output_dir`.
    subset : {"small", "medium", "large"}, optional
        Default: the subset the model was trained on.
    workers : int, optional
        Processes that decode audio missing from the feature cache (default the setting ``workers``; 0 = all
        cores of this machine).
    plots : bool
        Draw the PNG figures.

    Returns
    -------
    dict
        The content of ``evaluation_report.json``: the sections of
        :func:`genrekit.evaluate.metrics.evaluate` and ``run`` (files, their sha256, split, subset,
        folders, the evaluated track ids, the files left out and why).

    Raises
    ------
    ModelError
        Missing model or config, or a model that does not match its config: before any data is read.
    ConfigError
        An unknown split or subset.
    DatasetError
        Missing folders, a genre tree other than the model's, or a split without usable tracks.
    """
    from genrekit.evaluate.report import check_report_dir

    split = _checked_split(split, subset)
    model_path = Path(model_path)
    out = Path(output_dir) if output_dir is not None else default_output_dir(model_path, split)
    check_report_dir(out, {model_path: "the model", config_path: "--config"}, plots)  # before any work
    pred = predict_split(model_path, config_path, metadata_dir, audio_dir, split, subset, workers=workers)
    results = _figures(
        pred.probs,
        pred.segment_track,
        pred.labels,
        pred.vocabs,
        pred.training_config,
        pred.settings,
        len(pred.failures),
        pred.usable,
    )
    results[RUN_SECTION] = run_section(pred)
    _write(results, out, plots, pred.settings.confusion_max_classes, model_path.name)
    return results


@dataclass(frozen=True)
class SplitPrediction:
    """One saved model's segment probabilities on a split, with everything that says what was scored."""

    model_path: Path
    config_path: Path
    training_config: dict[str, Any]
    settings: Settings
    vocabs: dict[str, Vocabulary]
    probs: dict[str, np.ndarray]  # head -> (n_segments, n_classes)
    segment_track: np.ndarray  # (n_segments,) index into ``usable``
    usable: np.ndarray  # track ids with features, in the order of ``labels``
    labels: Any  # the encoded targets of ``usable``
    targets: Any  # the raw targets of ``usable``
    failures: list[Any]  # the split's files left out
    n_split: int
    n_skipped_rows: int
    split: str
    metadata_dir: Path
    audio_dir: Path
    cache_dir: Path
    device: dict[str, Any]


def predict_split(
    model_path: str | os.PathLike,
    config_path: str | os.PathLike | None,
    metadata_dir: str | os.PathLike | None,
    audio_dir: str | os.PathLike | None,
    split: str,
    subset: str | None,
    *,
    workers: int | None = None,
) -> SplitPrediction:
    """A saved model's segment probabilities on ``split``, from its own features (arguments as
    :func:`evaluate_model`)."""
    model_path = Path(model_path)
    config_path = resolve_config(model_path, config_path)
    training_config = load_training_config(config_path)
    settings = Settings.build(config_path, {"subset": subset})
    metadata_dir, audio_dir = _data_folders(training_config, settings, model_path, metadata_dir, audio_dir)
    vocabs = {level: Vocabulary.from_dict(training_config["vocabularies"][level]) for level in LEVELS}

    from genrekit.device import configure_device

    device = configure_device(settings.mixed_precision)
    model = load_model(model_path)
    check_model(model, training_config, model_path, config_path)
    log.info("model %s matches training config %s", model_path, config_path)

    labelled, dataset, split_ids = _split_tracks(
        training_config, config_path, settings, vocabs, split, metadata_dir, audio_dir
    )
    targets = labelled.targets.loc[split_ids]
    cache, cache_dir = _split_features(training_config, config_path, settings, dataset, split_ids, workers)
    try:
        usable, failures = _usable_tracks(cache, split_ids, split, audio_dir, cache_dir)
        from genrekit.train.pipeline import predict_segments

        probs, segment_track = predict_segments(
            model, cache, usable, batch_size=settings.inference_batch_size
        )
    finally:
        cache.close()
    return SplitPrediction(
        model_path=model_path,
        config_path=config_path,
        training_config=training_config,
        settings=settings,
        vocabs=vocabs,
        probs=probs,
        segment_track=segment_track,
        usable=usable,
        labels=encode(targets.loc[usable], vocabs),
        targets=targets.loc[usable],
        failures=failures,
        n_split=len(split_ids),
        n_skipped_rows=len(labelled.skipped),
        split=split,
        metadata_dir=metadata_dir,
        audio_dir=audio_dir,
        cache_dir=Path(cache_dir),
        device=device,
    )


def run_section(pred: SplitPrediction) -> dict[str, Any]:
    """The report's ``run`` section: exactly what was evaluated, and what was left out."""
    return {
        "model": str(pred.model_path.resolve()),
        "model_sha256": file_digest(pred.model_path),
        "training_config": str(pred.config_path.resolve()),
        "training_config_sha256": file_digest(pred.config_path),
        "genrekit_version": genrekit.__version__,
        "split": pred.split,
        "subset": pred.settings.subset,
        "metadata_dir": str(pred.metadata_dir.resolve()),
        "audio_dir": str(pred.audio_dir.resolve()),
        "cache_dir": str(pred.cache_dir.resolve()),
        "aggregation": "track probabilities are the mean of the track's segment probabilities",
        "tracks_in_split": pred.n_split,
        "tracks_csv_rows_skipped": pred.n_skipped_rows,
        "tracks_without_features": pred.n_split - len(pred.usable),
        "labels_outside_vocabulary": _outside_vocabulary(pred.targets, pred.vocabs),
        "left_out_files": [
            {"track_id": f.track_id, "status": f.status, "reason": f.reason, "path": f.path}
            for f in pred.failures
        ],
        "track_ids": [int(t) for t in pred.usable],
        "device": {k: pred.device.get(k) for k in ("backend", "tensorflow", "keras", "policy")},
    }


def _checked_split(split: str | None, subset: str | None) -> str:
    """The split to evaluate (the setting ``split`` by default), refused when unknown, as is the subset."""
    split = default_value("split") if split is None else split
    if split not in SPLITS:
        raise ConfigError(f"split {split!r} must be one of {', '.join(SPLITS)}")
    if subset is not None and subset not in SUBSETS:
        raise ConfigError(f"subset {subset!r} must be one of {', '.join(SUBSETS)}")
    return split


def _data_folders(
    training_config: Mapping[str, Any],
    settings: Settings,
    model_path: Path,
    metadata_dir: str | os.PathLike | None,
    audio_dir: str | os.PathLike | None,
) -> tuple[Path, Path]:
    """The metadata and audio folders: those given, else the training's, else the settings' defaults."""
    data = training_config.get("data") or {}
    if settings.dataset != "fma" and (metadata_dir or audio_dir):
        raise ConfigError(
            f"--metadata and --audio name FMA's folders, but {model_path} was trained on DATASET "
            f"{settings.dataset!r}: leave them out (that collection is read again)"
        )
    return (
        Path(metadata_dir or data.get("metadata_dir") or default_value("metadata_dir")),
        Path(audio_dir or data.get("audio_dir") or default_value("audio_dir")),
    )


def _split_tracks(
    training_config: Mapping[str, Any],
    config_path: Path,
    settings: Settings,
    vocabs: Mapping[str, Vocabulary],
    split: str,
    metadata_dir: Path,
    audio_dir: Path,
) -> tuple[Any, Any, np.ndarray]:
    """The labelled dataset, the dataset and the track ids of ``split``.

    Targets come from the same dataset and rules as training, encoded with the saved vocabularies
    (never recomputed).
    """
    from genrekit.datasets import base as datasets

    data = training_config.get("data") or {}
    dataset = datasets.from_settings(settings, metadata_dir, audio_dir)
    labelled = dataset.load(vocabs)
    check_vocabularies(vocabs, labelled.tree, Path(dataset.genres_origin))
    if data.get("splits_file"):  # a source that made its own split: score what training never saw
        from genrekit.datasets.own import apply_saved_splits

        apply_saved_splits(labelled, config_path.parent / data["splits_file"])
    split_ids = labelled.split_ids(split)
    if len(split_ids) == 0:
        raise DatasetError(
            f"the {split} split of subset {settings.subset!r} in {dataset.tracks_origin} has no tracks; "
            "nothing to evaluate (check --subset and --metadata)"
        )
    return labelled, dataset, split_ids


def _usable_tracks(
    cache: Any, split_ids: np.ndarray, split: str, audio_dir: Path, cache_dir: Path
) -> tuple[np.ndarray, list[Any]]:
    """The split's tracks with features, and the split's files that could not be decoded."""
    usable = cache.available(split_ids)
    wanted = set(split_ids.tolist())
    failures = [f for f in cache.failures if f.track_id in wanted]
    if len(usable) == 0:
        raise DatasetError(
            f"none of the {len(split_ids)} tracks of the {split} split has usable audio in {audio_dir} "
            f"({len(failures)} defective or missing; see {cache_dir}/part-*/failures.csv)"
        )
    not_built = len(split_ids) - len(usable) - len(failures)
    if not_built:
        log.warning("%d tracks of the %s split have no features yet (a build under way?)", not_built, split)
    log.info(
        "%s split: %d tracks, %d with features, %d defective or missing files left out",
        split,
        len(split_ids),
        len(usable),
        len(failures),
    )
    return usable, failures


def _figures(
    probs: Mapping[str, np.ndarray],
    segment_track: np.ndarray,
    labels: Any,
    vocabs: Mapping[str, Vocabulary],
    training_config: Mapping[str, Any],
    settings: Settings,
    n_defective_files: int,
    track_ids: np.ndarray,
) -> dict[str, Any]:
    """The figures of :func:`genrekit.evaluate.metrics.evaluate` at the thresholds the model was saved with."""
    saved = "thresholds" in training_config
    return evaluate(
        probs,  # the heads the model has: no medium head for a collection without sub-genres
        {"top": labels.top, "medium": labels.medium, "all": labels.all},
        vocabs,
        segment_track,
        threshold=float(training_config.get("threshold", settings.threshold)),
        thresholds=thresholds_of(training_config, len(vocabs["all"])) if saved else None,
        include_top=include_top_of(training_config),
        top_k=int(training_config.get("top_k", settings.top_k)),
        n_bins=settings.calibration_bins,
        n_defective_files=n_defective_files,
        track_ids=track_ids,
    )


def _split_features(
    training_config: Mapping[str, Any],
    config_path: Path,
    settings: Settings,
    dataset: Any,
    track_ids: np.ndarray,
    workers: int | None,
) -> tuple[Any, Path]:
    """The feature cache holding the split's tracks, built or completed where it lacks them.

    The training's own cache when the audio folder is the training's; otherwise the cache of that
    folder under ``settings.cache_dir``. Features come from the training config's front end.
    """
    from genrekit.features.cache import FeatureCache, cache_folder, ensure_cache
    from genrekit.train.run_config import frontend_of

    audio_dir = dataset.audio_dir
    require_dir(audio_dir, "audio", SETUP_HINTS["audio"])
    frontend = frontend_of(training_config, config_path)
    data = training_config.get("data") or {}
    if data.get("cache_dir") and _same_folder(audio_dir, data.get("audio_dir")):
        folder = Path(data["cache_dir"])
    else:
        folder = cache_folder(settings.cache_dir, dataset.cache_name, frontend)
    n_workers = default_value("workers") if workers is None else workers
    # This machine's pool, as for inference: the training's engine (Ray, say) says nothing about it.
    ensure_cache(folder, dataset.audio_items(track_ids), frontend, workers=n_workers or None)
    return FeatureCache.open(folder, frontend), folder


def _outside_vocabulary(targets: Any, vocabs: Mapping[str, Vocabulary]) -> dict[str, int]:
    """Tracks whose label at a level is a genre the model never learned (masked there, so not scored)."""
    counts = {}
    for level in LEVELS:
        known = set(vocabs[level].genre_ids)
        if level in MULTI_LABEL_HEADS:  # a list of genre ids per track
            counts[level] = int(sum(1 for ids in targets[level] if any(g not in known for g in ids)))
        else:
            counts[level] = int(sum(1 for g in targets[level] if g != MASKED and g not in known))
    return counts


# --- report --------------------------------------------------------------------------------------------


def _run_markdown(run: Mapping[str, Any]) -> str:
    outside = run["labels_outside_vocabulary"]
    rows = [
        ("Model", f"`{run['model']}` (sha256 `{run['model_sha256'][:16]}`)"),
        ("Training config", f"`{run['training_config']}` (sha256 `{run['training_config_sha256'][:16]}`)"),
        ("Split", f"{run['split']} (FMA's official artist-filtered split), subset {run['subset']}"),
        ("Tracks in the split", run["tracks_in_split"]),
        ("Tracks evaluated (with features)", len(run["track_ids"])),
        ("Defective or missing audio files left out", len(run["left_out_files"])),
        (
            "Tracks with a label the model never learned (masked at that level)",
            f"top {outside['top']}, medium {outside['medium']}, all genres {outside['all']}",
        ),
        ("Metadata", f"`{run['metadata_dir']}`"),
        ("Audio", f"`{run['audio_dir']}`"),
        ("Feature cache", f"`{run['cache_dir']}`"),
        ("Aggregation", run["aggregation"]),
        ("genrekit", run["genrekit_version"]),
    ]
    text = "## Run\n\n| | |\n| :--- | :--- |\n"
    text += "".join(f"| {k} | {str(v).replace('|', '/')} |\n" for k, v in rows)
    failures = run["left_out_files"]
    if failures:
        text += "\nFiles left out:\n\n| track | status | reason |\n| ---: | :--- | :--- |\n"
        for f in failures[:MAX_LISTED_FAILURES]:
            text += f"| {f['track_id']} | {f['status']} | {str(f['reason']).replace('|', '/')} |\n"
        if len(failures) > MAX_LISTED_FAILURES:
            text += f"\n{len(failures) - MAX_LISTED_FAILURES} more in the JSON report.\n"
    return text + "\n"


def _write(
    results: dict[str, Any],
    out: Path,
    plots: bool,
    max_medium_classes: int,
    model_name: str,
    run_text: str | None = None,
) -> None:
    """Write the report of :mod:`genrekit.evaluate.report` with the run section (``run_text``, by
    default the one of a single model) under the title."""
    from genrekit.evaluate.report import write_report

    run = results[RUN_SECTION]
    title = f"Evaluation of {model_name} on the {run['split']} split"
    paths = write_report(results, out, plots=plots, title=title, max_medium_classes=max_medium_classes)
    # The run section goes right under the title, before the first figures.
    text = paths.markdown.read_text(encoding="utf-8", errors=NAME_ERRORS)  # as write_text_atomic wrote it
    head, sep, rest = text.partition("\n## ")
    run_text = _run_markdown(run) if run_text is None else run_text
    write_text_atomic(paths.markdown, head + "\n" + run_text + sep.lstrip("\n") + rest)
    log.debug("report: %s", paths.markdown)


def _n(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def format_headline(results: Mapping[str, Any]) -> str:
    """The headline figures of an evaluation as a plain-text table for the console."""
    run = results.get(RUN_SECTION, {})
    counts = results["counts"]
    lines = []
    if run:
        lines.append(
            f"{run['ensemble']['name'] if 'ensemble' in run else Path(run['model']).name} on the {run['split']} split (subset {run['subset']}): "
            f"{counts['tracks_evaluated']} tracks, {counts['segments']} segments; "
            f"{counts['defective_files']} defective or missing files left out"
        )
    header = f"{'':<16}{'tracks':>7}{'accuracy':>10}{'bal. acc.':>11}{'F1 macro':>10}{'F1 weighted':>13}"
    lines += ["", header, "-" * len(header)]
    for level, name in (("top", "top genres"), ("medium", "medium genres")):
        if level not in results:  # a model without a medium head
            continue
        m = results[level]["track"]
        lines.append(
            f"{name:<16}{m['n']:>7}{_n(m['accuracy']):>10}{_n(m['balanced_accuracy']):>11}"
            f"{_n(m['f1_macro']):>10}{_n(m['f1_weighted']):>13}"
        )
    a = results["all"]["track"]
    th = a["threshold"] if isinstance(a["threshold"], str) else f"threshold {a['threshold']:g}"
    lines.append(
        f"{'all genres':<16}{a['n']:>7}  Jaccard {_n(a['jaccard_samples'])}, F1 micro {_n(a['f1_micro'])}, "
        f"F1 macro {_n(a['f1_macro'])}, LRAP {_n(a['lrap'])} ({th} thresholds"
        + (", plus the top head's genre)" if results["settings"].get("include_top") else ")")
    )
    fixed = results["all"].get("track_fixed_threshold")
    if fixed:
        lines.append(
            f"{'':<23}at the fixed threshold {fixed['threshold']:g}: Jaccard {_n(fixed['jaccard_samples'])}, "
            f"F1 micro {_n(fixed['f1_micro'])}, F1 macro {_n(fixed['f1_macro'])}"
        )
    h = results["hierarchy"]
    if "skipped" in h:
        lines.append(f"hierarchy consistency: not checked ({h['skipped']})")
    else:
        rate = h["track"]["rate"]
        lines.append(
            f"hierarchy consistency: {'n/a' if rate is None else f'{100 * rate:.1f}%'} of tracks "
            f"({h['track']['consistent']} of {h['track']['n']}): predicted medium genre under the predicted top genre"
        )
    lines += ["", "performance targets (tracks):"]
    for t in results["targets"]:
        verdict = "n/a" if t["passed"] is None else ("PASS" if t["passed"] else "FAIL")
        lines.append(f"  {t['name']:<34} > {t['target']:.2f}   {_n(t['value']):>6}   {verdict}")
    return "\n".join(lines)
