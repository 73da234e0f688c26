"""Defective audio: every kind raises one AudioDecodeError naming the file and the cause; fuzzing too."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genrekit.errors import AudioDecodeError
from genrekit.features.mel import FeatureParams, load_segments
from tests.features_helpers import tone_mix, write_clip

PARAMS = FeatureParams(duration=4.0)


@pytest.fixture(scope="module")
def good_mp3(tmp_path_factory) -> bytes:
    path = write_clip(tmp_path_factory.mktemp("mp3") / "good.mp3", seconds=4.0, sr=44100, channels=2, seed=9)
    return path.read_bytes()


def _xing_frames_patched(data: bytes, frames: int) -> bytes:
    """The MP3 with the frame count of its Xing/Info header replaced (a bogus length tag)."""
    i = max(data.find(b"Xing"), data.find(b"Info"))
    assert i > 0, "soundfile's MP3 writer is expected to write a Xing header"
    out = bytearray(data)
    out[i + 8 : i + 12] = struct.pack(">I", frames)
    return bytes(out)


def _wav_bytes(x: np.ndarray, sr: int, subtype: str = "FLOAT") -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def _case_bytes(kind: str, good: bytes, real_head: bytes | None) -> bytes:
    rng = np.random.default_rng(7)
    if kind == "zero_length":
        return b""
    if kind == "mp3_first_400_bytes":
        return good[:400]
    if kind == "id3_tag_only":
        frame = b"TIT2" + struct.pack(">I", 5) + b"\x00\x00" + b"\x00abcd"
        return b"ID3\x03\x00\x00" + bytes([0, 0, 0, len(frame)]) + frame
    if kind == "unreadable_id3":
        return b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + rng.bytes(300)
    if kind == "truncated_mp3":
        return good[: len(good) // 3]
    if kind == "random_bytes":
        return rng.bytes(20_000)
    if kind == "wav_zero_frames":
        return _wav_bytes(np.zeros((0, 1), np.float32), 22050)
    if kind == "text_file":
        return b"track_id,title\n2,Food\n" * 50
    if kind == "absurd_length_tag":
        return _xing_frames_patched(good, 0x0FFFFFFF)
    if kind == "absurd_sample_rate":
        data = bytearray(_wav_bytes(tone_mix(1.0, 22050), 22050))
        data[24:28] = struct.pack("<I", 1)  # the fmt chunk's sample rate
        return bytes(data)
    if kind == "nan_samples":
        x = tone_mix(4.0, 22050)
        x[1000] = np.nan
        return _wav_bytes(x, 22050)
    if kind == "real_clip_first_400_bytes":
        return real_head
    raise AssertionError(kind)


CASES = {
    "zero_length": r"empty file \(0 bytes\)",
    "mp3_first_400_bytes": r"corrupt audio data, no decodable stream \(400 bytes\)",
    "id3_tag_only": r"ID3 tag only, no audio frames",
    "unreadable_id3": r"unreadable ID3 tag \(declares \d+ bytes, the file has 310\)",
    "truncated_mp3": r"truncated or corrupt: header declares 176400 samples \(4\.00 s\) but decoding stopped",
    "random_bytes": r"not an audio file \(unrecognised content",
    "wav_zero_frames": r"no audio frames",
    "text_file": r"not an audio file \(plain text\)",
    "absurd_length_tag": r"absurd length in header \(\d+ h; bogus header or bitrate tag\)",
    "absurd_sample_rate": r"absurd sample rate 1 Hz",
    "nan_samples": r"not finite",
    "real_clip_first_400_bytes": r"ID3 tag followed by no decodable MPEG audio \(400 bytes\)",
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_defective_file_raises_one_clear_error(kind, tmp_path, good_mp3, request):
    real_head = None
    if kind.startswith("real_clip"):
        real_head = request.getfixturevalue("real_clip").read_bytes()[:400]
    is_wav = "wav" in kind or kind in ("nan_samples", "absurd_sample_rate")
    path = tmp_path / f"{kind}.{'wav' if is_wav else 'mp3'}"
    path.write_bytes(_case_bytes(kind, good_mp3, real_head))
    with pytest.raises(AudioDecodeError) as info:
        load_segments(path, PARAMS)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert len(message.splitlines()) == 1
    import re

    assert re.search(CASES[kind], message), message


def test_the_good_mp3_itself_decodes(tmp_path, good_mp3):
    # The defective cases above are cut from this file: it must be fine whole.
    path = tmp_path / "good.mp3"
    path.write_bytes(good_mp3)
    assert load_segments(path, PARAMS).shape == (10, 128, 64)


def test_missing_directory_and_fifo_are_refused_without_blocking(tmp_path):
    with pytest.raises(AudioDecodeError, match="nope.mp3: file not found"):
        load_segments(tmp_path / "nope.mp3", PARAMS)
    (tmp_path / "dir.mp3").mkdir()
    with pytest.raises(AudioDecodeError, match="dir.mp3: not a regular file"):
        load_segments(tmp_path / "dir.mp3", PARAMS)
    if hasattr(os, "mkfifo"):
        # libsndfile's open() would wait forever for a writer.
        os.mkfifo(tmp_path / "fifo.mp3")
        with pytest.raises(AudioDecodeError, match="fifo.mp3: not a regular file"):
            load_segments(tmp_path / "fifo.mp3", PARAMS)


def test_fuzz_random_and_truncated_bytes_raise_only_the_typed_error(tmp_path, rng):
    short = write_clip(tmp_path / "src.mp3", seconds=1.6, sr=22050, channels=1, seed=1).read_bytes()
    params = FeatureParams(duration=1.6, num_segments=2)
    cases: list[bytes] = []
    for _ in range(70):  # random bytes, some starting like an MP3 or an ID3 tag
        prefix = [b"", b"\xff\xfb\x90\x64", b"ID3\x03\x00\x00", b"RIFF"][int(rng.integers(4))]
        cases.append(prefix + rng.bytes(int(rng.integers(0, 3000))))
    for _ in range(70):  # truncations of a genuine MP3
        cases.append(short[: int(rng.integers(0, len(short)))])
    for _ in range(60):  # bit rot: a few random bytes overwritten
        data = bytearray(short)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 20))):
            data[pos] = int(rng.integers(256))
        cases.append(bytes(data))
    decoded = 0
    path = Path(tmp_path) / "fuzz.mp3"
    for data in cases:
        path.write_bytes(data)
        try:
            segments = load_segments(path, params)
        except AudioDecodeError as exc:
            assert str(exc).startswith(f"{path}: ")
        else:
            decoded += 1
            assert segments.shape == (2, 128, 64)
            assert np.isfinite(segments).all()
    # Bit rot mostly still decodes; random bytes and truncations mostly do not.
    assert 0 < decoded < len(cases)


# --- Cut files of every format: the part that decodes, with the same "truncated" note ---------------

CUT_FORMATS = ("mp3", "flac", "wav", "ogg", "aiff", "au", "w64", "rf64")
CUT_PARAMS = FeatureParams(duration=8.0)


@pytest.fixture(scope="module")
def whole_clips(tmp_path_factory) -> dict[str, Path]:
    """An 8-s stereo clip in every format libsndfile writes whose cut it must survive."""
    root = tmp_path_factory.mktemp("whole")
    return {
        fmt: write_clip(root / f"whole.{fmt}", seconds=8.0, sr=22050, channels=2, seed=5)
        for fmt in CUT_FORMATS
    }


@pytest.mark.parametrize("fmt", CUT_FORMATS)
def test_cut_file_of_every_format_gives_its_decodable_part_with_a_truncated_note(fmt, whole_clips, tmp_path):
    from genrekit.errors import TruncatedAudioError
    from genrekit.features.audio_files import decode_file
    from genrekit.features.mel import decodable_length

    whole = whole_clips[fmt]
    data = whole.read_bytes()
    path = tmp_path / f"cut.{fmt}"
    path.write_bytes(data[: len(data) // 2])  # about 4 s of the 8
    with pytest.raises(TruncatedAudioError) as info:  # strict: refused, naming the file
        load_segments(path, CUT_PARAMS)
    assert str(info.value).startswith(f"{path}: ") and "truncated" in str(info.value)
    decodable = decodable_length(path)
    assert 3.0 * 22050 < decodable < 5.0 * 22050, decodable
    notes: list[str] = []
    segments = load_segments(path, CUT_PARAMS, notes=notes)
    assert len(notes) == 1 and notes[0].startswith("truncated file: ")
    assert f"only {decodable / 22050:.2f} s decode; used the part that decodes" in notes[0]
    # The same samples, read from the whole file and written whole: the same segments.
    samples, rate = sf.read(whole, frames=decodable, dtype="float32", always_2d=True)
    reference_path = tmp_path / "reference.wav"
    sf.write(reference_path, samples, rate, subtype="FLOAT")
    reference = load_segments(reference_path, CUT_PARAMS)
    assert segments.shape == reference.shape == (10, 128, 64)
    np.testing.assert_allclose(segments, reference, atol=0.05)
    # Inference: predicted like a short file of the decodable length, with the note as a warning.
    result = decode_file("cut", path, CUT_PARAMS)
    assert result.error is None
    assert result.info["duration_seconds"] == pytest.approx(decodable / 22050, abs=1e-3)
    assert result.info["warnings"][0] == notes[0]


@pytest.mark.parametrize("fmt", CUT_FORMATS)
def test_whole_file_of_every_format_is_not_taken_for_cut(fmt, whole_clips):
    from genrekit.features.audio_files import decode_file

    notes: list[str] = []
    assert load_segments(whole_clips[fmt], CUT_PARAMS, notes=notes).shape == (10, 128, 64)
    assert notes == []
    result = decode_file("whole", whole_clips[fmt], CUT_PARAMS)
    assert result.error is None and result.info["warnings"] == []
    assert result.info["duration_seconds"] == pytest.approx(8.0, abs=0.06)  # MP3/Vorbis padding


def test_after_a_failed_read_the_file_is_reopened_not_reused(whole_clips, tmp_path):
    """libsndfile's FLAC decoder leaves its handle broken after a failed seek (even seek(0))."""
    from genrekit.features.decode import AudioSource

    data = whole_clips["flac"].read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: len(data) // 2])
    expected, _ = sf.read(whole_clips["flac"], frames=22050, dtype="float32", always_2d=True)
    with AudioSource(path) as src:
        with pytest.raises(AudioDecodeError, match="decoding failed near sample 150000"):
            src.read_mono(150_000, 160_000)
        np.testing.assert_array_equal(src.read_mono(0, 22050), expected.mean(axis=1))


