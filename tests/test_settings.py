import dataclasses
import json
import types
import typing

import pytest

from genrekit.cli import config_values, settings_from_args
from genrekit.errors import ConfigError
from genrekit.settings import Settings, default_value, read_config_file


def test_the_defaults_are_the_dataclass_fields():
    s = Settings.build()
    assert s == Settings() and s.batch_size == default_value("batch_size") == 32
    assert s.sample_rate == 22050 and s.n_mels == 128 and s.num_segments == 10
    assert s.input_shape == (128, 64, 1)
    assert s.loss_weights == {"top": 1.0, "medium": 0.8, "all": 0.6}
    assert (s.demo_metadata_dir, s.demo_audio_dir) == ("fma_data/demo/fma_metadata", "fma_data/demo/fma_demo")


def test_every_field_is_typed_and_its_default_has_that_type():
    hints = typing.get_type_hints(Settings)
    for field in dataclasses.fields(Settings):
        assert hints[field.name] in (bool, int, float, str), field.name
        assert type(field.default) is hints[field.name], field.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().batch_size = 8


def test_to_dict_keeps_the_key_order_of_saved_run_configs():
    # Today's run configs list the settings by their UPPER_CASE names sorted (DATASET before DATA_DIR).
    keys = list(Settings().to_dict())
    assert keys == sorted(keys, key=str.upper) and len(keys) == len(dataclasses.fields(Settings))
    assert keys.index("dataset") < keys.index("data_dir")


def test_precedence_defaults_then_config_py_then_json_then_flags(tmp_path):
    config = types.ModuleType("config")
    config.__file__ = str(tmp_path / "config.py")
    config.BATCH_SIZE, config.SEED, config.NUM_EPOCHS, config._helper = 48, 7, 3, "not a setting"
    path = tmp_path / "c.json"
    path.write_text(
        json.dumps({"batch_size": 64, "learning_rate": 0.001, "seed": 8, "_comment": "notes are ignored"})
    )
    base = config_values(config)
    assert base == {"batch_size": 48, "seed": 7, "num_epochs": 3}
    s = Settings.build(path, {"batch_size": 16, "learning_rate": None}, base=base)
    assert s.batch_size == 16  # flag wins
    # JSON wins over config.py; a flag not given changes nothing
    assert s.learning_rate == 0.001 and s.seed == 8
    assert s.num_epochs == 3  # config.py wins over the package default
    assert s.patience == default_value("patience")
    args = types.SimpleNamespace(config=str(path), batch_size=None, output_dir="runs/x", verbose=True)
    assert settings_from_args(args, base).to_dict() == s.replace(batch_size=64, output_dir="runs/x").to_dict()


@pytest.mark.parametrize(
    "values, words",
    [
        ({"BATCH_SISE": 32}, "config.py: unknown setting 'batch_sise'"),
        ({"BATCH_SIZE": "32"}, "config.py: setting 'batch_size' must be an integer"),
        ({"MY_PATHS": ["a"]}, "config.py: unknown setting 'my_paths'"),
    ],
)
def test_config_py_names_only_settings_of_the_right_type(tmp_path, values, words):
    config = types.ModuleType("config")
    config.__file__ = str(tmp_path / "config.py")
    for name, value in values.items():
        setattr(config, name, value)
    with pytest.raises(ConfigError) as err:
        config_values(config)
    assert words in str(err.value)


def test_impossible_values_are_refused_however_settings_are_made():
    with pytest.raises(ConfigError, match="'batch_size' must be > 0"):
        Settings(batch_size=0)
    with pytest.raises(ConfigError, match="'batch_size' must be > 0"):
        Settings.build(base={"batch_size": 0})
    rate = Settings(learning_rate=1).learning_rate
    assert rate == 1.0 and type(rate) is float  # an integer for a float setting is made a float


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


def test_an_old_full_config_py_still_works_without_its_derived_constants():
    import types

    from genrekit.cli import config_values

    old = types.ModuleType("config")
    old.__file__ = "config.py"
    old.N_MELS, old.SEGMENT_FRAMES, old.BATCH_SIZE = 96, 32, 64
    old.INPUT_SHAPE, old.LOSS_WEIGHTS = (96, 32, 1), {"top": 1.0}  # computed by Settings now
    old.DEMO_METADATA_DIR, old.DEMO_AUDIO_DIR = "x/fma_metadata", "x/fma_demo"
    values = config_values(old)
    assert values == {"n_mels": 96, "segment_frames": 32, "batch_size": 64}
    assert Settings.build(base=values).input_shape == (96, 32, 1)


def test_scripts_find_a_run_folders_files_by_config_pys_names(tmp_path):
    from genrekit.cli import run_files

    defaults = Settings.build(
        base={"model_filename": "m.keras", "training_config_filename": "cfg.json", "output_dir": str(tmp_path)}
    )
    (tmp_path / "m.keras").write_bytes(b"")
    assert run_files(None, None, defaults) == (str(tmp_path / "m.keras"), None)  # no config beside it yet
    (tmp_path / "cfg.json").write_text("{}")
    assert run_files(str(tmp_path), None, defaults) == (str(tmp_path / "m.keras"), str(tmp_path / "cfg.json"))
    assert run_files(str(tmp_path / "m.keras"), "given.json", defaults) == (str(tmp_path / "m.keras"), "given.json")
