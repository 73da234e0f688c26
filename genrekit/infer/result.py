"""One file's result from its segments' probabilities, head by head (schema: ``docs/inference_schema.md``).

The single-label heads the model has (``"top"``, ``"medium"``) are aggregated by voting and by
average probability; the multi-label ``"all"`` head by its mean probabilities against the
thresholds the model was saved with. A head the model lacks (no medium head for a collection
without sub-genres) gives null entries, never stand-ins.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from genrekit.errors import ModelError
from genrekit.evaluate.aggregate import average_confidence, multilabel_average, voting
from genrekit.evaluate.thresholds import decide
from genrekit.features.content import note_of
from genrekit.infer.output import rounded

__all__ = ["LEVEL_KEYS", "FileResults"]

LEVEL_KEYS = {"top": "top_genre", "medium": "medium_genre"}  # single-label head -> result key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileResults:
    """How a model's outputs become a file's result: its vocabularies, heads and decision rule.

    Attributes
    ----------
    vocabs : mapping of head to Vocabulary
        The saved vocabularies (``names``, ``genre_ids``, ``paths``, ``root_ids``).
    heads : sequence of str
        The heads the model has; ``"top"`` and ``"all"`` always.
    top_k : int
        Length of the ranked lists of the average-confidence aggregation.
    thresholds : ndarray, shape (n_all,)
        The all-genres head's threshold per genre; ``threshold`` is its JSON form.
    include_top : bool
        List the top head's genre among the all-genres labels whatever its probability.
    top_columns : ndarray of int, shape (n_top,)
        The all-genres column of each top genre (-1: none).
    """

    vocabs: Mapping[str, Any]
    heads: Sequence[str]
    top_k: int
    thresholds: np.ndarray
    threshold: float | list[float]
    include_top: bool
    top_columns: np.ndarray

    @classmethod
    def of(cls, predictor: Any) -> FileResults:
        """The rules of a :class:`~genrekit.infer.predict.MusicGenreInference`, from its attributes."""
        return cls(**{f.name: getattr(predictor, f.name) for f in fields(cls)})

    def build(self, file: str, info: Mapping[str, Any], probs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The result of the file ``file`` (its decoding ``info``) from the probabilities of each head."""
        for level, p in probs.items():
            if not np.all(np.isfinite(p)):
                raise ModelError(f"the model gave non-finite {level} probabilities")
        heads = {level: self.head(level, probs[level]) for level in LEVEL_KEYS if level in self.heads}
        segments = self.segments(info["segment_starts"], probs)
        medium = heads.get("medium")
        content = info.get("content")
        note = note_of(content)
        if note is not None:  # said once per file, whatever the caller logs of the warnings
            log.warning("%s: %s", file, note)
        return {
            "file": file,
            "duration_seconds": info["duration_seconds"],
            "sample_rate": info["sample_rate"],
            "channels": info["channels"],
            "segment_mode": info["segment_mode"],
            "num_segments": len(segments),
            "warnings": list(info["warnings"]),
            "content": content,
            "segment_predictions": segments,
            "aggregated_results": {
                **{key: heads.get(level) for level, key in LEVEL_KEYS.items()},
                "all_genres": self.all_genres(probs["all"], heads["top"]),
            },
            "hierarchy": self.hierarchy(
                heads["top"]["average_confidence"], medium["average_confidence"] if medium else None
            ),
        }

    def head(self, level: str, probs: np.ndarray) -> dict[str, Any]:
        """A single-label head's genre by voting and by average confidence, with ids and paths."""
        vocab = self.vocabs[level]
        vote = voting(probs, vocab.names).to_dict()
        avg = average_confidence(probs, vocab.names, self.top_k).to_dict()
        for part in (vote, avg):
            part["genre_id"] = vocab.genre_ids[part["index"]]
            part["path"] = vocab.paths[part["index"]]
        vote["share"] = rounded(vote["share"])
        avg["confidence"] = rounded(avg["confidence"])
        avg["top_k"] = [{"genre": t["genre"], "probability": rounded(t["probability"])} for t in avg["top_k"]]
        return {"voting": vote, "average_confidence": avg}

    def all_genres(self, probs: np.ndarray, top: Mapping[str, Any]) -> dict[str, Any]:
        """The all-genres labels above their thresholds (and the top head's genre with ``include_top``)."""
        vocab = self.vocabs["all"]
        best = top["average_confidence"]["index"]
        always = ()
        if self.include_top and self.top_columns[best] >= 0:
            always = (int(self.top_columns[best]),)
        multi = multilabel_average(probs, vocab.names, self.thresholds, always)
        by_name = {name: i for i, name in enumerate(vocab.names)}
        labels = [
            {
                "genre": name,
                "probability": rounded(p),
                "genre_id": vocab.genre_ids[by_name[name]],
                "path": vocab.paths[by_name[name]],
            }
            for name, p in multi.labels
        ]
        return {"threshold": self.threshold, "labels": labels}

    def segments(self, starts: Sequence[float], probs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
        """Each segment's genre per single-label head and its all-genres labels."""
        all_names = self.vocabs["all"].names
        top_class = np.argmax(probs["top"], axis=1) if self.include_top else None
        decided = decide(probs["all"], self.thresholds, top_class, self.top_columns)
        return [
            {
                "index": i,
                "start_seconds": start,
                **{key: self._segment_genre(level, probs, i) for level, key in LEVEL_KEYS.items()},
                "all_genres": [all_names[j] for j in np.flatnonzero(decided[i])],
            }
            for i, start in enumerate(starts)
        ]

    def _segment_genre(self, level: str, probs: Mapping[str, np.ndarray], i: int) -> dict[str, Any] | None:
        if level not in self.heads:
            return None
        row = probs[level][i]
        best = int(np.argmax(row))
        return {"name": self.vocabs[level].names[best], "probability": rounded(row[best])}

    def hierarchy(self, top_avg: Mapping[str, Any], medium_avg: Mapping[str, Any] | None) -> dict[str, Any]:
        """Whether the medium genre lies under the top genre; all None without a medium head."""
        if medium_avg is None:
            return {
                "top_genre": top_avg["name"],
                "medium_genre": None,
                "medium_path": None,
                "medium_root": None,
                "consistent": None,
            }
        medium_root = self.vocabs["medium"].root_ids[medium_avg["index"]]
        return {
            "top_genre": top_avg["name"],
            "medium_genre": medium_avg["name"],
            "medium_path": medium_avg["path"],
            "medium_root": medium_avg["path"].split(" > ")[0],
            "consistent": bool(medium_root == top_avg["genre_id"]),
        }
