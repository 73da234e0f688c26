import json

import pytest

import config
from genrekit.errors import ConfigError
from genrekit.settings import Settings, read_config_file


def test_defaults_come_from_config_py():
    s = Settings.build()
    assert s.batch_size == config.BATCH_SIZE
    assert s.sample_rate == 22050 and s.n_mels == 128 and s.num_segments == 10
    assert s.input_shape == (128, 64, 1)
    assert s.loss_weights == {"top": 1.0, "medium": 0.8, "all": 0.6}


def test_precedence_config_py_then_json_then_flags(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"batch_size": 64, "learning_rate": 0.001, "_comment": "notes are ignored"}))
    s = Settings.build(path, {"batch_size": 16, "learning_rate": None})
    assert s.batch_size == 16  # flag wins
    assert s.learning_rate == 0.001  # JSON wins over config.py; a flag not given changes nothing


def test_training_config_settings_section_is_read(tmp_path):
    path = tmp_path / "balanced_training_config.json"
    path.write_text(json.dumps({"settings": {"n_mels": 64}, "vocabularies": {}}))
    assert Settings.build(path).n_mels == 64


@pytest.mark.parametrize(
    "content, words",
    [
        ({"batch_sise": 32}, "unknown setting 'batch_sise'"),
        ({"batch_size": "32"}, "'batch_size' must be an integer"),
        ({"batch_size": 0}, "'batch_size' must be > 0"),
        ({"use_focal_loss": 1}, "'use_focal_loss' must be true or false"),
        ({"threshold": 1.5}, "'threshold' must be in (0, 1)"),
        ({"subset": "huge"}, "'subset' must be one of small, medium, large"),
        ({"oversample_threshold": 9000}, "'oversample_threshold' (9000) must not exceed"),
    ],
)
def test_bad_json_is_refused_by_key(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ConfigError) as err:
        Settings.build(path)
    assert words in str(err.value)


def test_unreadable_config_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="broken.json: not valid JSON"):
        read_config_file(path)
    with pytest.raises(ConfigError, match="config file not found"):
        read_config_file(tmp_path / "absent.json")


def test_replace_checks_values():
    s = Settings.build()
    assert s.replace(batch_size=8).batch_size == 8
    with pytest.raises(ConfigError):
        s.replace(width_factor=0.0)
