"""The model registry: each kind's front end, builder, refusals, learning rate and run-config keys."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from genrekit.errors import ConfigError
from genrekit.features.frontends import FRONTENDS
from genrekit.models.registry import (
    BACKBONES,
    MODELS,
    ModelSpec,
    kind_named,
    kind_only_keys,
    model_kind,
)
from genrekit.settings import Settings
from genrekit.train.run import base_learning_rate

HEADS = {"backbone": "musicnn"}
FINE_TUNE = {"backbone": "musicnn", "fine_tune_from": "runs/heads"}


@pytest.mark.parametrize(
    ("overrides", "kind", "frontend"),
    [
        ({}, "cnn", "mel_segments"),
        ({"backbone": "ast"}, "ast", "mel_segments"),
        (HEADS, "musicnn", "musicnn_embeddings"),
        (FINE_TUNE, "musicnn_fine_tuned", "musicnn_patches"),
    ],
)
def test_each_kind_is_chosen_by_the_settings_and_names_its_front_end(overrides, kind, frontend):
    settings = Settings.build(overrides=overrides)
    assert model_kind(settings).name == kind
    assert model_kind(settings.to_dict()) is MODELS[kind]  # a saved run's settings too
    assert settings.frontend == frontend == MODELS[kind].frontend


def test_every_kind_names_a_front_end_and_hooks_that_exist():
    assert BACKBONES == ("cnn", "ast", "musicnn")
    for kind in MODELS.values():
        assert kind.frontend in FRONTENDS and kind.backbone in BACKBONES
        for target in (kind.builder, kind.check_output, None if kind.norm_from_cache else kind.norm):
            if target is not None:
                module, _, name = target.partition(":")
                assert callable(getattr(importlib.import_module(module), name)), target


def test_spec_augment_is_refused_for_embeddings_in_one_line():
    for overrides in (HEADS, FINE_TUNE):
        settings = Settings.build(overrides={**overrides, "spec_augment": True})
        with pytest.raises(
            ConfigError, match="^spec_augment masks mel bands and frames: not for the musicnn backbone$"
        ):
            model_kind(settings).check_settings(settings)
    cnn = Settings.build(overrides={"spec_augment": True})
    model_kind(cnn).check_settings(cnn)  # the CNN takes it


def test_an_unknown_kind_or_backbone_is_refused_by_name():
    with pytest.raises(
        ConfigError, match="model kind 'vit' is not one of cnn, ast, musicnn, musicnn_fine_tuned"
    ):
        kind_named("vit")
    with pytest.raises(ConfigError, match="setting 'backbone' must be one of cnn, ast, musicnn, got 'vit'"):
        model_kind({"backbone": "vit"})
    with pytest.raises(
        ConfigError, match="'fine_tune_from' fine-tunes musicnn: it needs 'backbone' 'musicnn', got 'cnn'"
    ):
        Settings.build(overrides={"fine_tune_from": "runs/heads"})


def test_the_learning_rate_and_the_run_config_keys_of_each_kind():
    rates = {"learning_rate": 3e-3, "fine_tune_learning_rate": 2e-5}
    assert base_learning_rate(Settings.build(overrides=rates)) == 3e-3
    assert base_learning_rate(Settings.build(overrides={**HEADS, **rates})) == 3e-3
    assert base_learning_rate(Settings.build(overrides={**FINE_TUNE, **rates})) == 2e-5
    assert kind_only_keys() == {
        "fine_tune_from", "fine_tune_layers", "fine_tune_learning_rate", "width_factor", "conv_dropout",
        *(f"ast_{key}" for key in ("patch", "dim", "depth", "heads", "mlp_ratio", "dropout", "pooling")),
        "musicnn_model", "musicnn_output", "musicnn_patches", "head_units",
    }  # fmt: skip
    assert MODELS["cnn"].norm_from_cache and not MODELS["musicnn_fine_tuned"].norm_from_cache


def test_a_musicnn_setting_changes_only_the_musicnn_runs_it_shapes():
    """MUSICNN_OUTPUT's default changed (penultimate -> max_pool): CNN runs made before still resume."""
    from genrekit.train.resume import settings_differences

    before = {"musicnn_output": "penultimate", "head_units": 64}
    cnn = Settings.build(overrides=before).to_dict()
    assert settings_differences(cnn, Settings.build()) == []
    heads = Settings.build(overrides={**HEADS, **before}).to_dict()
    assert settings_differences(heads, Settings.build(overrides=HEADS)) == [
        "head_units: 64 -> 256",
        "musicnn_output: 'penultimate' -> 'max_pool'",
    ]
    # A fine-tuned run takes its layer and head width from its heads run: neither is compared.
    tuned = Settings.build(overrides={**FINE_TUNE, **before}).to_dict()
    assert settings_differences(tuned, Settings.build(overrides=FINE_TUNE)) == []


@pytest.mark.parametrize(
    ("overrides", "input_shape", "name"),
    [
        ({"width_factor": 0.0625}, (16, 8, 1), "genre_cnn"),
        ({"backbone": "ast", "ast_patch": 4, "ast_dim": 8, "ast_depth": 1}, (16, 8, 1), "genre_ast"),
        ({**HEADS, "head_units": 8}, (12,), "genre_heads"),
    ],
)
def test_a_kind_builds_its_model_from_a_spec(overrides, input_shape, name):
    settings = Settings.build(overrides=overrides)
    norm = {"mean": np.zeros(input_shape[0]).tolist(), "std": np.ones(input_shape[0]).tolist()}
    spec = ModelSpec(input_shape, {"top": 3, "medium": 0, "all": 5}, settings, norm)
    model = model_kind(settings).build(spec)
    assert model.name == name and tuple(model.input_shape[1:]) == input_shape
    assert {k: int(v.shape[-1]) for k, v in model.output.items()} == {"top": 3, "all": 5}  # no medium head
