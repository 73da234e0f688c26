"""Not music: silence, steady noise, steady tones and clicks, told from a file's log-mel segments.

A genre model answers for any input, so a silent file or a test tone gets a confident genre. These
measures are cheap (about 1 ms a 30-s clip, 2% of decoding it: they read the segments the model
gets, no second decode) and rely on the log-mel dB of :mod:`genrekit.features.mel` keeping absolute levels:

- ``span_seconds``: the time the segments span (noise and tones are only told over 10 s or more).
- ``peak_dbfs``, ``level_dbfs``: the loudest frame's and the clip's RMS level, dB relative to full
  scale (a full-scale square wave is 0 dB, a full-scale sine -3 dB) of the audio in the features'
  band (``fmin`` to ``fmax``: full-scale white noise at 44.1 kHz reads -10.8 dB through 11,025-Hz
  features), from the mel power through the filter bank's own calibration (:func:`level_weights`).
- ``quiet_share``: the share of frames below :data:`QUIET_DBFS`; ``longest_sound_seconds``: the
  longest run of louder frames inside a segment (clicks are short bursts on silence).
- ``change_vs_noise``: how much the spectrum moves between blocks (the segments), in multiples of
  what stationary Gaussian noise shows with these very features (:func:`noise_spread_db`, worked
  out from the window, the hop and the filter bank): the second most moving of 8 sub-bands. White
  or pink noise give about 1, a steady tone about 0, music 3 and more (noise music included).
- ``jitter_db``: the median frame-to-frame change of a sounding band's level: noise jitters
  (1.3 dB or more), a steady tone or an oscillator's waveform repeats (0.3 dB at most).

:func:`flag_of` gives ``"silence"``, ``"clicks"``, ``"noise"``, ``"tone"`` or None. The thresholds
were measured with ``benchmarks/bench_content.py`` (genuine music: 62 fma_small clips, 162 GTZAN
clips, the demo's clips; synthetic silence, noise, tones, clicks), with the default features and
the small ones of the tests. Spectral flatness was measured too and left out: pink noise (0.28)
is less flat than some genuine noise music and loud rock (up to 0.45).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from genrekit.features.params import FeatureParams

__all__ = [
    "FLAGS",
    "content_of",
    "describe",
    "flag_of",
    "level_weights",
    "noise_spread_db",
    "note_of",
]

FLAGS = ("silence", "clicks", "noise", "tone")
# Measured (bench_content.py, default and small features): genuine clips peak at -29.6 dBFS or
# louder, the demo's at -20.3; hiss at -70 dBFS is silence, noise at -50 dBFS is noise.
SILENCE_DBFS = -60.0  # the loudest frame below this: silence
QUIET_DBFS = -60.0  # a frame below this is near-silent
# Clicks: most frames near-silent and no sound longer than a few clicks close together (music:
# at most 6% near-silent frames, sounds as long as a segment; clicks: 53-98%, 0.05-0.42 s).
CLICKS_QUIET_SHARE = 0.5
CLICKS_MAX_SECONDS = 0.5
# Steady: music moves 3.2x stationary noise's spread or more (Noise-genre clips; 4.1x at the
# default features), noise 1.8x at most (pink noise clipped hard aside: 2.8-4.4x), tones 0.5x.
STEADY_CHANGE = 2.4
# Noise and tones are told over this much time at least: music can hold still for a few seconds
# (a 3-s demo clip moves 2.0x noise's spread at the small features), not for 10.
STEADY_MIN_SECONDS = 10.0
# A steady sound whose bands jitter more than this is noise (noise >= 1.3 dB, tones <= 0.32 dB).
NOISE_JITTER_DB = 0.6
MIN_BLOCKS = 8  # blocks compared: the segments, split in parts for a short file with fewer
SUB_BANDS = 8  # the mel bands in this many groups of neighbours, for change_vs_noise
BAND_RANGE_DB = 30.0  # bands this far below the loudest one are not sounding (leakage, lowpass)
_JITTER_SAMPLES = 16384  # the jitter's median is taken over about this many band steps
_AMIN = 1e-10  # the power floor of the log-mel features


# --- Calibration: levels, and how much stationary noise moves ----------------------------------


@functools.lru_cache(maxsize=8)
def level_weights(params: FeatureParams) -> np.ndarray:
    """Weights ``g`` (n_mels,) with ``mel_power @ g`` the mean square of the frame's samples.

    The Slaney filter bank scales each band by its width, so the plain sum of the bands is not a
    level: a band's power over its weight sum is the mean power of its FFT bins, and the bins
    each band stands for add up to every bin under the bank. By Parseval with the periodic Hann
    window, the bins of a frame hold ``3 n_fft**2 / 16`` times its mean square.
    """
    w = _filterbank(params)
    per_bin = w.sum(axis=0)
    share = np.divide(w, per_bin, out=np.zeros_like(w), where=per_bin > 0).sum(axis=1)
    band_sum = w.sum(axis=1)
    g = np.divide(share, band_sum, out=np.zeros_like(share), where=band_sum > 0)
    g /= 3.0 * params.n_fft**2 / 16.0
    g.flags.writeable = False
    return g


@functools.lru_cache(maxsize=8)
def _filterbank(params: FeatureParams) -> np.ndarray:
    from genrekit.features.mel import mel_filterbank

    return mel_filterbank(params.sample_rate, params.n_fft, params.n_mels, params.fmin, params.fmax).astype(
        np.float64
    )


@functools.lru_cache(maxsize=16)
def _bin_covariance(n_fft: int, hop: int, frames: int) -> tuple[np.ndarray, float]:
    """``(K, sum(w**2))``: ``K[m]`` sums, over the pairs of frames of a block whose windows overlap,
    the covariance of the powers of two bins ``m`` apart for unit white noise, ``|DFT(w[n] w[n -
    lag])[m]|**2`` (periodic Hann ``w``; symmetric in ``m``, so ``m`` = 0 .. n_fft // 2)."""
    from genrekit.features.mel import _hann

    w = _hann(n_fft).astype(np.float64)
    kernel = np.zeros(n_fft // 2 + 1)
    for j in range(min(frames, -(-n_fft // hop))):
        lag = j * hop
        product = np.zeros(n_fft)
        product[lag:] = w[lag:] * w[: n_fft - lag]
        pairs = frames if j == 0 else 2 * (frames - j)  # lags of both signs in a block
        kernel += pairs * np.abs(np.fft.rfft(product)) ** 2
    kernel.flags.writeable = False
    return kernel, float(np.sum(w**2))


def noise_spread_db(params: FeatureParams, bin_weights: np.ndarray, frames: int) -> float:
    """The standard deviation (dB) that stationary Gaussian noise gives the block mean of
    ``sum_k bin_weights[k] |X_k|**2`` over ``frames`` frames of these features.

    Exact for white noise, up to the delta method for the dB: the relative variance is
    ``sum_k sum_k' v_k v_k' K[k - k'] / (frames sum(w**2) sum(v))**2`` with ``K`` of
    :func:`_bin_covariance` (bins of one frame and of overlapping frames are correlated).
    """
    v = np.asarray(bin_weights, np.float64)
    kernel, window_energy = _bin_covariance(params.n_fft, params.hop_length, frames)
    spec = np.fft.rfft(v, 2 * params.n_fft)
    autocorr = np.fft.irfft(spec.real**2 + spec.imag**2, 2 * params.n_fft)[: len(v)]  # sum_k v_k v_k+m
    total = 2.0 * float(np.dot(kernel[: len(v)], autocorr)) - kernel[0] * autocorr[0]  # m and -m
    relative_variance = max(total, 0.0) / (frames * window_energy * v.sum()) ** 2
    return float(10.0 / np.log(10.0) * np.sqrt(relative_variance))


@functools.lru_cache(maxsize=256)
def _group_noise_spread(params: FeatureParams, bands: tuple[int, ...], frames: int) -> float:
    """:func:`noise_spread_db` of the level of some mel bands (the same few sub-bands every clip)."""
    index = list(bands)
    return noise_spread_db(params, level_weights(params)[index] @ _filterbank(params)[index], frames)


# --- Measures ---------------------------------------------------------------------------------------


def _db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, _AMIN * 1e-6))


def _longest_run(mask: np.ndarray) -> int:
    """The longest run of True along the last axis of a 2-d mask (0 when none)."""
    if not mask.any():
        return 0
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), np.int8)
    padded[:, 1:-1] = mask
    edges = np.diff(padded, axis=1)
    return int((np.nonzero(edges == -1)[1] - np.nonzero(edges == 1)[1]).max())


def _timeline(power: np.ndarray, starts: np.ndarray | None) -> np.ndarray:
    """The distinct frames of the segments in time order, ``(n_mels, frames)``: segments that
    overlap (a short clip, a dense hop) give their shared frames once."""
    s, _, f = power.shape
    starts = np.arange(s) * f if starts is None else np.asarray(starts, np.int64)
    pieces, covered = [], None
    for i in np.argsort(starts, kind="stable"):
        first = 0 if covered is None else int(min(max(covered - starts[i], 0), f))
        pieces.append(power[i, :, first:])
        covered = int(starts[i]) + f if covered is None else max(covered, int(starts[i]) + f)
    return np.concatenate(pieces, axis=1)


def _blocks(timeline: np.ndarray, segment_frames: int) -> tuple[np.ndarray, int]:
    """``(mean band power of each block (B, n_mels), frames per block)``: consecutive blocks of the
    distinct frames, a segment long, shorter while there would be fewer than :data:`MIN_BLOCKS`."""
    m, total = timeline.shape
    frames = max(2, min(segment_frames, total // MIN_BLOCKS))
    count = total // frames
    blocks = timeline[:, : count * frames].reshape(m, count, frames).mean(axis=2, dtype=np.float64)
    return blocks.T, frames


def _change_vs_noise(
    power: np.ndarray, starts: np.ndarray | None, sounding: np.ndarray, params: FeatureParams
) -> float | None:
    """The spread across blocks of each sub-band's level over stationary noise's, second highest of
    the sub-bands with a sounding band (the highest when only one has)."""
    blocks, frames = _blocks(_timeline(power, starts), power.shape[2])
    if len(blocks) < 2:
        return None
    g = level_weights(params)
    ratios = []
    for group in np.array_split(np.arange(params.n_mels), SUB_BANDS):
        group = group[sounding[group]]
        if len(group):
            spread = _db(blocks[:, group] @ g[group]).std(ddof=1)
            ratios.append(spread / _group_noise_spread(params, tuple(group.tolist()), frames))
    if not ratios:
        return None
    ratios.sort()
    return float(ratios[-2] if len(ratios) > 1 else ratios[-1])


def _jitter_db(power: np.ndarray, sounding: np.ndarray, loud: np.ndarray) -> float | None:
    """The median frame-to-frame change (dB) of the sounding bands, between loud frames."""
    steps = np.abs(np.diff(_db(power[:, sounding, :]), axis=2))  # (S, bands, F - 1), within segments
    pairs = loud[:, 1:] & loud[:, :-1]
    if not pairs.any():
        return None
    values = steps.transpose(0, 2, 1)[pairs].ravel()
    return float(np.median(values[:: 1 + len(values) // _JITTER_SAMPLES]))  # evenly spread sample: 3x faster


def describe(
    segments_db: np.ndarray, params: FeatureParams, starts: np.ndarray | None = None
) -> dict[str, Any]:
    """The content measures of log-mel dB segments ``(S, n_mels, F)`` (see the module docstring)
    whose first frames are ``starts`` (None: disjoint segments).

    Returns
    -------
    dict
        ``span_seconds`` (from the first segment's start to the last one's end), ``peak_dbfs``,
        ``level_dbfs``, ``quiet_share``, ``longest_sound_seconds``,
        ``change_vs_noise`` and ``jitter_db``, rounded; the last two are None when no frame is
        louder than :data:`QUIET_DBFS` (and ``change_vs_noise`` for a single block).
    """
    power = np.power(np.float32(10.0), np.asarray(segments_db, np.float32) / np.float32(10.0))
    g = level_weights(params)
    mean_square = np.einsum("smf,m->sf", power, g.astype(np.float32), dtype=np.float64)
    frame_db = _db(mean_square)
    loud = frame_db >= QUIET_DBFS
    s, _, f = power.shape
    first, last = (0, s * f) if starts is None else (int(np.min(starts)), int(np.max(starts)) + f)
    out: dict[str, Any] = {
        "span_seconds": round((last - first) * params.hop_length / params.sample_rate, 2),
        "peak_dbfs": round(float(frame_db.max()), 1),
        "level_dbfs": round(float(_db(mean_square.mean())), 1),
        "quiet_share": round(float(1.0 - loud.mean()), 3),
        "longest_sound_seconds": round(_longest_run(loud) * params.hop_length / params.sample_rate, 2),
        "change_vs_noise": None,
        "jitter_db": None,
    }
    if not loud.any():
        return out
    band_dbfs = _db(power.mean(axis=(0, 2), dtype=np.float64) * g)  # each band's part of the level
    sounding = band_dbfs > band_dbfs.max() - BAND_RANGE_DB
    change = _change_vs_noise(power, starts, sounding, params)
    jitter = _jitter_db(power, sounding, loud)
    out["change_vs_noise"] = None if change is None else round(change, 2)
    out["jitter_db"] = None if jitter is None else round(jitter, 2)
    return out


def flag_of(measures: dict[str, Any], segment_seconds: float = np.inf) -> str | None:
    """``"silence"``, ``"clicks"``, ``"noise"``, ``"tone"`` or None (music, or nothing to say) from
    the measures of :func:`describe`; a sound lasting a whole segment (``segment_seconds``) is no
    click, and a file spanning less than :data:`STEADY_MIN_SECONDS` is neither noise nor a tone."""
    if measures["peak_dbfs"] < SILENCE_DBFS:
        return "silence"
    longest = measures["longest_sound_seconds"]
    if (
        measures["quiet_share"] >= CLICKS_QUIET_SHARE
        and longest <= CLICKS_MAX_SECONDS
        and longest < segment_seconds
    ):
        return "clicks"
    change, jitter = measures["change_vs_noise"], measures["jitter_db"]
    if measures["span_seconds"] < STEADY_MIN_SECONDS or change is None or jitter is None:
        return None
    if change < STEADY_CHANGE:
        return "noise" if jitter > NOISE_JITTER_DB else "tone"
    return None


def content_of(
    segments_db: np.ndarray, params: FeatureParams, starts: np.ndarray | None = None
) -> dict[str, Any]:
    """``{"flag": ..., **measures}`` of log-mel dB segments starting at frames ``starts`` (None:
    disjoint): the ``content`` of an inference result."""
    measures = describe(segments_db, params, starts)
    frames = np.shape(segments_db)[-1]
    return {"flag": flag_of(measures, round(frames * params.hop_length / params.sample_rate, 2)), **measures}


_WHAT = {
    "silence": "silence",
    "clicks": "clicks on silence",
    "noise": "steady noise",
    "tone": "a steady tone",
}


def note_of(content: dict[str, Any] | None) -> str | None:
    """The warning of a flagged ``content``, e.g. ``"not music: silence (peak -118.5 dBFS) ..."``;
    None when it is not flagged."""
    if not content or content.get("flag") is None:
        return None
    return (
        f"not music: {_WHAT[content['flag']]} (peak {content['peak_dbfs']:.1f} dBFS); "
        "the genres predicted for it mean nothing"
    )
