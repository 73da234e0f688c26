"""The built-in demo dataset: synthetic music written exactly in FMA's on-disk layout.

``write_demo_dataset(root)`` writes ``root/fma_metadata/{tracks.csv, genres.csv, checksums}`` and
``root/fma_demo/NNN/NNNNNN.mp3`` so that every script runs end to end offline. It is a stand-in for
FMA, not a toy: a subset of the real genre tree (64 genres, 16 roots, real ids and titles), FMA's
top-genre imbalance, multi-label and multi-root tracks, an artist-filtered split, the subsets, and
the defective files real FMA has. Each root is a family of sounds (tempo, rhythm, register,
timbre), each sub-genre a variation of it, each artist a variation of that, with noise and overlap.

Defaults: 600 tracks (the largest top genre is then ~40x the smallest) of 30 s, as 22,050 Hz mono
MP3 (the rate and layout the pipeline converts every clip to; ``sample_rate=44100, channels=2``
gives FMA's usual format). A 10 s clip costs ~0.1 s of CPU to synthesize and ~0.12 s to encode at
22,050 Hz mono (44.1 kHz stereo: ~0.65 s to encode); ``benchmarks/bench_demo.py`` measures it.

This module writes the dataset (clips rendered and encoded in worker processes, resumable);
:mod:`genrekit.datasets.demo.metadata` makes the tables, :mod:`genrekit.datasets.demo.synth` the sound and
:mod:`genrekit.datasets.demo.mp3` the files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genrekit.datasets.demo.metadata import (
    DEFAULT_N_TRACKS,
    DEFECT_KINDS,
    DemoPlan,
    plan_demo,
    write_genres_csv,
    write_tracks_csv,
)
from genrekit.datasets.demo.mp3 import encode_mp3, first_frame_length, id3v24_tag
from genrekit.datasets.demo.synth import render_clip
from genrekit.errors import ConfigError, DatasetError
from genrekit.fileio import sha1_file, write_bytes_atomic
from genrekit.workers import run_pool, run_serial

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # bump when the generator changes what a given seed produces
DEFAULT_CLIP_SECONDS = 30.0  # FMA's clip length
# MP3 files at 22,050 Hz mono: what the pipeline resamples and downmixes every clip to anyway, and
# LAME (fixed at quality 2 by libsndfile) encodes them ~4x faster than 44.1 kHz stereo, which is most
# of the generation time (benchmarks/bench_demo.py). FMA itself has clips at several rates.
DEFAULT_SAMPLE_RATE = 22050
DEFAULT_CHANNELS = 1
METADATA_DIRNAME = "fma_metadata"
AUDIO_DIRNAME = "fma_demo"
MARKER_NAME = "demo_dataset.json"  # written last: its presence means the dataset is complete
PARTIAL_NAME = ".demo_dataset.partial.json"  # written first: parameters of a generation under way
JOB_TIMEOUT = 300.0  # seconds one clip may take to render and encode (600 s of 44.1 kHz stereo: ~15 s)


@dataclasses.dataclass(frozen=True)
class DemoInfo:
    """What :func:`write_demo_dataset` wrote and where.

    Attributes
    ----------
    root, metadata_dir, audio_dir : Path
        The dataset folder, its ``fma_metadata`` and its ``fma_demo`` (``NNN/NNNNNN.mp3``).
    n_tracks, n_genres, n_roots : int
        Rows of tracks.csv, rows of genres.csv and top-level genres.
    clip_seconds, sample_rate, channels, seed
        The parameters it was made with.
    split_counts, subset_counts : dict
        Tracks per ``('set', 'split')`` and per ``('set', 'subset')`` value.
    zero_length_ids, header_only_ids, truncated_ids, short_ids, missing_ids : tuple of int
        Defective tracks, as in real FMA: an empty file, an ID3 tag and one frame without audio
        (does not decode), the first 40% of a clip's bytes (decodes, shorter), a valid clip 40% as
        long, and a track listed in tracks.csv whose file does not exist.
    """

    root: Path
    metadata_dir: Path
    audio_dir: Path
    n_tracks: int
    n_genres: int
    n_roots: int
    clip_seconds: float
    sample_rate: int
    channels: int
    seed: int
    split_counts: dict[str, int]
    subset_counts: dict[str, int]
    zero_length_ids: tuple[int, ...]
    header_only_ids: tuple[int, ...]
    truncated_ids: tuple[int, ...]
    short_ids: tuple[int, ...]
    missing_ids: tuple[int, ...]

    @property
    def tracks_csv(self) -> Path:
        return self.metadata_dir / "tracks.csv"

    @property
    def genres_csv(self) -> Path:
        return self.metadata_dir / "genres.csv"

    @property
    def checksums(self) -> Path:
        return self.metadata_dir / "checksums"

    @property
    def defective_ids(self) -> tuple[int, ...]:
        """Every defective track, sorted."""
        return tuple(sorted(sum((getattr(self, f"{k}_ids") for k in DEFECT_KINDS), ())))

    @property
    def undecodable_ids(self) -> tuple[int, ...]:
        """Tracks whose audio cannot be read at all: zero-length, header-only and missing."""
        return tuple(sorted(self.zero_length_ids + self.header_only_ids + self.missing_ids))

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        for key in ("root", "metadata_dir", "audio_dir"):
            out[key] = str(out[key])
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any], root: Path) -> DemoInfo:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values.update(root=root, metadata_dir=root / METADATA_DIRNAME, audio_dir=root / AUDIO_DIRNAME)
        for kind in DEFECT_KINDS:
            values[f"{kind}_ids"] = tuple(int(i) for i in values[f"{kind}_ids"])
        return cls(**values)


def _render_job(job: dict[str, Any]) -> tuple[int, str | None]:
    """Worker: render, encode and write one track (atomically); return its id and sha1."""
    path = Path(job["path"])
    kind = job["kind"]
    if kind == "missing":
        return job["track_id"], None
    if kind == "zero_length":
        data = b""
    else:
        rng = np.random.default_rng([job["seed"], job["track_id"], 3])
        seconds = job["seconds"] * (0.4 if kind == "short" else 1.0)
        audio = render_clip(np.asarray(job["params"]), seconds, job["sample_rate"], job["channels"], rng)
        tag = id3v24_tag(job["tags"])
        mp3 = encode_mp3(audio, job["sample_rate"], job["kbps"])
        if kind == "header_only":
            mp3 = mp3[: first_frame_length(mp3)]
        elif kind == "truncated":
            mp3 = mp3[: int(len(mp3) * 0.4)]
        data = tag + mp3
    _write(path, data)
    return job["track_id"], hashlib.sha1(data).hexdigest()


def _write(path: Path, data: bytes) -> None:
    """Atomic, without fsync (as before): the demo files are many, small and can be made again."""
    write_bytes_atomic(path, data, fsync=False)


def audio_relpath(track_id: int) -> str:
    """``NNN/NNNNNN.mp3`` of a track, FMA's layout."""
    tid = f"{int(track_id):06d}"
    return f"{tid[:3]}/{tid}.mp3"


