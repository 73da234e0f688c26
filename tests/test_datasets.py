"""The dataset seam: FMA, the demo and a new source give tracks and the genre tree; targets and
vocabularies are built once from them (genrekit.datasets.base)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrekit.datasets.base import Dataset, DemoDataset, FMADataset, LabelledDataset
from genrekit.datasets.labels import MASKED, GenreTree
from genrekit.errors import DatasetError
from tests.fma_fixtures import TREE, small_dataset


@pytest.fixture
def medium(tmp_path) -> LabelledDataset:
    """fma_fixtures.small_dataset, subset medium: tracks 2, 3, 5 (training), 20, 21 (validation), 30 (test)."""
    return FMADataset(small_dataset(tmp_path / "meta"), tmp_path / "audio", subset="medium").load()


def test_fma_targets_and_vocabularies_by_hand(medium, tmp_path):
    t = medium.targets
    assert t.index.tolist() == [2, 3, 5, 20, 21, 30]  # the large tracks are not in fma_medium
    assert t.loc[5, "artist"] == 2 and t.loc[5, "split"] == "training"
    # training: 2 Rock/Punk, 3 Rock/Hardcore, 5 Electronic/Techno+House (Techno: lowest id at depth 1)
    assert medium.vocabs["top"].genre_ids == (12, 15)
    assert medium.vocabs["medium"].genre_ids == (25, 58, 181)
    assert medium.vocabs["all"].genre_ids == (12, 15, 25, 58, 181, 182)
    train = medium.labels("training")
    assert train.track_ids.tolist() == [2, 3, 5]
    assert train.top.tolist() == [0, 0, 1] and train.medium.tolist() == [0, 1, 2]
    validation = medium.labels("validation")
    assert validation.medium.tolist() == [MASKED, MASKED]  # Post-Rock, House: not training classes
    assert validation.all[1].tolist() == [0, 1, 0, 0, 0, 1]  # track 21: Electronic, House
    assert medium.labels("training", np.array([5, 20])).track_ids.tolist() == [5]
    assert medium.split_ids("test").tolist() == [30]
    assert medium.n_labelled_training == 3
    assert medium.num_classes == {"top": 2, "medium": 3, "all": 6}
    assert medium.dataset.audio_path(5) == tmp_path / "audio" / "000" / "000005.mp3"
    assert medium.dataset.audio_items([30, 5]) == [
        (5, tmp_path / "audio" / "000" / "000005.mp3"),
        (30, tmp_path / "audio" / "000" / "000030.mp3"),
    ]


def test_saved_vocabularies_are_used_as_given(medium, tmp_path):
    """The evaluator's way: the model's vocabularies, never rebuilt from the metadata."""
    dataset = FMADataset(tmp_path / "meta", tmp_path / "audio", subset="large")
    again = dataset.load(medium.vocabs)
    assert again.vocabs == medium.vocabs
    assert len(again.targets) == 12
    assert again.labels("test").top.tolist() == [1, MASKED, 0]  # 30 Electronic, 31 Hip-Hop (unknown), 32 Rock


def test_missing_metadata_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DatasetError, match=r"metadata folder .*nowhere does not exist; create it with"):
        FMADataset(tmp_path / "nowhere", tmp_path / "audio").load()


def test_the_trainer_and_the_inspector_see_the_same_targets(demo_dataset):
    """The demo, read through the seam, gives the trainer's targets and the generator's split counts."""
    from genrekit.datasets.analysis import load_dataset
    from genrekit.settings import Settings
    from genrekit.train.run import BalancedGenreProcessor

    demo = DemoDataset(demo_dataset.root)
    loaded = demo.load()
    counts = loaded.targets["split"].value_counts().to_dict()
    assert counts == {k: v for k, v in demo_dataset.split_counts.items() if v}
    assert demo.info.defective_ids == demo_dataset.defective_ids

    settings = Settings.build(
        None, {"metadata_dir": str(demo_dataset.metadata_dir), "audio_dir": str(demo_dataset.audio_dir)}
    )
    processor = BalancedGenreProcessor(settings)
    processed = processor.process_fma_labels(*processor.load_fma_metadata())
    pd.testing.assert_frame_equal(processor.load_dataset().targets, processed.targets)
    pd.testing.assert_frame_equal(loaded.targets, processed.targets)
    assert loaded.vocabs == processed.vocabs
    inspected = load_dataset(settings)
    pd.testing.assert_frame_equal(inspected.targets, processed.targets)
    assert processor.audio_dir == demo.audio_dir


def test_a_folder_without_a_demo_record_says_so(tmp_path):
    with pytest.raises(DatasetError, match="no finished demo dataset record"):
        _ = DemoDataset(tmp_path).info


class LabelsFileDataset(Dataset):
    """A source shaped like issue 17's (a user's audio files and a labels table): only the interface."""

    def __init__(self, root: Path, rows: dict[int, tuple], tree: GenreTree):
        self.root, self.rows, self.tree = root, rows, tree
        self.metadata_dir, self.subset, self.skipped = root, "", {}

    @property
    def audio_dir(self) -> Path:
        return self.root / "audio"

    def genre_tree(self) -> GenreTree:
        return self.tree

    def track_table(self) -> pd.DataFrame:
        names = ("split", "artist", "genres", "top")
        table = pd.DataFrame.from_dict(self.rows, orient="index", columns=names)
        table["subset"] = ""
        table["genres_all"] = [()] * len(table)  # not given: the closure is recomputed
        return table

    def audio_path(self, track_id: int) -> Path:
        return self.audio_dir / f"{track_id}.wav"


def test_a_new_source_needs_only_the_interface(caplog):
    genres = pd.DataFrame(
        {"parent": [p for _, p, _ in TREE], "title": [t for _, _, t in TREE]},
        index=pd.Index([g for g, _, _ in TREE], name="genre_id"),
    )
    rows = {
        7: ("training", 1, (58,), 12),  # Hardcore under Punk under Rock
        8: ("training", 2, (181, 182), 15),
        9: ("training", 3, (100,), 25),  # a top that is not a root genre: ignored, with a warning
        10: ("validation", -1, (26, 999), -1),  # 999 is no genre: ignored
    }
    source = LabelsFileDataset(Path("/data/mine"), rows, GenreTree(genres))
    with caplog.at_level(logging.WARNING, logger="genrekit.datasets.labels"):
        loaded = source.load()
    t = loaded.targets
    assert t["top"].tolist() == [12, 15, MASKED, MASKED]
    assert t["medium"].tolist() == [58, 181, 100, 26]
    assert t.loc[7, "all"] == (12, 25, 58) and t.loc[9, "all"] == (21, 100) and t.loc[10, "all"] == (12, 26)
    assert "not root genres, ignored: [25]" in caplog.text and "ignored: [999]" in caplog.text
    assert loaded.vocabs["top"].genre_ids == (12, 15)
    assert source.audio_items([8]) == [(8, Path("/data/mine/audio/8.wav"))]


def test_a_track_table_without_a_column_is_refused():
    class NoArtist(LabelsFileDataset):
        def track_table(self) -> pd.DataFrame:
            return super().track_table().drop(columns="artist")

    genres = pd.DataFrame({"parent": [0, 0], "title": ["A", "B"]}, index=pd.Index([1, 2], name="genre_id"))
    source = NoArtist(Path("/data/x"), {1: ("training", 1, (1,), 1)}, GenreTree(genres))
    with pytest.raises(DatasetError, match=r"/data/x/audio: the dataset's track table lacks \['artist'\]"):
        source.load()
