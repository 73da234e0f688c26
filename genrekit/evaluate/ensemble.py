"""Ensembles of trained runs: members that share vocabularies, heads and a dataset, whose track
probabilities are averaged with normalized weights.

Each member reads its own features (its own front end, cache and decoding), so a CNN run and a
musicnn-heads run on the same dataset combine. :class:`Ensemble` loads and checks the members'
training configs; :func:`evaluate_ensemble` scores the weighted mean on a split and writes the
report of :mod:`genrekit.evaluate.report` naming the members; :mod:`genrekit.infer.ensemble`
predicts files with it.

The all-genres decisions of an ensemble use the weighted mean of the members' per-genre
thresholds (those saved with each model; a member saved without tuned thresholds counts with its
fixed ``threshold`` for every genre), and list the top head's genre (``include_top``) only when
every member was saved with that rule.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.datasets.labels import LEVELS, encode
from genrekit.errors import ConfigError
from genrekit.evaluate.thresholds import include_top_of, thresholds_of
from genrekit.fileio import file_digest
from genrekit.settings import Settings

__all__ = ["Ensemble", "Member", "evaluate_ensemble", "parse_model_arg", "weighted_mean"]

log = logging.getLogger(__name__)

THRESHOLD_RULE = "per genre: the weighted mean of the members' saved thresholds"
INCLUDE_TOP_RULE = "the top head's genre is listed only when every member was saved with include_top"


# --- members ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One run of an ensemble: its model, its training config and its (unnormalized) weight."""

    model_path: Path
    config_path: Path
    weight: float
    training_config: dict[str, Any]

    @property
    def name(self) -> str:
        """The run folder (what a user typed to name the run)."""
        return str(self.model_path.parent)


def _checked_weight(weight: Any, what: str) -> float:
    try:
        value = float(weight)
    except (TypeError, ValueError):
        value = math.nan
    if isinstance(weight, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"weight {weight!r} of {what} must be a positive number")
    return value


def parse_model_arg(text: str) -> tuple[str, float | None]:
    """``PATH`` or ``PATH:WEIGHT`` (a ``--model`` value) as ``(path, weight or None)``.

    A path that exists as typed is taken whole, colon and all.
    """
    path, sep, tail = str(text).rpartition(":")
    if not sep or not path or Path(text).exists():
        return str(text), None
    try:
        float(tail)
    except ValueError:
        return str(text), None
    return path, _checked_weight(tail, path)


@dataclass(frozen=True)
class FileNames:
    """The names of a run folder's model and training config (settings ``model_filename`` and
    ``training_config_filename``; the scripts pass config.py's)."""

    model: str = Settings.model_filename
    config: str = Settings.training_config_filename


def load_member(
    path: str | os.PathLike,
    weight: Any = 1.0,
    config: str | os.PathLike | None = None,
    names: FileNames = FileNames(),
) -> Member:
    """The member of a run folder (its saved model inside) or of a model file.

    Raises
    ------
    ModelError
        When the model or its training config is missing or not a training config.
    ConfigError
        When the weight is not a positive number.
    """
    from genrekit.errors import ModelError
    from genrekit.evaluate.evaluator import resolve_config
    from genrekit.paths import not_a_file
    from genrekit.train.run_config import load_training_config

    path = Path(path)
    model = path / names.model if path.is_dir() else path
    if not model.is_file():
        where = f" (a run folder holds {model.name})" if path.is_dir() else ""
        raise ModelError(f"{model}: model file {not_a_file(model)}{where}")
    config_path = resolve_config(model, config, config_name=names.config)
    return Member(model, config_path, _checked_weight(weight, path), load_training_config(config_path))


def _members_of_file(path: str | os.PathLike, names: FileNames = FileNames()) -> list[Member]:
    """The members of an ensemble file ``{"members": [{"run": ..., "weight": ...}, ...]}``.

    ``run`` (a run folder) or ``model`` (a model file), with an optional ``config`` and
    ``weight`` (default 1); relative paths are read from the file's folder.
    """
    from genrekit.fileio import read_json

    path = Path(path)
    data = read_json(path, error=ConfigError, what="ensemble file")
    entries = data.get("members") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f'{path}: an ensemble file holds {{"members": [{{"run": ..., "weight": ...}}]}}')
    members = []
    for i, entry in enumerate(entries):
        unknown = sorted(set(entry) - {"run", "model", "config", "weight"}) if isinstance(entry, dict) else []
        where = entry.get("run", entry.get("model")) if isinstance(entry, dict) else None
        if unknown or not isinstance(where, str) or ("run" in entry and "model" in entry):
            raise ConfigError(
                f"{path}: member {i + 1} must give one of 'run' or 'model' (and optionally 'config', "
                f"'weight'); got {entry!r}"
            )
        config = entry.get("config")
        members.append(
            load_member(path.parent / where, entry.get("weight", 1.0), config and path.parent / config, names)
        )
    return members


