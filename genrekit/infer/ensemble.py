"""Genre predictions of an ensemble of trained runs (:class:`genrekit.evaluate.ensemble.Ensemble`).

Every member decodes each file with its own front end and predicts it with its own model; the
file's result (schema: ``docs/inference_schema.md``) is built from the weighted mean of the
members' probabilities. When the members cut the same segments (same front end and hop), the
segments are averaged, so per-segment predictions and voting keep their meaning; otherwise each
member's file average is, and the result has one segment, the whole file. Reports record the
members and their weights in ``run.ensemble``; folder runs resume as single-model runs do.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import AudioDecodeError, ConfigError, GenrekitError
from genrekit.evaluate.aggregate import threshold_value
from genrekit.evaluate.ensemble import INCLUDE_TOP_RULE, THRESHOLD_RULE, Ensemble
from genrekit.infer.folder import collect_answers
from genrekit.infer.output import RESULT_FORMAT, RESULT_VERSION
from genrekit.infer.predict import MusicGenreInference
from genrekit.infer.result import FileResults
from genrekit.paths import resolved

__all__ = ["EnsembleInference"]

log = logging.getLogger(__name__)

CHUNK_FILES = 32  # files every member decodes and predicts before their results are combined


class EnsembleInference(MusicGenreInference):
    """Several trained runs predicting together, with :class:`MusicGenreInference`'s interface.

    Parameters
    ----------
    ensemble : Ensemble
        Members whose vocabularies, heads and datasets agree (checked when it was made).
    **overrides
        Inference settings by name, given to every member (``threshold``, ``top_k``, ``workers``,
        ``inference_batch_size``, ``inference_segment_hop``); ``None`` values are ignored.
        A ``threshold`` replaces the ensemble's per-genre thresholds, which are otherwise the
        weighted mean of the members' saved ones.
    """

    def __init__(self, ensemble: Ensemble, **overrides: Any):  # noqa: D107 - no super(): no single model
        self.ensemble = ensemble
        self.members = [
            MusicGenreInference(m.model_path, m.config_path, **overrides) for m in ensemble.members
        ]
        first = self.members[0]
        self.vocabs, self.heads, self.top_columns = first.vocabs, first.heads, first.top_columns
        self.settings = first.settings
        self.top_k, self.segment_hop = first.top_k, first.segment_hop
        self.batch_size, self.workers = first.batch_size, first.workers
        override = overrides.get("threshold")
        n_all = len(self.vocabs["all"])
        self.thresholds = ensemble.thresholds() if override is None else np.full(n_all, float(override))
        self.threshold = threshold_value(self.thresholds)
        self.include_top = override is None and ensemble.include_top()
        self.threshold_rule = (
            THRESHOLD_RULE if override is None else f"--threshold {float(override):g} for every genre"
        )
        self.model_path, self.config_path = first.model_path, first.config_path

    def input_files(self) -> dict[Path, str]:
        """Every member's model and training config (see :meth:`MusicGenreInference.input_files`)."""
        return {
            path: f"{role} of member {i + 1}"
            for i, m in enumerate(self.members)
            for path, role in m.input_files().items()
        }

    @property
    def decoder_messages(self) -> bool:
        return self.members[0].decoder_messages

    @decoder_messages.setter
    def decoder_messages(self, value: bool) -> None:
        for m in self.members:
            m.decoder_messages = value

    @property
    def frontend(self) -> Any:
        raise ConfigError("an ensemble has no single front end (--tags needs one --model)")

    def fingerprint(self) -> dict[str, Any]:
        """Every member's fingerprint and weight, and the settings that shape results."""
        return {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "ensemble": [
                {**{k: v for k, v in m.fingerprint().items() if k not in ("format", "version")}, "weight": w}
                for m, w in zip(self.members, (x.weight for x in self.ensemble.members), strict=True)
            ],
            "threshold": self.threshold,
            "top_k": self.top_k,
            "segment_hop": self.segment_hop,
        }

    def _run_info(self, where: Mapping[str, Any], fingerprint: dict[str, Any]) -> dict[str, Any]:
        return {
            **where,
            "model": [str(m.model_path) for m in self.members],
            "config": [str(m.config_path) for m in self.members],
            "ensemble": {
                "members": self.ensemble.describe(),
                "thresholds": self.threshold_rule,
                "include_top_rule": INCLUDE_TOP_RULE,
            },
            "settings": self.run_settings(),
            "fingerprint": fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    # -- prediction --

    def _member_probs(
        self, member: MusicGenreInference, items: list[tuple[str, str]], workers: int | None
    ) -> dict:
        """``key -> (Decoded, probabilities or None)`` of one member over ``items``."""
        decoded = member.decode_items(items, workers)
        try:
            return {d.key: (d, probs) for d, probs in member.predict_probabilities(decoded)}
        finally:
            if hasattr(decoded, "close"):
                decoded.close()

    def combine(self, key: str, outputs: list[tuple[Any, dict[str, np.ndarray] | None]]) -> tuple[Any, Any]:
        """``(result, None)`` or ``(None, reason)`` of one file from every member's ``(Decoded, probs)``."""
        failed = [
            (m, d.error)
            for m, (d, probs) in zip(self.ensemble.members, outputs, strict=True)
            if probs is None
        ]
        if failed:
            reasons = {reason for _, reason in failed}
            if len(reasons) == 1:
                return None, failed[0][1]
            return None, "; ".join(f"member {m.name}: {reason}" for m, reason in failed)
        decoded = [d for d, _ in outputs]
        first = decoded[0]
        starts = [list(d.info["segment_starts"]) for d in decoded]
        if all(s == starts[0] for s in starts):
            probs, info = self.ensemble.combine([p for _, p in outputs]), first.info
        else:  # members cut the file differently: average each member's file average
            probs = self.ensemble.combine(
                [{h: p[h].mean(axis=0, keepdims=True) for h in p} for _, p in outputs]
            )
            info = {**first.info, "segment_starts": [0.0]}
        try:
            return FileResults.of(self).build(str(resolved(first.path)), info, probs), None
        except (GenrekitError, ValueError) as exc:
            return None, str(exc)

    def predict_files(
        self,
        items: list[tuple[str, str]],
        workers: int | None = None,
        on_result: Callable[[str, dict[str, Any] | None, str | None], None] | None = None,
        progress: bool = False,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """As :meth:`MusicGenreInference.predict_files`; every member does ``CHUNK_FILES`` files at a
        time, then their results are combined and reported."""

        def answers():
            for start in range(0, len(items), CHUNK_FILES):
                chunk = items[start : start + CHUNK_FILES]
                outputs = [self._member_probs(m, chunk, workers) for m in self.members]
                for key, _ in chunk:
                    yield (key, *self.combine(key, [out[key] for out in outputs]))

        return collect_answers(answers(), len(items), on_result, progress)

    def predict_file(self, path: str | os.PathLike) -> dict[str, Any]:
        """Predict one audio file with every member (see :meth:`MusicGenreInference.predict_file`)."""
        path = Path(path)
        results, errors = self.predict_files([(path.name, str(path))], workers=0)
        if errors:
            raise AudioDecodeError(f"{path}: {errors[path.name]}")
        return results[path.name]
