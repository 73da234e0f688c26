"""MP3 files as FMA's are: an ID3v2.4 tag, then constant-bitrate MPEG audio (LAME via libsndfile)."""

from __future__ import annotations

import io

import numpy as np


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def id3v24_tag(frames: dict[str, str], padding: int = 256) -> bytes:
    """An ID3v2.4 tag of UTF-8 text frames (e.g. ``{'TIT2': title}``), as FMA's MP3s start with."""
    body = b""
    for fid, text in frames.items():
        data = b"\x03" + text.encode("utf-8")
        body += fid.encode("ascii") + _syncsafe(len(data)) + b"\x00\x00" + data
    body += b"\x00" * padding
    return b"ID3\x04\x00\x00" + _syncsafe(len(body)) + body


def first_frame_length(mp3: bytes) -> int:
    """Bytes of the first MPEG audio frame (LAME's Info frame: a header without audio)."""
    b1, b2 = mp3[1], mp3[2]
    version = (b1 >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    rates_1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
    rates_2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
    srs = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}[version]
    kbps = (rates_1 if version == 3 else rates_2)[b2 >> 4]
    sr = srs[(b2 >> 2) & 3]
    return (144 if version == 3 else 72) * kbps * 1000 // sr + ((b2 >> 1) & 1)


def encode_mp3(audio: np.ndarray, sample_rate: int, kbps: int = 320) -> bytes:
    """MP3 bytes (constant bitrate, LAME via libsndfile) of float audio shaped (frames, channels)."""
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(
        buf,
        audio,
        sample_rate,
        format="MP3",
        subtype="MPEG_LAYER_III",
        bitrate_mode="CONSTANT",
        compression_level=(320 - kbps) / 288,
    )
    return buf.getvalue()