def _run_jobs(jobs: list[dict[str, Any]], workers: int, progress: bool) -> Iterable[tuple[int, str | None]]:
    """``(track id, sha1)`` of every job, in order, rendered in ``workers`` processes.

    Jobs that fail (an error, a worker that dies or hangs) do not stop the others; they are
    named in one :class:`DatasetError` at the end (a rerun completes the dataset).
    """
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc="demo audio", unit="clip", disable=not progress)
    if workers <= 1 or len(jobs) <= 1:
        outcomes = run_serial(_render_job, jobs)
    else:
        # One BLAS thread per worker (run_serial's items too): the renderer's small matrix
        # products would only fight, and its float32 sums depend on the thread count.
        outcomes = run_pool(_render_job, jobs, workers=workers, timeout=JOB_TIMEOUT, ordered=True)
    failed: list[str] = []
    try:
        for outcome in outcomes:
            if outcome.ok:
                yield outcome.value
            else:
                failed.append(f"{outcome.item['path']}: {outcome.reason}")
            bar.update()
    finally:
        outcomes.close()
        bar.close()
    if failed:
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        raise DatasetError(f"{len(failed)} demo clip(s) not written: {'; '.join(failed[:3])}{more}")


def _check_audio_args(clip_seconds: float, sample_rate: int, channels: int) -> None:
    if not (isinstance(clip_seconds, (int, float)) and 0 < clip_seconds <= 600):
        raise ConfigError(f"clip_seconds={clip_seconds!r} must be in (0, 600]")
    if sample_rate not in (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000):
        raise ConfigError(f"sample_rate={sample_rate!r} must be an MP3 sample rate, e.g. 44100 or 22050")
    if channels not in (1, 2):
        raise ConfigError(f"channels={channels!r} must be 1 or 2")


