"""A synthetic but realistic evaluation case: FMA's 16 top genres, imbalanced, with confusions."""

from __future__ import annotations

from typing import Any

import numpy as np

from genrekit.evaluate.metrics import LevelVocab

# FMA's 16 top-level genres (title, genre_id), as in genres.csv.
TOP_GENRES = [
    ("Rock", 12),
    ("Electronic", 15),
    ("Experimental", 38),
    ("Hip-Hop", 21),
    ("Folk", 17),
    ("Instrumental", 1235),
    ("Pop", 10),
    ("International", 2),
    ("Classical", 5),
    ("Old-Time / Historic", 8),
    ("Jazz", 4),
    ("Country", 9),
    ("Soul-RnB", 14),
    ("Spoken", 20),
    ("Blues", 3),
    ("Easy Listening", 13),
]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def synthetic_case(
    rng: np.random.Generator, n_tracks: int = 400, n_medium: int = 40, n_all: int = 60
) -> dict[str, Any]:
    """Arguments (``probs``, ``targets``, ``vocabs`` by head, ``segment_track``) for
    :func:`genrekit.evaluate.metrics.evaluate`, 16 top classes.

    Class sizes are skewed (like FMA), each track has 4-10 segments, some targets are masked,
    and segment scores mix the target with a "neighbour" genre so there is something to confuse.
    """
    n_top = len(TOP_GENRES)
    top_vocab = LevelVocab([n for n, _ in TOP_GENRES], [g for _, g in TOP_GENRES])
    medium_root_idx = np.arange(n_medium) % n_top
    medium_vocab = LevelVocab(
        [f"{TOP_GENRES[r][0]} sub {i}" for i, r in enumerate(medium_root_idx)],
        [1000 + i for i in range(n_medium)],
        [TOP_GENRES[r][1] for r in medium_root_idx],
    )
    all_vocab = LevelVocab([f"genre {i}" for i in range(n_all)], list(range(2000, 2000 + n_all)))

    weights = 1.0 / np.arange(1, n_top + 1) ** 0.8
    top_target = rng.choice(n_top, size=n_tracks, p=weights / weights.sum())
    medium_target = np.array([rng.choice(np.flatnonzero(medium_root_idx == t)) for t in top_target])
    medium_target[rng.random(n_tracks) < 0.2] = -1
    top_target_masked = top_target.copy()
    top_target_masked[rng.random(n_tracks) < 0.05] = -1

    n_seg = rng.integers(4, 11, size=n_tracks)
    segment_track = np.repeat(np.arange(n_tracks), n_seg)
    strength = np.linspace(3.0, 0.5, n_top)[top_target]  # frequent genres are easier
    neighbour = (top_target + 1) % n_top
    track_logits = rng.normal(0, 1, (n_tracks, n_top))
    track_logits[np.arange(n_tracks), top_target] += strength
    track_logits[np.arange(n_tracks), neighbour] += 0.6 * strength
    top_probs = _softmax(track_logits[segment_track] + rng.normal(0, 1.2, (len(segment_track), n_top)))

    med_logits = rng.normal(0, 1, (len(segment_track), n_medium))
    med_logits[np.arange(len(segment_track)), medium_target[segment_track].clip(0)] += 2.0
    medium_probs = _softmax(med_logits)

    all_target = (rng.random((n_tracks, n_all)) < 0.05).astype(np.int64)
    all_target[np.arange(n_tracks), top_target % n_all] = 1
    all_target[:3] = 0  # tracks without any label
    noise = rng.normal(0, 1.5, (len(segment_track), n_all))
    all_probs = 1 / (1 + np.exp(-(noise + 3.0 * all_target[segment_track] - 2.0)))
    return {
        "probs": {"top": top_probs, "medium": medium_probs, "all": all_probs},
        "targets": {"top": top_target_masked, "medium": medium_target, "all": all_target},
        "vocabs": {"top": top_vocab, "medium": medium_vocab, "all": all_vocab},
        "segment_track": segment_track,
    }
