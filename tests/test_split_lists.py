"""Published split lists (issue 26): ``--split_file SPLIT=FILE`` on a GTZAN-layout collection.

The collection is generated in GTZAN's layout (``genre/genre.000NN.wav``) with GTZAN-style list
files: some tracks listed in none (left out), one listed file missing (one warning line naming
the list, its line and the path), one listed as ``.wav`` that is on disk as ``.au`` (GTZAN's
original archive). A one-epoch training and the evaluation use exactly the listed split.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from genrekit.cli import split_file_overrides
from genrekit.datasets import base as datasets
from genrekit.datasets.own import SPLITS_FILE, FolderDataset, ManifestDataset
from genrekit.errors import ConfigError, DatasetError
from genrekit.settings import Settings
from tests import own_fixtures as fx

GENRES = ("blues", "jazz", "rock")
PER_GENRE = 6  # 000-002 training, 003 validation, 004 test, 005 in no list (jazz's: test, as .au)
MISSING = "blues/blues.00099.wav"  # listed in training, not in the collection
LISTS = {"training": "train_filtered.txt", "validation": "valid_filtered.txt", "test": "test_filtered.txt"}


def _expected() -> dict[str, str]:
    """Relative path on disk -> split, by hand."""
    split_of = {0: "training", 1: "training", 2: "training", 3: "validation", 4: "test"}
    expected = {f"{g}/{g}.{i:05d}.wav": split_of[i] for g in GENRES for i in range(5)}
    expected["jazz/jazz.00005.au"] = "test"
    return expected


@pytest.fixture(scope="module")
def gtzan(tmp_path_factory) -> dict:
    """GTZAN's layout and its three list files (beside the collection, as users keep them)."""
    base = tmp_path_factory.mktemp("gtzan")
    root = base / "genres"
    for g, genre in enumerate(GENRES):
        for i in range(PER_GENRE):
            suffix = "au" if (genre, i) == ("jazz", 5) else "wav"
            fx.write_audio(root / genre / f"{genre}.{i:05d}.{suffix}", fx.clip(g * PER_GENRE + i, 3 * g))
    listed: dict[str, list[str]] = {split: [] for split in LISTS}
    for path, split in _expected().items():
        listed[split].append(str(Path(path).with_suffix(".wav").as_posix()))  # the lists say .wav
    listed["training"].insert(2, MISSING)
    lists = {}
    for split, name in LISTS.items():
        lists[split] = base / "splits" / name
        lists[split].parent.mkdir(exist_ok=True)
        header = "# a comment line\n\n" if split == "training" else ""
        lists[split].write_text(header + "\n".join(listed[split]) + "\n")
    return {"base": base, "root": root, "lists": lists}


def test_lists_give_each_track_its_split_and_leave_the_others_out(gtzan, caplog):
    dataset = FolderDataset(gtzan["root"], split_lists=gtzan["lists"])
    with caplog.at_level(logging.INFO):
        labelled = dataset.load()
    table = dataset.splits_table()
    got = {
        Path(p).relative_to(gtzan["root"]).as_posix(): s
        for p, s in zip(table["path"], table["split"], strict=True)
    }
    assert got == _expected()
    assert labelled.targets["split"].value_counts().to_dict() == {"training": 9, "test": 4, "validation": 3}
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    # Line 5 of the training list: the comment, a blank line, two tracks, then the missing one.
    assert warnings == [
        f"{gtzan['lists']['training']} line 5: listed file {MISSING} does not exist "
        f"({gtzan['root'] / MISSING}); left out of the training split"
    ]
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert any(
        m.startswith(f"2 of the 18 tracks of {gtzan['root']} are in no split list: left out") for m in infos
    )
    assert any(m.startswith("1 listed files were found under another suffix") for m in infos)


def test_lists_through_the_settings_and_the_flag(gtzan):
    flags = [f"{split}={path}" for split, path in gtzan["lists"].items()]
    settings = Settings.build(overrides={"dataset": f"folder:{gtzan['root']}", **split_file_overrides(flags)})
    assert settings.split_file_validation == str(gtzan["lists"]["validation"])
    dataset = datasets.from_settings(settings)
    assert dict(zip(dataset.splits_table()["path"], dataset.splits_table()["split"], strict=True)) == {
        str(gtzan["root"] / p): s for p, s in _expected().items()
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"split_file_training": "a.txt", "split_file_validation": "b.txt", "split_file_test": "c.txt"},
         "setting 'split_file_training' gives a split list, which is for a folder:/csv: collection"),
        ({"dataset": "folder:x", "split_file_training": "a.txt", "split_file_test": "c.txt"},
         "split lists are given for split_file_training, split_file_test but not split_file_validation"),
    ],
)  # fmt: skip
def test_settings_refuse_split_lists_for_fma_or_fewer_than_three(overrides, message):
    with pytest.raises(ConfigError, match=message):
        Settings.build(overrides=overrides)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["train=a.txt"], "--split_file 'train=a.txt' must be SPLIT=FILE with SPLIT one of training, validation, test"),
        (["training"], "must be SPLIT=FILE"),
        (["test=a.txt", "test=b.txt"], "the test split's list is given twice"),
    ],
)  # fmt: skip
def test_bad_split_file_flag_is_one_clear_line(flags, message):
    with pytest.raises(ConfigError, match=message):
        split_file_overrides(flags)


