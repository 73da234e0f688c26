"""Not music is said: silence, noise, steady tones and clicks are flagged in inference results (a
``content`` field, a warning naming the file, the CSV's ``content`` column), genuine music is not.

Real files (MP3 and WAV written by soundfile) through real folder inference with a tiny trained
model; the genuine clips of ``../shared/fma-real`` where present.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import balanced_inference
from genrekit.features.content import content_of, level_weights, noise_spread_db
from genrekit.features.mel import FeatureParams, load_segments, load_track_segments
from genrekit.infer.predict import MusicGenreInference
from tests.inference_helpers import FEATURES

RATE = 22050
SECONDS = 30.0
PARAMS = FeatureParams(**FEATURES)


def _pink(n: int, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.normal(size=n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return x / np.sqrt(np.mean(x**2))


def _clicks(n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros(n)
    for at in rng.choice(n - 8, size=int(2 * n / RATE), replace=False):  # 2 a second
        x[at : at + 3] = rng.choice([-1, 1]) * np.array([0.9, -0.5, 0.2])
    return x


def synthetic(kind: str, seed: int = 0) -> np.ndarray:
    """30 s of one kind of non-music, mono float32."""
    rng = np.random.default_rng(seed)
    n = int(SECONDS * RATE)
    t = np.arange(n) / RATE
    x = {
        "silence": lambda: np.zeros(n),
        "near_silence": lambda: rng.normal(size=n) * 10 ** (-70 / 20),
        "white_noise": lambda: rng.uniform(-1, 1, size=n),  # full scale
        "pink_noise": lambda: _pink(n, rng) * 0.1,
        "sine": lambda: 0.5 * np.sin(2 * np.pi * 440 * t),
        "square": lambda: 0.5 * np.sign(np.sin(2 * np.pi * 220 * t)),
        "saw": lambda: 0.5 * (2 * ((110 * t) % 1.0) - 1),
        "clicks": lambda: _clicks(n, rng),
    }[kind]()
    return x.astype(np.float32)


def write(path: Path, x: np.ndarray, rate: int = RATE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt, subtype = {".mp3": ("MP3", "MPEG_LAYER_III"), ".wav": ("WAV", "PCM_16")}[path.suffix]
    sf.write(path, x, rate, format=fmt, subtype=subtype)
    return path


FLAG_OF_KIND = {
    "silence": "silence",
    "near_silence": "silence",
    "white_noise": "noise",
    "pink_noise": "noise",
    "sine": "tone",
    "square": "tone",
    "saw": "tone",
    "clicks": "clicks",
}


@pytest.fixture(scope="module")
def inference(random_tiny_run) -> MusicGenreInference:
    model, config = random_tiny_run
    return MusicGenreInference(model_path=model, config_path=config)


def _not_music_lines(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "not music" in r.getMessage()
    ]


@pytest.mark.parametrize("kind", list(FLAG_OF_KIND))
def test_not_music_is_flagged_with_a_warning_through_folder_inference(inference, kind, tmp_path, caplog):
    folder = tmp_path / "music"
    x = synthetic(kind)
    files = [write(folder / f"{kind}.mp3", x), write(folder / f"{kind}.wav", x)]
    output = tmp_path / "report.json"
    with caplog.at_level(logging.WARNING):
        inference.batch_predict(folder, output=output, workers=1)
    report = json.loads(output.read_text(encoding="utf-8"))  # the flag as written to the report
    assert set(report["results"]) == {p.name for p in files}, report["errors"]
    lines = _not_music_lines(caplog)
    for path in files:
        content = report["results"][path.name]["content"]
        assert content["flag"] == FLAG_OF_KIND[kind], (path.name, content)
        # One warning line naming the file and what it is.
        named = [line for line in lines if str(path.resolve()) in line]
        assert len(named) == 1, lines
        assert FLAG_OF_KIND[kind] in named[0]


def test_the_flag_is_in_the_csv_report_and_kept_on_resume(inference, tmp_path, random_tiny_run):
    folder = tmp_path / "music"
    write(folder / "silence.wav", synthetic("silence"))
    write(folder / "tone.mp3", synthetic("square"))
    csv_out = tmp_path / "report.csv"
    inference.batch_predict(folder, output=csv_out, workers=1)
    rows = {r["file"]: r for r in csv.DictReader(csv_out.open(encoding="utf-8"))}
    assert rows["silence.wav"]["content"] == "silence" and rows["tone.mp3"]["content"] == "tone"
    json_out = tmp_path / "report.json"
    inference.batch_predict(folder, output=json_out, workers=1)
    again = inference.batch_predict(folder, output=json_out, workers=1)  # every result kept
    assert again["summary"]["resumed"] == 2
    assert again["results"]["silence.wav"]["content"]["flag"] == "silence"
    assert json.loads(json_out.read_text())["results"]["tone.mp3"]["content"]["flag"] == "tone"


def test_one_file_run_says_it_once(random_tiny_run, tmp_path, caplog):
    model, config = random_tiny_run
    path = write(tmp_path / "quiet.wav", synthetic("near_silence"))
    output = tmp_path / "one.json"
    with caplog.at_level(logging.WARNING):
        code = balanced_inference.main(
            [
                "--model",
                str(model),
                "--config",
                str(config),
                "--file",
                str(path),
                "--output",
                str(output),
                "--quiet",
            ]
        )
    assert code == 0
    assert len([line for line in _not_music_lines(caplog) if "quiet.wav" in line]) == 1
    assert json.loads(output.read_text())["results"]["quiet.wav"]["content"]["flag"] == "silence"


# Genuine clips the measures come closest to flagging: Experimental > Noise tracks (000995,
# 000997, 000998) and a Loud-Rock one (000825) are as steady as noise in places.
HARDEST = ("000995.mp3", "000997.mp3", "000998.mp3", "000825.mp3", "000897.mp3")


def test_genuine_clips_are_not_flagged(inference, real_clips_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        report = inference.batch_predict(real_clips_dir, workers=2)
    assert len(report["results"]) == 62 and set(HARDEST) <= set(report["results"])
    flagged = {k: r["content"] for k, r in report["results"].items() if r["content"]["flag"] is not None}
    assert flagged == {}
    assert _not_music_lines(caplog) == []


def test_genuine_clip_with_the_default_features(real_clips_dir):
    params = FeatureParams()
    for name in HARDEST:
        content = content_of(load_segments(real_clips_dir / name, params), params)
        assert content["flag"] is None, (name, content)
        assert content["change_vs_noise"] > 3.0 and content["peak_dbfs"] > -30.0


# --- The measures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("params", [PARAMS, FeatureParams()], ids=["small", "default"])
def test_levels_are_dbfs(params, tmp_path):
    """A sine of amplitude 0.5 is -9.0 dB RMS, white noise of deviation 0.1 is -20 dB."""
    t = np.arange(int(10 * params.sample_rate)) / params.sample_rate
    rng = np.random.default_rng(0)
    for x, expected in ((0.5 * np.sin(2 * np.pi * 997 * t), -9.03), (0.1 * rng.normal(size=len(t)), -20.0)):
        path = write(tmp_path / "x.wav", x.astype(np.float32), params.sample_rate)
        content = content_of(load_track_segments(path, params), params)
        assert content["level_dbfs"] == pytest.approx(expected, abs=0.5)


def test_noise_spread_is_what_stationary_noise_shows(tmp_path):
    """The worked-out spread of a sub-band's block level matches 300 blocks of simulated noise."""
    params = PARAMS
    blocks = 300
    seconds = blocks * params.segment_frames * params.hop_length / params.sample_rate
    x = np.random.default_rng(1).normal(size=int(seconds * params.sample_rate)) * 0.1
    path = write(tmp_path / "noise.wav", x.astype(np.float32), params.sample_rate)
    hop = params.segment_frames * params.hop_length / params.sample_rate
    segments = load_track_segments(path, params, hop_seconds=hop)  # disjoint blocks
    power = np.power(10.0, segments.astype(np.float64) / 10).mean(axis=2)  # (blocks, n_mels)
    g = level_weights(params)
    from genrekit.features.mel import mel_filterbank

    w = mel_filterbank(params.sample_rate, params.n_fft, params.n_mels, params.fmin, params.fmax)
    for group in (np.arange(0, 4), np.arange(12, 16), np.arange(28, 32)):
        measured = np.std(10 * np.log10(power[:, group] @ g[group]), ddof=1)
        expected = noise_spread_db(params, g[group] @ w[group].astype(np.float64), params.segment_frames)
        assert measured / expected == pytest.approx(1.0, abs=0.2), group


