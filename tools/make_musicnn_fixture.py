"""Run the ORIGINAL musicnn code on the genuine FMA clip and store its outputs as a test fixture.

Not part of CI: it creates a throwaway environment (Python 3.11, tensorflow 2.21, tf-keras 2.21,
librosa 0.11; musicnn's own dependencies are not installed, its package folder is put on
sys.path), runs musicnn 0.1.0's ``batch_data`` and its TF1 graph (``models.define_model`` and the
checkpoint restore of ``extractor.extractor``, graph mode, TF_USE_LEGACY_KERAS=1) and writes
``tests/fixtures/musicnn_000002.npz`` (~0.2 MB), which ``tests/test_musicnn.py`` compares the port
against:

    python tools/make_musicnn_fixture.py                     # venv in /tmp/musicnn-orig-venv
    GENREKIT_FMA_REAL=/work/shared/fma-real python tools/make_musicnn_fixture.py --venv /tmp/v

What it stores, for MSD_musicnn and MTT_musicnn:

- ``patches``: three of the clip's 187-frame patches from musicnn's ``batch_data`` with its
  float16 cast removed (float32 throughout, else every patch of this clip holds infinities);
- ``<model>.taggram``, ``penultimate``, ``max_pool``, ``mean_pool``: the original graph's outputs
  for those patches (test A: the port, fed the same patches, must agree within 1e-4);
- ``<model>.taggram_all_f32``: the taggram of every patch of the clip, front end without the cast;
- ``<model>.taggram_all_f16``: the same as musicnn ships it (float16 cast: NaN where it overflows);
- ``<model>.taggram_all_f16_rounded``: float16 rounding of the mel values and of the log, without
  the overflow (10,000 x mel in float32): what the rounding alone changes (test B);
- ``f16_inf_values``: how many input values the shipped front end turns into infinity.

musicnn 0.1.0's ``extractor`` returns the first patch's ``penultimate`` for every later patch (its
batch loop concatenates a stale variable), so this script runs the graph itself, all patches in
one batch; the taggram is cross-checked against ``extractor.extractor``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The genuine FMA files live beside the checkout (tests/conftest.py reads the same variable).
FMA_REAL = Path(os.environ.get("GENREKIT_FMA_REAL", REPO.parent / "shared" / "fma-real"))
DEFAULT_AUDIO = FMA_REAL / "fma_small" / "000" / "000002.mp3"
DEFAULT_OUT = REPO / "tests" / "fixtures" / "musicnn_000002.npz"
PACKAGES = ["tensorflow==2.21.0", "tf-keras==2.21.0", "librosa==0.11.0", "soundfile"]
PATCHES_KEPT = (0, 4, 9)  # patch indices whose inputs and outputs are stored (test A)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--venv", default="/tmp/musicnn-orig-venv", help="throwaway venv (created when missing)"
    )
    parser.add_argument("--python", default="python3.11", help="interpreter the venv is created with")
    parser.add_argument("--audio", default=str(DEFAULT_AUDIO), help="the audio file (default: the FMA clip)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="the fixture written")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--package_dir", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.inside:
        return _inside(args)
    sys.path.insert(0, str(REPO))
    from genrekit.models.musicnn_weights import download_wheel, verify_wheel

    venv = Path(args.venv)
    if not (venv / "bin" / "python").exists():
        subprocess.run([args.python, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", *PACKAGES], check=True)
    with tempfile.TemporaryDirectory(prefix="musicnn-orig-") as tmp:
        wheel = download_wheel(tmp)
        verify_wheel(wheel)
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(Path(tmp) / "pkg", [n for n in zf.namelist() if n.startswith("musicnn/")])
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        cmd = [str(venv / "bin" / "python"), __file__, "--inside", "--package_dir", str(Path(tmp) / "pkg")]
        subprocess.run([*cmd, "--audio", args.audio, "--out", args.out], check=True, env=env)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size / 1e3:.0f} kB)")
    return 0


def _inside(args: argparse.Namespace) -> int:
    """In the throwaway venv: musicnn's own code, imported from the wheel's files."""
    import numpy as np

    sys.path.insert(0, args.package_dir)
    import librosa
    import tensorflow as tf
    from musicnn import configuration, extractor, models

    n_frames = 187
    audio = args.audio
    shipped, _ = extractor.batch_data(audio, n_frames, n_frames)  # float16 cast and all

    # The same front end without the float16 cast (musicnn's batch_data, line for line otherwise).
    y, sr = librosa.load(audio, sr=configuration.SR)
    mel = librosa.feature.melspectrogram(
        y=y,
        sr=sr,
        hop_length=configuration.FFT_HOP,
        n_fft=configuration.FFT_SIZE,
        n_mels=configuration.N_MELS,
    ).T
    rep_f32 = np.log10(10000 * mel + 1)
    rounded = np.log10(10000 * mel.astype(np.float16).astype(np.float32) + 1).astype(np.float16)
    starts = range(0, rep_f32.shape[0] - n_frames + 1, n_frames)
    f32 = np.stack([rep_f32[s : s + n_frames] for s in starts]).astype(np.float32)
    f16_rounded = np.stack([rounded[s : s + n_frames] for s in starts]).astype(np.float32)
    assert f32.shape == shipped.shape, (f32.shape, shipped.shape)

    out: dict[str, np.ndarray] = {
        "patches": f32[list(PATCHES_KEPT)],
        "patch_index": np.asarray(PATCHES_KEPT),
        "f16_inf_values": np.asarray(int(np.isinf(shipped).sum())),
        "f16_patches_with_inf": np.asarray(int(np.isinf(shipped).any(axis=(1, 2)).sum())),
    }
    for model in ("MSD_musicnn", "MTT_musicnn"):
        tf.compat.v1.reset_default_graph()
        x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, configuration.N_MELS])
        is_training = tf.compat.v1.placeholder(tf.bool)
        logits, *_, mean_pool, max_pool, penultimate = models.define_model(x, is_training, model, 50)
        fetches = {
            "taggram": tf.nn.sigmoid(logits),
            "penultimate": penultimate,
            "mean_pool": mean_pool,
            "max_pool": max_pool,
        }
        with tf.compat.v1.Session() as sess:
            tf.compat.v1.train.Saver().restore(sess, os.path.join(args.package_dir, "musicnn", model) + "/")

            def run(batch, fetches=fetches, sess=sess, x=x, is_training=is_training):
                return sess.run(fetches, {x: batch, is_training: False})

            kept = run(out["patches"])
            for key, value in kept.items():
                out[f"{model}.{key}"] = value.astype(np.float32)
            out[f"{model}.taggram_all_f32"] = run(f32)["taggram"]
            out[f"{model}.taggram_all_f16"] = run(shipped.astype(np.float32))["taggram"]
            out[f"{model}.taggram_all_f16_rounded"] = run(f16_rounded)["taggram"]
        shipped_taggram, _ = extractor.extractor(audio, model=model, extract_features=False)
        same = np.array_equal(np.isnan(shipped_taggram), np.isnan(out[f"{model}.taggram_all_f16"]))
        assert same and np.allclose(
            shipped_taggram, out[f"{model}.taggram_all_f16"], equal_nan=True, atol=1e-6
        )
    out["meta"] = np.asarray(
        json.dumps(
            {
                "audio": Path(audio).name,
                "musicnn": "0.1.0",
                "tensorflow": tf.__version__,
                "librosa": librosa.__version__,
                "numpy": np.__version__,
            }
        )
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