def _lists(tmp_path: Path, training: str, validation: str = "x", test: str = "y") -> dict[str, Path]:
    lists = {}
    for split, text in (("training", training), ("validation", validation), ("test", test)):
        lists[split] = tmp_path / f"{split}.txt"
        lists[split].write_text(text)
    return lists


def test_bad_lists_are_one_clear_line(gtzan, tmp_path):
    root = gtzan["root"]
    twice = _lists(tmp_path, "blues/blues.00000.wav\n", "rock/rock.00000.wav\nblues/blues.00000.wav\n")
    with pytest.raises(DatasetError, match=r"validation.txt line 2: blues/blues.00000.wav is listed already "
                       r"\(.*training.txt line 1, training\); a track belongs to one split"):  # fmt: skip
        FolderDataset(root, split_lists=twice).load()
    elsewhere = _lists(tmp_path, "genres/blues/blues.00000.wav\n")
    with pytest.raises(DatasetError, match=rf"none of the 3 files the split lists name is a track of {root} "
                       rf"\(lines are paths relative to {root}, e.g. 'genres/blues/blues.00000.wav'"):  # fmt: skip
        FolderDataset(root, split_lists=elsewhere).load()
    (tmp_path / "validation.txt").write_text("# nothing\n\n")
    with pytest.raises(DatasetError, match=r"split list .*validation.txt \(validation\) lists no files"):
        FolderDataset(root, split_lists=elsewhere).load()
    absent = {**gtzan["lists"], "test": tmp_path / "nope.txt"}
    with pytest.raises(DatasetError, match=r"split list .*nope.txt \(test\) does not exist"):
        FolderDataset(root, split_lists=absent).load()


def test_manifest_rows_are_matched_and_a_split_column_with_lists_is_refused(gtzan, tmp_path):
    root = gtzan["root"]
    rows = [f"{p},{p.split('/')[0].capitalize()}" for p in _expected()]
    manifest = root.parent / "manifest.csv"  # beside genres/: list lines are relative to its folder
    manifest.write_text("path,genres\n" + "\n".join(f"genres/{r}" for r in rows) + "\n")
    lists = _lists(
        tmp_path,
        "".join(f"genres/{p}\n" for p, s in _expected().items() if s == "training"),
        "".join(f"genres/{p}\n" for p, s in _expected().items() if s == "validation"),
        "".join(f"genres/{p}\n" for p, s in _expected().items() if s == "test"),
    )
    table = ManifestDataset(manifest, split_lists=lists).splits_table()
    assert table["split"].value_counts().to_dict() == {"training": 9, "test": 4, "validation": 3}
    with_split = root.parent / "with_split.csv"
    with_split.write_text("path,genres,split\n" + "".join(f"genres/{r},test\n" for r in rows))
    with pytest.raises(DatasetError, match="gives a split column and split lists are given too"):
        ManifestDataset(with_split, split_lists=lists).load()


@pytest.mark.slow
def test_inspector_trainer_and_evaluator_use_the_published_split(gtzan, capsys):
    import balanced_trainer
    import fma_inspector
    import model_evaluation

    base, run = gtzan["base"], gtzan["base"] / "run"
    settings = fx.tiny_settings_file(base)
    flags = [arg for split, path in gtzan["lists"].items() for arg in ("--split_file", f"{split}={path}")]
    inspect = ["--dataset", f"folder:{gtzan['root']}", *flags, "--output_dir", str(base / "inspect")]
    assert fma_inspector.main([*inspect, "--no_plots", "--no_audio_probe"]) == 0
    assert "16 tracks" in capsys.readouterr().out
    argv = [
        "--dataset",
        f"folder:{gtzan['root']}",
        *flags,
        "--config",
        str(settings),
        "--output_dir",
        str(run),
    ]
    assert balanced_trainer.main([*argv, "--oversample_threshold", "3", "--undersample_threshold", "6"]) == 0
    saved = pd.read_csv(run / SPLITS_FILE)
    by_path = {
        Path(p).relative_to(gtzan["root"]).as_posix(): s
        for p, s in zip(saved["path"], saved["split"], strict=True)
    }
    assert by_path == _expected()
    config = json.loads((run / "balanced_training_config.json").read_text())
    assert config["settings"]["split_file_test"] == str(gtzan["lists"]["test"])

    model = str(run / "balanced_hierarchical_genre_model.h5")
    assert model_evaluation.main(["--model", model, "--no_plots"]) == 0
    report = json.loads((run / "evaluation" / "evaluation_report.json").read_text())
    assert sorted(report["run"]["track_ids"]) == sorted(saved["track_id"][saved["split"] == "test"].tolist())
    assert report["counts"]["tracks_evaluated"] == 4


@pytest.mark.parametrize("script", ["balanced_trainer", "baseline", "tune", "fma_inspector"])
def test_every_script_on_own_collections_takes_the_split_lists(script):
    """The lists reach the settings of each script that reads a folder:/csv: collection."""
    import importlib

    from genrekit.cli import settings_from_args, split_file_overrides

    module = importlib.import_module(script)
    lists = [f"--split_file={s}={s}.txt" for s in ("training", "validation", "test")]
    args = module.build_parser().parse_args(["--dataset", "folder:music", *lists])
    assert split_file_overrides(args.split_file) == {  # absolute: the evaluator rereads them anywhere
        f"split_file_{s}": str(Path(f"{s}.txt").resolve()) for s in ("training", "validation", "test")
    }
    if script != "tune":  # tune.py builds its settings itself, from the same overrides
        assert settings_from_args(args).split_file_test == str(Path("test.txt").resolve())
