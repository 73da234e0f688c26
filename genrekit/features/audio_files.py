"""Audio files to predict: which files of a folder are audio, how each is cut into segments, and
decoding them (in worker processes) by exactly the code and parameters of training.

:mod:`genrekit.infer.predict` runs the model on what :func:`decode_parallel` yields.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.engine import Engine, get_engine
from genrekit.errors import AudioDecodeError
from genrekit.features.content import content_of
from genrekit.features.decode import decodable_length, decoded_length
from genrekit.features.frontends import FrontEnd
from genrekit.features.mel import load_segments, load_track_segments, segment_starts
from genrekit.features.params import FeatureParams
from genrekit.workers import Outcome, reason_of

# Extensions decoded (what libsndfile reads); other files in a folder are skipped and counted.
AUDIO_EXTENSIONS = frozenset(
    {".mp3", ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc", ".au", ".caf"}
    | {".w64", ".rf64", ".snd"}
)
# Audio that libsndfile cannot read: reported as errors (the user has music there), not skipped.
UNSUPPORTED_AUDIO = frozenset({".m4a", ".mp4", ".aac", ".wma", ".alac", ".ape", ".mka", ".webm"})
# A file up to this much longer than the training clip duration is treated as a training clip
# (FMA's "30 s" clips are 29.9-30.1 s): its first ``duration`` seconds, as in training.
CLIP_TOLERANCE_SECONDS = 1.0
# Seconds one file may take to decode before its worker is killed and the file reported; whole
# tracks are decoded here (an hour of audio: ~30 s), not only 30 s clips as in the cache.
DECODE_TIMEOUT = 600.0


@dataclasses.dataclass(frozen=True)
class SegmentPlan:
    """Where the segments of one file are taken, decided from its length alone.

    ``mode`` is ``clip`` (up to ``duration`` + 1 s long: the first ``duration`` seconds and
    ``num_segments`` segments, exactly as training), ``short`` (fewer whole segments fit: that
    many, with a warning) or ``track`` (longer: segments spread over the whole track, or one
    every ``hop_seconds``).
    """

    mode: str
    starts: np.ndarray  # first spectrogram frame of each segment
    seconds: float  # length of the file
    warning: str | None = None


def plan_segments(frames: int, rate: int, params: FeatureParams, hop_seconds: float = 0.0) -> SegmentPlan:
    """Decide how a file of ``frames`` samples at ``rate`` Hz is cut into segments.

    Mirrors the placement rules of :func:`genrekit.features.mel.load_segments` and
    :func:`~genrekit.features.mel.load_track_segments`.

    Raises
    ------
    AudioDecodeError
        When not even ``params.min_segments`` whole segments fit.
    """
    sr, hop, width = params.sample_rate, params.hop_length, params.segment_frames
    seconds = frames / rate
    length = -(-frames * sr // rate)
    if seconds <= params.duration + CLIP_TOLERANCE_SECONDS:
        clip_length = min(length, int(round(params.duration * sr)))
        total = 1 + clip_length // hop
        fit = total // width
        if fit < params.min_segments:
            need = params.min_segments * width * hop / sr
            raise AudioDecodeError(
                f"too short: {seconds:.2f} s of audio, at least {need:.2f} s needed for "
                f"{params.min_segments} segment(s)"
            )
        if fit >= params.num_segments or clip_length >= int(round(params.duration * sr)):
            return SegmentPlan("clip", segment_starts(total, params.num_segments, width), seconds)
        warning = (
            f"short file ({seconds:.2f} s): {fit} segment(s) instead of {params.num_segments}, "
            "the prediction is less reliable"
        )
        return SegmentPlan("short", segment_starts(total, fit, width), seconds, warning)
    total = 1 + length // hop
    if hop_seconds > 0:
        step = max(1, int(round(hop_seconds * sr / hop)))
        starts = np.arange(0, total - width + 1, step, dtype=np.int64)
    else:
        starts = segment_starts(total, params.num_segments, width)
    return SegmentPlan("track", starts, seconds)


@dataclasses.dataclass
class Decoded:
    """One file after decoding: its segments (float16, as the training cache stores them) or an error."""

    key: str
    path: str
    segments: np.ndarray | None = None
    info: dict[str, Any] | None = None
    error: str | None = None


def decode_file(
    key: str, path: str | os.PathLike, params: FeatureParams | FrontEnd, hop_seconds: float = 0.0
) -> Decoded:
    """Decode one file into segments; never raises for a bad file (the error is in the result).

    The segments are rounded to float16 because the training feature cache stores them so: a
    clip gives the model exactly the input it gets in training and evaluation.
    """
    path = str(path)
    suffix = Path(path).suffix.lower()
    if suffix in UNSUPPORTED_AUDIO:
        return Decoded(key, path, error=f"unsupported format {suffix} (readable: MP3, WAV, FLAC, OGG, AIFF)")
    if not isinstance(params, FeatureParams):  # another front end: its rows, as the cache holds them
        return _decode_frontend(key, path, params)

    def load(plan: SegmentPlan, notes: list[str]) -> np.ndarray:
        if plan.mode == "clip":
            return load_segments(path, params, notes=notes)
        if plan.mode == "short":
            return load_track_segments(path, params, num_segments=len(plan.starts), notes=notes)
        return load_track_segments(path, params, hop_seconds=hop_seconds, notes=notes)

    try:
        frames, rate, channels = decoded_length(path)
        plan = plan_segments(frames, rate, params, hop_seconds)
        notes: list[str] = []
        segments = load(plan, notes)
        if notes and (decodable := decodable_length(path)) != frames:
            # A cut file (genrekit.features.mel's truncation rule): segments are placed as for a file of
            # the length that decodes, so it is predicted like a short file of that length (a cut
            # Ogg file declares no other length: its plan stands).
            plan = plan_segments(decodable, rate, params, hop_seconds)
            notes = []
            segments = load(plan, notes)
    except AudioDecodeError as exc:
        return Decoded(key, path, error=reason_of(exc, path))
    except Exception as exc:  # one odd file must never stop a folder run
        return Decoded(key, path, error=f"unexpected {type(exc).__name__}: {reason_of(exc, path)}")
    starts = plan.starts if len(plan.starts) == len(segments) else None
    info = {
        "duration_seconds": round(plan.seconds, 3),
        "sample_rate": rate,
        "channels": channels,
        "segment_mode": plan.mode,
        "segment_starts": (
            [round(float(s) * params.hop_length / params.sample_rate, 3) for s in starts]
            if starts is not None
            else [None] * len(segments)
        ),
        "warnings": notes + ([plan.warning] if plan.warning else []),
        "content": content_of(segments, params, starts),  # silence, noise, a tone, clicks? (cheap)
    }
    return Decoded(key, path, segments.astype(np.float16), info)


def _decode_frontend(key: str, path: str, frontend: FrontEnd) -> Decoded:
    """A file through a front end other than log-mel segments (e.g. musicnn embeddings): its
    cache row, one model input per patch, the patches spread over the file as in training."""
    try:
        frames, rate, channels = decoded_length(path)
        notes: list[str] = []
        rows = frontend.load(path, notes=notes)
    except AudioDecodeError as exc:
        return Decoded(key, path, error=reason_of(exc, path))
    except Exception as exc:  # one odd file must never stop a folder run
        return Decoded(key, path, error=f"unexpected {type(exc).__name__}: {reason_of(exc, path)}")
    info = {
        "duration_seconds": round(frames / rate, 3),
        "sample_rate": rate,
        "channels": channels,
        "segment_mode": "clip",
        "segment_starts": [None] * len(rows),
        "warnings": notes,
        "content": content_of_file(path),  # the rows are not log-mel dB: one more decode
    }
    return Decoded(key, path, rows.astype(np.float16), info)


def _decode_item(item: tuple[str, str], params: FeatureParams | FrontEnd, hop_seconds: float) -> Decoded:
    key, path = item
    return decode_file(key, path, params, hop_seconds)


def decode_parallel(
    items: list[tuple[str, str]],
    params: FeatureParams | FrontEnd,
    hop_seconds: float,
    workers: int,
    quiet: bool = True,
    timeout: float = DECODE_TIMEOUT,
    engine: str | Engine | None = None,
) -> Iterator[Decoded]:
    """Decode ``items`` ((key, path)) in ``workers`` spawned processes; yield results as they finish.

    At most ``2 x workers`` files are in flight, so memory stays bounded when the consumer (the
    model) is slower than decoding. A worker that dies (a decoder crash) or takes more than
    ``timeout`` seconds on a file does not stop the run: that file is reported as an error and a
    fresh worker goes on (:func:`genrekit.workers.run_pool`). ``quiet``: the native decoders'
    messages on stderr are dropped. ``engine``: where the workers run (:mod:`genrekit.engine`;
    default the local pool).
    """
    outcomes = decoding_pool(
        _decode_item,
        items,
        params,
        engine=engine,
        workers=workers,
        args=(params, hop_seconds),
        timeout=timeout,
        stderr_path=os.devnull if quiet else None,
        crashed_reason="the decoder crashed on this file (worker process died)",
    )
    for outcome in outcomes:
        yield outcome.value if outcome.ok else Decoded(*outcome.item, error=outcome.reason)


def decoding_pool(
    func: Callable[..., Any],
    items: Iterable[Any],
    frontend: FeatureParams | FrontEnd,
    engine: str | Engine | None = None,
    **options: Any,
) -> Iterator[Outcome]:
    """An engine's worker pool for decoding audio (the feature cache, folder inference).

    Two files in flight per worker, so none waits for the main process; a front end that loads a
    model in each worker (a backbone: ``startup_seconds`` > 0) gets that allowance on a worker's
    first file, and a GPU where the engine has some; a hang is reported in decoding's words.
    ``engine``: :func:`genrekit.engine.get_engine`'s (default the local pool); ``options`` are
    :func:`genrekit.workers.run_pool`'s.
    """
    startup = float(getattr(frontend, "startup_seconds", 0.0))
    return get_engine(engine).map(
        func,
        items,
        in_flight=2,
        uses_model=startup > 0,
        first_item_allowance=startup,
        timeout_reason="decoding took more than {timeout:g} s (hang); worker killed",
        **options,
    )


def list_audio_files(folder: Path, recursive: bool = False) -> tuple[list[Path], list[Path]]:
    """``(audio files, other files)`` of a folder, sorted; hidden files and folders are left out."""
    audio, other = [], []
    if recursive:
        walker = os.walk(folder)
    else:
        # As os.walk lists a folder (non-folders, links that cannot be resolved included), so
        # a symlink loop or a FIFO is reported per file in both modes, never a traceback.
        root, _, files = next(os.walk(folder), (str(folder), [], []))
        walker = iter([(root, [], files)])
    for root, dirs, files in walker:
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(root) / name
            if name.startswith("."):  # .DS_Store, macOS ._name.mp3 resource forks
                continue
            suffix = path.suffix.lower()
            (audio if suffix in AUDIO_EXTENSIONS | UNSUPPORTED_AUDIO else other).append(path)
    return sorted(audio), sorted(other)


def content_of_file(path: str | os.PathLike, params: FeatureParams | None = None) -> dict[str, Any] | None:
    """The ``content`` of an audio file through the log-mel segments inference would cut from it
    (default features): for a front end whose model input is not log-mel dB (a backbone's
    embeddings); one more decode. None when the file gives no segments (the front end reports why)."""
    decoded = decode_file(str(path), path, params or FeatureParams())
    return None if decoded.info is None else decoded.info["content"]
