"""The demo's synthesizer: one clip of music-like audio from a vector of sound parameters.

Drums, melody, bass, pads, vowel-like speech, coloured noise and crackle; :mod:`genrekit.datasets.demo.metadata`
decides each track's parameters (its genre's family of sounds), :mod:`genrekit.datasets.demo.writer` renders and
writes the clips.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

# Synthesis parameters, their spread (one unit of variation) and valid range.
PARAMS: dict[str, tuple[float, float, float, float]] = {
    # name: (default, spread, low, high)
    "bpm": (110.0, 14.0, 50.0, 190.0),
    "swing": (0.0, 0.08, 0.0, 0.35),
    "kick": (0.0, 0.2, 0.0, 1.0),
    "snare": (0.0, 0.2, 0.0, 1.0),
    "hat": (0.0, 0.2, 0.0, 1.0),
    "perc": (0.0, 0.2, 0.0, 1.0),
    "note_rate": (1.0, 0.6, 0.25, 4.0),
    "pitch": (60.0, 5.0, 33.0, 84.0),
    "prange": (7.0, 2.5, 2.0, 18.0),
    "bright": (1.5, 0.4, 0.5, 3.0),
    "even": (0.5, 0.2, 0.0, 1.0),
    "inharm": (0.0, 0.01, 0.0, 0.1),
    "attack": (0.01, 0.02, 0.001, 0.2),
    "decay": (0.4, 0.2, 0.05, 1.5),
    "noise": (0.02, 0.04, 0.0, 0.5),
    "tilt": (1.0, 0.3, 0.0, 2.0),
    "drive": (0.0, 1.0, 0.0, 8.0),
    "cutoff": (12.0, 2.5, 1.5, 18.0),  # kHz
    "crackle": (0.0, 0.1, 0.0, 1.0),
    "speech": (0.0, 0.15, 0.0, 1.0),
    "pad": (0.0, 0.2, 0.0, 1.0),
    "bass": (0.0, 0.2, 0.0, 1.0),
    "vibrato": (0.0, 0.15, 0.0, 1.0),
    "melody": (1.0, 0.15, 0.0, 1.0),
}
PARAM_NAMES = tuple(PARAMS)


_SCALES = (
    (0, 2, 4, 5, 7, 9, 11),  # major
    (0, 2, 3, 5, 7, 8, 10),  # minor
    (0, 2, 4, 7, 9),  # major pentatonic
    (0, 3, 5, 7, 10),  # minor pentatonic
    (0, 2, 3, 5, 7, 9, 10),  # dorian
    (0, 3, 5, 6, 7, 10),  # blues
)
_VOWELS = ((730, 1090, 2440), (270, 2290, 3010), (530, 1840, 2480), (300, 870, 2240), (660, 1720, 2410))


def _midi_hz(m: float) -> float:
    return 440.0 * 2.0 ** ((m - 69.0) / 12.0)


@functools.lru_cache(maxsize=4)
def _fft_freqs(size: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The rfft bin frequencies of ``size`` samples and ``log(max(f, 30 Hz))``, computed once."""
    freqs = np.fft.rfftfreq(size, 1 / sample_rate)
    return freqs, np.log(np.maximum(freqs, 30.0))


def _sine_bank(omega: np.ndarray, amp: np.ndarray, phase: np.ndarray, n: int) -> np.ndarray:
    """``sum_k amp[k] * sin(omega[k] * i + phase[k])`` for ``i < n`` (omega in radians per sample).

    Exact to float64 rounding and ~20x cheaper than one ``np.sin`` per harmonic and sample: with
    ``i = B * j + r``, ``sin(a + b) = sin a cos b + cos a sin b`` turns the sum into two small
    matrix products of (J, K) by (K, B) tables, so only ``K * (B + J)`` sines are computed.
    """
    if n <= 0 or len(omega) == 0:
        return np.zeros(max(n, 0))
    b = int(math.ceil(math.sqrt(n)))
    j = int(math.ceil(n / b))
    a_r = omega[:, None] * np.arange(b)[None, :]  # (K, B)
    a_j = omega[:, None] * (b * np.arange(j))[None, :] + phase[:, None]  # (K, J)
    out = (np.cos(a_j).T * amp) @ np.sin(a_r) + (np.sin(a_j).T * amp) @ np.cos(a_r)
    return out.ravel()[:n]


