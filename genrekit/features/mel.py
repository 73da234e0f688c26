"""Audio to log-mel segments: the one decode + mel path shared by training, evaluation and inference.

An audio file (MP3, WAV, FLAC, OGG: whatever libsndfile reads) becomes ``num_segments`` segments
of ``segment_frames`` log-mel frames, float32 of shape ``(S, n_mels, segment_frames)``:

1. Only the first ``duration`` seconds count (FMA clips are 30 s). The clip's length ``L`` in
   output samples is ``min(ceil(frames * sample_rate / file_rate), duration * sample_rate)``; its
   spectrogram has ``T = 1 + L // hop_length`` centred frames (librosa's ``center=True``, zeros
   beyond both ends).
2. Segments start at frames ``round(linspace(0, T - F, S))`` (``F = segment_frames``): spread
   evenly, first one at the start and last one at the end of the clip. **Short clips:** a clip
   that holds at least ``min_segments`` whole, disjoint segments (``T // F >= min_segments``)
   still gives ``S`` segments, which then overlap; no zero padding is ever invented. A shorter
   clip raises :class:`~genrekit.errors.AudioDecodeError` ("too short").
   **Truncated files** (cut downloads: decoding stops well before the length the header
   declares) follow the same rule on the part that decodes, when the caller passes ``notes``
   (the feature cache and inference do, so training, evaluation and inference agree): that part
   is used if it holds ``min_segments`` whole segments, and a note says so (failures.csv status
   ``truncated`` for a cached track, a warning in an inference result); else the file is refused.
3. Only the audio those frames need is decoded: each segment's region (plus a 20 ms resampler
   margin) is read with libsndfile's sample-exact seeking, regions closer than 0.1 s are merged.
   Measured on 30 s FMA MP3s: 17-21 ms instead of 28-34 ms for the whole file.
4. Mono is ``(left + right) / 2`` (mean of the channels beyond stereo); resampling is soxr HQ
   (librosa's default ``soxr_hq``); the spectrogram is a periodic-Hann STFT (``n_fft``) in
   float32, librosa's Slaney mel filter bank, and ``10 * log10(max(power, 1e-10))`` dB (absolute,
   not relative to the clip's peak, so loudness is kept and nothing depends on unread audio).

The result equals ``librosa.feature.melspectrogram`` + ``power_to_db(ref=1.0, top_db=None)`` on
``librosa.load(path, sr=sample_rate)`` at those frames, to float32 rounding.

Normalization is separate and explicit (:mod:`genrekit.features.normalize`); decoding, mono and
resampling are :mod:`genrekit.features.decode`; the parameters are
:class:`~genrekit.features.params.FeatureParams`. Their names are importable from here too.

A file that cannot give segments raises one :class:`~genrekit.errors.AudioDecodeError` naming the
file and the cause: missing, empty, ID3 tag only, not audio, no audio frames, absurd header
(length, sample rate, channels), truncated (the decoder stops well before the length its header
declares), non-finite samples, too short.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np

from genrekit.errors import AudioDecodeError, ConfigError
from genrekit.features.decode import (
    TRUNCATION_TOLERANCE_SECONDS,
    AudioSource,
    decodable_length,
    decodable_part,
    decoded_length,
    resampled_span,
)
from genrekit.features.normalize import MIN_STD, NormStats, band_stats, normalize
from genrekit.features.params import FEATURE_VERSION, FeatureParams

# Names other modules import from here, whose homes are now decode, normalize and params.
__all__ = [
    "AMIN",
    "COMPRESSIONS",
    "FEATURE_VERSION",
    "MIN_STD",
    "TRUNCATION_TOLERANCE_SECONDS",
    "FeatureParams",
    "NormStats",
    "band_stats",
    "decodable_length",
    "decoded_length",
    "load_segments",
    "load_track_segments",
    "mel_filterbank",
    "normalize",
    "segment_starts",
]

AMIN = 1e-10  # power floor before dB: -100 dB

_MERGE_GAP_SECONDS = 0.1  # regions closer than this are read in one go rather than seeking
_MAX_SPAN_SECONDS = 60.0  # bound on the audio held at once when reading long files
_SEGMENT_BATCH = 16  # segments transformed together (bounds memory on long files)


# --- Spectrogram ---------------------------------------------------------------------------------


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, np.log(6.4) / 27.0
    mels = freq / f_sp
    log_part = min_log_mel + np.log(np.maximum(freq, min_log_hz) / min_log_hz) / logstep
    return np.where(freq >= min_log_hz, log_part, mels)


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 15.0, np.log(6.4) / 27.0
    freqs = f_sp * mels
    log_part = min_log_hz * np.exp(logstep * (mels - min_log_mel))
    return np.where(mels >= min_log_mel, log_part, freqs)


@functools.lru_cache(maxsize=8)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's ``filters.mel`` (Slaney scale and area norm), float32 ``(n_mels, 1 + n_fft // 2)``.

    Written out here so worker processes do not import librosa (0.8 s each, numba and scipy.signal).
    """
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    weights = weights.astype(np.float32)
    weights.flags.writeable = False
    return weights


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    """Periodic Hann window (scipy ``get_window('hann', n, fftbins=True)``, librosa's STFT window)."""
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    window.flags.writeable = False
    return window


