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

Normalization is separate and explicit: :func:`band_stats` computes per-mel-band mean and std on
the training split (streaming, so a memory-mapped cache larger than RAM works), the statistics
are saved with the model's configuration (:meth:`NormStats.to_dict`), and :func:`normalize`
applies them the same way in training, evaluation and inference.

A file that cannot give segments raises one :class:`~genrekit.errors.AudioDecodeError` naming the
file and the cause: missing, empty, ID3 tag only, not audio, no audio frames, absurd header
(length, sample rate, channels), truncated (the decoder stops well before the length its header
declares), non-finite samples, too short.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import AudioDecodeError, ConfigError, TruncatedAudioError

# Bump when the extraction code changes its output: caches built by another version are refused.
FEATURE_VERSION = 1
AMIN = 1e-10  # power floor before dB: -100 dB
RESAMPLE_QUALITY = "HQ"
# Longer than this and the header is taken as bogus (FMA has files with absurd bitrate tags).
MAX_DECLARED_SECONDS = 24 * 3600.0
# A decoder may stop a little short of a header's estimated length; more than this is truncation.
TRUNCATION_TOLERANCE_SECONDS = 0.5
_RESAMPLE_MARGIN_SECONDS = 0.02  # soxr HQ transients die out well within this (measured: < 6 ms)
_MERGE_GAP_SECONDS = 0.1  # regions closer than this are read in one go rather than seeking
_MAX_SPAN_SECONDS = 60.0  # bound on the audio held at once when reading long files
_SEGMENT_BATCH = 16  # segments transformed together (bounds memory on long files)

_FIELDS = (
    "sample_rate",
    "duration",
    "n_mels",
    "n_fft",
    "hop_length",
    "fmin",
    "fmax",
    "num_segments",
    "segment_frames",
    "min_segments",
)


@dataclasses.dataclass(frozen=True)
class FeatureParams:
    """Every parameter that shapes the features; stored in a cache's manifest and checked on use."""

    sample_rate: int = 22050
    duration: float = 30.0
    n_mels: int = 128
    n_fft: int = 2048
    hop_length: int = 512
    fmin: float = 0.0
    fmax: float = 11025.0
    num_segments: int = 10
    segment_frames: int = 64
    min_segments: int = 1

    def __post_init__(self) -> None:
        for name in ("sample_rate", "n_mels", "n_fft", "hop_length", "num_segments", "segment_frames"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"feature parameter {name}={value!r} must be a positive integer")
        if isinstance(self.min_segments, bool) or not isinstance(self.min_segments, int):
            raise ConfigError(f"feature parameter min_segments={self.min_segments!r} must be an integer")
        if not 1 <= self.min_segments <= self.num_segments:
            raise ConfigError(
                f"feature parameter min_segments={self.min_segments} must be in [1, num_segments="
                f"{self.num_segments}]"
            )
        if not self.duration > 0:
            raise ConfigError(f"feature parameter duration={self.duration!r} must be > 0")
        if not 0 <= self.fmin < self.fmax <= self.sample_rate / 2:
            raise ConfigError(
                f"feature parameters fmin={self.fmin!r}, fmax={self.fmax!r} must satisfy "
                f"0 <= fmin < fmax <= sample_rate / 2 ({self.sample_rate / 2:g})"
            )
        if self.n_fft < self.hop_length:
            raise ConfigError(f"feature parameter n_fft={self.n_fft} must be >= hop_length={self.hop_length}")
        if self.min_segments * self.segment_frames > self.clip_frames:
            raise ConfigError(
                f"duration={self.duration:g} s holds {self.clip_frames} frames, fewer than min_segments "
                f"x segment_frames = {self.min_segments * self.segment_frames}"
            )

    @classmethod
    def from_settings(cls, settings: Any) -> FeatureParams:
        """The feature parameters of a :class:`~genrekit.settings.Settings` (or any object with them)."""
        return cls(**{name: getattr(settings, name) for name in _FIELDS})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureParams:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ConfigError."""
        unknown = sorted(set(data) - set(_FIELDS))
        missing = sorted(set(_FIELDS) - set(data))
        if unknown or missing:
            raise ConfigError(f"feature parameters: unknown keys {unknown}, missing keys {missing}")
        values = {name: data[name] for name in _FIELDS}
        for name in ("duration", "fmin", "fmax"):
            if isinstance(values[name], int) and not isinstance(values[name], bool):
                values[name] = float(values[name])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-ready dict (keys are the settings' names)."""
        return dataclasses.asdict(self)

    @property
    def clip_frames(self) -> int:
        """Spectrogram frames of a full ``duration`` clip (1292 for 30 s at 22050 Hz, hop 512)."""
        return 1 + int(round(self.duration * self.sample_rate)) // self.hop_length

    @property
    def segment_shape(self) -> tuple[int, int]:
        """``(n_mels, segment_frames)``: one segment, the model input without its channel axis."""
        return (self.n_mels, self.segment_frames)

    def cache_name(self) -> str:
        """A short folder name naming these parameters and the feature version, e.g. for CACHE_DIR/<name>."""
        blob = json.dumps({"params": self.to_dict(), "version": FEATURE_VERSION}, sort_keys=True)
        digest = hashlib.sha1(blob.encode()).hexdigest()[:8]
        return (
            f"sr{self.sample_rate}_mel{self.n_mels}_fft{self.n_fft}_hop{self.hop_length}_"
            f"seg{self.num_segments}x{self.segment_frames}_{self.duration:g}s_{digest}"
        )


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