def test_short_files_are_only_said_silent(tmp_path):
    """Music can hold still for a few seconds: a 5-s tone is not told a tone, 5 s of silence is silence.
    Its 10 segments overlap; each frame counts once."""
    from genrekit.features.audio_files import decode_file

    n = int(5 * RATE)
    tone = write(tmp_path / "tone.wav", synthetic("sine")[:n])
    quiet = write(tmp_path / "quiet.wav", synthetic("silence")[:n])
    content = decode_file("tone.wav", tone, PARAMS).info["content"]
    assert content["flag"] is None and content["span_seconds"] == pytest.approx(5.0, abs=0.1)
    assert content["change_vs_noise"] < 1.0  # as steady as a tone is; too short to say so
    assert decode_file("quiet.wav", quiet, PARAMS).info["content"]["flag"] == "silence"


def test_a_backbone_front_end_gets_the_content_of_its_own_decode(tmp_path):
    """Embeddings are not log-mel dB: the file is measured through the default log-mel segments."""
    from genrekit.features.audio_files import content_of_file

    assert content_of_file(write(tmp_path / "quiet.wav", synthetic("silence")))["flag"] == "silence"
    assert content_of_file(write(tmp_path / "saw.mp3", synthetic("saw")))["flag"] == "tone"
    (tmp_path / "bad.mp3").write_bytes(b"not audio")
    assert content_of_file(tmp_path / "bad.mp3") is None