# --- the ensemble ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ensemble:
    """Runs whose vocabularies, heads and datasets agree, and their weights (checked on creation)."""

    members: tuple[Member, ...]

    def __post_init__(self) -> None:
        if not self.members:
            raise ConfigError("an ensemble needs at least one model")
        seen: dict[Path, Member] = {}
        for m in self.members:
            key = m.model_path.resolve()
            if key in seen:
                raise ConfigError(f"model {m.model_path} is named twice in the ensemble")
            seen[key] = m
        for other in self.members[1:]:
            _check_agree(self.members[0], other)

    @classmethod
    def from_args(
        cls,
        models: Sequence[str] = (),
        weights: Sequence[Any] | None = None,
        ensemble_file: str | os.PathLike | None = None,
        names: FileNames = FileNames(),
    ) -> Ensemble:
        """The ensemble of ``--model`` values (``PATH`` or ``PATH:WEIGHT``), ``--weight`` values
        (one per ``--model``) and the members of an ensemble file."""
        weights = list(weights or [])
        parsed = [parse_model_arg(m) for m in models]
        if weights and len(weights) != len(parsed):
            raise ConfigError(
                f"{len(weights)} --weight value(s) for {len(parsed)} --model value(s): give one per model"
            )
        if weights and any(w is not None for _, w in parsed):
            raise ConfigError("give weights either as --weight or as --model PATH:WEIGHT, not both")
        members = [
            load_member(path, weights[i] if weights else (1.0 if w is None else w), names=names)
            for i, (path, w) in enumerate(parsed)
        ]
        if ensemble_file is not None:
            members += _members_of_file(ensemble_file, names)
        return cls(tuple(members))

    @property
    def weights(self) -> np.ndarray:
        """The normalized weights (summing to 1), in the members' order."""
        w = np.array([m.weight for m in self.members], dtype=np.float64)
        return w / w.sum()

    @property
    def name(self) -> str:
        return f"an ensemble of {len(self.members)} models"

    @property
    def first_config(self) -> dict[str, Any]:
        return self.members[0].training_config

    def thresholds(self) -> np.ndarray:
        """The all-genres thresholds: the weighted mean of the members' per-genre thresholds."""
        n = len(self.first_config["vocabularies"]["all"]["genre_ids"])
        rows = [thresholds_of(m.training_config, n) for m in self.members]
        return self.weights @ np.stack(rows)

    def tuned(self) -> bool:
        """Whether any member was saved with tuned thresholds (else all use their fixed one)."""
        return any(m.training_config.get("thresholds") for m in self.members)

    def include_top(self) -> bool:
        return all(include_top_of(m.training_config) for m in self.members)

    def combine(self, probs: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The weighted mean, head by head, of the members' probabilities (arrays of equal shape)."""
        return weighted_mean(probs, self.weights)

    def describe(self) -> list[dict[str, Any]]:
        """The members as recorded in reports: model, config, weight and normalized weight."""
        return [
            {
                "model": str(m.model_path.resolve()),
                "config": str(m.config_path.resolve()),
                "weight": m.weight,
                "normalized_weight": float(w),
                "frontend": (m.training_config.get("frontend") or {}).get("name", "mel_segments"),
            }
            for m, w in zip(self.members, self.weights, strict=True)
        ]


def weighted_mean(
    probs: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]
) -> dict[str, np.ndarray]:
    """``sum_i weights[i] * probs[i][head]`` for every head of the first mapping."""
    return {
        head: sum(
            float(w) * np.asarray(p[head], dtype=np.float64) for p, w in zip(probs, weights, strict=True)
        )
        for head in probs[0]
    }


def _vocabulary_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    from genrekit.train.run_config import heads_of_config

    if heads_of_config(a) != heads_of_config(b):
        return f"heads differ ({', '.join(heads_of_config(a))} against {', '.join(heads_of_config(b))})"
    for level in LEVELS:
        ids_a, ids_b = a["vocabularies"][level]["genre_ids"], b["vocabularies"][level]["genre_ids"]
        if list(ids_a) != list(ids_b):
            only_a = sorted(set(ids_a) - set(ids_b))[:5]
            only_b = sorted(set(ids_b) - set(ids_a))[:5]
            return (
                f"{level} genre vocabularies differ ({len(ids_a)} against {len(ids_b)} genres; "
                f"only in the first: {only_a}, only in the second: {only_b})"
            )
    return None


