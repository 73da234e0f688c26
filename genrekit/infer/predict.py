"""Genre predictions for audio files and music folders with a trained model and its training config.

The model is loaded once and checked against ``balanced_training_config.json`` (input shape and
the size of each head's vocabulary) before any work. Files are decoded into log-mel segments by
exactly the code and parameters of training (:mod:`genrekit.features.mel`, parameters from the config),
in worker processes, while the main process predicts several files per batch. Per-file results
(schema: ``docs/inference_schema.md``) are appended to ``<output>.partial.jsonl`` as they finish,
so an interrupted folder run keeps its work and a rerun with the same output skips it.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genrekit.engine import get_engine
from genrekit.errors import AudioDecodeError, GenrekitError, ModelError
from genrekit.features.audio_files import Decoded, decode_file, decode_parallel, list_audio_files
from genrekit.fileio import file_digest, read_json, shown_name
from genrekit.infer.folder import (
    ResultLog,
    collect_answers,
    file_identity,
    files_section,
    folder_report,
    in_order,
    resume_plan,
    summary,
)
from genrekit.infer.output import RESULT_FORMAT, RESULT_VERSION, write_report
from genrekit.infer.result import FileResults
from genrekit.models.io import load_model
from genrekit.paths import resolved
from genrekit.settings import default_value
from genrekit.train.run_config import check_model, load_training_config
from genrekit.workers import native_stderr_to, one_thread_here, reason_of

log = logging.getLogger(__name__)


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
        # The training machine's worker count and engine say nothing about this one.
        values.setdefault("workers", default_value("workers"))
        values.setdefault("engine", default_value("engine"))
        self.settings = Settings.build(self.config_path, values)
        # A threshold the user asks for wins; else the per-genre thresholds saved with the model,
        # and with them the rule they were chosen with: the top head's genre is always listed.
        self.thresholds = thresholds_of(
            self.training_config, len(self.vocabs["all"]), override=values.get("threshold")
        )
        self.threshold = threshold_value(self.thresholds)
        self.include_top = values.get("threshold") is None and include_top_of(self.training_config)
        self.top_columns = top_columns(self.vocabs["top"].genre_ids, self.vocabs["all"].genre_ids)
        self.top_k = self.settings.top_k
        self.segment_hop = self.settings.inference_segment_hop
        self.batch_size = self.settings.inference_batch_size
        self.engine = get_engine(self.settings.engine)  # where files are decoded (genrekit.engine)
        self.workers = self.engine.workers(self.settings.workers)
        self.model = load_model(self.model_path)
        check_model(self.model, self.training_config, self.model_path, self.config_path)
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

    def build_result(self, decoded: Decoded, probs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The result of one file (schema: ``docs/inference_schema.md``) from its segments' probabilities."""
        rules = FileResults.of(self)  # as the attributes are now (a changed top_k takes effect)
        return rules.build(str(resolved(decoded.path)), decoded.info, probs)

    def _group_probs(self, group: list[Decoded]) -> Iterator[tuple[Decoded, dict[str, np.ndarray]]]:
        probs = self.predict_segments(np.concatenate([d.segments for d in group]))
        start = 0
        for d in group:
            stop = start + len(d.segments)
            yield d, {k: v[start:stop] for k, v in probs.items()}
            start = stop

    def predict_probabilities(
        self, decoded: Iterable[Decoded]
    ) -> Iterator[tuple[Decoded, dict[str, np.ndarray] | None]]:
        """``(decoded, probabilities of each head's segments)`` per file, ``(decoded, None)`` for a
        file that did not decode; several files per model batch.

        Whole files are grouped until the next would take a batch past ``inference_batch_size``
        segments (a file longer than that is predicted alone, in slices).
        """
        group: list[Decoded] = []
        count = 0
        for item in decoded:
            if item.error is not None:
                yield item, None
                continue
            if group and count + len(item.segments) > self.batch_size:
                yield from self._group_probs(group)
                group, count = [], 0
            group.append(item)
            count += len(item.segments)
        if group:
            yield from self._group_probs(group)

    def predict_decoded(
        self, decoded: Iterable[Decoded]
    ) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
        """``(key, result, None)`` or ``(key, None, reason)`` per file (see :meth:`predict_probabilities`)."""
        for d, probs in self.predict_probabilities(decoded):
            if probs is None:
                yield d.key, None, d.error
                continue
            try:
                result = self.build_result(d, probs)
            except (GenrekitError, ValueError) as exc:
                yield d.key, None, str(exc)
            else:
                yield d.key, result, None

    @functools.cached_property
    def _one_thread(self) -> Callable[[], Any]:
        return one_thread_here()

    def _decode_here(self, key: str, path: str | os.PathLike) -> Decoded:
        """Decode in this process, as quiet as a worker is (see :attr:`decoder_messages`) and on one
        BLAS thread as a worker is, so that ``workers=1`` gives a worker's features to the bit."""
        with native_stderr_to(None if self.decoder_messages else os.devnull), self._one_thread():
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

    def decode_items(self, items: list[tuple[str, str]], workers: int | None = None) -> Iterable[Decoded]:
        """``items`` ((key, path)) decoded by this model's front end, in ``workers`` processes
        (default: the settings') of the settings' engine; with the local engine in this process
        for ``workers`` <= 1 or a single file.

        Close what it returns (when it has ``close``) to stop the worker pool.
        """
        workers = self.workers if workers is None else workers
        if self.engine.in_process(workers, len(items)):
            return (self._decode_here(k, p) for k, p in items)
        return decode_parallel(
            items,
            self.params,
            self.segment_hop,
            max(1, min(workers, len(items))),
            quiet=not self.decoder_messages,
            engine=self.engine,
        )

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
        decoded = self.decode_items(items, workers)
        try:
            return collect_answers(self.predict_decoded(decoded), len(items), on_result, progress)
        finally:
            if hasattr(decoded, "close"):
                decoded.close()  # stops the worker pool at once on Ctrl-C or an error

    def input_files(self) -> dict[Path, str]:
        """``path -> role`` of the files this predictor reads (never written over: the output policy)."""
        return {self.model_path: "the model", self.config_path: "the model's training config"}

    def batch_predict(
        self,
        folder: str | os.PathLike,
        output: str | os.PathLike | None = None,
        recursive: bool = False,
        progress: bool = False,
        workers: int | None = None,
        overwrite: bool = False,
    ) -> dict[str, Any]:
        """Predict every audio file of a folder; write the report to ``output`` when given.

        Non-audio and hidden files are skipped and counted; files that cannot be decoded go to
        ``errors`` with the reason; the run never stops for one file. With ``output``, every
        finished file is appended to ``<output>.partial.jsonl`` (fsync'd), so an interrupted run
        keeps its work; a rerun of the same job (same folder, model and settings) with the same
        output skips the files already done, also those of a finished JSON report, as long as
        their size and modification time are unchanged (changed files are predicted again,
        results of files gone are dropped). The report is written atomically at the end (CSV for
        a ``.csv`` name, else JSON) and the partial file removed.

        Returns
        -------
        dict
            ``{"format", "version", "run", "results", "errors", "skipped", "files", "summary"}``;
            see ``docs/inference_schema.md``.

        Raises
        ------
        GenrekitError
            When the folder does not exist.
        OutputPathError
            An ``output`` the output policy refuses (an input, audio, a link, not ours...), or
            (:class:`~genrekit.errors.OutputInUseError`) one that holds another job's results,
            unless ``overwrite``: then a new report is started, with a warning.
        """
        from genrekit.infer.output import check_report_paths
        from genrekit.paths import require_dir

        started = time.perf_counter()
        folder = require_dir(Path(folder), "music")
        if output is not None:
            check_report_paths(output, {folder: "--folder", **self.input_files()})
        audio, other = list_audio_files(folder, recursive)
        if output is not None:  # a report written into the music folder is not music
            ours = {resolved(output), resolved(f"{output}.partial.jsonl")}
            other = [p for p in other if resolved(p) not in ours]
        items = [(p.relative_to(folder).as_posix(), str(p)) for p in audio]
        identities = {key: file_identity(path) for key, path in items}
        fingerprint, where = self.fingerprint(), {"folder": str(resolved(folder))}
        done = ResultLog(None if output is None else Path(output), fingerprint, where, identities)
        plan = resume_plan(done.done(overwrite), identities)
        todo = [(k, p) for k, p in items if k not in plan.kept]
        log.info(
            "%d audio file(s) in %s: %d to do, %d kept from an earlier run, %d recomputed (changed since), "
            "%d earlier result(s) dropped (file gone); %d other file(s) skipped",
            len(items), shown_name(folder), len(todo), len(plan.kept), len(plan.changed), len(plan.gone),
            len(other),
        )  # fmt: skip
        work_started = time.perf_counter()
        try:
            new_results, new_errors = self.predict_files(todo, workers, done.add, progress)
        finally:
            done.close()
        work_seconds = time.perf_counter() - work_started
        # The folder's order, whatever the order files finished in.
        results, errors = in_order((key for key, _ in items), new_results, new_errors, plan.kept)
        counts = summary(
            results, errors, files_found=len(audio) + len(other), skipped_non_audio=len(other),
            resumed=len(plan.kept), recomputed=len(plan.changed), dropped=len(plan.gone),
            seconds=time.perf_counter() - started, done_now=len(new_results) + len(new_errors),
            work_seconds=work_seconds,
        )  # fmt: skip
        run = self._run_info({**where, "recursive": recursive}, fingerprint)
        skipped = [p.relative_to(folder).as_posix() for p in other]
        report = folder_report(
            run, results, errors, skipped, counts, files_section(results | errors, identities)
        )
        if output is not None:
            write_report(report, output)
            done.remove()
        return report

    def _run_info(self, where: Mapping[str, Any], fingerprint: dict[str, Any]) -> dict[str, Any]:
        """The ``run`` section of a report: what was predicted (``where``), with which model and settings."""
        return {
            **where,
            "model": str(self.model_path),
            "config": str(self.config_path),
            "settings": self.run_settings(),
            "fingerprint": fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def predict_one_report(
        self, path: str | os.PathLike, output: str | os.PathLike | None = None, overwrite: bool = False
    ) -> dict[str, Any]:
        """A report of the folder schema for one file (``--file``); written to ``output`` when given.

        An ``output`` holding another job's report (another file, folder, model or settings) is
        refused (:class:`~genrekit.errors.OutputInUseError`) unless ``overwrite``.
        """
        from genrekit.infer.folder import previous_report
        from genrekit.infer.output import check_report_paths

        started = time.perf_counter()
        path = Path(path)
        fingerprint, where = self.fingerprint(), {"file": str(resolved(path))}
        if output is not None:
            check_report_paths(output, {path: "--file", **self.input_files()}, folder=False)
            previous_report(Path(output), fingerprint, where, overwrite)  # refuses another job's
        identity = file_identity(path)
        results, errors = {}, {}
        try:
            results[path.name] = self.predict_file(path)
        except AudioDecodeError as exc:
            errors[path.name] = reason_of(exc, str(path))
        seconds = time.perf_counter() - started
        counts = summary(
            results,
            errors,
            files_found=1,
            skipped_non_audio=0,
            resumed=0,
            seconds=seconds,
            done_now=1,
            work_seconds=seconds,
        )
        run = self._run_info(where, fingerprint)
        report = folder_report(
            run, results, errors, [], counts, files_section([path.name], {path.name: identity})
        )
        if output is not None:
            write_report(report, output)
        return report


def default_model_path() -> str:
    """``output_dir/model_filename`` of the package defaults, where balanced_trainer.py saves the model
    unless config.py says otherwise (the scripts use :func:`genrekit.cli.run_files`)."""
    return os.path.join(default_value("output_dir"), default_value("model_filename"))


__all__ = [
    "MusicGenreInference",
    "default_model_path",
    "resolve_model_files",
]