def test_genuine_flac_and_mp3_files_whole_and_cut(fma_real, real_clip, tmp_path):
    """Genuine files: whole, no "truncated" note; cut in half, the note and about half the music."""
    from genrekit.features.mel import decodable_length

    gtzan = sorted((fma_real.parent / "gtzan-dev" / "gtzan_mini").rglob("*.flac"))[:2]
    if not gtzan:
        pytest.skip(f"no genuine GTZAN FLAC files under {fma_real.parent / 'gtzan-dev'}")
    params = FeatureParams()
    for whole in [*gtzan, real_clip]:
        notes: list[str] = []
        load_segments(whole, params, notes=notes)
        assert notes == [], whole
        cut = tmp_path / f"cut{whole.suffix}"
        data = whole.read_bytes()
        cut.write_bytes(data[: len(data) // 2])
        load_segments(cut, params, notes=notes)
        seconds = decodable_length(cut) / sf.info(whole).samplerate
        assert len(notes) == 1 and notes[0].startswith("truncated file: the header declares"), whole
        assert 10.0 < seconds < 20.0 and f"only {seconds:.2f} s decode" in notes[0]


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # rotten float samples
@pytest.mark.parametrize("fmt", ["wav", "aiff", "au", "w64", "flac", "ogg"])
def test_fuzz_cut_and_rotten_headers_of_every_format_raise_only_the_typed_error(fmt, tmp_path, rng):
    short = write_clip(tmp_path / f"src.{fmt}", seconds=1.6, sr=22050, channels=1, seed=1).read_bytes()
    params = FeatureParams(duration=1.6, num_segments=2)
    cases = [short[: int(rng.integers(0, len(short)))] for _ in range(25)]
    for _ in range(25):  # bit rot in the first 200 bytes: the header the length is read from
        data = bytearray(short)
        for pos in rng.integers(0, min(200, len(data)), size=int(rng.integers(1, 6))):
            data[pos] = int(rng.integers(256))
        cases.append(bytes(data))
    path = tmp_path / f"fuzz.{fmt}"
    for data in cases:
        path.write_bytes(data)
        for notes in (None, []):
            try:
                segments = load_segments(path, params, notes=notes)
            except AudioDecodeError as exc:
                assert str(exc).startswith(f"{path}: ")
            else:
                assert segments.shape == (2, 128, 64) and np.isfinite(segments).all()