def _finished(root: Path, params: dict[str, Any], overwrite: bool) -> DemoInfo | None:
    """The record of a complete dataset made with ``params`` in ``root``, else None.

    Raises DatasetError when ``root`` holds one made with other parameters and not ``overwrite``.
    """
    marker = root / MARKER_NAME
    if not marker.is_file():
        return None
    stored = json.loads(marker.read_text())
    if stored.get("params") == params and (root / METADATA_DIRNAME / "tracks.csv").is_file():
        log.info("demo dataset already complete at %s", root)
        return DemoInfo.from_json(stored["info"], root)
    if not overwrite:
        raise DatasetError(
            f"{root} holds a demo dataset made with {stored.get('params')}, not {params}; "
            "pass overwrite=True (--overwrite) or choose another folder"
        )
    return None


def _start(root: Path, params: dict[str, Any], overwrite: bool) -> bool:
    """Clear what another generation left, or resume an interrupted one with the same ``params``
    (True); write the record of the generation under way."""
    marker, partial = root / MARKER_NAME, root / PARTIAL_NAME
    metadata_dir, audio_dir = root / METADATA_DIRNAME, root / AUDIO_DIRNAME
    resuming = partial.is_file() and json.loads(partial.read_text()) == params
    if overwrite or (partial.is_file() and not resuming) or marker.is_file():
        for path in (marker, partial):
            path.unlink(missing_ok=True)
        for folder in (metadata_dir, audio_dir):
            shutil.rmtree(folder, ignore_errors=True)
        resuming = False
    elif not resuming and (metadata_dir.exists() or audio_dir.exists()):
        raise DatasetError(
            f"{root} already has {METADATA_DIRNAME}/ or {AUDIO_DIRNAME}/ that write_demo_dataset did not "
            "write; choose an empty folder for the demo dataset or pass overwrite=True"
        )
    root.mkdir(parents=True, exist_ok=True)
    _write(partial, json.dumps(params).encode())
    return resuming


def _id3_tags(row: pd.Series, title: dict[int, str]) -> dict[str, str]:
    """A track's ID3 frames from its row of tracks.csv (``title``: genre id -> title)."""
    genre_names = [title[g] for g in row[("track", "genres")]]
    return {
        "TIT2": str(row[("track", "title")]),
        "TPE1": str(row[("artist", "name")]),
        "TALB": str(row[("album", "title")]),
        "TRCK": str(row[("track", "number")]),
        "TCON": ", ".join(genre_names),
        "TDRC": str(pd.Timestamp(row[("track", "date_created")]).year),
    }


