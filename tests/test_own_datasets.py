"""A user's own music (issue 17): genre folders (GTZAN layout) and a CSV manifest, end to end.

The collection is generated: 10 genres of 10 clips (rock with punk and grunge, jazz with bebop
sub-genre folders of 3 clips each), in mp3, wav, flac, ogg and au, and one defective file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from genrekit.datasets import base as datasets
from genrekit.datasets.labels import MASKED, check_artist_filtered
from genrekit.datasets.own import SPLITS_FILE, FolderDataset, ManifestDataset
from genrekit.datasets.splitting import assign_splits
from genrekit.errors import ConfigError, DatasetError
from tests import own_fixtures as fx

N_TRACKS = 10 * fx.PER_GENRE + 3 * fx.PER_SUBGENRE + 1  # 110 with the defective file


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("own")
    root = base / "music"
    written = fx.genre_folders(root)
    fx.add_defective(root)
    manifest = fx.manifest(root, written)
    moved = base / "lists" / "manifest.csv"  # the user's manifest lives outside the music folder
    moved.parent.mkdir()
    rows = pd.read_csv(manifest, dtype=str)
    rows["path"] = [str(root / p) if i % 2 else f"../music/{p}" for i, p in enumerate(rows["path"])]
    rows.to_csv(moved, index=False)
    manifest.unlink()
    return {"base": base, "root": root, "written": written, "manifest": moved}


def _hand_id(text: str, bits: int) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") % 2**bits


def test_folder_ids_tree_targets_and_split_by_hand(collection):
    ds = datasets.from_spec(f"folder:{collection['root']}", seed=42)
    assert isinstance(ds, FolderDataset)
    labelled = ds.load()
    targets, tree = labelled.targets, labelled.tree
    assert len(targets) == N_TRACKS
    # Ids: hashes of the relative path and of the genre path (by hand), not listing order.
    punk_file = next(f for g, f in collection["written"] if g == "rock/punk")
    tid = _hand_id(punk_file.relative_to(collection["root"]).as_posix(), 48)
    rock, punk = _hand_id("rock", 31), _hand_id("rock/punk", 31)
    assert ds.audio_path(tid) == punk_file
    assert tree.parent[punk] == rock and tree.title[punk] == "punk" and tree.parent[rock] == 0
    assert sorted(tree.title[g] for g in tree.roots) == sorted(fx.GENRES)
    assert (targets.loc[tid, "top"], targets.loc[tid, "medium"], targets.loc[tid, "all"]) == (
        rock,
        punk,
        tuple(sorted((rock, punk))),
    )
    # A track directly in a genre folder: top only, medium masked.
    blues_file = next(f for g, f in collection["written"] if g == "blues")
    row = targets.loc[_hand_id(blues_file.relative_to(collection["root"]).as_posix(), 48)]
    assert row["top"] == _hand_id("blues", 31) and row["medium"] == MASKED
    # Split per genre folder, 80/10/10 of its tracks with one of each first: 10 -> 8/1/1,
    # blues (11 with the defective file) -> 9/1/1, each 3-track sub-genre -> 1/1/1.
    counts = targets["split"].value_counts().to_dict()
    assert counts == {"training": 9 * 8 + 9 + 3, "validation": 10 + 3, "test": 10 + 3}
    assert list(labelled.vocabs["medium"].names) == sorted(
        ["punk", "grunge", "bebop"], key=lambda n: _hand_id({"bebop": "jazz/bebop"}.get(n, f"rock/{n}"), 31)
    )


def test_ids_stay_when_files_and_genres_are_added(tmp_path):
    root = tmp_path / "music"
    for genre in ("a", "b", "c"):
        for i in range(3):
            fx.write_audio(root / genre / f"{i}.wav", fx.clip(i, 1)[:2000])
    before = FolderDataset(root)
    ids_before = set(before.track_table().index)
    genres_before = dict(before.genre_tree().title)
    fx.write_audio(root / "0" / "new.wav", fx.clip(9, 1)[:2000])  # sorts first in a listing
    for i in range(3):
        fx.write_audio(root / "0" / f"{i}.wav", fx.clip(i, 2)[:2000])
        fx.write_audio(root / "a" / "sub" / f"{i}.wav", fx.clip(i, 3)[:2000])
    after = FolderDataset(root)
    assert ids_before < set(after.track_table().index)
    assert all(after.genre_tree().title[g] == t for g, t in genres_before.items())
    assert len(after.track_table()) == 9 + 4 + 3
    # Flat genres only: no medium level, so no medium head (tests/test_flat_collection.py).
    _tiny(tmp_path / "flat", {"a": 3, "b": 3})
    assert FolderDataset(tmp_path / "flat").load().heads == ("top", "all")


def test_track_level_split_warns_once(tmp_path, caplog):
    _tiny(tmp_path / "music", {"a/x": 3, "a/y": 3, "b": 3})
    with caplog.at_level(logging.WARNING, logger="genrekit.datasets.own"):
        for _ in range(2):  # the trainer, the evaluator and the inspector each read the source
            assert len(FolderDataset(tmp_path / "music").load().targets) == 9
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "inflates the scores" in warnings[0]


def test_manifest_artists_masked_top_and_given_split(collection, tmp_path):
    ds = datasets.from_spec(f"csv:{collection['manifest']}", seed=42)
    assert isinstance(ds, ManifestDataset)
    labelled = ds.load()
    targets, tree = labelled.targets, labelled.tree
    assert len(targets) == N_TRACKS - 1  # the defective file is not listed
    # Rows i % 7 == 3 also have Electronic (another root): no top target, as FMA's genre_top.
    n_multi = sum(1 for i in range(N_TRACKS - 1) if i % 7 == 3)
    assert int((targets["top"] == MASKED).sum()) == n_multi == 16
    electronic = _hand_id("Electronic", 31)
    assert tree.parent[electronic] == 0 and tree.title[_hand_id("Rock/Punk", 31)] == "Punk"
    assert check_artist_filtered(targets) == []  # artists never on two sides
    # A given split column wins; a track_id column gives the ids.
    rows = pd.read_csv(collection["manifest"], dtype=str)
    rows["split"] = ["test" if i < 30 else "validation" if i < 60 else "training" for i in range(len(rows))]
    rows["track_id"] = [str(1000 + i) for i in range(len(rows))]
    given = collection["manifest"].parent / "given.csv"
    rows.to_csv(given, index=False)
    t = ManifestDataset(given).track_table()
    assert t.loc[1000, "split"] == "test" and t.loc[1075, "split"] == "training"
    assert t["split"].value_counts().to_dict() == {"training": len(rows) - 60, "test": 30, "validation": 30}


def test_assign_splits_by_hand():
    # Artist x has 5 tracks, 6 artists with 1: 11 tracks of one genre. The first three groups in
    # hash order take training, validation, test; the rest go where the share is furthest away.
    groups = ["x"] * 5 + [f"a{i}" for i in range(6)]
    splits = assign_splits(groups, ["g"] * 11, seed=3)
    assert len({s for g, s in zip(groups, splits, strict=True) if g == "x"}) == 1
    counts = pd.Series(splits).value_counts().to_dict()
    assert set(counts) == {"training", "validation", "test"} and sum(counts.values()) == 11
    assert splits == assign_splits(groups, ["g"] * 11, seed=3)  # seeded
    with pytest.raises(DatasetError, match=r"genre 'g' has 4 track\(s\) by 2 artist\(s\)"):
        assign_splits(["artist:p", "artist:p", "artist:q", "artist:q"], ["g"] * 4)


def _settings_file(base: Path, name: str) -> Path:
    return fx.tiny_settings_file(base, name)


def test_manifest_end_to_end_inspector_trainer_evaluator_inference(collection, capsys):
    import balanced_inference
    import balanced_trainer
    import fma_inspector
    import model_evaluation

    base, root = collection["base"], collection["root"]
    before = fx.snapshot(root)
    # A copy of the manifest, so the track added after training does not reach the other tests.
    manifest = base / "lists" / "e2e.csv"
    shutil.copy(collection["manifest"], manifest)
    spec = f"csv:{manifest}"
    settings = _settings_file(base, "tiny_csv.json")
    assert fma_inspector.main(["--dataset", spec, "--output_dir", str(base / "inspect"), "--no_plots"]) == 0
    printed = capsys.readouterr().out
    assert f"{N_TRACKS - 1} tracks" in printed and "16 tracks span several roots" in printed

    run = base / "run_csv"
    assert (
        balanced_trainer.main(["--dataset", spec, "--config", str(settings), "--output_dir", str(run)]) == 0
    )
    config = json.loads((run / "balanced_training_config.json").read_text())
    assert config["settings"]["dataset"] == spec and config["data"]["splits_file"] == SPLITS_FILE
    assert Path(config["data"]["cache_dir"]).parent.name.startswith("csv-e2e.csv-")
    saved = pd.read_csv(run / SPLITS_FILE)
    assert len(saved) == N_TRACKS - 1 and set(saved["split"]) == {"training", "validation", "test"}

    # A track added after training (a new artist) is not scored; the test split is the saved one.
    extra = base / "extra.wav"
    fx.write_audio(extra, fx.clip(500, 3))
    with manifest.open("a") as fh:
        fh.write(f"{extra},Blues,someone new\n")
    assert (
        model_evaluation.main(["--model", str(run / "balanced_hierarchical_genre_model.h5"), "--no_plots"])
        == 0
    )
    report = json.loads((run / "evaluation" / "evaluation_report.json").read_text())
    assert sorted(report["run"]["track_ids"]) == sorted(saved["track_id"][saved["split"] == "test"].tolist())

    out = base / "predictions_csv.json"
    code = balanced_inference.main(
        ["--model", str(run / "balanced_hierarchical_genre_model.h5"), "--folder", str(root / "rock"),
         "--recursive", "--output", str(out), "--quiet", "--no_progress"]
    )  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert result["summary"]["processed"] == fx.PER_GENRE + 2 * fx.PER_SUBGENRE
    assert fx.snapshot(root) == before  # nothing written into the music folder


def test_quick_start_on_genre_folders(collection, capsys):
    import quick_start

    base, root = collection["base"], collection["root"]
    before = fx.snapshot(root)
    out = base / "quick"
    code = quick_start.main(
        ["--dataset", f"folder:{root}", "--smallest", "--config", str(_settings_file(base, "tiny_folder.json")),
         "--output_dir", str(out), "--cache_dir", str(base / "cache")]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert (
        f"{N_TRACKS} tracks, 10 top genres, 13 genres in all (training 84, validation 13, test 13)" in printed
    )
    config = json.loads((out / "balanced_training_config.json").read_text())
    # The defective file is listed and left out, as for FMA.
    assert [Path(f["path"]).name for f in config["left_out_files"]] == [Path(fx.DEFECTIVE).name]
    saved = pd.read_csv(out / SPLITS_FILE).set_index("track_id")
    broken = _hand_id(fx.DEFECTIVE, 48)
    where = saved.loc[broken, "split"]
    assert config["data"]["tracks"] == {
        "training": 84 - (where == "training"),
        "validation": 13 - (where == "validation"),
    }
    test_ids = [t for t in saved.index[saved["split"] == "test"] if t != broken]
    report = json.loads((out / "evaluation" / "evaluation_report.json").read_text())
    assert sorted(report["run"]["track_ids"]) == sorted(test_ids)
    predictions = json.loads((out / "predictions.json").read_text())
    assert predictions["summary"]["processed"] == 13 - (where == "test")
    assert fx.snapshot(root) == before


# --- Bad input: one clear line naming the file, row or folder ----------------------------------


def _tiny(root: Path, layout: dict[str, int]) -> None:
    for folder, n in layout.items():
        for i in range(n):
            fx.write_audio(root / folder / f"t{i}.wav", fx.clip(i, 1)[:500])


def _manifest(tmp_path: Path, text: str) -> Path:
    _tiny(tmp_path, {"a": 3, "b": 3})
    path = tmp_path / "m.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty_folder", r"dataset folder .*music holds no audio files"),
        ("missing_folder", r"dataset folder .*nowhere does not exist"),
        ("genre_without_audio", r"genre folder .*music/b holds no audio files"),
        ("file_outside_genres", r"music/loose\.wav: an audio file outside any genre folder"),
        ("too_few_tracks", r"genre 'b' \(.*music/b\) has 2 track\(s\); the 80/10/10 split needs at least 3"),
        ("missing_column", r"manifest .*m\.csv lacks the column 'genres' \(it has: path, artist\)"),
        ("unknown_split", r"m\.csv line 3: split 'train' must be one of training, validation, test"),
        ("missing_path", r"m\.csv line 2: audio file a/nope\.wav does not exist"),
        ("duplicate_path", r"m\.csv line 4: path \./a/t0\.wav repeats line 2"),
        ("bad_track_id", r"m\.csv line 2: track_id 'x' must be a positive integer"),
    ],
)
def test_bad_input_one_clear_line(tmp_path, capsys, case, message):
    import fma_inspector

    music = tmp_path / "music"
    spec = f"folder:{music}"
    if case == "empty_folder":
        (music / "a").mkdir(parents=True)
        (music / "a" / "cover.jpg").write_bytes(b"\xff\xd8")
    elif case == "missing_folder":
        spec = f"folder:{tmp_path / 'nowhere'}"
    elif case == "genre_without_audio":
        _tiny(music, {"a": 3})
        (music / "b").mkdir()
        (music / "b" / "notes.txt").write_text("no audio here")
    elif case == "file_outside_genres":
        _tiny(music, {"a": 3})
        fx.write_audio(music / "loose.wav", fx.clip(0, 1)[:500])
    elif case == "too_few_tracks":
        _tiny(music, {"a": 3, "b": 2})
    else:
        text = {
            "missing_column": "path,artist\na/t0.wav,x\n",
            "unknown_split": "path,genres,split\na/t0.wav,A,training\na/t1.wav,A,train\n",
            "missing_path": "path,genres\na/nope.wav,A\n",
            "duplicate_path": "path,genres\na/t0.wav,A\nb/t0.wav,B\n./a/t0.wav,A\n",
            "bad_track_id": "path,genres,track_id\na/t0.wav,A,x\n",
        }[case]
        spec = f"csv:{_manifest(music, text)}"
    with pytest.raises(DatasetError, match=message):
        datasets.from_spec(spec).load()
    capsys.readouterr()
    assert fma_inspector.main(["--dataset", spec, "--no_plots", "--output_dir", str(tmp_path / "i")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


@pytest.mark.parametrize("spec", ["folder:", "tsv:x.tsv", "gtzan"])
def test_bad_dataset_spec(spec):
    with pytest.raises(ConfigError, match="must be 'fma', 'folder:PATH'"):
        datasets.from_spec(spec)
    from genrekit.settings import Settings

    with pytest.raises(ConfigError, match="setting 'dataset' must be 'fma'"):
        Settings.build(overrides={"dataset": spec})
