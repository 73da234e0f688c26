"""What the toolkit's worker processes share: one BLAS/OpenMP thread each.

Decoding workers (the feature cache, folder inference) run one per core; a BLAS thread pool per
worker would only oversubscribe the cores.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


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
