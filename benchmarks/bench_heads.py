"""Training speed of the genre heads on musicnn embeddings against the README CNN, projected to fma_large.

Run from the repository root (a few minutes on 2 cores; nothing is downloaded or written)::

    python benchmarks/bench_heads.py
    python benchmarks/bench_heads.py --tracks 106574 --steps 400 --cnn_steps 6

Both models are the trainer's own (``BalancedHierarchicalModel``: focal loss, sample weights,
metrics, Adam with clipping), fed by the trainer's pipeline (``TrainingStream`` +
``training_dataset``: windows, shuffling, batches of ``--batch_size`` segments) from an in-memory
source of generated arrays shaped as fma_large's cache would be:

- heads: ``--tracks`` tracks x 10 patches x 200 values (musicnn's penultimate layer, float16:
  the embedding cache, 0.4 GB for fma_large), ``--steps`` timed steps after a warm-up;
- CNN: the README's model (``WIDTH_FACTOR`` 1.0, 128 x 64 log-mel segments), ``--cnn_steps``
  timed steps on 2,000 generated tracks (its rate does not depend on the cache size).

Printed: segments/s and the projected time of one fma_large epoch (every track once, 10
segments or patches each: 1,065,740) for both, and the ratio. Labels are generated with
fma_large's shape (16 top genres, 1 to 30x imbalance, medium and all heads). Embedding extraction
is paid once per track on top (``benchmarks/bench_embeddings.py``). On a machine shared with other
jobs the wall rates measure the load too; the CPU seconds per step are printed beside them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FMA_LARGE_TRACKS = 106_574
SEGMENTS = 10  # per track: NUM_SEGMENTS mel segments, or MUSICNN_PATCHES patches


class MemorySource:
    """A feature source (what the pipeline reads) over generated rows held in memory."""

    def __init__(self, rows: np.ndarray, track_ids: np.ndarray, frontend) -> None:
        self.rows, self.track_ids, self.frontend = rows, track_ids, frontend

    def read(self, track_ids: np.ndarray) -> np.ndarray:
        return self.rows[np.searchsorted(self.track_ids, track_ids)]


def _labels(n: int, rng: np.random.Generator, n_top=16, n_medium=147, n_all=161):
    from genrekit.datasets.labels import EncodedLabels

    prior = 1.0 / np.arange(1, n_top + 1) ** 1.2  # ~28x between the largest and the smallest genre
    top = rng.choice(n_top, size=n, p=prior / prior.sum()).astype(np.int64)
    top[rng.random(n) < 0.6] = -1  # fma_large: 39,257 of 106,574 tracks carry a top genre
    medium = np.where(top >= 0, rng.integers(0, n_medium, n), -1).astype(np.int64)
    multi = (rng.random((n, n_all)) < 0.01).astype(np.uint8)
    return EncodedLabels(np.arange(n, dtype=np.int64), top, medium, multi), (n_top, n_medium, n_all)


def _rate(settings, frontend, rows, labels, sizes, steps: int, warmup: int) -> tuple[float, float]:
    """Segments/s (wall) and CPU s per step of the trainer's model and pipeline over ``rows``."""
    import keras

    from genrekit.train.pipeline import TrainingStream, training_dataset
    from genrekit.train.run import BalancedHierarchicalModel

    n_top, n_medium, n_all = sizes
    n = {"top": n_top, "medium": n_medium, "all": n_all}
    source = MemorySource(rows, labels.track_ids, frontend)
    stream = TrainingStream(
        source,
        labels,
        {"top": np.ones(n_top, np.float32), "medium": np.ones(n_medium, np.float32)},
        n,
        SEGMENTS,
        shuffle_block=settings.shuffle_block,
        seed=0,
        batch_size=settings.batch_size,
    )
    dataset = training_dataset(stream, settings.batch_size, frontend.input_shape).repeat()
    keras.utils.set_random_seed(0)
    builder = BalancedHierarchicalModel(
        frontend.input_shape,
        num_top=n_top,
        num_medium=n_medium,
        num_all=n_all,
        class_weights={"all": np.ones(n_all, np.float32)},
        settings=settings,
    )
    model = builder.compile_with_balanced_losses()
    model.fit(dataset, steps_per_epoch=warmup, epochs=1, verbose=0, shuffle=False)
    wall, cpu = time.perf_counter(), time.process_time()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return steps * settings.batch_size / wall, cpu / steps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=FMA_LARGE_TRACKS, help="embedding set (%(default)s)")
    parser.add_argument("--steps", type=int, default=400, help="timed steps of the heads (%(default)s)")
    parser.add_argument("--cnn_steps", type=int, default=6, help="timed steps of the CNN (%(default)s)")
    parser.add_argument("--batch_size", type=int, default=32, help="segments per step (%(default)s)")
    parser.add_argument("--skip_cnn", action="store_true", help="heads only")
    args = parser.parse_args(argv)

    from genrekit.features.frontends import MelSegments
    from genrekit.features.mel import FeatureParams
    from genrekit.features.musicnn import MusicnnEmbeddings
    from genrekit.settings import Settings

    rng = np.random.default_rng(0)
    epoch_segments = FMA_LARGE_TRACKS * SEGMENTS
    base = {"batch_size": args.batch_size, "mixed_precision": False}
    heads_settings = Settings.build(overrides={**base, "backbone": "musicnn"})
    frontend = MusicnnEmbeddings(patches=SEGMENTS)
    rows = rng.standard_normal((args.tracks, SEGMENTS, frontend.dim), dtype=np.float32).astype(np.float16)
    labels, sizes = _labels(args.tracks, rng)
    print(
        f"heads on {args.tracks:,} tracks x {SEGMENTS} x {frontend.dim} embeddings "
        f"({rows.nbytes / 1e9:.2f} GB float16), batches of {args.batch_size}, {os.cpu_count()} CPUs"
    )
    heads_rate, heads_cpu = _rate(heads_settings, frontend, rows, labels, sizes, args.steps, 50)
    heads_epoch = epoch_segments / heads_rate
    steps_per_epoch = epoch_segments / args.batch_size
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    heads_epoch_cpu = steps_per_epoch * heads_cpu / cores  # every core busy, no other job
    print(
        f"heads:  {heads_rate:>9,.0f} segments/s, {heads_cpu * 1e3:7.1f} CPU ms/step; fma_large epoch "
        f"({epoch_segments:,} segments): {heads_epoch / 60:.1f} min at this wall rate, "
        f"{heads_epoch_cpu / 60:.1f} min of {cores} cores' CPU time"
    )
    del rows
    if args.skip_cnn:
        return
    cnn_settings = Settings.build(overrides={**base, "backbone": "cnn", "width_factor": 1.0})
    mel = MelSegments(FeatureParams())
    n_cnn = 2000
    mel_rows = rng.standard_normal((n_cnn, *mel.row_shape), dtype=np.float32).astype(np.float16)
    cnn_labels, _ = _labels(n_cnn, rng)
    cnn_rate, cnn_cpu = _rate(cnn_settings, mel, mel_rows, cnn_labels, sizes, args.cnn_steps, 2)
    cnn_epoch = epoch_segments / cnn_rate
    cnn_epoch_cpu = steps_per_epoch * cnn_cpu / cores
    print(
        f"CNN:    {cnn_rate:>9,.1f} segments/s, {cnn_cpu:7.2f} CPU s/step; fma_large epoch: "
        f"{cnn_epoch / 3600:.1f} h at this wall rate, {cnn_epoch_cpu / 3600:.1f} h of {cores} cores' CPU time "
        "(README model, width 1.0)"
    )
    print(
        f"heads train {heads_rate / cnn_rate:,.0f}x faster per segment at the wall rates, "
        f"{cnn_cpu / heads_cpu:,.0f}x in CPU time: an fma_large epoch in {heads_epoch_cpu / 60:.1f} min "
        f"instead of {cnn_epoch_cpu / 3600:.1f} h on {cores} free cores; 30 epochs: "
        f"{30 * heads_epoch_cpu / 3600:.1f} h instead of {30 * cnn_epoch_cpu / 86400:.1f} days"
    )


if __name__ == "__main__":
    main()
