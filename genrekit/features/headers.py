"""What an audio file's container says about its own length, read from its header bytes.

libsndfile reports the length a FLAC or MP3 header declares, so a cut FLAC or MP3 decodes short of
it and is seen as cut; for the PCM containers (WAV, RF64, W64, AIFF, AU) it quietly clamps the
length to the bytes present, and an Ogg stream declares no length at all. :func:`declared_frames`
reads the length those PCM headers declare, :func:`ogg_unended` whether an Ogg file lacks its
end-of-stream page, so :class:`~genrekit.features.decode.AudioSource` sees every format's cut
file the same way: frames the header declares against frames that decode.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

# A header walk reads at most this many chunks (a damaged size field must not loop for long).
_MAX_CHUNKS = 256
# The end of an Ogg file searched for its last page (a page is at most 65,307 bytes).
_OGG_TAIL = 65_536 + 1024
_OGG_EOS = 0x04  # header_type flag of a logical stream's last page
# Bytes per sample of the AU encodings with a fixed size (1 mu-law, 2-5 PCM, 6-7 float, 27 A-law).
_AU_BYTES = {1: 1, 2: 1, 3: 2, 4: 3, 5: 4, 6: 4, 7: 8, 27: 1}
# WAVE format tags whose frames are data bytes / block align (PCM, float, A-law, mu-law, extensible).
_WAVE_PLAIN = {0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE}
_UNKNOWN_SIZES = {0, 0xFFFFFFFF}  # a streaming writer's "length not known"


def declared_frames(fh: BinaryIO, size: int) -> int | None:
    """Frames the header of a WAV, RF64, W64, AIFF or AU file declares; None for other formats,
    a header that declares no length (a streaming writer's 0 or -1) or one that cannot be read.

    ``fh`` is the file opened for binary reading, ``size`` its length in bytes.
    """
    fh.seek(0)
    head = fh.read(40)
    try:
        if head[:4] in (b"RIFF", b"RIFX", b"RF64") and head[8:12] == b"WAVE":
            return _riff_frames(fh, size, ">" if head[:4] == b"RIFX" else "<")
        if head[:4] == b"riff" and head[24:28] == b"wave":
            return _w64_frames(fh, size)
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _aiff_frames(fh, size)
        if head[:4] == b".snd" and len(head) >= 24:
            _, data_size, encoding, _, channels = struct.unpack(">5I", head[4:24])
            width = _AU_BYTES.get(encoding)
            if data_size in _UNKNOWN_SIZES or not width or not channels:
                return None
            return data_size // (width * channels)
    except (struct.error, OSError):
        return None
    return None


def _chunks(fh: BinaryIO, start: int, size: int, header: str, align: int, inclusive: bool = False):
    """``(id, body offset, body size)`` of the chunks from ``start``; ``header`` is the struct
    format of a chunk's id and size, ``inclusive`` when the size counts the header (W64)."""
    offset, width = start, struct.calcsize(header)
    for _ in range(_MAX_CHUNKS):
        if offset + width > size:
            return
        fh.seek(offset)
        chunk_id, length = struct.unpack(header, fh.read(width))
        body = length - width if inclusive else length
        if body < 0:
            return
        yield chunk_id, offset + width, body
        offset += width + body + (-body % align)


def _riff_frames(fh: BinaryIO, size: int, order: str) -> int | None:
    block_align = tag = fact = data = None
    for chunk_id, at, length in _chunks(fh, 12, size, f"{order}4sI", 2):
        fh.seek(at)
        if chunk_id == b"ds64":  # RF64: the 64-bit sizes the 32-bit fields leave as -1
            _, data, _ = struct.unpack("<3Q", fh.read(24))
        elif chunk_id == b"fmt ":
            tag, _, _, _, block_align = struct.unpack(f"{order}HHIIH", fh.read(14))
        elif chunk_id == b"fact":
            (fact,) = struct.unpack(f"{order}I", fh.read(4))
        elif chunk_id == b"data":
            data = data if length == 0xFFFFFFFF and data else length
            break
    if data is None or data in _UNKNOWN_SIZES or not block_align:
        return None
    if tag in _WAVE_PLAIN:
        return data // block_align
    return fact or None  # a compressed format: only its fact chunk says how many frames


def _w64_frames(fh: BinaryIO, size: int) -> int | None:
    block_align = data = None
    for chunk_id, at, length in _chunks(fh, 40, size, "<16sQ", 8, inclusive=True):
        if chunk_id[:4] == b"fmt ":
            fh.seek(at)
            tag, _, _, _, block_align = struct.unpack("<HHIIH", fh.read(14))
            if tag not in _WAVE_PLAIN:
                return None
        elif chunk_id[:4] == b"data":
            data = length
            break
    if not data or not block_align:
        return None
    return data // block_align


def _aiff_frames(fh: BinaryIO, size: int) -> int | None:
    for chunk_id, at, _ in _chunks(fh, 12, size, ">4sI", 2):
        if chunk_id == b"COMM":
            fh.seek(at)
            _, frames = struct.unpack(">hI", fh.read(6))
            return frames or None
    return None


def ogg_unended(fh: BinaryIO, size: int) -> bool:
    """Whether an Ogg file is cut: its pages do not end exactly at the end of the file, or its
    last page lacks the end-of-stream flag. False for any other file (no ``OggS`` at the start).
    """
    fh.seek(0)
    if fh.read(4) != b"OggS":
        return False
    start = max(0, size - _OGG_TAIL)
    fh.seek(start)
    tail = fh.read()
    at = tail.find(b"OggS")
    while at >= 0:  # the first "OggS" from which whole pages run to the end is a page boundary
        flags = _last_page_flags(tail, at)
        if flags is not None:
            return not flags & _OGG_EOS
        at = tail.find(b"OggS", at + 1)
    return True  # no whole page ends the file: cut inside a page


def _last_page_flags(data: bytes, at: int) -> int | None:
    """The header flags of the last page when whole pages run from ``at`` exactly to the end of
    ``data``; None otherwise."""
    flags = None
    while at < len(data):
        if data[at : at + 4] != b"OggS" or len(data) - at < 27 or data[at + 4] != 0:
            return None
        count = data[at + 26]
        lacing = data[at + 27 : at + 27 + count]
        if len(lacing) < count:
            return None
        flags, at = data[at + 5], at + 27 + count + sum(lacing)
    return flags if at == len(data) else None
