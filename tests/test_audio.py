"""Audio to segments: the genuine FMA clip, agreement with librosa, the short-clip rule, normalization."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile as sf

from genrekit.errors import AudioDecodeError, ConfigError
from genrekit.features.mel import (
    FeatureParams,
    NormStats,
    band_stats,
    decoded_length,
    load_segments,
    load_track_segments,
    mel_filterbank,
    normalize,
    segment_starts,
)
from genrekit.settings import Settings
from tests.features_helpers import write_clip

librosa = pytest.importorskip("librosa")


def librosa_log_mel(path, params: FeatureParams, duration: float | None) -> np.ndarray:
    """The textbook path: librosa.load (mean downmix, soxr_hq) + melspectrogram + power_to_db."""
    y, _ = librosa.load(path, sr=params.sample_rate)
    if duration is not None:
        y = y[: int(round(duration * params.sample_rate))]
    spectrogram = {k: getattr(params, k) for k in ("n_fft", "hop_length", "n_mels", "fmin", "fmax")}
    mel = librosa.feature.melspectrogram(y=y, sr=params.sample_rate, **spectrogram)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None)


def at(spec: np.ndarray, starts: np.ndarray, frames: int) -> np.ndarray:
    return np.stack([spec[:, s : s + frames] for s in starts])


def assert_same_db(ours: np.ndarray, ref: np.ndarray) -> None:
    """Equal to float32 rounding: 0.002 dB where there is signal; near the -100 dB floor (power
    ~1e-9, e.g. above an MP3's low-pass) float32 FFT rounding alone moves values by ~0.1 dB."""
    assert ours.shape == ref.shape
    loud = ref > -70
    assert loud.mean() > 0.5
    np.testing.assert_allclose(ours[loud], ref[loud], atol=2e-3)
    np.testing.assert_allclose(ours, ref, atol=0.5)


def test_real_clip_decodes_to_fma_length_and_matches_librosa(real_clip):
    params = FeatureParams()
    assert decoded_length(real_clip) == (1_321_967, 44_100, 2)
    segments = load_segments(real_clip, params)
    assert segments.shape == (10, 128, 64)
    assert segments.dtype == np.float32
    assert np.isfinite(segments).all()
    spec = librosa_log_mel(real_clip, params, params.duration)
    # 1,321,967 samples at 44.1 kHz are 660,984 at 22.05 kHz: 1 + 660984 // 512 = 1291 frames.
    assert spec.shape[1] == 1291
    starts = segment_starts(1291, 10, 64)
    assert_same_db(segments, at(spec, starts, 64))
    # Music, not silence: a wide dynamic range in every segment.
    assert (segments.max(axis=(1, 2)) - segments.min(axis=(1, 2)) > 40).all()


def test_segment_starts_are_spread_from_first_to_last_frame():
    starts = segment_starts(1292, 10, 64)
    # linspace(0, 1228, 10) = 0, 136.44, 272.89, ... rounded.
    assert starts.tolist() == [0, 136, 273, 409, 546, 682, 819, 955, 1092, 1228]
    assert segment_starts(64, 3, 64).tolist() == [0, 0, 0]
    with pytest.raises(ConfigError):
        segment_starts(63, 1, 64)


@pytest.mark.parametrize(
    ("sr", "channels", "suffix"),
    [(44100, 2, ".mp3"), (22050, 1, ".mp3"), (48000, 2, ".wav"), (22050, 1, ".wav"), (32000, 1, ".flac")],
)
def test_segments_match_librosa_on_the_regions_read(tmp_path, sr, channels, suffix):
    # Only the regions the segments use are decoded and resampled; the result must equal
    # decoding and resampling the whole file (48 kHz exercises a 320:147 resampling ratio).
    path = write_clip(tmp_path / f"clip{suffix}", seconds=5.0, sr=sr, channels=channels, seed=sr)
    params = FeatureParams(duration=5.0, num_segments=4)
    segments = load_segments(path, params)
    spec = librosa_log_mel(path, params, params.duration)
    starts = segment_starts(spec.shape[1], 4, 64)
    assert_same_db(segments, at(spec, starts, 64))


def test_mel_filterbank_equals_librosa():
    for sr, n_fft, n_mels, fmin, fmax in [(22050, 2048, 128, 0.0, 11025.0), (16000, 1024, 64, 50.0, 7000.0)]:
        ours = mel_filterbank(sr, n_fft, n_mels, fmin, fmax)
        ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-9)


def test_short_clip_gives_overlapping_segments_not_padding(tmp_path):
    # 3 s at 22050 Hz: 1 + 66150 // 512 = 130 frames, two whole 64-frame segments.
    path = write_clip(tmp_path / "short.wav", seconds=3.0)
    params = FeatureParams(duration=30.0)
    segments = load_segments(path, params)
    assert segments.shape == (10, 128, 64)
    spec = librosa_log_mel(path, params, None)
    assert spec.shape[1] == 130
    assert_same_db(segments, at(spec, segment_starts(130, 10, 64), 64))
    # Overlap: neighbours share frames; nothing at the -100 dB floor a zero padding would give.
    assert segments.min() > -99
    with pytest.raises(AudioDecodeError, match=r"short\.wav: too short: 3\.00 s of audio, at least 4\.46 s"):
        load_segments(path, dataclasses.replace(params, min_segments=3))