# --- Decoding ------------------------------------------------------------------------------------


def _sniff(path: Path, size: int) -> str:
    """Why libsndfile refused a file, told from its first bytes (libsndfile's own message misleads)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if head[:3] == b"ID3" and len(head) >= 10:
        tag_size = 10 + sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(head[6:10]))
        if head[5] & 0x10:  # ID3v2.4 footer
            tag_size += 10
        if tag_size > size:
            return f"unreadable ID3 tag (declares {tag_size} bytes, the file has {size})"
        if tag_size >= size - 64:
            return f"ID3 tag only, no audio frames ({size} bytes)"
        return f"ID3 tag followed by no decodable MPEG audio ({size} bytes)"
    mpeg_sync = len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    if head[:4] in (b"RIFF", b"fLaC", b"OggS") or mpeg_sync:
        return f"corrupt audio data, no decodable stream ({size} bytes)"
    text = head.replace(b"\r", b"").replace(b"\n", b"").replace(b"\t", b"")
    if text and all(32 <= b < 127 for b in text[:512]):
        return "not an audio file (plain text)"
    return f"not an audio file (unrecognised content, starts {head[:8].hex(' ')})"


class _Source:
    """An opened, checked audio file: its declared frames, rate and channels."""

    def __init__(self, path: str | os.PathLike) -> None:
        import soundfile as sf

        self.path = Path(path)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise AudioDecodeError(f"{self.path}: file not found") from None
        except OSError as exc:
            raise AudioDecodeError(f"{self.path}: cannot stat ({exc.strerror or exc})") from None
        # A FIFO or device would block libsndfile's open() forever.
        if not stat.S_ISREG(st.st_mode):
            raise AudioDecodeError(f"{self.path}: not a regular file")
        if st.st_size == 0:
            raise AudioDecodeError(f"{self.path}: empty file (0 bytes)")
        try:
            self.file = sf.SoundFile(self.path)
        except Exception as exc:  # libsndfile raises LibsndfileError, RuntimeError, TypeError...
            raise AudioDecodeError(f"{self.path}: {_sniff(self.path, st.st_size)}") from exc
        self.frames = int(self.file.frames)
        self.rate = int(self.file.samplerate)
        self.channels = int(self.file.channels)
        self._decodable: int | None = None  # measured only when a read comes up short
        try:
            if self.frames <= 0:
                raise AudioDecodeError(f"{self.path}: no audio frames")
            if not 1000 <= self.rate <= 768000:
                raise AudioDecodeError(f"{self.path}: absurd sample rate {self.rate} Hz in header")
            if not 1 <= self.channels <= 64:
                raise AudioDecodeError(f"{self.path}: absurd channel count {self.channels} in header")
            if self.frames > MAX_DECLARED_SECONDS * self.rate:
                raise AudioDecodeError(
                    f"{self.path}: absurd length in header ({self.frames / self.rate / 3600:.0f} h; "
                    "bogus header or bitrate tag)"
                )
        except AudioDecodeError:
            self.file.close()
            raise

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> _Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def decodable_frames(self) -> int:
        """Frames that actually decode, reading the file from the start (a cut file has fewer
        than its header declares); a decoder error ends the count where it occurs."""
        if self._decodable is None:
            count = 0
            with contextlib.suppress(Exception):  # libsndfile raises several types on bad data
                self.file.seek(0)
                while block := len(self.file.read(1 << 16, dtype="float32", always_2d=True)):
                    count += block
            self._decodable = count
        return self._decodable

    def read_mono(self, start: int, stop: int) -> np.ndarray:
        """Mono float32 samples ``[start, stop)`` at the file's rate; zeros past a slightly short end."""
        want = stop - start
        try:
            self.file.seek(start)
            x = self.file.read(want, dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioDecodeError(f"{self.path}: decoding failed near sample {start} ({exc})") from exc
        got = len(x)
        if got < want:
            # Measured against the header's end, not this read's: a short read far from the end
            # is a cut file even when the region itself is shorter than the tolerance; a short
            # read near the end (a read past a cut file's end gives nothing) is checked by
            # decoding the file once.
            stopped = start + got
            if self.frames - stopped <= TRUNCATION_TOLERANCE_SECONDS * self.rate:
                stopped = self.decodable_frames()
            if self.frames - stopped > TRUNCATION_TOLERANCE_SECONDS * self.rate:
                raise TruncatedAudioError(
                    f"{self.path}: truncated or corrupt: header declares {self.frames} samples "
                    f"({self.frames / self.rate:.2f} s) but decoding stopped at {stopped}"
                )
        if self.channels == 1:
            mono = x[:, 0]
        elif self.channels == 2:
            # Not x.mean(axis=1): 10x slower on soundfile's interleaved layout (PERF_NOTES).
            mono = x[:, 0] + x[:, 1]
            mono *= 0.5
        else:
            mono = x.sum(axis=1, dtype=np.float32) / np.float32(self.channels)
        if got < want:
            mono = np.concatenate([mono, np.zeros(want - got, np.float32)])
        return np.ascontiguousarray(mono)


def _resampled_span(src: _Source, start: int, stop: int, length: int, params: FeatureParams) -> np.ndarray:
    """Output-rate samples ``[start, stop)`` of the mono, resampled clip, zeros beyond ``length``.

    Equal (to float rounding) to resampling the whole file and slicing: the region read is
    widened by a margin and starts at an input sample that maps exactly onto an output sample.
    """
    out = np.zeros(stop - start, np.float32)
    lo, hi = max(start, 0), min(stop, length)
    if hi <= lo:
        return out
    sr_in, sr = src.rate, params.sample_rate
    if sr_in == sr:
        out[lo - start : hi - start] = src.read_mono(lo, hi)
        return out
    import soxr

    g = math.gcd(sr_in, sr)
    step_in, step_out = sr_in // g, sr // g
    margin = int(math.ceil(_RESAMPLE_MARGIN_SECONDS * sr))
    k0 = max(0, (lo - margin) // step_out * step_out)
    i0 = k0 // step_out * step_in
    i1 = min(src.frames, -(-(hi + margin) * sr_in // sr))
    y = soxr.resample(src.read_mono(i0, i1), sr_in, sr, RESAMPLE_QUALITY)
    piece = y[lo - k0 : hi - k0]
    out[lo - start : lo - start + len(piece)] = piece
    return out


def _segments(
    src: _Source, length: int, starts: np.ndarray, params: FeatureParams, compression: str = "db"
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
        y = _resampled_span(src, span_start, span_stop, length, params)
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


def _clip_length(src: _Source, params: FeatureParams, duration: float | None) -> int:
    """Output-rate samples of the clip: the resampled file length, capped at ``duration`` seconds."""
    length = -(-src.frames * params.sample_rate // src.rate)
    if duration is not None:
        length = min(length, int(round(duration * params.sample_rate)))
    return length


def _check_long_enough(src: _Source, length: int, params: FeatureParams) -> int:
    total = 1 + length // params.hop_length
    if total // params.segment_frames < params.min_segments:
        need = params.min_segments * params.segment_frames * params.hop_length / params.sample_rate
        raise AudioDecodeError(
            f"{src.path}: too short: {length / params.sample_rate:.2f} s of audio, "
            f"at least {need:.2f} s needed for {params.min_segments} segment(s)"
        )
    return total


def _decodable_part(src: _Source, run: Any, notes: list[str] | None) -> np.ndarray:
    """``run()``; when it fails on a cut file and ``notes`` is a list, ``run()`` again on the part
    that decodes (the truncation rule, see :func:`load_segments`) and append a note saying so."""
    try:
        return run()
    except AudioDecodeError:
        if notes is None:
            raise
        declared = src.frames
        decodable = src.decodable_frames()
        if declared - decodable <= TRUNCATION_TOLERANCE_SECONDS * src.rate:
            raise  # not a cut file: the original error stands
    src.frames = decodable
    cut = (
        f"truncated file: the header declares {declared / src.rate:.2f} s but only "
        f"{decodable / src.rate:.2f} s decode"
    )
    try:
        result = run()
    except AudioDecodeError as exc:
        cause = str(exc)
        prefix = f"{src.path}: "
        cause = cause[len(prefix) :] if cause.startswith(prefix) else cause
        raise TruncatedAudioError(f"{src.path}: {cut}; {cause}") from None
    notes.append(f"{cut}; used the part that decodes")
    return result


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

    with _Source(path) as src:
        return _decodable_part(src, run, notes)


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

    with _Source(path) as src:
        return _decodable_part(src, run, notes)


def decoded_length(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` an audio file declares, after the same checks as decoding."""
    with _Source(path) as src:
        return src.frames, src.rate, src.channels


def decodable_length(path: str | os.PathLike) -> int:
    """Frames of an audio file that actually decode (fewer than declared when the file is cut)."""
    with _Source(path) as src:
        return src.decodable_frames()


# --- Normalization -------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NormStats:
    """Per-mel-band mean and standard deviation of training features, in dB."""

    mean: np.ndarray
    std: np.ndarray
    count: int  # values per band the statistics were computed on

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, np.float32).reshape(-1)
        std = np.asarray(self.std, np.float32).reshape(-1)
        if mean.shape != std.shape or not np.isfinite(mean).all() or not (np.isfinite(std) & (std > 0)).all():
            raise ConfigError("normalization statistics need finite means and positive stds per mel band")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @property
    def n_mels(self) -> int:
        return len(self.mean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"mean": [...], "std": [...], "count": n}``."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "count": int(self.count)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormStats:
        try:
            return cls(mean=np.asarray(data["mean"]), std=np.asarray(data["std"]), count=int(data["count"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"normalization statistics malformed ({exc!r})") from None


# Bands whose std is below this (constant bands, e.g. above a low-passed MP3's cut-off on silence)
# are divided by it instead, so normalization never divides by zero.
MIN_STD = 1e-3


def band_stats(source: np.ndarray | Iterable[np.ndarray], chunk_rows: int = 128) -> NormStats:
    """Per-mel-band mean and std over features ``(..., n_mels, frames)``, streamed in chunks.

    Parameters
    ----------
    source : numpy.ndarray or iterable of numpy.ndarray
        An array (a memmap works: it is read ``chunk_rows`` rows at a time, so it may be larger
        than RAM) or an iterable of chunks, each ``(..., n_mels, frames)``.
    chunk_rows : int
        Rows along axis 0 per chunk when ``source`` is an array.

    Returns
    -------
    NormStats
        Mean and std (population) per band over every segment and frame, combined across chunks
        with Chan's parallel formula in float64.
    """
    if isinstance(source, np.ndarray):
        chunks: Iterable[np.ndarray] = (source[i : i + chunk_rows] for i in range(0, len(source), chunk_rows))
    else:
        chunks = source
    count, mean, m2 = 0, None, None
    for chunk in chunks:
        x = np.asarray(chunk)
        if x.size == 0:
            continue
        # float32 deviations: float16 cache rows would lose digits in x - mean.
        x = np.moveaxis(x, -2, 0).reshape(x.shape[-2], -1).astype(np.float32)
        n = x.shape[1]
        c_mean = x.mean(axis=1, dtype=np.float64)
        x -= c_mean[:, None].astype(np.float32)
        c_m2 = np.square(x).sum(axis=1, dtype=np.float64)
        if mean is None:
            count, mean, m2 = n, c_mean, c_m2
            continue
        if len(c_mean) != len(mean):
            raise ConfigError(f"feature chunks disagree on mel bands: {len(mean)} then {len(c_mean)}")
        delta = c_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + c_m2 + delta**2 * (count * n / total)
        count = total
    if mean is None:
        raise ConfigError("no features to compute normalization statistics on")
    std = np.maximum(np.sqrt(m2 / count), MIN_STD)
    return NormStats(mean=mean, std=std, count=count)


def normalize(segments: np.ndarray, stats: NormStats, mel_axis: int = -2) -> np.ndarray:
    """``(segments - mean) / std`` per mel band, float32; the same in training, evaluation and inference.

    Parameters
    ----------
    segments : numpy.ndarray
        Log-mel features, any leading shape, mel bands on ``mel_axis`` (``(..., n_mels, frames)``
        by default; pass ``mel_axis=-3`` for ``(..., n_mels, frames, 1)``).
    stats : NormStats
        Statistics of the training split (from the model's configuration).
    mel_axis : int
        Axis of the mel bands.

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    x = np.asarray(segments)
    if x.shape[mel_axis] != stats.n_mels:
        raise ConfigError(
            f"normalization statistics are for {stats.n_mels} mel bands, features have {x.shape[mel_axis]}"
        )
    shape = [1] * x.ndim
    shape[mel_axis] = stats.n_mels
    out = x.astype(np.float32, copy=True)
    out -= stats.mean.reshape(shape)
    out /= stats.std.reshape(shape)
    return out