@functools.lru_cache(maxsize=8)
def _mel_sparse(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> Any:
    """The filter bank as a CSR matrix: each band spans a few FFT bins (2,018 of 131,200 weights
    are non-zero at the defaults), so a sparse product is 2x faster than BLAS on one thread and
    never starts BLAS threads that fight decoding workers for cores (7x slower under load)."""
    import scipy.sparse

    return scipy.sparse.csr_array(mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax))


# How mel power becomes the model's input. "db": 10 * log10(max(power, AMIN)), this toolkit's
# features. "log10000": log10(10000 * power + 1), the compression musicnn was trained on
# (computed in float32 here; see genrekit/models/musicnn.py for the original's float16).
COMPRESSIONS = ("db", "log10000")


def _log_mel(frames: np.ndarray, params: FeatureParams, compression: str = "db") -> np.ndarray:
    """Windowed frames ``(n, n_fft)`` float32 to log-mel ``(n_mels, n)`` float32 (see COMPRESSIONS)."""
    import scipy.fft

    spec = scipy.fft.rfft(frames, axis=1, workers=1)
    power = np.square(spec.real)
    power += np.square(spec.imag)
    weights = _mel_sparse(params.sample_rate, params.n_fft, params.n_mels, params.fmin, params.fmax)
    mel = np.asarray(weights @ power.T, dtype=np.float32)
    if compression == "log10000":
        mel *= np.float32(10000.0)
        np.log1p(mel, out=mel)
        mel *= np.float32(1 / np.log(10))
        return mel
    np.maximum(mel, AMIN, out=mel)
    np.log10(mel, out=mel)
    mel *= 10.0
    return mel


def segment_starts(total_frames: int, count: int, segment_frames: int) -> np.ndarray:
    """First frames of ``count`` segments spread evenly over ``total_frames`` (first at 0, last at the end).

    Raises ConfigError when not even one segment fits; callers check the clip length first.
    """
    if total_frames < segment_frames or count < 1:
        raise ConfigError(f"{count} segments of {segment_frames} frames do not fit in {total_frames} frames")
    return np.round(np.linspace(0, total_frames - segment_frames, count)).astype(np.int64)


# --- Segments -----------------------------------------------------------------------------------


def _segments(
    src: AudioSource, length: int, starts: np.ndarray, params: FeatureParams, compression: str = "db"
) -> np.ndarray:
    """Log-mel segments ``(len(starts), n_mels, F)`` starting at frames ``starts`` of a clip."""
    hop, n_fft, nf = params.hop_length, params.n_fft, params.segment_frames
    sr = params.sample_rate
    seg_len = (nf - 1) * hop + n_fft  # samples one segment's frames cover, centre padding included
    firsts = starts * hop - n_fft // 2  # first sample of each segment's first frame
    # Merge neighbouring regions into spans read in one go (bounded, for long files).
    spans: list[list[int]] = []  # [first sample, end sample, first segment, end segment]
    merge_gap = int(_MERGE_GAP_SECONDS * sr)
    max_span = int(_MAX_SPAN_SECONDS * sr)
    for i, first in enumerate(firsts.tolist()):
        if spans and first - spans[-1][1] <= merge_gap and first + seg_len - spans[-1][0] <= max_span:
            spans[-1][1] = first + seg_len
            spans[-1][3] = i + 1
        else:
            spans.append([first, first + seg_len, i, i + 1])

    window = _hann(n_fft)
    out = np.empty((len(starts), params.n_mels, nf), np.float32)
    batch = np.empty((min(_SEGMENT_BATCH, len(starts)) * nf, n_fft), np.float32)
    filled, done = 0, 0  # segments in batch, segments written to out

    def flush() -> None:
        nonlocal filled, done
        mel = _log_mel(batch[: filled * nf], params, compression).reshape(params.n_mels, filled, nf)
        out[done : done + filled] = mel.transpose(1, 0, 2)
        done += filled
        filled = 0

    for span_start, span_stop, seg_lo, seg_hi in spans:
        y = resampled_span(src, span_start, span_stop, length, params)
        for i in range(seg_lo, seg_hi):
            offset = int(firsts[i]) - span_start
            frames = np.lib.stride_tricks.sliding_window_view(y[offset : offset + seg_len], n_fft)[::hop]
            np.multiply(frames, window, out=batch[filled * nf : (filled + 1) * nf])
            filled += 1
            if filled * nf == len(batch):
                flush()
    if filled:
        flush()
    if not np.isfinite(out).all():
        raise AudioDecodeError(f"{src.path}: decoded samples are not finite (NaN or infinity)")
    return out


