"""Dataset inspection: structure, label distributions per level, balance, audio and path checks.

Backs ``fma_inspector.py``. Everything here reads metadata and stats files; nothing decodes audio
(the audio probe reads a file's first bytes only) and nothing imports TensorFlow.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrekit.datasets import fma
from genrekit.datasets.base import Dataset, FMADataset, LabelledDataset, from_settings
from genrekit.datasets.labels import MASKED, check_artist_filtered
from genrekit.errors import DatasetError
from genrekit.fileio import (
    OutputKind,
    check_output_dir,
    check_output_path,
    json_kind,
    replacing,
    write_text_atomic,
)
from genrekit.paths import SETUP_HINTS
from genrekit.settings import Settings
from genrekit.train import balancing

log = logging.getLogger(__name__)

MP3_MAGIC = (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xfa", b"\xff\xe3")
AUDIO_MAGIC = MP3_MAGIC + (b"RIFF", b"fLaC", b"OggS", b".snd", b"FORM")  # .au, AIFF too


def load_dataset(
    settings: Settings,
    metadata_dir: str | os.PathLike | None = None,
    audio_dir: str | os.PathLike | None = None,
) -> LabelledDataset:
    """The dataset exactly as the trainer sees it (same source, subset, labels, vocabularies)."""
    return from_settings(settings, metadata_dir, audio_dir).load()


def _source(ds: LabelledDataset) -> Dataset:
    if ds.dataset is None:
        raise DatasetError("the inspector needs a LabelledDataset loaded from its Dataset (Dataset.load)")
    return ds.dataset


def probe_audio(path: Path) -> str:
    """'ok', 'missing', 'empty' or 'unreadable' from the file's size and first bytes."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError:
        return "unreadable"
    if size == 0:
        return "empty"
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return "unreadable"
    return "ok" if head.startswith(AUDIO_MAGIC) else "unreadable"


def probe_audio_files(
    dataset: Dataset | str | os.PathLike, track_ids: Iterable[int], limit_listed: int = 50
) -> dict[str, Any]:
    """Counts of present / missing / empty / unreadable files, with the first ids of each problem.

    ``dataset`` is a :class:`~genrekit.datasets.base.Dataset` (its audio paths), or an FMA-layout audio folder.
    """
    if not hasattr(dataset, "audio_path"):
        dataset = FMADataset(dataset, dataset)  # only its audio folder is used
    audio_dir = Path(dataset.audio_dir)
    counts = {"ok": 0, "missing": 0, "empty": 0, "unreadable": 0}
    examples: dict[str, list[int]] = {"missing": [], "empty": [], "unreadable": []}
    if not audio_dir.is_dir():
        return {"audio_dir": str(audio_dir), "exists": False, **counts}
    for tid in track_ids:
        state = probe_audio(dataset.audio_path(tid))
        counts[state] += 1
        if state != "ok" and len(examples[state]) < limit_listed:
            examples[state].append(int(tid))
    return {"audio_dir": str(audio_dir), "exists": True, **counts, "examples": examples}


def sampling_thresholds(ds: LabelledDataset, settings: Settings) -> dict[str, Any]:
    """The oversample/undersample thresholds the trainer's sampler will use on this training split.

    ``mode`` is ``settings.sampling_thresholds``; ``labelled_training_tracks`` counts the training
    tracks with a top-level target in the metadata, as the trainer does
    (``LabelledDataset.n_labelled_training``; defective files do not change it).
    """
    n = ds.n_labelled_training
    over, under = balancing.effective_thresholds(settings, n)
    return {
        "mode": settings.sampling_thresholds,
        "oversample": over,
        "undersample": under,
        "labelled_training_tracks": n,
        "given": [settings.oversample_threshold, settings.undersample_threshold],
    }


def level_table(ds: LabelledDataset, level: str, settings: Settings) -> pd.DataFrame:
    """Per class at a level: training count, share, class weight, sampling action, all-split count."""
    vocab = ds.vocabs[level]
    train = ds.labels("training")
    everything = ds.labels(None)
    if level == "all":
        counts = train.all.sum(axis=0).astype(np.int64)
        total = everything.all.sum(axis=0).astype(np.int64)
        weights = balancing.head_pos_weights(train.all, settings.max_class_weight)
    else:
        counts = balancing.class_counts(getattr(train, level), len(vocab))
        total = balancing.class_counts(getattr(everything, level), len(vocab))
        weights = balancing.class_weights(counts, settings.max_class_weight)
    if level == "top":
        th = sampling_thresholds(ds, settings)
        actions = [balancing.sampling_action(int(c), th["oversample"], th["undersample"]) for c in counts]
    else:
        actions = ["follows top genre"] * len(vocab)
    table = pd.DataFrame(
        {
            "genre_id": vocab.genre_ids,
            "genre": vocab.names,
            "path": vocab.paths,
            "train_tracks": counts,
            "share": counts / max(counts.sum(), 1),
            "weight": weights,
            "sampling": actions,
            "all_tracks": total,
        }
    )
    return table.sort_values("train_tracks", ascending=False).reset_index(drop=True)


