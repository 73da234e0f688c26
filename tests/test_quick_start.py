"""quick_start.py end to end in its smallest mode: every artefact is there and usable."""

import json
import re

import numpy as np
import pytest

import quick_start

pytestmark = pytest.mark.slow


def test_quick_start_smallest_mode_produces_every_artefact(tmp_path, capsys):
    out, demo = tmp_path / "run", tmp_path / "demo"
    args = [
        "--smallest",
        "--demo_dir",
        str(demo),
        "--output_dir",
        str(out),
        "--cache_dir",
        str(tmp_path / "features"),
    ]
    assert quick_start.main(args) == 0
    printed = capsys.readouterr().out
    for step in ("setup", "inspect", "features", "train", "evaluate", "predict"):
        assert f"] {step} " in printed
    assert "total time" in printed and "next:" in printed

    import keras

    model = keras.models.load_model(out / "balanced_hierarchical_genre_model.h5")
    config = json.loads((out / "balanced_training_config.json").read_text())
    pred = model.predict(np.zeros((1, *config["input_shape"]), np.float32), verbose=0)
    assert pred["top"].shape == (1, len(config["vocabularies"]["top"]["names"]))

    report = json.loads((out / "evaluation" / "evaluation_report.json").read_text())
    for level in ("top", "medium", "all"):
        assert level in report
    assert 0.0 <= report["top"]["track"]["balanced_accuracy"] <= 1.0
    assert (out / "evaluation" / "evaluation_report.md").is_file()
    assert (out / "inspection" / "inspection_report.json").is_file()

    predictions = json.loads((out / "predictions.json").read_text())
    linked = sorted(p.name for p in (out / "music_to_predict").iterdir())
    done = sorted(list(predictions["results"]) + list(predictions["errors"]))
    assert [name.split("/")[-1] for name in done] == linked  # every file has a result or an error
    assert predictions["summary"]["processed"] >= 1

    # a second run reuses everything: no retraining, nothing predicted again
    mtime = (out / "balanced_hierarchical_genre_model.h5").stat().st_mtime_ns
    assert quick_start.main([*args, "--steps", "train,predict"]) == 0
    assert (out / "balanced_hierarchical_genre_model.h5").stat().st_mtime_ns == mtime
    captured = capsys.readouterr()
    assert "holds a finished run" in captured.out + captured.err
    assert re.search(r": 0 to do, [1-9]\d* kept from an earlier run, 0 recomputed", captured.out + captured.err)


def test_real_data_missing_says_which_setup_command(tmp_path, capsys):
    code = quick_start.main(
        [
            "--data",
            "real",
            "--steps",
            "setup",
            "--output_dir",
            str(tmp_path / "run"),
            "--config",
            str(_config(tmp_path)),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "python setup_fma_dataset.py --subset metadata --symlinks" in err


def test_unknown_step_is_refused(tmp_path, capsys):
    assert quick_start.main(["--steps", "setup,dance", "--output_dir", str(tmp_path)]) == 2
    assert "unknown step 'dance'" in capsys.readouterr().err


def _config(tmp_path):
    path = tmp_path / "paths.json"
    path.write_text(
        json.dumps({"metadata_dir": str(tmp_path / "no_meta"), "audio_dir": str(tmp_path / "no_audio")})
    )
    return path


@pytest.mark.parametrize(
    "extra, config, backbone",
    [
        ([], None, "musicnn"),  # your own music: the heads on musicnn embeddings
        (["--backbone", "cnn"], None, "cnn"),  # the flag chooses
        (["--smallest"], None, "cnn"),  # the one-minute check keeps the small CNN
        ([], {"backbone": "ast"}, "ast"),  # so does the --config file
    ],
)
def test_own_music_trains_musicnn_heads_unless_chosen(tmp_path, extra, config, backbone):
    argv = ["--dataset", f"folder:{tmp_path / 'music'}", *extra]
    if config is not None:
        (tmp_path / "c.json").write_text(json.dumps(config))
        argv += ["--config", str(tmp_path / "c.json")]
    settings, _ = quick_start.resolve(quick_start.build_parser().parse_args(argv))
    assert settings.backbone == backbone
    if backbone == "musicnn":  # every clip's 10 patches: the demo's patch count is for the demo only
        assert settings.musicnn_patches == 10 and settings.dataset.startswith("folder:")
        assert settings.musicnn_output == "max_pool"  # the heads' input measured best (bench rows 9, 14)
        recipe = (
            settings.learning_rate,
            settings.num_epochs,
            settings.patience,
            settings.sampling_thresholds,
        )
        assert recipe == (1e-3, 24, 6, "absolute")  # row 15 of docs/results_models.md
    (tmp_path / "o.json").write_text(json.dumps({"musicnn_output": "pools"}))
    mine = ["--dataset", "folder:x", "--backbone", "musicnn", "--config", str(tmp_path / "o.json")]
    assert quick_start.resolve(quick_start.build_parser().parse_args(mine))[0].musicnn_output == "pools"
    demo_musicnn, _ = quick_start.resolve(quick_start.build_parser().parse_args(["--backbone", "musicnn"]))
    assert demo_musicnn.musicnn_output == "max_pool"  # MUSICNN_OUTPUT's default (docs/results_models.md)
    assert demo_musicnn.num_epochs == 10  # the demo's recipe; row 15's is for your own music only
    demo, _ = quick_start.resolve(quick_start.build_parser().parse_args([]))
    assert demo.backbone == "cnn"  # the demo keeps its CNN


def test_own_music_says_which_path_in_one_line(tmp_path, capsys):
    from tests import own_fixtures as fx

    fx.flat_genre_folders(tmp_path / "music", per_genre=3)
    argv = [
        "--dataset",
        f"folder:{tmp_path / 'music'}",
        "--steps",
        "setup",
        "--output_dir",
        str(tmp_path / "o"),
    ]
    assert quick_start.main(argv) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "musicnn" in line]
    assert len(lines) == 1 and "--backbone cnn" in lines[0], lines
    assert quick_start.main([*argv, "--backbone", "cnn"]) == 0
    assert "musicnn" not in capsys.readouterr().out