def _clip_length(src: AudioSource, params: FeatureParams, duration: float | None) -> int:
    """Output-rate samples of the clip: the resampled file length, capped at ``duration`` seconds."""
    length = -(-src.frames * params.sample_rate // src.rate)
    if duration is not None:
        length = min(length, int(round(duration * params.sample_rate)))
    return length


def _check_long_enough(src: AudioSource, length: int, params: FeatureParams) -> int:
    total = 1 + length // params.hop_length
    if total // params.segment_frames < params.min_segments:
        need = params.min_segments * params.segment_frames * params.hop_length / params.sample_rate
        raise AudioDecodeError(
            f"{src.path}: too short: {length / params.sample_rate:.2f} s of audio, "
            f"at least {need:.2f} s needed for {params.min_segments} segment(s)"
        )
    return total


def load_segments(
    path: str | os.PathLike, params: FeatureParams, *, notes: list[str] | None = None
) -> np.ndarray:
    """Log-mel segments of the first ``params.duration`` seconds of an audio file.

    Parameters
    ----------
    path : str or PathLike
        An audio file libsndfile reads (MP3, WAV, FLAC, OGG...).
    params : FeatureParams
        Sample rate, mel and segment parameters.
    notes : list of str, optional
        Accept a truncated file (one that stops decoding well before the length its header
        declares): when given, such a file gives the segments of the part that decodes, under the
        same rules as a short clip (at least ``min_segments`` whole segments), and a line saying
        so is appended here. Without it a truncated file raises :class:`TruncatedAudioError`.
        The feature cache (training and evaluation) and inference all pass it: one rule.

    Returns
    -------
    numpy.ndarray
        float32 ``(params.num_segments, params.n_mels, params.segment_frames)`` log-mel dB, not
        normalized (see :func:`normalize`). Segments are spread evenly over the clip and overlap
        when it is shorter than ``num_segments`` whole segments (see the module docstring).

    Raises
    ------
    AudioDecodeError
        When the file cannot give segments; the message names the file and the cause.
    """

    def run() -> np.ndarray:
        length = _clip_length(src, params, params.duration)
        total = _check_long_enough(src, length, params)
        starts = segment_starts(total, params.num_segments, params.segment_frames)
        return _segments(src, length, starts, params)

    with AudioSource(path) as src:
        return decodable_part(src, run, notes)


def load_track_segments(
    path: str | os.PathLike,
    params: FeatureParams,
    *,
    hop_seconds: float = 0.0,
    num_segments: int | None = None,
    hop_frames: int | None = None,
    compression: str = "db",
    notes: list[str] | None = None,
) -> np.ndarray:
    """Log-mel segments spread over a whole track of any length (inference on long files).

    Same decode and mel code as :func:`load_segments`, without its ``duration`` cap.

    Parameters
    ----------
    path : str or PathLike
        An audio file.
    params : FeatureParams
        Feature parameters (``duration`` and ``num_segments`` are not used for the placement).
    hop_seconds : float
        When > 0, one segment every ``hop_seconds`` from the start (the last whole one included).
    num_segments : int, optional
        When ``hop_seconds`` is 0: this many segments spread evenly over the track
        (default ``params.num_segments``).
    hop_frames : int, optional
        One segment every ``hop_frames`` spectrogram frames from the start, the last whole one
        included (overrides ``hop_seconds``; musicnn's patches use ``hop_frames=segment_frames``).
    compression : str
        ``"db"`` (this toolkit's features) or ``"log10000"`` (musicnn's input), see COMPRESSIONS.
    notes : list of str, optional
        Accept a truncated file, as :func:`load_segments`.

    Returns
    -------
    numpy.ndarray
        float32 ``(k, n_mels, segment_frames)``.

    Raises
    ------
    AudioDecodeError
        As :func:`load_segments`; a track shorter than ``min_segments`` segments is refused.
    """
    if hop_seconds < 0:
        raise ConfigError(f"hop_seconds={hop_seconds!r} must be >= 0")
    if hop_frames is not None and (
        isinstance(hop_frames, bool) or not isinstance(hop_frames, int) or hop_frames < 1
    ):
        raise ConfigError(f"hop_frames={hop_frames!r} must be a positive integer")
    if compression not in COMPRESSIONS:
        raise ConfigError(f"compression={compression!r} must be one of {', '.join(COMPRESSIONS)}")
    count = params.num_segments if num_segments is None else num_segments
    if count < 1:
        raise ConfigError(f"num_segments={count!r} must be >= 1")

    def run() -> np.ndarray:
        length = _clip_length(src, params, None)
        total = _check_long_enough(src, length, params)
        step = hop_frames
        if step is None and hop_seconds > 0:
            step = max(1, int(round(hop_seconds * params.sample_rate / params.hop_length)))
        if step is not None:
            starts = np.arange(0, total - params.segment_frames + 1, step, dtype=np.int64)
        else:
            starts = segment_starts(total, count, params.segment_frames)
        return _segments(src, length, starts, params, compression)

    with AudioSource(path) as src:
        return decodable_part(src, run, notes)
