"""The front-end seam: what turns audio into model input owns its parameters, cache name, manifest
check and input shape (genrekit.features.frontends); the cache and the run config only ask it."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, ClassVar

import numpy as np
import pytest

from genrekit.errors import CacheError, ConfigError, ModelError
from genrekit.features import frontends
from genrekit.features.frontends import FrontEnd, MelSegments
from genrekit.features.mel import FeatureParams
from genrekit.settings import Settings
from genrekit.train.run_config import frontend_of, load_training_config
from tests.inference_helpers import FEATURES, training_config, vocabularies


def test_mel_segments_of_the_default_settings():
    mel = frontends.from_settings(Settings.build())
    assert mel == MelSegments(FeatureParams())
    assert mel.input_shape == (128, 64, 1)  # the README's input
    assert mel.row_shape == (10, 128, 64)  # NUM_SEGMENTS segments per track in the cache
    # The caches built before front ends keep their folder names.
    assert mel.cache_name() == FeatureParams().cache_name()
    assert mel.cache_name().startswith("sr22050_mel128_fft2048_hop512_seg10x64_30s_")
    assert mel.describe_input() == "128 mels x 64 frames"


def test_a_frontend_section_round_trips_and_unknown_names_are_refused():
    mel = MelSegments(FeatureParams(n_mels=32, num_segments=4))
    section = mel.to_config()
    assert section["name"] == "mel_segments" and section["params"]["n_mels"] == 32
    assert frontends.from_config(json.loads(json.dumps(section))) == mel
    with pytest.raises(ConfigError, match="front end 'musicnn' is not one of mel_segments"):
        frontends.from_config({"name": "musicnn", "params": {}})
    with pytest.raises(ConfigError, match="n_mels=0 must be a positive integer"):
        frontends.from_config({"name": "mel_segments", "params": {**section["params"], "n_mels": 0}})


def _manifest(made_by: FrontEnd, changes: dict[str, Any]) -> dict[str, Any]:
    manifest = {"frontend": made_by.name, "feature_version": made_by.version, "params": made_by.params()}
    manifest.update(changes)
    return {k: v for k, v in manifest.items() if v is not None}


@pytest.mark.parametrize(
    "changes, message",
    [
        ({}, None),
        ({"frontend": None}, None),  # a part written before front ends: log-mel segments
        ({"frontend": "musicnn"}, "holds 'musicnn' features, not 'mel_segments'"),
        ({"feature_version": 0}, "feature code version 0, this is version 1"),
        ({"params": {**FeatureParams().to_dict(), "n_mels": 64}}, r"n_mels=64 \(asked 128\)"),
        ({"params": {**FeatureParams().to_dict(), "n_bins": 3}}, r"n_bins=3 \(unknown\)"),
    ],
)
def test_the_manifest_check_names_every_difference(tmp_path, changes, message):
    mel = MelSegments()
    part = tmp_path / "cache" / "part-s0of1-000"
    if message is None:
        mel.check_manifest(part, _manifest(mel, changes))
    else:
        with pytest.raises(CacheError, match=message) as info:
            mel.check_manifest(part, _manifest(mel, changes))
        assert str(part) in str(info.value)


def test_input_problems_compare_the_config_the_front_end_and_the_model():
    mel = MelSegments(FeatureParams(n_mels=32, segment_frames=16, duration=3.0))
    assert mel.input_problems([32, 16, 1], (None, 32, 16, 1)) == []
    assert mel.input_problems([32, 32, 1], (None, 32, 16, 1)) == [
        "the config's input_shape (32, 32, 1) disagrees with its features (32 mels x 16 frames)",
        "model input shape (32, 16, 1) != config input_shape (32, 32, 1)",
    ]


def test_a_version_1_config_loads_and_gives_the_same_front_end(tmp_path):
    """A config as version 1 wrote it (no frontend section) still loads; its features make the front end."""
    v2 = training_config("model.h5", vocabularies())
    v1 = {k: v for k, v in v2.items() if k != "frontend"}
    v1["version"] = 1
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(v1), encoding="utf-8")
    loaded = load_training_config(path)
    assert "frontend" not in loaded  # read as written, not rewritten
    want = MelSegments(FeatureParams(**FEATURES))
    assert frontend_of(loaded, path) == want == frontend_of(v2)
    assert frontend_of(loaded).input_shape == tuple(loaded["input_shape"]) == (32, 16, 1)
    # version 2 requires the section
    path.write_text(json.dumps({**v1, "version": 2}), encoding="utf-8")
    with pytest.raises(ModelError, match="lacks 'frontend'"):
        load_training_config(path)


def test_a_bad_frontend_section_names_the_config(tmp_path):
    config = {**training_config("model.h5", vocabularies()), "frontend": {"name": "nope", "params": {}}}
    with pytest.raises(ModelError, match=r"run\.json: front end 'nope' is not one of"):
        frontend_of(config, tmp_path / "run.json")


@dataclasses.dataclass(frozen=True)
class MeanSegment(MelSegments):
    """A second front end, defined outside the package: the mean of the log-mel segments (its
    parameters, settings and statistics are log-mel segments'; its rows and input are its own)."""

    name: ClassVar[str] = "mel_mean"
    version: ClassVar[int] = 1

    @property
    def row_shape(self) -> tuple[int, ...]:
        return (1, *self.features.segment_shape)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.features.segment_shape  # no channel axis

    def load(self, path: str | os.PathLike, *, notes: list[str] | None = None) -> np.ndarray:
        return super().load(path, notes=notes).mean(axis=0, keepdims=True)

    def cache_name(self) -> str:
        return "mean_" + self.features.cache_name()

    def describe_input(self) -> str:
        return "one mean segment"


def test_a_second_front_end_is_a_new_class_the_cache_builds_and_keeps_apart(real_clip, tmp_path):
    """Worker processes build a cache of another front end without a change to the cache."""
    from genrekit.features.cache import FeatureCache, cache_folder, ensure_cache
    from genrekit.train.pipeline import iter_segment_batches

    params = FeatureParams(duration=3.0, num_segments=4)
    mean, mel = MeanSegment(params), MelSegments(params)
    folder = cache_folder(tmp_path / "features", real_clip.parent, mean)
    assert folder.name.startswith("mean_sr22050") and folder != cache_folder(tmp_path, real_clip.parent, mel)
    summary = ensure_cache(folder, [(2, real_clip)], mean, workers=1, progress=False)
    assert summary.done == 1
    (part,) = folder.glob("part-*")
    manifest = json.loads((part / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["frontend"] == "mel_mean" and manifest["params"] == params.to_dict()
    with FeatureCache.open(folder, mean) as cache:
        row = cache.read([2])
        assert row.shape == (1, 1, 128, 64)
        want = mel.load(real_clip).mean(axis=0)
        np.testing.assert_allclose(row[0, 0].astype(np.float32), want, atol=0.05)
        (x, index), *_ = iter_segment_batches(cache, np.array([2]))
        assert x.shape == (1, 128, 64) and index.tolist() == [0]  # the front end's input shape
    with pytest.raises(CacheError, match="holds 'mel_mean' features, not 'mel_segments'"):
        FeatureCache.open(folder, mel)