def imbalance(counts: np.ndarray) -> float:
    counts = np.asarray(counts)
    counts = counts[counts > 0]
    return float(counts.max() / counts.min()) if len(counts) else float("nan")


def analyze(ds: LabelledDataset, settings: Settings, probe_audio_dir: bool = True) -> dict[str, Any]:
    """The full analysis as a JSON-serializable dict."""
    source, targets = _source(ds), ds.targets
    levels = {}
    for level in ds.heads:  # no medium level without sub-genres (no medium head)
        table = level_table(ds, level, settings)
        levels[level] = {
            "n_classes": len(ds.vocabs[level]),
            "imbalance_ratio": imbalance(table["train_tracks"].to_numpy()),
            "largest": table.iloc[0][["genre", "train_tracks"]].to_dict(),
            "smallest": table.iloc[-1][["genre", "train_tracks"]].to_dict(),
            # Not table.to_json: its encoder refuses a genre named by a folder that is not UTF-8.
            "classes": table.astype(object).where(table.notna(), None).to_dict(orient="records"),
        }
    n_labels = np.array([len(a) for a in targets["all"]])
    report = {
        "metadata_dir": str(source.metadata_dir),
        "audio_dir": str(source.audio_dir),
        "subset": source.subset,
        "n_tracks": len(targets),
        "tracks_per_split": {s: int((targets["split"] == s).sum()) for s in fma.SPLITS},
        "tracks_per_subset_and_split": fma.subset_split_counts(
            pd.DataFrame({("set", "subset"): targets["subset"], ("set", "split"): targets["split"]})
        )
        if source.subset  # a source without FMA's subsets (genrekit.datasets.own) has none
        else {},
        "genre_tree": {
            "genres": len(ds.tree),
            "roots": len(ds.tree.roots),
            "non_roots": len(ds.tree.non_roots),
            "max_depth": max(ds.tree.depth.values()),
        },
        "genre_top_coverage": float((targets["top"] != MASKED).mean()),
        "medium_coverage": float((targets["medium"] != MASKED).mean()),
        "labels_per_track": {
            "mean": float(n_labels.mean()) if len(n_labels) else 0.0,
            "max": int(n_labels.max()) if len(n_labels) else 0,
            "histogram": {
                int(k): int(v) for k, v in zip(*np.unique(n_labels, return_counts=True), strict=True)
            },
        },
        "multi_root_tracks": int(sum(len({ds.tree.root_of[g] for g in a}) > 1 for a in targets["all"])),
        "artists_in_several_splits": check_artist_filtered(targets),
        "skipped_tracks": {str(k): v for k, v in ds.skipped.items()},
        "levels": levels,
        "sampling_thresholds": sampling_thresholds(ds, settings),
    }
    if probe_audio_dir:
        report["audio"] = probe_audio_files(source, targets.index)
    return report


def balance_config(ds: LabelledDataset, settings: Settings) -> dict[str, Any]:
    """The balancing configuration: settings usable with ``--config`` plus the per-class analysis.

    Keys starting with ``_`` are notes that ``--config`` ignores: the trainer recomputes the
    weights from the training split it actually trains on.
    """
    analysis = {}
    for level in ds.heads:  # no medium level without sub-genres (no medium head)
        table = level_table(ds, level, settings)
        analysis[level] = {
            row.genre: {
                "tracks": int(row.train_tracks),
                "weight": round(float(row.weight), 4),
                "sampling": row.sampling,
            }
            for row in table.itertuples()
        }
    top = level_table(ds, "top", settings)
    return {
        "_comment": (
            "Balancing configuration generated by fma_inspector.py --generate_config. Use it with "
            "--config; keys starting with '_' are notes. Class weights: n_samples / (n_classes * "
            "n_samples_per_class), computed on the training split."
        ),
        "metadata_dir": str(_source(ds).metadata_dir),
        "audio_dir": str(_source(ds).audio_dir),
        "subset": _source(ds).subset,
        "use_class_weights": settings.use_class_weights,
        "use_weighted_sampling": settings.use_weighted_sampling,
        "use_focal_loss": settings.use_focal_loss,
        "oversample_threshold": settings.oversample_threshold,
        "undersample_threshold": settings.undersample_threshold,
        "sampling_thresholds": settings.sampling_thresholds,
        "_effective_thresholds": sampling_thresholds(ds, settings),
        "focal_gamma": settings.focal_gamma,
        "max_class_weight": settings.max_class_weight,
        "_oversampled": top.genre[top.sampling == balancing.OVERSAMPLE].tolist(),
        "_undersampled": top.genre[top.sampling == balancing.UNDERSAMPLE].tolist(),
        "_class_weights": analysis,
    }


