"""FMA metadata formats: tracks.csv, genres.csv, subsets, splits, paths, malformed input."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genrekit.datasets import fma
from genrekit.datasets.labels import GenreTree
from genrekit.errors import DatasetError
from tests.fma_fixtures import COLUMNS, small_dataset, track, write_tracks


@pytest.fixture
def meta(tmp_path) -> Path:
    return small_dataset(tmp_path / "fma_metadata")


def test_audio_path_follows_fma_layout():
    assert fma.audio_path("/a", 2) == Path("/a/000/000002.mp3")
    assert fma.audio_path("/a", 155066) == Path("/a/155/155066.mp3")


def test_load_tracks_parses_the_real_layout(meta):
    tracks = fma.load_tracks(meta, columns="all")
    assert list(tracks.columns) == COLUMNS
    assert tracks.index.name == "track_id" and tracks.index.dtype.kind == "i"
    assert tracks.loc[11, ("track", "genres")] == (100, 25)
    assert tracks.loc[11, ("track", "genres_all")] == (12, 21, 25, 100)
    assert tracks.loc[2, ("album", "tags")] == ["x", "y"]
    assert tracks.loc[2, ("track", "date_created")] == pd.Timestamp("2008-11-26 01:48:12")
    assert pd.isna(tracks.loc[11, ("track", "genre_top")])


def test_essential_columns_are_a_subset_of_all(meta):
    essential = fma.load_tracks(meta)
    everything = fma.load_tracks(meta, columns="all")
    assert set(essential.columns) == set(fma.ESSENTIAL_COLUMNS)
    for column in essential.columns:
        assert essential[column].astype(str).equals(everything[column].astype(str)), column


def test_subset_is_ordered_so_large_includes_the_smaller_ones(meta):
    tracks = fma.load_tracks(meta)
    assert tracks["set", "subset"].cat.ordered
    assert set(fma.select_subset(tracks, "small").index) == {2, 3, 20, 30}
    assert set(fma.select_subset(tracks, "medium").index) == {2, 3, 5, 20, 21, 30}
    assert len(fma.select_subset(tracks, "large")) == 12  # all, not only those labelled 'large'
    assert (tracks["set", "subset"] == "large").sum() == 6


def test_split_ids(meta):
    tracks = fma.load_tracks(meta)
    assert fma.split_ids(tracks, "test").tolist() == [30, 31, 32]
    with pytest.raises(DatasetError, match="split 'dev'"):
        fma.split_ids(tracks, "dev")


def test_unparsable_genre_list_is_reported_and_skipped(tmp_path):
    rows = {1: track("training", "small", [12], "Rock"), 2: track("training", "small", [12], "Rock")}
    rows[2][("track", "genres")] = "[12, oops"
    write_tracks(tmp_path / "tracks.csv", rows)
    report = fma.TracksLoad(pd.DataFrame())
    tracks = fma.load_tracks(tmp_path / "tracks.csv", report=report)
    assert list(tracks.index) == [1]
    assert report.skipped == {2: "cannot parse track.genres"}


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda p: p.unlink(), "tracks.csv not found"),
        (lambda p: p.write_text("a,b\n1,2\n3,4\n"), "not in tracks.csv layout"),
        (
            lambda p: p.write_text(p.read_text().replace("genres_all", "genres_some")),
            "('track', 'genres_all')",
        ),
        (
            lambda p: p.write_text(p.read_text().replace("\n2,", "\nabc,", 1)),
            "track_id 'abc' is not an integer",
        ),
        (lambda p: p.write_text(p.read_text().replace("training", "train", 1)), "set.split='train'"),
        (lambda p: p.write_text(p.read_text().replace(",small,", ",tiny,", 1)), "set.subset='tiny'"),
        (
            lambda p: p.write_text(p.read_text() + "99," + ",".join(["x"] * 60) + "\n"),
            "track 99: set.subset='x'",
        ),
        (lambda p: p.write_bytes(b"\xff\xfe" + p.read_bytes()), "tracks.csv"),
    ],
)
def test_bad_tracks_csv_names_file_and_cause(meta, mutate, words):
    path = meta / "tracks.csv"
    mutate(path)
    with pytest.raises(DatasetError) as err:
        fma.load_tracks(path, columns="all")
    assert words in str(err.value)
    assert "tracks.csv" in str(err.value)


def test_bad_genres_csv(tmp_path):
    path = tmp_path / "genres.csv"
    path.write_text("genre_id,#tracks,parent,title,top_level\n1,3,99,A,99\n")
    with pytest.raises(DatasetError, match="genre 1: parent 99 is not a genre_id"):
        fma.load_genres(path)
    path.write_text("genre_id,#tracks,title,top_level\n1,3,A,1\n")
    with pytest.raises(DatasetError, match="column 'parent' missing"):
        fma.load_genres(path)


def test_real_genres_csv(real_genres_csv):
    genres = fma.load_genres(real_genres_csv)
    tree = GenreTree(genres)
    assert len(tree) == 163
    assert len(tree.roots) == 16
    assert len(tree.non_roots) == 147
    assert max(tree.depth.values()) == 4  # edges from a root down to the deepest genre
    assert (genres["#tracks"] == 0).sum() == 2
    # top_level in the file agrees with the tree walked through parent
    assert all(tree.root_of[g] == t for g, t in genres["top_level"].items())
    assert tree.path(25) == ["Rock", "Punk"]
    assert np.all(np.sort(tree.roots) == np.sort(genres.index[genres.parent == 0]))
