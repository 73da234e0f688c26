"""The training config format: written and read back by one module, its version checked."""

from __future__ import annotations

import json

import pytest

from genrekit.errors import ModelError
from genrekit.train.run_config import (
    CONFIG_FORMAT,
    CONFIG_VERSION,
    load_training_config,
    write_training_config,
)

MINIMAL = {
    "settings": {"seed": 1},
    "features": {"n_mels": 8, "segment_frames": 4},
    "frontend": {"name": "mel_segments", "params": {"n_mels": 8, "segment_frames": 4}},
    "normalization": {},
    "vocabularies": {},
    "input_shape": [8, 4, 1],
}


def test_a_written_config_reads_back_with_its_format_and_version(tmp_path):
    path = write_training_config(tmp_path / "run.json", MINIMAL)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert list(raw)[:2] == ["format", "version"]
    assert raw["format"] == CONFIG_FORMAT and raw["version"] == CONFIG_VERSION
    assert load_training_config(path) == raw
    assert not list(tmp_path.glob("*.tmp"))  # nothing left behind by the atomic write


@pytest.mark.parametrize(
    "version, message",
    [
        (CONFIG_VERSION + 1, "written by a newer genrekit"),
        ("1", "must be a positive integer"),
        (0, "must be a positive integer"),
        (True, "must be a positive integer"),
    ],
)
def test_a_config_of_another_version_is_refused_by_name(tmp_path, version, message):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"format": CONFIG_FORMAT, "version": version, **MINIMAL}), encoding="utf-8")
    with pytest.raises(ModelError, match=message) as info:
        load_training_config(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("key", sorted(MINIMAL))
def test_a_config_lacking_a_section_is_refused(tmp_path, key):
    path = tmp_path / "run.json"
    data = {"format": CONFIG_FORMAT, "version": CONFIG_VERSION, **MINIMAL}
    del data[key]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ModelError, match=f"lacks '{key}'"):
        load_training_config(path)


def test_a_settings_file_is_not_a_training_config(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"seed": 3}), encoding="utf-8")
    with pytest.raises(ModelError, match="not a training config"):
        load_training_config(path)
