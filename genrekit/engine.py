"""Where the toolkit's embarrassingly parallel jobs run: the execution engine seam.

The feature and embedding cache, folder inference's decoding and the MFCC baseline hand their
per-file work to an :class:`Engine`, which yields one :class:`~genrekit.workers.Outcome` per item
as :func:`genrekit.workers.run_pool` does. ``"local"`` (the default) is that worker pool on this
machine; ``"ray"`` (:mod:`genrekit.ray_engine`, the optional ``genrekit[ray]`` extra) runs the
same work on a Ray cluster. The jobs write their results themselves, so the cache layout, its
``failures.csv`` and the inference reports are the same whichever engine computed them.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from genrekit.errors import ConfigError
from genrekit.workers import Outcome, run_pool, usable_cores

# Engine name -> "module:class"; the module is imported only when the engine is asked for.
ENGINES: dict[str, str] = {
    "local": "genrekit.engine:LocalEngine",
    "ray": "genrekit.ray_engine:RayEngine",
}


class Engine(abc.ABC):
    """Runs ``func(item, *args)`` for many items in parallel and reports each item's outcome.

    A worker that dies on an item (a decoder crash) or hangs on it is replaced; the item is
    reported as ``"crashed"`` or ``"timeout"``, never retried forever, and the others go on.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def workers(self, requested: int | None) -> int:
        """How many items run at once for ``requested`` workers (None or 0: all there are)."""

    @abc.abstractmethod
    def map(
        self,
        func: Callable[..., Any],
        items: Iterable[Any],
        *,
        workers: int,
        args: tuple = (),
        uses_model: bool = False,
        finish: Callable[[], None] | None = None,
        **options: Any,
    ) -> Iterator[Outcome]:
        """One :class:`~genrekit.workers.Outcome` per item (see :func:`genrekit.workers.run_pool`).

        Parameters
        ----------
        func : callable
            A module-level function (workers import it by name); ``args`` reach each worker once.
        workers : int
            Items computed at once.
        uses_model : bool
            ``func`` runs a model (a backbone's embeddings): an engine with GPUs gives it one.
        finish : callable, optional
            A module-level function a worker calls after each batch of items it returns, before
            the results reach the caller (e.g. to sync the rows it wrote to a shared disk).
        **options
            :func:`~genrekit.workers.run_pool`'s other options (``timeout``, ``stderr_path``,
            ``ordered``, ``in_flight``, ``tick``, ``first_item_allowance``, the reasons).
        """

    def in_process(self, workers: int, n_items: int) -> bool:
        """Whether a caller should rather compute ``n_items`` in its own process (one worker or one
        item: no start-up cost); never for an engine that runs elsewhere."""
        return False

    def describe(self) -> str:
        """What the engine runs on, for the log."""
        return self.name


class LocalEngine(Engine):
    """The toolkit's worker pool on this machine (:func:`genrekit.workers.run_pool`)."""

    name = "local"

    def workers(self, requested: int | None) -> int:
        return requested or usable_cores()

    def map(
        self,
        func: Callable[..., Any],
        items: Iterable[Any],
        *,
        workers: int,
        args: tuple = (),
        uses_model: bool = False,
        finish: Callable[[], None] | None = None,
        **options: Any,
    ) -> Iterator[Outcome]:
        # One machine: the parent's fdatasync covers what workers wrote, so ``finish`` is not needed.
        return run_pool(func, items, workers=workers, args=args, **options)

    def in_process(self, workers: int, n_items: int) -> bool:
        return workers <= 1 or n_items < 2

    def describe(self) -> str:
        return f"local worker pool ({usable_cores()} usable cores)"


def get_engine(engine: str | Engine | None = None) -> Engine:
    """The engine of a name in :data:`ENGINES` (None: ``"local"``); an :class:`Engine` as it is.

    Raises
    ------
    ConfigError
        For another name; :class:`~genrekit.errors.EngineError` when the engine's package is
        not installed (``--engine ray`` without the ``genrekit[ray]`` extra).
    """
    if isinstance(engine, Engine):
        return engine
    name = engine or "local"
    if name not in ENGINES:
        raise ConfigError(f"engine={name!r} must be one of {', '.join(ENGINES)}")
    module, _, cls = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["ENGINES", "Engine", "LocalEngine", "get_engine"]
