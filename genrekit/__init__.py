"""genrekit: hierarchical, class-balanced music-genre classification on the FMA dataset.

The top-level scripts of the repository are thin command-line front-ends over this package.
Importing it does no work: no TensorFlow import, no files read, no folders created. It sets one
environment default for TensorFlow, before TensorFlow is imported (see ``ONEDNN``).
"""

import os

__version__ = "0.1.0"

# TensorFlow turns its oneDNN CPU kernels on by default only on some Intel CPUs. Everywhere else
# (e.g. AMD EPYC) its own kernels train this toolkit's model 1.67x slower: 247-267 against
# 149-159 ms of CPU per 32-segment training step at width 0.125 on 2 cores
# (benchmarks/bench_onednn.py). A value the user set wins; it has no effect once TensorFlow is imported.
ONEDNN = "TF_ENABLE_ONEDNN_OPTS"
os.environ.setdefault(ONEDNN, "1")