def _sine_sum_fm(freq: np.ndarray, amp: np.ndarray, phase_t: np.ndarray) -> np.ndarray:
    """``sum_k amp[k] * sin(2 pi freq[k] * phase_t)`` for a non-linear phase (in seconds).

    The phase is reduced to one cycle in float64 before a float32 sine (vectorized by numpy, unlike
    float64's): the error stays below 1e-6, under the float32 resolution of the clips written.
    """
    cycles = freq[:, None] * phase_t[None, :]
    cycles -= np.floor(cycles)
    s = np.sin((2 * np.pi * cycles).astype(np.float32))
    return amp.astype(np.float32) @ s


Add = Callable[[np.ndarray, float, float, float], None]  # add(signal, at seconds, gain, pan)


def _partials(
    p: dict[str, float], m: float, harmonics: int, bright: float, limit: float
) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and amplitudes of a note's harmonics (MIDI ``m``) below ``limit`` Hz."""
    k = np.arange(1, harmonics + 1)
    fk = k * _midi_hz(m) * np.sqrt(1 + p["inharm"] * k**2)
    keep = fk < limit
    k, fk = k[keep], fk[keep]
    return fk, k ** (-bright) * np.where(k % 2 == 0, 2 * p["even"], 1.0)


def _envelope(tt: np.ndarray, attack: float, decay: float, sr: int) -> np.ndarray:
    """A note's attack-decay envelope at times ``tt``, faded out over its last 10 ms."""
    env = np.minimum(tt / max(attack, 1e-4), 1.0) * np.exp(-tt / max(decay, 1e-3))
    env[-min(len(env), int(0.01 * sr)) :] *= np.linspace(1, 0, min(len(env), int(0.01 * sr)))
    return env


def _drums(
    p: dict[str, float], rng: np.random.Generator, sr: int, step: float, n_steps: int, add: Add
) -> None:
    """Drums: one bar of 16 steps, repeated with occasional variations."""
    w_step = np.array([1.0 if i % 4 == 0 else 0.5 if i % 2 == 0 else 0.2 for i in range(16)])
    t = np.arange(int(0.4 * sr)) / sr
    kick = np.sin(2 * np.pi * (45 * t + 110 / 9 * (1 - np.exp(-9 * t)) / 1.0 * 1)) * np.exp(-t / 0.13)
    snare = rng.standard_normal(len(t)) * np.exp(-t / 0.07) + 0.6 * np.sin(2 * np.pi * 190 * t) * np.exp(
        -t / 0.05
    )
    hat = np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t / 0.018) * 0.5
    toms = [np.sin(2 * np.pi * f * t) * np.exp(-t / 0.09) for f in rng.uniform(160, 480, 3)]
    patterns = {
        "kick": rng.random(16) < p["kick"] * w_step,
        "snare": rng.random(16) < p["snare"] * np.where(np.isin(np.arange(16), [4, 12]), 1.0, 0.08),
        "hat": rng.random(16) < p["hat"] * np.where(np.arange(16) % 2 == 0, 1.0, 0.45),
        "perc": rng.random(16) < p["perc"] * 0.55,
    }
    if p["kick"] > 0.3:
        patterns["kick"][0] = True
    pans = rng.uniform(-0.4, 0.4, 4)
    tom_choice = rng.integers(0, 3, 16)
    for s in range(n_steps):
        i = s % 16
        if i == 0 and rng.random() < 0.08:  # a fill or variation now and then
            for key in patterns:
                patterns[key] = patterns[key] ^ (rng.random(16) < 0.05)
        at = s * step + (p["swing"] * step if i % 2 == 1 else 0.0) + rng.normal(0, 0.003)
        if patterns["kick"][i]:
            add(kick, at, 0.9 * max(p["kick"], 0.3), 0.0)
        if patterns["snare"][i]:
            add(snare, at, 0.35 * max(p["snare"], 0.3), pans[1] * 0.3)
        if patterns["hat"][i]:
            add(hat, at, 0.3 * max(p["hat"], 0.3) * rng.uniform(0.6, 1.0), pans[2])
        if patterns["perc"][i]:
            add(toms[tom_choice[i]], at, 0.5 * max(p["perc"], 0.3), pans[3])