def check_paths(
    settings: Settings, metadata_dir: str | None = None, audio_dir: str | None = None
) -> list[dict[str, str]]:
    """Each configured path with its state and, when wrong, the command that fixes it."""
    metadata = Path(metadata_dir or settings.metadata_dir)
    audio = Path(audio_dir or settings.audio_dir)
    rows = []

    def add(name: str, path: Path, ok: bool, problem: str, fix: str) -> None:
        rows.append(
            {
                "name": name,
                "path": str(path),
                "ok": ok,
                "problem": "" if ok else problem,
                "fix": "" if ok else fix,
            }
        )

    add("metadata folder", metadata, metadata.is_dir(), "does not exist", SETUP_HINTS["metadata"])
    for name in ("tracks.csv", "genres.csv"):
        add(name, metadata / name, (metadata / name).is_file(), "missing", SETUP_HINTS["metadata"])
    add("audio folder", audio, audio.is_dir(), "does not exist", SETUP_HINTS["audio"])
    if audio.is_dir():
        has_tree = any(p.is_dir() and p.name.isdigit() and len(p.name) == 3 for p in audio.iterdir())
        add("audio layout", audio / "NNN", has_tree, "no NNN/ sub-folders of MP3s", SETUP_HINTS["audio"])
    demo = Path(settings.data_dir) / "demo"
    add(
        "demo dataset (optional)",
        demo,
        (demo / "fma_metadata" / "tracks.csv").is_file(),
        "not generated",
        SETUP_HINTS["demo"],
    )
    out_parent = Path(settings.output_dir).resolve().parent
    while not out_parent.exists():
        out_parent = out_parent.parent
    add(
        "output folder parent",
        out_parent,
        os.access(out_parent, os.W_OK),
        "not writable",
        "choose --output_dir",
    )
    return rows


def plot_distributions(ds: LabelledDataset, settings: Settings, out_dir: Path) -> list[Path]:
    """One PNG per level: training tracks per class (log scale), largest first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for level in ds.heads:  # no medium level without sub-genres (no medium head)
        table = level_table(ds, level, settings)
        shown = table.head(40)
        height = max(3.0, 0.28 * len(shown) + 1.2)
        fig, ax = plt.subplots(figsize=(8, height))
        colors = {"oversample": "#d95f02", "undersample": "#7570b3", "keep": "#1b9e77"}
        palette = [colors.get(a, "#1b9e77") for a in shown.sampling]
        sns.barplot(
            x=shown.train_tracks, y=shown.genre, hue=shown.genre, palette=palette, legend=False, ax=ax
        )
        ax.set_xscale("log")
        for y, value in enumerate(shown.train_tracks):
            ax.text(value, y, f" {value}", va="center", fontsize=8)
        more = f" (largest 40 of {len(table)})" if len(table) > 40 else ""
        ax.set_title(f"{level} level: training tracks per genre{more}")
        ax.set_xlabel("training tracks (log scale)")
        ax.set_ylabel("")
        if level == "top":
            from matplotlib.lines import Line2D
            from matplotlib.patches import Patch

            th = sampling_thresholds(ds, settings)
            over, under, mode = th["oversample"], th["undersample"], th["mode"]
            ax.axvline(over, color="grey", linestyle=":", linewidth=1)
            ax.axvline(under, color="grey", linestyle="--", linewidth=1)
            ax.legend(
                handles=[
                    Patch(color=colors["oversample"], label=f"oversampled (< {over})"),
                    Patch(color=colors["keep"], label="kept"),
                    Patch(color=colors["undersample"], label=f"undersampled (> {under})"),
                    Line2D([], [], color="grey", linestyle=":", label=f"oversample threshold ({mode})"),
                    Line2D([], [], color="grey", linestyle="--", label=f"undersample threshold ({mode})"),
                ],
                loc="lower right",
                fontsize=8,
            )
        fig.tight_layout()
        path = out_dir / f"distribution_{level}.png"
        with replacing(path) as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


REPORT_NAME = "inspection_report.json"
PLOT_LEVELS = ("top", "medium", "all")  # distribution_<level>.png, one per head the dataset has
# What an earlier inspector output must look like to be replaced (the output policy of genrekit.fileio).
INSPECTION_JSON = json_kind("genrekit inspection report (JSON)", "metadata_dir")
_BALANCING_HEAD = re.compile(rb'\A\s*\{\s*"_comment"\s*:\s*"Balancing configuration generated by')
BALANCING_JSON = OutputKind(
    "genrekit balancing config (JSON)", lambda head: _BALANCING_HEAD.match(head) is not None
)


def check_report_dir(out_dir: str | os.PathLike, plots: bool = True) -> Path:
    """The output policy (:func:`genrekit.fileio.check_output_dir`) for the inspector's report folder,
    before the dataset is read: every plot name a dataset may need is checked (its heads are not
    known yet)."""
    from genrekit.evaluate.plots import MATPLOTLIB_PNG

    files = {REPORT_NAME: INSPECTION_JSON}
    if plots:
        files.update({f"distribution_{level}.png": MATPLOTLIB_PNG for level in PLOT_LEVELS})
    return check_output_dir(out_dir, files)


def check_balancing_path(path: str | os.PathLike) -> Path:
    """The output policy for ``--generate_config``'s file, before the dataset is read."""
    return check_output_path(path, BALANCING_JSON, what="--generate_config")


def write_json(data: Any, path: Path) -> None:
    """Write JSON atomically (no final newline, as before)."""
    write_text_atomic(path, json.dumps(data, indent=2, default=_json_default), fsync=False)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