def _folder(value: Any) -> str | None:
    return None if value is None else str(Path(value).resolve())


def _dataset_difference(a: Member, b: Member) -> str | None:
    da, db = a.training_config.get("data") or {}, b.training_config.get("data") or {}
    for key, norm in (("dataset", str), ("subset", str), ("metadata_dir", _folder)):
        va, vb = da.get(key), db.get(key)
        if (va is None) != (vb is None) or (va is not None and norm(va) != norm(vb)):
            return f"datasets differ ({key} {va!r} against {vb!r})"
    splits = [c.config_path.parent / d["splits_file"] for c, d in ((a, da), (b, db)) if d.get("splits_file")]
    if len(splits) == 1 or (len(splits) == 2 and file_digest(splits[0]) != file_digest(splits[1])):
        return "datasets differ (their saved train/validation/test splits are not the same)"
    return None


def _check_agree(a: Member, b: Member) -> None:
    """Refuse, in one line naming both runs, members that do not predict the same classes of the same data."""
    problem = _vocabulary_difference(a.training_config, b.training_config) or _dataset_difference(a, b)
    if problem:
        raise ConfigError(f"runs {a.name} and {b.name} cannot form an ensemble: {problem}")


# --- evaluation ------------------------------------------------------------------------------------


def default_ensemble_output_dir(ensemble: Ensemble, split: str = "test") -> Path:
    """``<first member's run folder>/evaluation_ensemble`` (``..._<split>`` for other splits)."""
    name = "evaluation_ensemble" if split == "test" else f"evaluation_ensemble_{split}"
    return ensemble.members[0].model_path.parent / name


def _track_rows(pred: Any, track_ids: np.ndarray) -> dict[str, np.ndarray]:
    """A member's mean segment probabilities of ``track_ids``, head by head."""
    from genrekit.evaluate.aggregate import track_averages

    averages = track_averages(pred.probs, pred.segment_track, len(pred.usable))
    where = {int(t): i for i, t in enumerate(pred.usable)}
    rows = np.array([where[int(t)] for t in track_ids], dtype=np.intp)
    return {head: avg.mean[rows] for head, avg in averages.items()}


def ensemble_probabilities(
    ensemble: Ensemble, preds: Sequence[Any]
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, str]:
    """The ensemble's probabilities of the tracks every member has features for.

    When every member cut the same segments of the same tracks (one front end and its cache), the
    segments are averaged, so segment, voting and stability figures mean what they mean for one
    model; otherwise each member's track averages are, one row per track. Track probabilities are
    the same weighted mean of the members' track probabilities either way.

    Returns
    -------
    tuple
        ``(probs by head, segment_track, track ids, how it was aggregated)``.
    """
    first = preds[0]
    wanted = set(int(t) for t in first.usable)
    for p in preds[1:]:
        wanted &= set(int(t) for t in p.usable)
    track_ids = np.array([t for t in first.usable if int(t) in wanted], dtype=first.usable.dtype)
    same_segments = all(
        np.array_equal(p.usable, first.usable) and np.array_equal(p.segment_track, first.segment_track)
        for p in preds[1:]
    )
    if same_segments:
        how = (
            "the members cut the same segments: each segment's probabilities are the weighted mean of "
            "the members'; track probabilities are the mean of the track's segments"
        )
        return ensemble.combine([p.probs for p in preds]), first.segment_track, track_ids, how
    how = (
        "each member's track probabilities are the mean of its own segments; the ensemble's are their "
        "weighted mean (one row per track: segment figures are track figures)"
    )
    probs = ensemble.combine([_track_rows(p, track_ids) for p in preds])
    return probs, np.arange(len(track_ids), dtype=np.intp), track_ids, how