def _harmony(p: dict[str, float], rng: np.random.Generator) -> tuple[tuple[int, ...], np.ndarray, Callable]:
    """Harmony: a scale, a four-chord progression (scale degrees, one chord per bar) and
    ``note_of(degree, octave_shift)``, the MIDI note of a degree around the track's pitch."""
    scale = _SCALES[int(rng.integers(len(_SCALES)))]
    centre = p["pitch"]
    degrees = rng.choice(len(scale), 4)

    def note_of(degree: int, octave_shift: int = 0) -> float:
        octave, d = divmod(degree, len(scale))
        return round(centre) + scale[d] + 12 * (octave + octave_shift)

    return scale, degrees, note_of


def _melody_and_bass(
    p: dict[str, float],
    rng: np.random.Generator,
    n: int,
    sr: int,
    beat: float,
    scale: tuple[int, ...],
    degrees: np.ndarray,
    note_of: Callable[..., float],
    tone: Callable[..., np.ndarray],
    add: Add,
) -> None:
    """A random-walk melody of ``tone`` notes, and a bass note per beat on the chord's root."""
    rate = 2.0 ** np.clip(round(math.log2(max(p["note_rate"], 0.25))), -2, 2)
    note_len = beat / rate
    length = min(3.0, p["attack"] + 4 * p["decay"])
    if p["melody"] > 0.02:
        degree = int(rng.integers(0, len(scale)))
        span = max(1, int(p["prange"] / 12 * len(scale)))
        mpan = rng.uniform(-0.3, 0.3)
        for j in range(int(n / sr / note_len) + 1):
            if rng.random() < 0.15:
                continue
            degree = int(np.clip(degree + round(rng.normal(0, 1.5)), -span, span))
            m = note_of(degree)
            add(
                tone(m, length, 16, p["bright"], p["decay"], p["attack"]),
                j * note_len,
                0.5 * p["melody"] * rng.uniform(0.7, 1.0),
                mpan,
            )

    if p["bass"] > 0.02:
        for b in range(int(n / sr / beat) + 1):
            m = note_of(int(degrees[(b // 4) % 4]), -2)
            while m > 52:
                m -= 12
            add(tone(m, min(1.5, beat * 1.2), 3, 1.5, 0.35, 0.005), b * beat, 0.7 * p["bass"], 0.0)


def _crackle_and_drive(
    p: dict[str, float], rng: np.random.Generator, buf: np.ndarray, n: int, sr: int
) -> np.ndarray:
    """Crackle (the same in both channels), normalization to peak 1, then soft clipping."""
    if p["crackle"] > 0.02:
        k = rng.poisson(p["crackle"] * 40 * n / sr)
        pos = rng.integers(0, n, k)
        amp = rng.exponential(0.15, k) * rng.choice([-1, 1], k)
        np.add.at(buf[0], pos, amp)
        np.add.at(buf[1], pos, amp)
        # Old records are mono: the more crackle, the narrower the image.
        mid = buf.mean(axis=0)
        width = max(0.0, 1 - p["crackle"])
        buf[:] = mid + width * (buf - mid)

    peak = np.abs(buf).max()
    if peak > 0:
        buf /= peak
    if p["drive"] > 0.05:
        g = 1 + p["drive"]
        buf = np.tanh(g * buf) / np.tanh(g)
    return buf


def _score(
    p: dict[str, float],
    rng: np.random.Generator,
    n: int,
    sr: int,
    add: Add,
    harmonic_sum: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
) -> tuple[float, np.ndarray, Callable[..., float], float]:
    """Drums, melody and bass of a clip, through ``add``; notes sum their partials with
    ``harmonic_sum(freqs, amps, times)``. Returns ``(beat, degrees, note_of, cutoff_hz)`` for the
    pads and the low-pass."""
    beat = 60.0 / p["bpm"]
    step = beat / 4
    _drums(p, rng, sr, step, int(n / sr / step) + 1, add)
    scale, degrees, note_of = _harmony(p, rng)
    cutoff_hz = min(p["cutoff"] * 1000.0, sr / 2 * 0.95)
    templates: dict[tuple[float, int], np.ndarray] = {}

    def tone(
        m: float, length: float, harmonics: int, bright: float, decay: float, attack: float
    ) -> np.ndarray:
        key = (m, int(length * 100))
        if key not in templates:
            tt = np.arange(int(length * sr)) / sr
            fk, amp = _partials(p, m, harmonics, bright, min(cutoff_hz * 1.5, sr / 2 * 0.9))
            sig = harmonic_sum(fk, amp, tt)
            templates[key] = sig * _envelope(tt, attack, decay, sr) / max(amp.sum(), 1e-9)
        return templates[key]

    _melody_and_bass(p, rng, n, sr, beat, scale, degrees, note_of, tone, add)
    return beat, degrees, note_of, cutoff_hz


def _pads(
    p: dict[str, float],
    rng: np.random.Generator,
    n: int,
    sr: int,
    beat: float,
    degrees: np.ndarray,
    note_of: Callable[..., float],
    add: Add,
    chord_sum: Callable[[list[tuple[float, float, float]], np.ndarray], np.ndarray],
) -> None:
    """A detuned triad per bar; ``chord_sum(notes, times)`` sums its six sines, each note given
    as ``(frequency, detune factor, phase)``."""
    if p["pad"] <= 0.02:
        return
    bar = 4 * beat
    n_bar = int(bar * sr)
    tt = np.arange(n_bar) / sr
    env = np.minimum(1.0, np.minimum(tt, tt[::-1]) / 0.08)
    for b in range(int(n / sr / bar) + 1):
        d0 = int(degrees[b % 4])
        notes = []
        for d in (d0, d0 + 2, d0 + 4):
            f = _midi_hz(note_of(d, -1))
            for det in (0.997, 1.003):
                notes.append((f, det, rng.uniform(0, 6.3)))
        add(chord_sum(notes, tt) * env / 6, b * bar, 0.5 * p["pad"], 0.25 * (1 if b % 2 else -1))


def _speech(p: dict[str, float], rng: np.random.Generator, n: int, sr: int, add: Add) -> None:
    """Vowel-like syllables at a random voice pitch, each after a short noise burst, with pauses."""
    if p["speech"] <= 0.02:
        return
    nyq = sr / 2
    f0 = rng.uniform(95, 230)
    at = 0.0
    cache: dict[tuple[int, int], np.ndarray] = {}
    windows: dict[int, np.ndarray] = {}
    while at < n / sr:
        if rng.random() < 0.15:
            at += rng.uniform(0.25, 0.8)
            continue
        v, pitch_step = int(rng.integers(len(_VOWELS))), int(rng.integers(3))
        key = (v, pitch_step)
        if key not in cache:
            fv = f0 * (1 + 0.08 * (pitch_step - 1))
            k = np.arange(1, int(min(4500.0, nyq * 0.9) / fv) + 1)
            amp = sum(1.0 / (1 + ((k * fv - fmt) / 90.0) ** 2) for fmt in _VOWELS[v]) + 0.02
            sig = _sine_bank(2 * np.pi * fv * k / sr, amp, np.zeros(len(k)), int(0.3 * sr))
            cache[key] = sig / amp.sum()
        dur = rng.uniform(0.12, 0.3)
        n_syl = int(dur * sr)
        if n_syl not in windows:
            windows[n_syl] = np.hanning(n_syl)
        syl = cache[key][:n_syl] * windows[n_syl]
        burst = rng.standard_normal(int(0.03 * sr)) * 0.15
        add(np.concatenate([burst, syl]), at, 1.2 * p["speech"], 0.0)
        at += dur + 0.03 + rng.uniform(0.0, 0.08)


def _stereo(lanes: dict[float, np.ndarray], length: int) -> np.ndarray:
    """The lanes panned into two channels, ``(2, length)``."""
    buf = np.zeros((2, length), dtype=np.float64)
    for pan, lane in lanes.items():
        buf[0] += lane * (1 - pan)
        buf[1] += lane * (1 + pan)
    return buf


def _master(
    p: dict[str, float],
    rng: np.random.Generator,
    buf: np.ndarray,
    n: int,
    sr: int,
    channels: int,
    cutoff_hz: float,
) -> np.ndarray:
    """Coloured noise (independent per channel) and crackle (the same in both), drive, the
    low-pass, the downmix to ``channels`` and a random level: ``(n, channels)`` float32."""
    from scipy import fft as sfft

    length = buf.shape[1]
    size = sfft.next_fast_len(length, real=True)
    freqs, log_freqs = _fft_freqs(size, sr)
    if p["noise"] > 0.001:
        shape = np.exp(-p["tilt"] / 2 * log_freqs)  # max(f, 30 Hz) ** (-tilt / 2)
        white = np.stack([rng.standard_normal(size) for _ in range(2)])
        colour = sfft.irfft(sfft.rfft(white, axis=1) * shape, size, axis=1)[:, :length]
        buf += p["noise"] * colour / (colour.std(axis=1, keepdims=True) + 1e-12) * 0.3
    buf = _crackle_and_drive(p, rng, buf, n, sr)
    ratio = freqs / cutoff_hz
    ratio *= ratio
    ratio *= ratio
    lowpass = 1.0 / np.sqrt(1 + ratio * ratio)  # 1 / sqrt(1 + (f / cutoff) ** 8)
    if channels == 1:  # the filter is linear: filter the downmix rather than each channel
        buf = buf.mean(axis=0, keepdims=True)
    out = sfft.irfft(sfft.rfft(buf, size, axis=1) * lowpass, size, axis=1)[:, :n].T
    peak = np.abs(out).max()
    gain = 10 ** (rng.uniform(-10, -1) / 20)
    if peak > 0:
        out = out * (gain / peak)
    return np.ascontiguousarray(out, dtype=np.float32)


def render_clip(
    params: np.ndarray, seconds: float, sample_rate: int, channels: int, rng: np.random.Generator
) -> np.ndarray:
    """Synthesize one clip from a parameter vector (see ``PARAMS``).

    Drums from a one-bar pattern at the track's tempo, a melody of harmonic notes, bass, pads,
    vowel-like speech, coloured noise and crackle, mixed, driven, low-passed and panned.

    Returns
    -------
    ndarray
        float32 of shape ``(round(seconds * sample_rate), channels)``, peak below 1.
    """
    p = dict(zip(PARAM_NAMES, params, strict=True))
    sr = int(sample_rate)
    n = max(1, int(round(seconds * sr)))
    tail = int(0.05 * sr)  # room for the last onsets; the sound past the end is cut anyway
    # One mono lane per pan position: voices are summed there and panned once at the end, which
    # is the same mix as panning each note (to float64 rounding) at a third of the cost.
    lanes: dict[float, np.ndarray] = {}

    def add(sig: np.ndarray, at: float, gain: float, pan: float) -> None:
        i = int(at * sr)
        if i >= n or i < 0:
            return
        lane = lanes.get(pan)
        if lane is None:
            lane = lanes[pan] = np.zeros(n + tail)
        seg = sig[: n + tail - i]
        lane[i : i + len(seg)] += seg * gain

    def harmonic_sum(fk: np.ndarray, amp: np.ndarray, tt: np.ndarray) -> np.ndarray:
        if p["vibrato"] > 0:
            # sin(2 pi f t + f vib) = sin(2 pi f (t + vib / 2 pi)): one phase for every harmonic.
            vib = p["vibrato"] * 0.012 * np.sin(2 * np.pi * 5.5 * tt) / (2 * np.pi * 5.5)
            return _sine_sum_fm(fk, amp, tt + vib)
        return _sine_bank(2 * np.pi * fk / sr, amp, np.zeros(len(fk)), len(tt))

    beat, degrees, note_of, cutoff_hz = _score(p, rng, n, sr, add, harmonic_sum)

    def chord_sum(notes: list[tuple[float, float, float]], tt: np.ndarray) -> np.ndarray:
        freqs = np.array([f * det for f, det, _ in notes])
        phases = np.array([phase for _, _, phase in notes])
        return _sine_bank(2 * np.pi * freqs / sr, np.ones(len(notes)), phases, len(tt))

    _pads(p, rng, n, sr, beat, degrees, note_of, add, chord_sum)
    _speech(p, rng, n, sr, add)
    return _master(p, rng, _stereo(lanes, n + tail), n, sr, channels, cutoff_hz)
