"""Genre predictions for audio files and music folders with a trained model and its training config.

The model is loaded once and checked against ``balanced_training_config.json`` (input shape and
the size of each head's vocabulary) before any work. Files are decoded into log-mel segments by
exactly the code and parameters of training (:mod:`genrekit.features.mel`, parameters from the config),
in worker processes, while the main process predicts several files per batch. Per-file results
(schema: ``docs/inference_schema.md``) are appended to ``<output>.partial.jsonl`` as they finish,
so an interrupted folder run keeps its work and a rerun with the same output skips it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.errors import AudioDecodeError, GenrekitError, ModelError
from genrekit.evaluate.thresholds import decide
from genrekit.features.audio_files import Decoded, decode_file, decode_parallel, list_audio_files
from genrekit.fileio import file_digest, read_json
from genrekit.infer.output import RESULT_FORMAT, RESULT_VERSION, PartialLog, rounded, write_report
from genrekit.models.io import load_model
from genrekit.paths import resolved
from genrekit.settings import default_value
from genrekit.train.run_config import check_model, load_training_config
from genrekit.workers import native_stderr_to, reason_of

log = logging.getLogger(__name__)

LEVEL_KEYS = {"top": "top_genre", "medium": "medium_genre"}


# --- Model and config -----------------------------------------------------------------------------


def resolve_model_files(
    model_path: str | os.PathLike, config_path: str | os.PathLike | None = None
) -> tuple[Path, Path, Path | None]:
    """Find the model, its training config and an optional plain settings file.

    Everything that shaped a model is saved next to it: without ``config_path``, or when
    ``config_path`` is a plain settings file (no ``"format"`` key), the training config is
    ``balanced_training_config.json`` in the model's folder.

    Parameters
    ----------
    model_path : path-like
        The saved model (``.h5`` or ``.keras``).
    config_path : path-like, optional
        The training config, or a plain settings file whose inference settings (threshold,
        top_k, workers, batch size, segment hop) override the training config's.

    Returns
    -------
    tuple
        ``(model_path, training_config_path, settings_path or None)``.

    Raises
    ------
    ModelError
        When a file is missing or the config is not JSON.
    """
    from genrekit.paths import not_a_file

    model = Path(model_path)
    if not model.is_file():
        raise ModelError(f"{model}: model file {not_a_file(model)} (train one with balanced_trainer.py)")
    name = default_value("training_config_filename")
    beside = model.parent / name
    if config_path is None:
        if not beside.is_file():
            raise ModelError(
                f"no --config given and no {name} next to the model in {model.parent}; pass --config"
            )
        return model, beside, None
    cfg = Path(config_path)
    if not cfg.is_file():
        raise ModelError(f"{cfg}: config file {not_a_file(cfg)}")
    data = read_json(cfg, error=ModelError)
    if isinstance(data, dict) and "format" in data:
        return model, cfg, None
    if not beside.is_file():
        raise ModelError(
            f"{cfg} is a settings file, not a training config, and there is no "
            f"{name} next to the model in {model.parent}"
        )
    return model, beside, cfg


# --- The predictor ------------------------------------------------------------------------------------


class MusicGenreInference:
    """A trained genre model and its training config, ready to predict files and folders.

    Parameters
    ----------
    model_path : path-like
        The saved model, e.g. ``runs/balanced/balanced_hierarchical_genre_model.h5``.
    config_path : path-like, optional
        Its training config (default: ``balanced_training_config.json`` next to the model), or a
        plain settings file whose inference settings override the training config's.
    **overrides
        Settings by name, e.g. ``threshold=0.3, top_k=5, workers=2, inference_batch_size=128,
        inference_segment_hop=3.0``; ``None`` values are ignored.

    Raises
    ------
    ModelError
        When a file is missing or the model does not match the config.

    Examples
    --------
    >>> inference = MusicGenreInference(model_path="model.h5", config_path="config.json")
    >>> results = inference.batch_predict("music_folder/")
    >>> for filename, result in results["results"].items():
    ...     top = result["aggregated_results"]["top_genre"]["voting"]["name"]
    """

    def __init__(
        self, model_path: str | os.PathLike, config_path: str | os.PathLike | None = None, **overrides: Any
    ):
        from genrekit.datasets.labels import Vocabulary
        from genrekit.evaluate.aggregate import threshold_value
        from genrekit.evaluate.thresholds import include_top_of, thresholds_of, top_columns
        from genrekit.settings import Settings, read_config_file
        from genrekit.train.run_config import frontend_of, heads_of_config

        self.model_path, self.config_path, settings_path = resolve_model_files(model_path, config_path)
        self.training_config = load_training_config(self.config_path)
        # What made the model's input (ModelError naming the config when it cannot be rebuilt).
        self.frontend = frontend_of(self.training_config, self.config_path)
        # Log-mel segments are planned here (long files, hop); another front end gives its rows.
        self.params = getattr(self.frontend, "features", self.frontend)
        self.frontend.prepare()  # a backbone's weights: fetched here once, not by every worker
        self.vocabs = {
            level: Vocabulary.from_dict(self.training_config["vocabularies"][level])
            for level in ("top", "medium", "all")
        }
        # The model's outputs: no medium head for a collection without sub-genres (results then
        # carry null medium genres).
        self.heads = heads_of_config(self.training_config)
        values = dict(read_config_file(settings_path)) if settings_path else {}
        values.update({k: v for k, v in overrides.items() if v is not None})
        # The training machine's worker count says nothing about this one.
        values.setdefault("workers", default_value("workers"))
        self.settings = Settings.build(self.config_path, values)
        # A threshold the user asks for wins; else the per-genre thresholds saved with the model,
        # and with them the rule they were chosen with: the top head's genre is always listed.
        self.thresholds = thresholds_of(
            self.training_config, len(self.vocabs["all"]), override=values.get("threshold")
        )
        self.threshold = threshold_value(self.thresholds)
        self.include_top = values.get("threshold") is None and include_top_of(self.training_config)
        self._top_columns = top_columns(self.vocabs["top"].genre_ids, self.vocabs["all"].genre_ids)
        self.top_k = self.settings.top_k
        self.segment_hop = self.settings.inference_segment_hop
        self.batch_size = self.settings.inference_batch_size
        self.workers = self.settings.num_workers
        self.model = load_model(self.model_path)
        check_model(self.model, self.training_config, self.model_path, self.config_path)
        self._top_index = self.vocabs["top"].index
        # What native decoders (mpg123) print on stderr is dropped in every mode; True shows it.
        self.decoder_messages = False
        log.debug("model %s, config %s, settings %s", self.model_path, self.config_path, self.run_settings())

    # -- core --

    def run_settings(self) -> dict[str, Any]:
        """The settings that shape results (stored in reports and resume logs)."""
        return {
            "threshold": self.threshold,
            "include_top": self.include_top,
            "top_k": self.top_k,
            "segment_hop": self.segment_hop,
            "batch_size": self.batch_size,
            "workers": self.workers,
        }

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between an interrupted run and its continuation."""
        stat = self.model_path.stat()
        return {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "model": str(self.model_path.resolve()),
            "model_bytes": stat.st_size,
            "model_mtime_ns": stat.st_mtime_ns,
            "config_sha1": file_digest(self.config_path, "sha1"),
            "threshold": self.threshold,
            "top_k": self.top_k,
            "segment_hop": self.segment_hop,
        }

    def predict_segments(self, segments: np.ndarray) -> dict[str, np.ndarray]:
        """Probabilities of each head for log-mel segments ``(n, n_mels, frames)`` (not normalized).

        The model normalizes its own input (its first layer holds the training statistics).
        Batches hold at most ``inference_batch_size`` segments.
        """
        x = np.asarray(segments, dtype=np.float32)
        if x.ndim == 3:
            x = x[..., None]
        out: dict[str, list[np.ndarray]] = {level: [] for level in self.heads}
        for start in range(0, len(x), self.batch_size):
            pred = self.model.predict_on_batch(x[start : start + self.batch_size])
            for level in out:
                out[level].append(np.asarray(pred[level], dtype=np.float64))
        return {level: np.concatenate(parts) for level, parts in out.items()}

    def _head_result(self, level: str, probs: np.ndarray) -> dict[str, Any]:
        from genrekit.evaluate.aggregate import average_confidence, voting

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

    def build_result(self, decoded: Decoded, probs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The result of one file (schema: ``docs/inference_schema.md``) from its segments' probabilities."""
        from genrekit.evaluate.aggregate import multilabel_average

        for level, p in probs.items():
            if not np.all(np.isfinite(p)):
                raise ModelError(f"the model gave non-finite {level} probabilities")
        top = self._head_result("top", probs["top"])
        has_medium = "medium" in self.heads
        medium = self._head_result("medium", probs["medium"]) if has_medium else None
        vocab_all = self.vocabs["all"]
        always = ()
        if self.include_top and self._top_columns[top["average_confidence"]["index"]] >= 0:
            always = (int(self._top_columns[top["average_confidence"]["index"]]),)
        multi = multilabel_average(probs["all"], vocab_all.names, self.thresholds, always)
        by_name = {name: i for i, name in enumerate(vocab_all.names)}
        labels = [
            {
                "genre": name,
                "probability": rounded(p),
                "genre_id": vocab_all.genre_ids[by_name[name]],
                "path": vocab_all.paths[by_name[name]],
            }
            for name, p in multi.labels
        ]
        top_avg = top["average_confidence"]
        segments = []
        top_names, medium_names = self.vocabs["top"].names, self.vocabs["medium"].names
        segment_all = decide(
            probs["all"],
            self.thresholds,
            np.argmax(probs["top"], axis=1) if self.include_top else None,
            self._top_columns,
        )
        for i, start in enumerate(decoded.info["segment_starts"]):
            t = int(np.argmax(probs["top"][i]))
            segment_medium = None
            if has_medium:
                m = int(np.argmax(probs["medium"][i]))
                segment_medium = {"name": medium_names[m], "probability": rounded(probs["medium"][i, m])}
            segments.append(
                {
                    "index": i,
                    "start_seconds": start,
                    "top_genre": {"name": top_names[t], "probability": rounded(probs["top"][i, t])},
                    "medium_genre": segment_medium,
                    "all_genres": [vocab_all.names[j] for j in np.flatnonzero(segment_all[i])],
                }
            )
        info = decoded.info
        return {
            "file": str(resolved(decoded.path)),
            "duration_seconds": info["duration_seconds"],
            "sample_rate": info["sample_rate"],
            "channels": info["channels"],
            "segment_mode": info["segment_mode"],
            "num_segments": len(segments),
            "warnings": list(info["warnings"]),
            "segment_predictions": segments,
            "aggregated_results": {
                "top_genre": top,
                "medium_genre": medium,
                "all_genres": {"threshold": self.threshold, "labels": labels},
            },
            "hierarchy": self._hierarchy(top_avg, medium["average_confidence"] if has_medium else None),
        }

    def _hierarchy(self, top_avg: Mapping[str, Any], medium_avg: Mapping[str, Any] | None) -> dict[str, Any]:
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

    def _predict_group(self, group: list[Decoded]) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
        probs = self.predict_segments(np.concatenate([d.segments for d in group]))
        start = 0
        for d in group:
            stop = start + len(d.segments)
            try:
                result = self.build_result(d, {k: v[start:stop] for k, v in probs.items()})
            except (GenrekitError, ValueError) as exc:
                yield d.key, None, str(exc)
            else:
                yield d.key, result, None
            start = stop

    def predict_decoded(
        self, decoded: Iterable[Decoded]
    ) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
        """``(key, result, None)`` or ``(key, None, reason)`` per file, several files per model batch.

        Whole files are grouped until the next would take a batch past ``inference_batch_size``
        segments (a file longer than that is predicted alone, in slices).
        """
        group: list[Decoded] = []
        count = 0
        for item in decoded:
            if item.error is not None:
                yield item.key, None, item.error
                continue
            if group and count + len(item.segments) > self.batch_size:
                yield from self._predict_group(group)
                group, count = [], 0
            group.append(item)
            count += len(item.segments)
        if group:
            yield from self._predict_group(group)

    def _decode_here(self, key: str, path: str | os.PathLike) -> Decoded:
        """Decode in this process, as quiet as a worker is (see :attr:`decoder_messages`)."""
        with native_stderr_to(None if self.decoder_messages else os.devnull):
            return decode_file(key, path, self.params, self.segment_hop)

    def predict_file(self, path: str | os.PathLike) -> dict[str, Any]:
        """Predict one audio file.

        Returns
        -------
        dict
            The file's result: per-segment predictions, ``aggregated_results`` (``top_genre``,
            ``medium_genre``, ``all_genres``) and ``hierarchy``; see ``docs/inference_schema.md``.

        Raises
        ------
        AudioDecodeError
            When the file cannot give segments (missing, not audio, corrupt, too short).
        """
        path = Path(path)
        decoded = self._decode_here(path.name, path)
        for _key, result, error in self.predict_decoded([decoded]):
            if error is not None:
                raise AudioDecodeError(f"{path}: {error}")
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def predict_files(
        self,
        items: list[tuple[str, str]],
        workers: int | None = None,
        on_result: Callable[[str, dict[str, Any] | None, str | None], None] | None = None,
        progress: bool = False,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """Predict ``items`` ((key, path)); decoding in ``workers`` processes (default: the settings').

        With ``workers`` <= 1 or a single file, decoding runs in this process (no start-up cost).

        ``on_result(key, result, error)`` is called for every finished file (in batches' order).
        Returns ``(results, errors)`` by key.
        """
        from tqdm.auto import tqdm

        workers = self.workers if workers is None else workers
        quiet = not self.decoder_messages
        if workers > 1 and len(items) > 1:
            decoded: Iterable[Decoded] = decode_parallel(
                items, self.params, self.segment_hop, min(workers, len(items)), quiet=quiet
            )
        else:
            decoded = (self._decode_here(k, p) for k, p in items)
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        bar = tqdm(total=len(items), unit="file", disable=not progress, dynamic_ncols=True, smoothing=0.05)
        try:
            for key, result, error in self.predict_decoded(decoded):
                if error is None:
                    results[key] = result
                else:
                    errors[key] = error
                if on_result is not None:
                    on_result(key, result, error)
                bar.update(1)
        finally:
            bar.close()
            if hasattr(decoded, "close"):
                decoded.close()  # stops the worker pool at once on Ctrl-C or an error
        return results, errors

    def batch_predict(
        self,
        folder: str | os.PathLike,
        output: str | os.PathLike | None = None,
        recursive: bool = False,
        progress: bool = False,
        workers: int | None = None,
    ) -> dict[str, Any]:
        """Predict every audio file of a folder; write the report to ``output`` when given.

        Non-audio and hidden files are skipped and counted; files that cannot be decoded go to
        ``errors`` with the reason; the run never stops for one file. With ``output``, every
        finished file is appended to ``<output>.partial.jsonl`` (fsync'd), so an interrupted run
        keeps its work; a rerun with the same output (and the same model and settings) skips
        the files already done, also those of a finished JSON report. The report is written
        atomically at the end (CSV for a ``.csv`` name, else JSON) and the partial file removed.

        Returns
        -------
        dict
            ``{"format", "version", "run", "results", "errors", "skipped", "summary"}``;
            see ``docs/inference_schema.md``.

        Raises
        ------
        GenrekitError
            When the folder does not exist.
        """
        from genrekit.paths import check_output_file, require_dir

        started = time.perf_counter()
        folder = require_dir(Path(folder), "music")
        if output is not None:
            check_output_file(output)
        audio, other = list_audio_files(folder, recursive)
        if output is not None:  # a report written into the music folder is not music
            ours = {resolved(output), resolved(f"{output}.partial.jsonl")}
            other = [p for p in other if resolved(p) not in ours]
        items = [(p.relative_to(folder).as_posix(), str(p)) for p in audio]
        fingerprint = self.fingerprint()
        partial = None
        previous: dict[str, dict[str, Any]] = {}
        if output is not None:
            output = Path(output)
            previous = self._previous_report(output, fingerprint)
            partial = PartialLog(output.with_name(output.name + ".partial.jsonl"), fingerprint)
            previous.update(partial.read())
            partial.open()
        wanted = {key for key, _ in items}
        previous = {k: v for k, v in previous.items() if k in wanted}
        todo = [(k, p) for k, p in items if k not in previous]
        log.info(
            "%d audio file(s) in %s (%d to do, %d done before), %d other file(s) skipped",
            len(items),
            folder,
            len(todo),
            len(previous),
            len(other),
        )
        batch: list[dict[str, Any]] = []

        def on_result(key: str, result: dict[str, Any] | None, error: str | None) -> None:
            entry = {"key": key, "result": result} if error is None else {"key": key, "error": error}
            batch.append(entry)
            # One fsync per handful of files, not per file: cheap, and little is ever lost.
            if len(batch) >= 8 or time.perf_counter() - last_sync[0] > 1.0:
                flush()

        last_sync = [time.perf_counter()]

        def flush() -> None:
            if partial is not None and batch:
                partial.append(batch)
            batch.clear()
            last_sync[0] = time.perf_counter()

        work_started = time.perf_counter()
        try:
            new_results, new_errors = self.predict_files(todo, workers, on_result, progress)
        finally:
            flush()
            if partial is not None:
                partial.close()
        work_seconds = time.perf_counter() - work_started
        results, errors = {}, {}
        for key, _ in items:  # the folder's order, whatever the order files finished in
            if key in new_results:
                results[key] = new_results[key]
            elif key in new_errors:
                errors[key] = new_errors[key]
            elif key in previous:
                entry = previous[key]
                if entry.get("error") is not None:
                    errors[key] = entry["error"]
                else:
                    results[key] = entry["result"]
        done_now = len(new_results) + len(new_errors)
        top_counts: dict[str, int] = {}
        for res in results.values():
            name = res["aggregated_results"]["top_genre"]["average_confidence"]["name"]
            top_counts[name] = top_counts.get(name, 0) + 1
        summary = {
            "files_found": len(audio) + len(other),
            "audio_files": len(items),
            "processed": len(results),
            "failed": len(errors),
            "skipped_non_audio": len(other),
            "resumed": len(previous),
            "with_warnings": sum(1 for r in results.values() if r["warnings"]),
            "segments": sum(r["num_segments"] for r in results.values()),
            "seconds": round(time.perf_counter() - started, 3),
            "files_per_second": round(done_now / work_seconds, 3) if done_now and work_seconds > 0 else 0.0,
            "top_genre_counts": dict(sorted(top_counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        }
        report = {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "run": {
                "folder": str(resolved(folder)),
                "recursive": recursive,
                "model": str(self.model_path),
                "config": str(self.config_path),
                "settings": self.run_settings(),
                "fingerprint": fingerprint,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            "results": results,
            "errors": errors,
            "skipped": [p.relative_to(folder).as_posix() for p in other],
            "summary": summary,
        }
        if output is not None:
            write_report(report, output)
            partial.path.unlink(missing_ok=True)
        return report

    @staticmethod
    def _previous_report(output: Path, fingerprint: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """Entries of a finished JSON report at ``output`` made with the same model and settings."""
        if output.suffix.lower() == ".csv" or not output.is_file():
            return {}
        try:
            old = json.loads(output.read_text(encoding="utf-8"))
            if old.get("run", {}).get("fingerprint") != fingerprint:
                return {}
            entries = {k: {"key": k, "result": v} for k, v in old["results"].items()}
            entries.update({k: {"key": k, "error": v} for k, v in old["errors"].items()})
            return entries
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError, TypeError):
            return {}

    def predict_one_report(self, path: str | os.PathLike) -> dict[str, Any]:
        """A report of the folder schema for one file (``--file`` with ``--output``)."""
        started = time.perf_counter()
        path = Path(path)
        results, errors = {}, {}
        try:
            results[path.name] = self.predict_file(path)
        except AudioDecodeError as exc:
            errors[path.name] = reason_of(exc, str(path))
        seconds = time.perf_counter() - started
        res = results.get(path.name)
        return {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "run": {
                "file": str(resolved(path)),
                "model": str(self.model_path),
                "config": str(self.config_path),
                "settings": self.run_settings(),
                "fingerprint": self.fingerprint(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            "results": results,
            "errors": errors,
            "skipped": [],
            "summary": {
                "files_found": 1,
                "audio_files": 1,
                "processed": len(results),
                "failed": len(errors),
                "skipped_non_audio": 0,
                "resumed": 0,
                "with_warnings": int(bool(res and res["warnings"])),
                "segments": res["num_segments"] if res else 0,
                "seconds": round(seconds, 3),
                "files_per_second": round(1 / seconds, 3) if seconds > 0 else 0.0,
                "top_genre_counts": (
                    {res["aggregated_results"]["top_genre"]["average_confidence"]["name"]: 1} if res else {}
                ),
            },
        }


def default_model_path() -> str:
    """``OUTPUT_DIR/MODEL_FILENAME`` of config.py, where balanced_trainer.py saves the model."""
    return os.path.join(default_value("output_dir"), default_value("model_filename"))


__all__ = [
    "MusicGenreInference",
    "default_model_path",
    "resolve_model_files",
]