def evaluate_ensemble(
    ensemble: Ensemble,
    metadata_dir: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
    split: str | None = None,
    output_dir: str | os.PathLike | None = None,
    subset: str | None = None,
    *,
    workers: int | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Evaluate an ensemble on one of the dataset's splits and write the report naming its members.

    Arguments as :func:`genrekit.evaluate.evaluator.evaluate_model`; each member predicts from its
    own features, and the tracks scored are those every member has features for.
    """
    from genrekit.evaluate.evaluator import _checked_split, _write, predict_split
    from genrekit.evaluate.metrics import evaluate
    from genrekit.evaluate.report import check_report_dir

    split = _checked_split(split, subset)
    out = Path(output_dir) if output_dir is not None else default_ensemble_output_dir(ensemble, split)
    inputs = {
        p: f"member {i}'s files"
        for i, m in enumerate(ensemble.members, 1)
        for p in (m.model_path, m.config_path)
    }
    check_report_dir(out, inputs, plots)  # before any work
    preds = [
        predict_split(m.model_path, m.config_path, metadata_dir, audio_dir, split, subset, workers=workers)
        for m in ensemble.members
    ]
    probs, segment_track, track_ids, how = ensemble_probabilities(ensemble, preds)
    first = preds[0]
    labels = encode(first.targets.loc[track_ids], first.vocabs)
    failures = {f.track_id: f for p in preds for f in p.failures}
    results = evaluate(
        probs,
        {"top": labels.top, "medium": labels.medium, "all": labels.all},
        first.vocabs,
        segment_track,
        threshold=float(first.training_config.get("threshold", first.settings.threshold)),
        thresholds=ensemble.thresholds() if ensemble.tuned() else None,
        include_top=ensemble.include_top(),
        top_k=int(first.training_config.get("top_k", first.settings.top_k)),
        n_bins=first.settings.calibration_bins,
        n_defective_files=len(failures),
        track_ids=track_ids,
    )
    if ensemble.tuned():
        results["settings"]["thresholds"] = THRESHOLD_RULE
    results["run"] = _run_section(ensemble, preds, track_ids, list(failures.values()), how)
    _write(
        results,
        out,
        plots,
        first.settings.confusion_max_classes,
        ensemble.name,
        _run_markdown(results["run"]),
    )
    return results


def _run_section(
    ensemble: Ensemble, preds: Sequence[Any], track_ids: np.ndarray, failures: list[Any], how: str
) -> dict[str, Any]:
    from genrekit.evaluate.evaluator import _outside_vocabulary, run_section

    run = run_section(preds[0])
    members = ensemble.describe()
    for member, pred, single in zip(members, preds, (run_section(p) for p in preds), strict=True):
        member["model_sha256"] = single["model_sha256"]
        member["config_sha256"] = single["training_config_sha256"]
        member["cache_dir"] = single["cache_dir"]
        member["tracks_with_features"] = len(pred.usable)
    for key in ("model", "model_sha256", "training_config", "training_config_sha256", "cache_dir"):
        run.pop(key)
    run.update(
        {
            "ensemble": {
                "name": ensemble.name,
                "members": members,
                "thresholds": THRESHOLD_RULE if ensemble.tuned() else "the first member's fixed threshold",
                "include_top": ensemble.include_top(),
                "include_top_rule": INCLUDE_TOP_RULE,
            },
            "aggregation": how,
            "tracks_without_features": run["tracks_in_split"] - len(track_ids),
            "labels_outside_vocabulary": _outside_vocabulary(
                preds[0].targets.loc[track_ids], preds[0].vocabs
            ),
            "left_out_files": [
                {"track_id": f.track_id, "status": f.status, "reason": f.reason, "path": f.path}
                for f in failures
            ],
            "track_ids": [int(t) for t in track_ids],
        }
    )
    return run


def _run_markdown(run: Mapping[str, Any]) -> str:
    """The report's run section for an ensemble: one row per member, then what was scored."""
    ens = run["ensemble"]
    text = "## Run\n\n" + f"{ens['name'][0].upper()}{ens['name'][1:]}.\n\n"
    text += "| member | front end | weight | normalized | training config |\n| :--- | :--- | ---: | ---: | :--- |\n"
    for m in ens["members"]:
        text += (
            f"| `{m['model']}` (sha256 `{m['model_sha256'][:16]}`) | {m['frontend']} | {m['weight']:g} | "
            f"{m['normalized_weight']:.3f} | `{m['config']}` |\n"
        )
    outside = run["labels_outside_vocabulary"]
    rows = [
        ("Split", f"{run['split']}, subset {run['subset']}"),
        ("Tracks in the split", run["tracks_in_split"]),
        ("Tracks evaluated (features from every member)", len(run["track_ids"])),
        ("Defective or missing audio files left out", len(run["left_out_files"])),
        (
            "Tracks with a label the models never learned (masked at that level)",
            f"top {outside['top']}, medium {outside['medium']}, all genres {outside['all']}",
        ),
        ("All-genres thresholds", ens["thresholds"]),
        (
            "Top genre among the all-genres labels",
            f"{'yes' if ens['include_top'] else 'no'} ({ens['include_top_rule']})",
        ),
        ("Metadata", f"`{run['metadata_dir']}`"),
        ("Audio", f"`{run['audio_dir']}`"),
        ("Aggregation", run["aggregation"]),
        ("genrekit", run["genrekit_version"]),
    ]
    text += "\n| | |\n| :--- | :--- |\n" + "".join(f"| {k} | {str(v).replace('|', '/')} |\n" for k, v in rows)
    return text + "\n"