def test_only_the_first_duration_seconds_count(tmp_path):
    long = write_clip(tmp_path / "long.wav", seconds=6.0, seed=3)
    x, sr = sf.read(long, dtype="float32")
    cut = tmp_path / "cut.wav"
    sf.write(cut, x[: 3 * sr], sr, subtype="FLOAT")
    params = FeatureParams(duration=3.0)
    np.testing.assert_array_equal(load_segments(long, params), load_segments(cut, params))


def test_track_segments_cover_a_long_file_by_hop_or_count(tmp_path):
    path = write_clip(tmp_path / "track.mp3", seconds=12.0, sr=44100, channels=2, seed=5)
    params = FeatureParams(duration=3.0, num_segments=3)
    spec = librosa_log_mel(path, params, None)
    total = spec.shape[1]
    by_hop = load_track_segments(path, params, hop_seconds=1.0)
    hop_frames = round(1.0 * 22050 / 512)  # 43
    starts = np.arange(0, total - 64 + 1, hop_frames)
    assert by_hop.shape == (len(starts), 128, 64)
    assert_same_db(by_hop, at(spec, starts, 64))
    spread = load_track_segments(path, params, num_segments=5)
    assert_same_db(spread, at(spec, segment_starts(total, 5, 64), 64))
    # Default: params.num_segments spread over the whole track, not only the first duration.
    assert load_track_segments(path, params).shape == (3, 128, 64)
    with pytest.raises(ConfigError):
        load_track_segments(path, params, hop_seconds=-1.0)
    # Hops in frames and musicnn's compression: the same frames, log10(10000 * power + 1).
    by_frames = load_track_segments(path, params, hop_frames=64, compression="log10000")
    starts = np.arange(0, total - 64 + 1, 64)
    assert by_frames.shape == (len(starts), 128, 64)
    expected = np.log10(10000 * 10 ** (at(spec, starts, 64).astype(np.float64) / 10) + 1)
    np.testing.assert_allclose(by_frames, expected, atol=2e-4)
    for bad in ({"hop_frames": 0}, {"compression": "log"}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            load_track_segments(path, params, **bad)


def test_feature_params_from_settings_round_trip_and_validation():
    params = FeatureParams.from_settings(Settings.build())
    assert params == FeatureParams()
    assert params.clip_frames == 1292
    assert FeatureParams.from_dict(params.to_dict()) == params
    assert params.cache_name() != dataclasses.replace(params, n_mels=96).cache_name()
    assert params.cache_name().startswith("sr22050_mel128_fft2048_hop512_seg10x64_30s_")
    with pytest.raises(ConfigError, match="n_mels"):
        FeatureParams(n_mels=0)
    with pytest.raises(ConfigError, match="fmax"):
        FeatureParams(fmax=20000.0)
    with pytest.raises(ConfigError, match="min_segments"):
        FeatureParams(min_segments=11)
    with pytest.raises(ConfigError, match="unknown keys"):
        FeatureParams.from_dict({**params.to_dict(), "n_bins": 3})


def test_band_stats_streams_chunks_and_equals_numpy(tmp_path, rng):
    x = (rng.standard_normal((37, 3, 8, 5)) * np.arange(1, 9)[:, None] + np.arange(8)[:, None] * 10).astype(
        np.float16
    )
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float16, shape=x.shape)
    mm[:] = x
    mm.flush()
    stats = band_stats(np.load(tmp_path / "x.npy", mmap_mode="r"), chunk_rows=4)
    flat = np.moveaxis(x.astype(np.float64), 2, 0).reshape(8, -1)
    np.testing.assert_allclose(stats.mean, flat.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(stats.std, flat.std(axis=1), rtol=1e-5)
    assert stats.count == 37 * 3 * 5
    one_chunk = band_stats([x])
    np.testing.assert_allclose(one_chunk.mean, stats.mean, rtol=1e-6)
    np.testing.assert_allclose(one_chunk.std, stats.std, rtol=1e-6)
    with pytest.raises(ConfigError):
        band_stats([])


def test_normalize_uses_the_saved_stats_the_same_way(rng):
    x = rng.normal(-30, 12, size=(20, 4, 16, 6)).astype(np.float32)
    stats = band_stats(x)
    again = NormStats.from_dict(stats.to_dict())
    y = normalize(x, again)
    assert y.dtype == np.float32
    flat = np.moveaxis(y, 2, 0).reshape(16, -1)
    np.testing.assert_allclose(flat.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(flat.std(axis=1), 1, atol=1e-4)
    # A channel axis after the frames: the mel axis moves, the result does not.
    np.testing.assert_allclose(normalize(x[..., None], again, mel_axis=-3)[..., 0], y, rtol=1e-6)
    with pytest.raises(ConfigError, match="16 mel bands, features have 6"):
        normalize(np.swapaxes(x, -1, -2), again)
    with pytest.raises(ConfigError):
        NormStats.from_dict({"mean": [0.0], "std": [0.0], "count": 1})
