"""What the toolkit's decoding processes share: one BLAS/OpenMP thread each, and quiet decoders.

Decoding workers (the feature cache, folder inference) run one per core; a BLAS thread pool per
worker would only oversubscribe the cores. Native decoders (libsndfile's mpg123) print notes on
corrupt frames straight to file descriptor 2 ("Giving up searching valid MPEG header"); every
failure is reported by the toolkit anyway, so :func:`native_stderr_to` keeps them off the
console in every mode (in-process, workers), unless asked for (``--verbose``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def redirect_native_stderr(path: str | os.PathLike = os.devnull) -> None:
    """From now on, what this process writes on file descriptor 2 is appended to ``path``
    (for a worker process, whose own messages are all reported to its parent)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)


@contextlib.contextmanager
def native_stderr_to(path: str | os.PathLike | None = os.devnull) -> Iterator[None]:
    """While inside, file descriptor 2 (what C libraries print) goes to ``path``; None: unchanged.

    Keep the block short (one file's decoding): Python's own stderr writes inside it go there too.
    """
    if path is None:
        yield
        return
    with contextlib.suppress(ValueError, OSError):
        sys.stderr.flush()
    saved = os.dup(2)
    try:
        redirect_native_stderr(path)
        yield
    finally:
        with contextlib.suppress(ValueError, OSError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def one_thread_env() -> Iterator[None]:
    """Children started inside inherit one BLAS/OpenMP thread (read when they import numpy)."""
    saved = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: "1" for k in THREAD_ENV})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
