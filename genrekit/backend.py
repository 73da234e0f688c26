"""Keras and TensorFlow as genrekit imports them: every module of the package takes them from here.

Importing this module imports Keras, after setting one environment default that TensorFlow reads
once, when it is imported (see :data:`ONEDNN`). ``tf`` (TensorFlow itself) is imported on first
use, so model code that only needs ``keras`` also runs on another Keras backend (e.g. JAX).
Importing :mod:`genrekit` or its light modules does neither.
"""

import os

# TensorFlow turns its oneDNN CPU kernels on by default only on some Intel CPUs. Everywhere else
# (e.g. AMD EPYC) its own kernels train this toolkit's model 1.67x slower: 247-267 against
# 149-159 ms of CPU per 32-segment training step at width 0.125 on 2 cores
# (benchmarks/bench_onednn.py). A value the user set wins; it has no effect once TensorFlow is imported.
ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
os.environ.setdefault(ONEDNN, "1")

import keras  # noqa: E402

__all__ = ["ONEDNN", "keras"]  # and tf, on first use


def __getattr__(name: str):
    if name == "tf":
        import tensorflow

        return tensorflow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
