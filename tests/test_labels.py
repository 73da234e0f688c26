"""The three label levels, masking, vocabularies from the training split, encoding."""

import numpy as np
import pytest

from genrekit.datasets import fma
from genrekit.datasets.labels import (
    MASKED,
    GenreTree,
    Vocabulary,
    build_vocabularies,
    check_artist_filtered,
    encode,
    medium_genre,
)
from genrekit.errors import DatasetError
from tests.fma_fixtures import small_dataset


@pytest.fixture
def data(tmp_path):
    meta = small_dataset(tmp_path / "m")
    tracks = fma.load_tracks(meta)
    tree = GenreTree(fma.load_genres(meta))
    return tracks, tree, fma.derive_targets(tracks, tree)


def test_top_is_genre_top_and_masked_when_genres_span_roots(data):
    _, _, t = data
    assert t.loc[2, "top"] == 12 and t.loc[10, "top"] == 21
    assert t.loc[11, "top"] == MASKED  # Trip-Hop + Punk: two roots, no genre_top
    assert t.loc[11, "medium"] != MASKED  # ...but it keeps its other labels
    assert t.loc[11, "all"] == (12, 21, 25, 100)


def test_medium_is_the_deepest_non_root_genre_with_lowest_id_on_ties(data):
    _, _, t = data
    assert t.loc[3, "medium"] == 58  # Hardcore (depth 2) under Punk
    assert t.loc[5, "medium"] == 181  # Techno and House both depth 1: lowest id
    assert t.loc[30, "medium"] == 181  # same rule whatever the list order
    assert t.loc[11, "medium"] == 25  # Punk (25) < Trip-Hop (100), both depth 1
    assert t.loc[10, "medium"] == MASKED  # only a root genre: masked
    assert t.loc[32, "medium"] == MASKED


def test_vocabularies_come_from_the_training_split_only(data):
    _, tree, t = data
    v = build_vocabularies(t, tree)
    assert v["top"].genre_ids == (2, 12, 15, 21)
    assert v["top"].names == ("International", "Rock", "Electronic", "Hip-Hop")
    # 182 House is a medium target only in validation; 100 Trip-Hop only in test
    assert v["medium"].genre_ids == (25, 26, 58, 181)
    assert v["medium"].root_ids == (12, 12, 12, 15)
    assert v["medium"].paths[2] == "Rock > Punk > Hardcore"
    assert v["all"].genre_ids == (2, 12, 15, 21, 25, 26, 58, 100, 181, 182)
    assert Vocabulary.from_dict(v["medium"].to_dict()) == v["medium"]


def test_encode_masks_classes_outside_the_vocabulary(data):
    _, tree, t = data
    v = build_vocabularies(t, tree)
    enc = encode(t, v)
    row = {tid: i for i, tid in enumerate(enc.track_ids)}
    assert enc.top[row[2]] == v["top"].index[12]
    assert enc.top[row[11]] == MASKED
    assert enc.medium[row[21]] == MASKED  # House not in the training vocabulary
    assert enc.all[row[11]].tolist() == [0, 1, 0, 1, 1, 0, 0, 1, 0, 0]
    onehot = enc.one_hot("top", len(v["top"]))
    assert onehot[row[11]].sum() == 0  # masked: an all-zero row
    assert onehot[row[2]].tolist() == [0, 1, 0, 0]


def test_no_training_tracks_is_a_clear_error(data):
    _, tree, t = data
    with pytest.raises(DatasetError, match="no training tracks"):
        build_vocabularies(t[t["split"] != "training"], tree)


def test_artist_filtered_split_check(data):
    _, _, t = data
    assert check_artist_filtered(t) == []
    leaky = t.copy()
    leaky.loc[20, "artist"] = 1  # artist 1 already has training tracks
    assert check_artist_filtered(leaky) == [1]


def test_real_tree_levels(real_genres_csv):
    tree = GenreTree(fma.load_genres(real_genres_csv))
    assert tree.root_by_title["Old-Time / Historic"] == 8
    assert tree.root_of[1] == 38  # Avant-Garde under Experimental
    assert len(tree.non_roots) == 147
    assert np.all([tree.depth[g] == 0 for g in tree.roots])


# A hand-made tree: 1 > 10 > 100, 1 > 11, 2 > 20 > 200, 2 > 21.
HAND_PARENT = {1: 0, 10: 1, 100: 10, 11: 1, 2: 0, 20: 2, 200: 20, 21: 2}


@pytest.mark.parametrize(
    ("genres", "want"),
    [
        ([1, 2], MASKED),  # roots only
        ([], MASKED),
        ([11], 11),
        ([1, 11], 11),
        ([21, 11], 11),  # same depth: lowest id, whatever the order or the root
        ([11, 21, 10], 10),
        ([11, 200], 200),  # deeper wins, even in another root
        ([100, 200], 100),
        ([200, 21, 2, 999], 200),  # unknown ids are ignored
    ],
)
def test_medium_genre_rule_by_hand(genres, want):
    assert medium_genre(genres, HAND_PARENT) == want
    assert medium_genre(reversed(genres), HAND_PARENT) == want


def test_medium_genre_same_with_tree_or_parent_table(data):
    tracks, tree, _ = data
    for ids in tracks["track", "genres"]:
        assert medium_genre(ids, tree) == medium_genre(ids, tree.parent)
