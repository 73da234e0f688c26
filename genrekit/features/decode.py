"""Audio decoding for the features: an opened, checked file, its mono samples, resampled regions.

:class:`AudioSource` opens a file with libsndfile and checks its header; a file that cannot give
audio raises one :class:`~genrekit.errors.AudioDecodeError` naming the file and the cause:
missing, empty, ID3 tag only, not audio, no audio frames, absurd header (length, sample rate,
channels), truncated (the decoder stops well before the length its header declares, in every
format: :mod:`genrekit.features.headers`), non-finite samples. A file is opened by its exact
bytes, so any name the operating system gives is read. Mono is ``(left + right) / 2`` (the mean of the channels beyond stereo); resampling is
soxr HQ (librosa's default ``soxr_hq``), of only the regions the segments need
(:func:`resampled_span`). :func:`decodable_part` applies the truncation rule of
:mod:`genrekit.features.mel`.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import AudioDecodeError, TruncatedAudioError
from genrekit.features.headers import declared_frames, ogg_unended
from genrekit.features.params import FeatureParams
from genrekit.paths import native_path
from genrekit.workers import reason_of

RESAMPLE_QUALITY = "HQ"
# Longer than this and the header is taken as bogus (FMA has files with absurd bitrate tags).
MAX_DECLARED_SECONDS = 24 * 3600.0
# A decoder may stop a little short of a header's estimated length; more than this is truncation.
TRUNCATION_TOLERANCE_SECONDS = 0.5
# First bytes of the containers libsndfile reads: such a file it refuses is damaged audio.
_CONTAINER_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"riff", b"FORM", b".snd", b"caff", b"fLaC", b"OggS")
_RESAMPLE_MARGIN_SECONDS = 0.02  # soxr HQ transients die out well within this (measured: < 6 ms)


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
    if head[:4] in _CONTAINER_MAGIC or mpeg_sync:
        return f"corrupt audio data, no decodable stream ({size} bytes)"
    text = head.replace(b"\r", b"").replace(b"\n", b"").replace(b"\t", b"")
    if text and all(32 <= b < 127 for b in text[:512]):
        return "not an audio file (plain text)"
    return f"not an audio file (unrecognised content, starts {head[:8].hex(' ')})"


class AudioSource:
    """An opened, checked audio file: its declared frames, rate and channels.

    ``frames`` is the length the header declares: libsndfile's for MP3 and FLAC, the container's
    own for the PCM formats whose length libsndfile clamps to the bytes present
    (:func:`genrekit.features.headers.declared_frames`), so a cut file of any format reads short
    of it. ``unended`` marks an Ogg file cut with no length to compare (no end-of-stream page).
    """

    def __init__(self, path: str | os.PathLike) -> None:
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
        self.size = st.st_size
        self.file = self._open()
        self.frames = int(self.file.frames)
        self.rate = int(self.file.samplerate)
        self.channels = int(self.file.channels)
        self.unended = False
        self._decodable: int | None = None  # measured only when a read comes up short
        try:
            self._read_header()
            self._check_header()
        except AudioDecodeError:
            self.file.close()
            raise

    def _open(self) -> Any:
        """A new libsndfile handle on the file; AudioDecodeError saying why it cannot be opened."""
        import soundfile as sf

        try:
            # Its bytes, not the str: soundfile encodes a str strictly as UTF-8, which fails on a
            # name that is not UTF-8 (the failure then looked like a bad file).
            return sf.SoundFile(native_path(self.path))
        except Exception as exc:  # libsndfile raises LibsndfileError, RuntimeError, TypeError...
            raise AudioDecodeError(f"{self.path}: {_sniff(self.path, self.size)}") from exc

    def _read_header(self) -> None:
        """The length the container declares where libsndfile reports the bytes present instead."""
        try:
            with open(self.path, "rb") as fh:
                declared = declared_frames(fh, self.size)
                self.unended = ogg_unended(fh, self.size)
        except OSError as exc:
            raise AudioDecodeError(f"{self.path}: unreadable ({exc.strerror or exc})") from None
        if declared is not None and declared > self.frames:
            self.frames = declared

    def _check_header(self) -> None:
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

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> AudioSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reopen(self) -> None:
        """A fresh handle: after a failed read or seek libsndfile's handle stays broken (a FLAC
        decoder refuses even ``seek(0)``), so the next read must not reuse it."""
        self.file.close()
        self.file = self._open()

    def decodable_frames(self) -> int:
        """Frames that actually decode, reading the file from the start (a cut file has fewer
        than its header declares); a decoder error ends the count where it occurs.

        A failed read loses its whole block (libsndfile's FLAC decoder), so the count goes on
        from there on a fresh handle with blocks 16 times smaller, down to 16 frames.
        """
        if self._decodable is None:
            count, block, failed = 0, 1 << 16, True
            while failed and block >= 16:
                count, failed = _count_frames(self._open(), count, block)
                block >>= 4
            self._decodable = count
        return self._decodable

    def read_mono(self, start: int, stop: int) -> np.ndarray:
        """Mono float32 samples ``[start, stop)`` at the file's rate; zeros past a slightly short end."""
        want = stop - start
        try:
            self.file.seek(start)
            x = self.file.read(want, dtype="float32", always_2d=True)
        except Exception as exc:
            self._reopen()
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


def _count_frames(handle: Any, start: int, block: int) -> tuple[int, bool]:
    """``(start`` plus the frames ``handle`` decodes from there in reads of ``block`` frames,
    whether a read failed``)``: up to the first read that fails or comes back empty. The handle
    is closed."""
    count = start
    with handle:
        try:
            handle.seek(start)
            while got := len(handle.read(block, dtype="float32", always_2d=True)):
                count += got
        except Exception:  # libsndfile raises several types on bad data
            return count, True
    return count, False


def resampled_span(src: AudioSource, start: int, stop: int, length: int, params: FeatureParams) -> np.ndarray:
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


def decodable_part(src: AudioSource, run: Callable[[], np.ndarray], notes: list[str] | None) -> np.ndarray:
    """``run()``; when it fails on a cut file and ``notes`` is a list, ``run()`` again on the part
    that decodes and append a note saying so (the truncation rule, see
    :func:`genrekit.features.mel.load_segments`).

    A cut file is one whose decoding stops more than :data:`TRUNCATION_TOLERANCE_SECONDS` short
    of the length its header declares, whatever the format; an Ogg file declares none, and is
    cut when it lacks its end-of-stream page (:attr:`AudioSource.unended`): what decodes is used
    then, with a note of the same form. Without ``notes`` a cut file raises
    :class:`TruncatedAudioError`.
    """
    try:
        result = run()
    except AudioDecodeError as exc:
        if isinstance(exc, TruncatedAudioError) and notes is None:
            raise
        cut = _cut_to_decodable(src)
        if cut is None:
            raise  # not a cut file: the original error stands
        if notes is None:  # a decoder error, not a short read, where a cut file stops
            raise TruncatedAudioError(f"{src.path}: {cut}; {reason_of(exc, src.path)}") from None
        try:
            result = run()
        except AudioDecodeError as exc:
            raise TruncatedAudioError(f"{src.path}: {cut}; {reason_of(exc, src.path)}") from None
    else:
        if not src.unended:
            return result
        cut = _cut_to_decodable(src)
        if notes is None:
            raise TruncatedAudioError(f"{src.path}: {cut}")
    notes.append(f"{cut}; used the part that decodes")
    return result


def _cut_to_decodable(src: AudioSource) -> str | None:
    """When ``src`` is a cut file: its length set to the part that decodes, and the note saying
    so (it starts ``truncated file:`` for every format); None for a whole file."""
    if src.unended:  # libsndfile's length of an Ogg file is already what its pages hold
        return (
            "truncated file: the Ogg stream stops before its end-of-stream page, so its length "
            f"is not known; only {src.frames / src.rate:.2f} s decode"
        )
    declared, decodable = src.frames, src.decodable_frames()
    if declared - decodable <= TRUNCATION_TOLERANCE_SECONDS * src.rate:
        return None
    src.frames = decodable
    return (
        f"truncated file: the header declares {declared / src.rate:.2f} s but only "
        f"{decodable / src.rate:.2f} s decode"
    )


def decoded_length(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(frames, sample_rate, channels)`` an audio file declares, after the same checks as decoding."""
    with AudioSource(path) as src:
        return src.frames, src.rate, src.channels


def decodable_length(path: str | os.PathLike) -> int:
    """Frames of an audio file that actually decode (fewer than declared when the file is cut)."""
    with AudioSource(path) as src:
        return src.decodable_frames()
