"""The one atomic writer and the one file hasher."""

from __future__ import annotations

import hashlib
import json

import pytest

from genrekit.errors import ConfigError
from genrekit.fileio import file_digest, read_json, replacing, sha1_file, write_json_atomic, write_text_atomic


def test_json_is_written_whole_with_a_final_newline_and_nothing_left_beside(tmp_path):
    path = write_json_atomic(tmp_path / "sub" / "a.json", {"b": [1, 2], "é": 1.5})
    assert path.read_text(encoding="utf-8") == '{\n  "b": [\n    1,\n    2\n  ],\n  "\\u00e9": 1.5\n}\n'
    write_json_atomic(path, {"é": 1}, ensure_ascii=False, indent=None)
    assert path.read_bytes() == '{"é": 1}\n'.encode()
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_text_keeps_its_line_endings(tmp_path):
    path = write_text_atomic(tmp_path / "t.csv", "a,b\r\n1,2\r\n")
    assert path.read_bytes() == b"a,b\r\n1,2\r\n"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "keep.json"
    path.write_text("old", encoding="utf-8")
    with pytest.raises(ValueError, match="Out of range float"):
        write_json_atomic(path, {"x": float("nan")}, allow_nan=False)
    with pytest.raises(RuntimeError), replacing(path) as tmp:
        tmp.write_text("half", encoding="utf-8")
        raise RuntimeError("killed mid-write")
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.json"]


def test_replacing_keeps_the_suffix_a_library_chooses_its_format_by(tmp_path):
    with replacing(tmp_path / "model.weights.h5") as tmp:
        assert tmp.name.endswith(".h5") and tmp.parent == tmp_path
        tmp.write_bytes(b"x")
    assert (tmp_path / "model.weights.h5").read_bytes() == b"x"


def test_replacing_keeps_every_suffix_keras_weights_need(tmp_path):
    """Keras 3 refuses save_weights to a name not ending in .weights.h5 (musicnn's converted weights)."""
    import keras

    final = tmp_path / "MSD_musicnn.weights.h5"
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    with replacing(final) as tmp:
        assert tmp.name.endswith(".weights.h5") and tmp.name.startswith(".MSD_musicnn.")
        model.save_weights(tmp)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MSD_musicnn.weights.h5"]
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    other.load_weights(final)
    assert all((a == b).all() for a, b in zip(model.get_weights(), other.get_weights(), strict=True))


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
@pytest.mark.parametrize("progress", [False, True])
def test_file_digest_matches_hashlib_over_chunks(tmp_path, algorithm, progress):
    data = bytes(range(256)) * 1000  # 256,000 bytes: several chunks of 10,000
    path = tmp_path / "blob"
    path.write_bytes(data)
    expected = hashlib.new(algorithm, data).hexdigest()
    assert file_digest(path, algorithm, progress=progress, chunk_size=10_000) == expected
    if algorithm == "sha1":
        assert sha1_file(path) == expected


def test_read_json_names_the_file_and_the_problem(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.json: settings not found"):
        read_json(tmp_path / "missing.json", error=ConfigError, what="settings")
    bad = tmp_path / "bad.json"
    bad.write_text("{oops", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.json: not valid JSON"):
        read_json(bad, error=ConfigError)
    bad.write_text(json.dumps([1]), encoding="utf-8")
    assert read_json(bad, error=ConfigError) == [1]