def _jobs(
    plan: DemoPlan, audio_dir: Path, audio: dict[str, Any], resuming: bool
) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The clips to write (one job each) and the sha1 of those an interrupted run already wrote.

    ``audio``: the job fields every clip shares (seed, seconds, sample_rate, channels).
    """
    tracks = plan.tracks
    kind_of = {tid: kind for kind, ids in plan.defects.items() for tid in ids}
    title = dict(zip(plan.genres.index, plan.genres["title"], strict=True))
    jobs, sha1 = [], {}
    for i, tid in enumerate(tracks.index):
        tid = int(tid)
        path = audio_dir / audio_relpath(tid)
        if resuming and path.is_file():
            sha1[tid] = sha1_file(path)
            continue
        row = tracks.iloc[i]
        jobs.append(
            {
                "track_id": tid,
                "path": str(path),
                "kind": kind_of.get(tid, "ok"),
                **audio,
                "kbps": int(row[("track", "bit_rate")]) // 1000,
                "params": plan.params[i].tolist(),
                "tags": _id3_tags(row, title),
            }
        )
    return jobs, sha1


def _write_checksums_and_readme(root: Path, sha1: dict[int, str]) -> None:
    lines = "".join(f"{sha1[t]}  {audio_relpath(t)}\n" for t in sorted(sha1))
    _write(root / METADATA_DIRNAME / "checksums", lines.encode())
    _write(root / AUDIO_DIRNAME / "checksums", lines.encode())
    _write(
        root / "README.txt",
        (
            "genrekit demo dataset: synthetic clips in the layout of FMA (github.com/mdeff/fma).\n"
            "Not real music: made by genrekit.datasets.demo.writer.write_demo_dataset with the parameters in "
            f"{MARKER_NAME}.\n"
        ).encode(),
    )


def _info(root: Path, plan: DemoPlan, audio: dict[str, Any]) -> DemoInfo:
    """The record of what was written (``audio``: seed, seconds, sample_rate, channels)."""
    tracks = plan.tracks
    return DemoInfo(
        root=root,
        metadata_dir=root / METADATA_DIRNAME,
        audio_dir=root / AUDIO_DIRNAME,
        n_tracks=len(tracks),
        n_genres=len(plan.genres),
        n_roots=int((plan.genres["parent"] == 0).sum()),
        clip_seconds=audio["seconds"],
        sample_rate=audio["sample_rate"],
        channels=audio["channels"],
        seed=audio["seed"],
        split_counts={k: int(v) for k, v in tracks[("set", "split")].value_counts().sort_index().items()},
        subset_counts={
            str(k): int(v) for k, v in tracks[("set", "subset")].value_counts().sort_index().items()
        },
        **{f"{k}_ids": tuple(v) for k, v in plan.defects.items()},
    )


def write_demo_dataset(
    root: str | Path,
    n_tracks: int = DEFAULT_N_TRACKS,
    clip_seconds: float = DEFAULT_CLIP_SECONDS,
    seed: int = 0,
    workers: int | None = None,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    channels: int = DEFAULT_CHANNELS,
    progress: bool = True,
    overwrite: bool = False,
    max_imbalance: float | None = None,
) -> DemoInfo:
    """Write the demo dataset in FMA's layout under ``root``.

    ``root/fma_metadata/{tracks.csv, genres.csv, checksums}`` and ``root/fma_demo/NNN/NNNNNN.mp3``
    (the same ``checksums`` also sits in ``fma_demo/``, as in FMA's audio archives). Idempotent: a
    complete dataset made with the same parameters is returned at once; an interrupted one is
    completed (every file is written atomically and ``demo_dataset.json``, written last, marks it
    complete).

    Parameters
    ----------
    root : str or Path
        The dataset's own folder (``config.DEMO_DIR``), never an FMA folder.
    n_tracks : int
        Tracks in tracks.csv (>= 20); ~0.2% of them (at least one per kind) are defective files.
    clip_seconds : float
        Length of each clip; FMA's are 30 s. 2-5 s keeps tests fast.
    seed : int
        The same seed and sizes give byte-identical files.
    workers : int or None
        Processes rendering and encoding clips; None or 0 = all CPU cores, 1 = in this process.
    sample_rate, channels : int
        22,050 Hz mono by default (the pipeline's own rate; ~4x faster to encode than FMA's usual
        44,100 Hz stereo, which stays available).
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Delete a demo dataset made with other parameters (only its own files) and write anew.
    max_imbalance : float, optional
        Cap FMA's top-genre imbalance (see :func:`make_demo_metadata`); the sound of each genre is
        unchanged. None (default): FMA's shape.

    Returns
    -------
    DemoInfo
        Paths, counts and the ids of each kind of defective file.

    Raises
    ------
    ConfigError
        A parameter out of range.
    DatasetError
        ``root`` holds a dataset made with other parameters, or FMA folders this function did not
        write, and ``overwrite`` is false.
    """
    root = Path(root)
    _check_audio_args(clip_seconds, sample_rate, channels)
    params = {
        "format_version": FORMAT_VERSION,
        "n_tracks": n_tracks,
        "clip_seconds": float(clip_seconds),
        "seed": seed,
        "sample_rate": sample_rate,
        "channels": channels,
    }
    if max_imbalance is not None:  # only when given, so datasets made before still match
        params["max_imbalance"] = float(max_imbalance)
    done = _finished(root, params, overwrite)
    if done is not None:
        return done
    resuming = _start(root, params, overwrite)

    plan = plan_demo(n_tracks, seed, max_imbalance=max_imbalance)
    metadata_dir, audio_dir = root / METADATA_DIRNAME, root / AUDIO_DIRNAME
    write_tracks_csv(plan.tracks, metadata_dir / "tracks.csv")
    write_genres_csv(plan.genres, metadata_dir / "genres.csv")
    audio = {"seed": seed, "seconds": float(clip_seconds), "sample_rate": sample_rate, "channels": channels}
    jobs, sha1 = _jobs(plan, audio_dir, audio, resuming)
    workers = int(workers) if workers else (os.cpu_count() or 1)
    log.info(
        "writing %d demo clips of %.1f s to %s with %d worker(s)", len(jobs), clip_seconds, audio_dir, workers
    )
    for tid, digest in _run_jobs(jobs, workers, progress):
        if digest is not None:
            sha1[tid] = digest
    _write_checksums_and_readme(root, sha1)

    info = _info(root, plan, audio)
    _write(root / MARKER_NAME, json.dumps({"params": params, "info": info.to_json()}, indent=1).encode())
    (root / PARTIAL_NAME).unlink(missing_ok=True)
    log.info("demo dataset complete: %d tracks, %d genres at %s", info.n_tracks, info.n_genres, root)
    return info
