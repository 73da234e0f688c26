"""Training speed through the feature cache + tf.data pipeline vs the same model on in-memory tensors.

Run from the repository root (about 4-5 minutes on 2 cores with the defaults; longer when other jobs
share them)::

    python benchmarks/bench_training.py
    python benchmarks/bench_training.py --work /tmp/bench_training     # keep the demo data and cache, reuse them
    python benchmarks/bench_training.py --skip_fit --n 2000 --work /tmp/bt   # cache reads only, larger cache
    python benchmarks/bench_training.py --widths 1.0 --epoch_tracks 0 --mixed_precision   # on a GPU

It writes a demo dataset (``--n`` tracks of ``--clip_seconds``, 22,050 Hz mono MP3) and builds its
feature cache with ``ensure_cache`` (the real path), then measures, in one run:

1. ``model.fit`` segments/s of the real compiled model (``BalancedHierarchicalModel``: focal loss,
   sample weights, metrics) on ``training_dataset`` (cache -> generator -> unbatch -> shuffle ->
   batch -> prefetch) vs the same model on the same epoch's segments already in memory, fed by
   ``tf.data.Dataset.from_tensor_slices(...).batch().prefetch()`` (pre-shuffled once, no shuffle
   per epoch: the ideal ceiling). Whole epochs are timed after one warm-up epoch of each, in ABBA
   order; the overhead is the median over repeats of the ratio of neighbouring runs, in wall time
   and in this process's CPU time (steadier when other jobs share the cores).
2. The input pipeline alone (no model): the generator, the whole ``training_dataset``, and the
   in-memory dataset, in segments/s, with the time to the first batch: the pipeline's own ceiling.
3. Cache reads in clips/s: the pipeline's reads (windows of random blocks of ``--shuffle_block``
   sorted tracks) vs random 32-track batches, random single tracks through the cache
   (``pread``) and the naive random single-row reads of a ``numpy`` memmap; with the page cache
   warm, cold once (file evicted, then one pass: later reads profit from earlier readahead) and
   cold each (file evicted before every read, untimed: what a cache much larger than RAM sees).
   Eviction uses ``/proc/sys/vm/drop_caches`` (root; tried once) or ``posix_fadvise(DONTNEED)``;
   the fraction of the file still resident is checked with ``mincore``.

4. Batch composition: distinct artists and top genres per batch for the pipeline, the previous
   pipeline (sorted blocks in a four-block shuffle buffer) and a uniform random draw.
5. Row checks (``--checks_only`` runs only this, after building the cache): the pipeline's window
   reads through ``FeatureCache.read`` with each row's crc32 checked the first time the process
   reads it, and once every row is checked, vs the same reads without any check, page cache warm,
   in the same run (rotated order, best of ``--read_repeats``); the one-off ``verify`` pass the
   cache build makes; and the cost over a training of ``--epochs_for_checks`` epochs:
   (verify pass + E checked epochs) / (E unchecked epochs) - 1. Target: <= 5%.

No figures are asserted. Fit rates are medians, pipeline and read rates the best of their passes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from genrekit.train.pipeline import WINDOW_TRACKS  # noqa: E402

SAMPLE_RATE = 22050  # demo audio: mono 22,050 Hz encodes ~4x faster than FMA's 44.1 kHz stereo
LEVELS = ("top", "medium", "all")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=300, help="demo tracks (default 300)")
    parser.add_argument("--clip_seconds", type=float, default=4.0, help="demo clip length (default 4)")
    parser.add_argument(
        "--work",
        default=None,
        help="folder for the demo dataset and cache, kept and reused (default: temporary)",
    )
    parser.add_argument("--cache_dir", default=None, help="feature cache root (default: WORK/features)")
    parser.add_argument("--widths", type=float, nargs="+", default=[0.25, 1.0], help="model widths")
    parser.add_argument(
        "--epoch_tracks",
        type=int,
        nargs="+",
        default=[128, 16],
        help="tracks per timed epoch, one per width; 0 = every cached track (default 128 16)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs per side and width (default 3)")
    parser.add_argument("--batch_size", type=int, default=None, help="default: config.BATCH_SIZE")
    parser.add_argument("--shuffle_block", type=int, default=None, help="default: config.SHUFFLE_BLOCK")
    parser.add_argument("--read_repeats", type=int, default=2, help="passes per read measurement (default 2)")
    parser.add_argument(
        "--evict",
        choices=("auto", "drop_caches", "fadvise"),
        default="auto",
        help="how 'cold once' empties the page cache; auto tries drop_caches, then fadvise",
    )
    parser.add_argument("--mixed_precision", action="store_true", help="mixed_float16 (GPU only)")
    parser.add_argument("--skip_fit", action="store_true", help="skip 1. and 2. (reads only)")
    parser.add_argument("--skip_reads", action="store_true", help="skip 3. and 5.")
    parser.add_argument("--checks_only", action="store_true", help="only 5. (row checks; implies --skip_fit)")
    parser.add_argument(
        "--epochs_for_checks",
        type=int,
        default=30,
        help="epochs the row checks' cost is spread over in 5. (default 30)",
    )
    parser.add_argument(
        "--composition_tracks", type=int, default=20000, help="metadata size for 4. (default 20000)"
    )
    return parser


# --- Page cache ----------------------------------------------------------------------------------


def resident_fraction(path: Path) -> float | None:
    """Fraction of ``path``'s pages in the page cache (``mincore``), or None where unsupported."""
    try:
        import ctypes
        import ctypes.util
        import mmap

        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        ]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        size = path.stat().st_size
        pages = -(-size // mmap.PAGESIZE)
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
            if addr is None or addr == ctypes.c_void_p(-1).value:
                return None
            try:
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                    return None
                return float((np.frombuffer(vec, np.uint8) & 1).mean())
            finally:
                libc.munmap(ctypes.c_void_p(addr), size)
        finally:
            os.close(fd)
    except (OSError, AttributeError, TypeError):
        return None


def fadvise_evict(path: Path) -> None:
    """Drop ``path``'s clean pages from the page cache (no root needed; mapped pages stay).

    Pages still being read in by the previous read's asynchronous readahead are locked and
    skipped, so evict again, briefly, until ``mincore`` shows none left.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        for _ in range(20):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if not resident_fraction(path):
                break
            time.sleep(0.005)
    finally:
        os.close(fd)


def evict(path: Path, how: str, state: dict[str, str]) -> str:
    """Empty the page cache of ``path``; return the method used.

    ``auto`` tries ``drop_caches`` once, to show whether it works, then uses ``posix_fadvise``:
    dropping the whole machine's page cache again and again would slow every other process, and
    the file-only eviction is just as complete for this file (checked with ``mincore``).
    """
    if how == "drop_caches" or (how == "auto" and "drop_caches" not in state):
        try:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as fh:
                fh.write("1\n")
            state["drop_caches"] = "worked"
            return "drop_caches"
        except OSError as exc:
            state["drop_caches"] = f"failed ({exc.strerror or exc})"
            if how == "drop_caches":
                raise
    fadvise_evict(path)
    state["fadvise"] = "worked"
    return "fadvise"


def warm_up_file(path: Path) -> None:
    with open(path, "rb", buffering=0) as fh:
        while fh.read(8 << 20):
            pass


def read_ahead_kb(path: Path) -> str:
    """The block device's read_ahead_kb for ``path`` (context for the cold figures)."""
    dev = os.stat(path).st_dev
    base = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    for queue in (base / "queue", base / ".." / "queue"):
        with contextlib.suppress(OSError):
            return (queue / "read_ahead_kb").read_text().strip()
    return "?"


# --- Data ----------------------------------------------------------------------------------------


def prepare(args: argparse.Namespace, work: Path):
    """Demo dataset -> feature cache (the real path) -> labels, weights, normalization."""
    from genrekit.datasets.demo.writer import write_demo_dataset
    from genrekit.datasets.labels import encode
    from genrekit.settings import Settings
    from genrekit.train.run import BalancedGenreProcessor

    start = time.perf_counter()
    info = write_demo_dataset(
        work / "demo",
        n_tracks=args.n,
        clip_seconds=args.clip_seconds,
        seed=0,
        sample_rate=SAMPLE_RATE,
        channels=1,
        progress=True,
    )
    demo_s = time.perf_counter() - start
    overrides = {
        "metadata_dir": str(info.metadata_dir),
        "audio_dir": str(info.audio_dir),
        "duration": args.clip_seconds,
        "batch_size": args.batch_size,
        "shuffle_block": args.shuffle_block,
    }
    settings = Settings.build(None, overrides)
    processor = BalancedGenreProcessor(settings)
    processed = processor.process_fma_labels(*processor.load_fma_metadata())
    start = time.perf_counter()
    cache = processor.extract_features(processed, cache_dir=args.cache_dir or str(work / "features"))
    cache_s = time.perf_counter() - start
    # Every cached track (all splits) feeds the stream: more data per epoch, same code path.
    ids = np.intersect1d(cache.track_ids, processed.targets.index.to_numpy())
    labels = encode(processed.targets.loc[ids].sort_index(), processed.vocabs)
    weights = processor.compute_hierarchical_class_weights(processed)
    norm = cache.norm_stats(ids).to_dict()
    print(
        f"demo: {info.n_tracks} tracks x {args.clip_seconds:g} s, {SAMPLE_RATE} Hz mono, at {info.root} "
        f"({demo_s:.1f} s); cache: {len(cache)} tracks at {cache.cache_dir} ({cache_s:.1f} s, "
        f"{sum((p.path / 'features.npy').stat().st_size for p in cache.parts) / 2**20:.0f} MiB)"
    )
    return settings, processed, cache, labels, weights, norm


def make_stream(settings, cache, labels, weights, n_classes, epoch_tracks: int, seed: int = 0):
    """The trainer's stream (config.py's augmentation included) over every track once per epoch."""
    from genrekit.train.augment import AugmentPlan
    from genrekit.train.pipeline import TrainingStream

    if epoch_tracks and epoch_tracks < len(labels):
        labels = labels.subset(np.sort(np.random.default_rng(seed).permutation(len(labels))[:epoch_tracks]))
    sample_weights = {level: np.asarray(weights[level], np.float32) for level in ("top", "medium")}
    return TrainingStream(
        cache,
        labels,
        sample_weights,
        n_classes,
        settings.num_segments,
        sampler=None,  # every track once per epoch: both sides see exactly the same segments
        shuffle_block=settings.shuffle_block,
        seed=seed,
        batch_size=settings.batch_size,
        augment=AugmentPlan.from_settings(settings),
    )


def memory_dataset(stream, batch_size: int):
    """One epoch of the stream's segments, pre-shuffled, as in-memory tensors in a tf.data.Dataset."""
    import tensorflow as tf

    blocks = list(stream.batches())
    x = np.concatenate([b[0] for b in blocks])[..., None]
    y = {k: np.concatenate([b[1][k] for b in blocks]) for k in LEVELS}
    w = {k: np.concatenate([b[2][k] for b in blocks]) for k in LEVELS}
    order = np.random.default_rng(1).permutation(len(x))
    x, y, w = x[order], {k: v[order] for k, v in y.items()}, {k: v[order] for k, v in w.items()}
    ds = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(batch_size).prefetch(tf.data.AUTOTUNE)
    return ds, len(x)


# --- 1. and 2.: fit and pipeline -----------------------------------------------------------------


def timed(fn, *fn_args) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all threads) of ``fn(*fn_args)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*fn_args)
    return time.perf_counter() - wall, time.process_time() - cpu


def bench_fit(args, settings, processed, cache, labels, weights, norm) -> list[dict]:
    """Whole ``fit`` epochs on the pipeline and on in-memory tensors, alternated ABBA."""
    import keras

    from genrekit.train.pipeline import training_dataset
    from genrekit.train.run import BalancedHierarchicalModel

    n = processed.num_classes
    rows = []
    epoch_tracks = list(args.epoch_tracks) + [args.epoch_tracks[-1]] * (
        len(args.widths) - len(args.epoch_tracks)
    )
    for width, tracks in zip(args.widths, epoch_tracks, strict=False):
        s = dataclasses.replace(settings, width_factor=width)
        keras.utils.set_random_seed(0)
        model = BalancedHierarchicalModel(
            s.input_shape,
            num_top=n["top"],
            num_medium=n["medium"],
            num_all=n["all"],
            class_weights=weights,
            settings=s,
            normalization=norm,
        ).compile_with_balanced_losses()
        stream = make_stream(s, cache, labels, weights, n, tracks)
        pipe = training_dataset(stream, s.batch_size, s.input_shape, fill=norm["mean"])
        mem, segments = memory_dataset(make_stream(s, cache, labels, weights, n, tracks), s.batch_size)

        def fit(ds, model=model):
            model.fit(ds, epochs=1, verbose=0, shuffle=False)

        data = {"pipeline": pipe, "memory": mem}
        for ds in data.values():
            fit(ds)  # warm-up: tracing, first iterators
        times: dict[str, list[tuple[float, float]]] = {"pipeline": [], "memory": []}
        for r in range(args.repeats):
            for side in ("pipeline", "memory") if r % 2 == 0 else ("memory", "pipeline"):
                times[side].append(timed(fit, data[side]))
        row = {"width": width, "params": model.count_params(), "segments": segments, "times": times}
        row["steps"] = -(-segments // s.batch_size)
        for side, runs in times.items():
            row[side] = segments / statistics.median(t[0] for t in runs)
            row[side + "_best"] = segments / min(t[0] for t in runs)
            row[side + "_cpu_ms"] = 1000 * statistics.median(t[1] for t in runs) / segments
        # Each repeat's two runs are neighbours in time: their ratio cancels slow drift in the load.
        for k, name in ((0, "overhead"), (1, "overhead_cpu")):
            ratios = [p[k] / m[k] for p, m in zip(times["pipeline"], times["memory"], strict=True)]
            row[name] = statistics.median(ratios) - 1.0
        rows.append(row)
        print(
            f"  width {width:g}: pipeline {row['pipeline']:.0f} seg/s, memory {row['memory']:.0f} seg/s, "
            f"overhead {100 * row['overhead']:+.1f}% wall, {100 * row['overhead_cpu']:+.1f}% CPU "
            f"(wall, CPU s: {fmt_times(times)})",
            flush=True,
        )
        del model
        keras.backend.clear_session()
    return rows


def fmt_times(times: dict[str, list[tuple[float, float]]]) -> str:
    return "; ".join(f"{k} " + " ".join(f"{w:.1f}/{c:.1f}" for w, c in v) for k, v in times.items())


def bench_pipeline(args, settings, processed, cache, labels, weights) -> list[tuple[str, float, str]]:
    """Segments/s of the generator alone, the whole tf.data pipeline, and the in-memory dataset.

    For the datasets, the time to the first batch is also given: the pipeline's shuffle buffer
    must fill before it (a cost paid once per epoch).
    """
    from genrekit.train.pipeline import training_dataset

    n = processed.num_classes
    stream = make_stream(settings, cache, labels, weights, n, 0)
    ds = training_dataset(stream, settings.batch_size, settings.input_shape)
    mem, _ = memory_dataset(make_stream(settings, cache, labels, weights, n, 0), settings.batch_size)
    segments = len(labels) * settings.num_segments

    def generator() -> float:
        for _ in stream.batches():
            pass
        return float("nan")

    def iterate(dataset) -> float:
        """Iterate one epoch; return the seconds to the first batch."""
        start = time.perf_counter()
        it = iter(dataset)
        next(it)
        first = time.perf_counter() - start
        for _ in it:
            pass
        return first

    results = []
    for name, fn in (
        ("generator only (cache reads + targets, numpy)", generator),
        ("training_dataset (+ augmentation map, prefetch)", lambda: iterate(ds)),
        ("in memory: from_tensor_slices().batch().prefetch()", lambda: iterate(mem)),
    ):
        fn()  # warm-up
        runs = []
        for _ in range(max(3, args.repeats)):
            start = time.perf_counter()
            first = fn()
            runs.append((time.perf_counter() - start, first))
        total, first = min(runs)
        extra = "" if first != first else f"first batch after {1000 * first:.0f} ms"
        results.append((name, segments / total, extra))
    return results


# --- 4. batch composition ---------------------------------------------------------------------------


def composition_labels(n_tracks: int, seed: int = 0):
    """Training-split labels and artists of generated FMA-layout metadata (no audio).

    The demo's metadata, like FMA's, gives an artist's tracks neighbouring ids; at a few tens of
    thousands of tracks it shows what the small benchmark cache cannot: batches drawn from a buffer
    of a few sorted blocks hold few artists.
    """
    from genrekit.datasets.demo.metadata import make_demo_metadata
    from genrekit.datasets.fma import derive_targets
    from genrekit.datasets.labels import GenreTree, build_vocabularies, encode

    tracks, genres = make_demo_metadata(n_tracks, seed)
    tree = GenreTree(genres)
    targets = derive_targets(tracks, tree)
    train = targets[targets["split"] == "training"].sort_index()
    labels = encode(train, build_vocabularies(targets, tree))
    return labels, train["artist"].to_numpy()


def bench_composition(settings, labels, artist, repeats: int = 3) -> list[tuple[str, float, float]]:
    """Distinct artists and top genres per batch: the pipeline, the previous pipeline, a uniform draw.

    Epochs are drawn by the trainer's weighted sampler (config.py's thresholds, relative to this
    training set). The previous pipeline sorted the epoch's tracks, cut them into blocks of
    ``shuffle_block``, visited the blocks in random order and mixed segments in a shuffle buffer of
    four blocks (tf.data's ``shuffle`` semantics, simulated here in numpy). The uniform draw takes the
    same epoch's segments in a random order. Only which tracks land in which batch is computed.
    """
    from genrekit.train.balancing import EpochSampler, effective_thresholds
    from genrekit.train.pipeline import TrainingStream

    top = labels.top
    S, bs, block = settings.num_segments, settings.batch_size, settings.shuffle_block
    n_top = int(top.max()) + 1
    over, under = effective_thresholds(
        dataclasses.replace(settings, sampling_thresholds="relative"), int((top >= 0).sum())
    )
    sampler = EpochSampler(top, n_top, over, under, seed=0)

    def stats(track_order):
        batches = [track_order[i : i + bs] for i in range(0, len(track_order) - bs + 1, bs)]
        a = [len(set(artist[b].tolist())) for b in batches]
        g = [len(set(top[b][top[b] >= 0].tolist())) for b in batches]
        return float(np.mean(a)), float(np.mean(g))

    names = (f"pipeline (windows of {WINDOW_TRACKS} tracks in blocks of {block})", "previous (sorted blocks, buffer of 4)",
             "uniform random draw of the epoch's segments")  # fmt: skip
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in names}
    for epoch in range(repeats):
        stream = TrainingStream(None, labels, {}, {}, S, sampler=sampler, shuffle_block=block, seed=0, batch_size=bs)
        order = np.concatenate([np.repeat(rows, S)[perm] for rows, perm in stream.segment_rows(epoch)])
        out[names[0]].append(stats(order))
        rng = np.random.default_rng((epoch, 9))
        rows = np.sort(sampler.epoch(epoch))
        chunks = np.array_split(rows, max(1, -(-len(rows) // block)))
        segs = np.concatenate([np.repeat(chunks[i], S) for i in rng.permutation(len(chunks))])
        size = 4 * block * S
        buf, prev = list(segs[:size]), []
        for seg in segs[size:]:
            j = int(rng.integers(len(buf)))
            prev.append(buf[j])
            buf[j] = seg
        rng.shuffle(buf)
        out[names[1]].append(stats(np.array(prev + buf)))
        out[names[2]].append(stats(rng.permutation(segs)))
    return [(k, float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals]))) for k, vals in out.items()]


# --- 3. reads ------------------------------------------------------------------------------------


def bench_reads(args, settings, cache) -> tuple[list[tuple[str, dict[str, float]]], dict[str, object]]:
    """Clips/s of each read pattern, warm, cold once and cold each (only the reads are timed)."""
    from genrekit.features.cache import OK

    part = max(cache.parts, key=lambda p: int((p.status == OK).sum()))
    path = part.path / "features.npy"
    ids = part.track_ids[part.status == OK]
    row_of = {int(t): r for r, t in enumerate(part.track_ids)}
    block, batch = settings.shuffle_block, settings.batch_size
    notes: dict[str, object] = {"file": path, "tracks": len(ids), "read_ahead_kb": read_ahead_kb(path)}
    state: dict[str, str] = {}

    def pattern_blocks(rng):  # what TrainingStream reads: windows of WINDOW_TRACKS tracks in random blocks, one call each
        rows = np.sort(ids)
        chunks = np.array_split(rows, max(1, -(-len(rows) // block)))
        order = rng.permutation(len(chunks))
        per = max(1, WINDOW_TRACKS // block)
        return [np.concatenate([chunks[i] for i in order[k : k + per]]) for k in range(0, len(order), per)]

    def pattern_batches(rng):
        perm = rng.permutation(ids)
        return [perm[i : i + batch] for i in range(0, len(perm), batch)]

    def pattern_single(rng):
        return [ids[i : i + 1] for i in rng.permutation(len(ids))]

    class CacheReader:
        def open(self):
            pass

        def read(self, chunk):
            cache.read(chunk)

        def close(self):
            pass

    class MemmapReader:
        """The naive way: a numpy memmap of the file, fancy-indexed by a random row and copied out."""

        def open(self):
            self.mm = np.load(path, mmap_mode="r")

        def read(self, chunk):
            np.array(self.mm[[row_of[int(t)] for t in chunk]])

        def close(self):
            del self.mm  # unmapped: fadvise cannot evict pages a process still maps

    methods = (
        (f"windows of random blocks of {block} sorted tracks (pipeline)", pattern_blocks, CacheReader()),
        (f"random batches of {batch} tracks (cache.read)", pattern_batches, CacheReader()),
        ("random single tracks (cache.read: pread)", pattern_single, CacheReader()),
        ("random single tracks (numpy memmap row: naive)", pattern_single, MemmapReader()),
    )
    results = []
    residency: dict[str, list[float]] = {"warm": [], "cold once": [], "cold each": []}
    for name, pattern, reader in methods:
        rates = {}
        for mode in ("warm", "cold once", "cold each"):
            best = 0.0
            for rep in range(args.read_repeats):
                chunks = pattern(np.random.default_rng((rep, len(name))))
                if mode == "warm":
                    warm_up_file(path)
                elif mode == "cold once":
                    evict(path, args.evict, state)
                if mode != "cold each":
                    residency[mode].append(resident_fraction(path))
                    reader.open()
                elapsed = 0.0
                for chunk in chunks:
                    if mode == "cold each":  # not timed: only the read is
                        fadvise_evict(path)
                        if len(residency["cold each"]) < 8:
                            residency["cold each"].append(resident_fraction(path))
                        reader.open()
                    start = time.perf_counter()
                    reader.read(chunk)
                    elapsed += time.perf_counter() - start
                    if mode == "cold each":
                        reader.close()
                if mode != "cold each":
                    reader.close()
                best = max(best, len(ids) / elapsed)
            rates[mode] = best
        results.append((name, rates))
        print(f"  {name}: " + ", ".join(f"{m} {r:,.0f}" for m, r in rates.items()) + " clips/s", flush=True)
    notes["evict"] = state
    notes["residency"] = {
        k: (None if not v or None in v else (max(v) if k != "warm" else min(v))) for k, v in residency.items()
    }
    return results, notes


# --- 5. row checks -------------------------------------------------------------------------------


def _read_unchecked(cache, ids: np.ndarray) -> np.ndarray:
    """``FeatureCache.read`` without the row checks: the same lookup, sorted reads and scatter."""
    idx, _ = cache._lookup(ids)
    parts, rows = cache._part[idx], cache._row[idx]
    order = np.lexsort((rows, parts))
    sorted_out = np.empty((len(ids), *cache.parts[0].row_shape), np.float16)
    start = 0
    for k in np.unique(parts):
        n = int((parts == k).sum())
        cache.parts[k].read_rows(rows[order[start : start + n]], sorted_out[start : start + n])
        start += n
    out = np.empty_like(sorted_out)
    out[order] = sorted_out
    return out


# "unchecked again" is the same as "unchecked": its ratio shows the noise of the comparison.
CHECK_NAMES = ("unchecked", "checked, first read", "checked, rows known", "verify pass", "unchecked again")


def bench_checks(args, settings, cache) -> dict[str, object]:
    """Wall and CPU seconds per pass over every cached track for each of :data:`CHECK_NAMES`.

    A pass: the pipeline's windows (``WINDOW_TRACKS`` tracks in random blocks of ``shuffle_block``),
    page cache warm; ``verify pass`` is ``FeatureCache.verify`` of every track (what the cache build
    does). Each timing is several passes (0.5 s at least), the order rotates over repeats, and the
    ratio to ``unchecked`` is taken within each repeat (neighbouring runs), then the median.
    """
    from genrekit.features.cache import FeatureCache
    from genrekit.features.cache.parts import forget_checks

    ids = np.sort(cache.track_ids)
    block = settings.shuffle_block
    paths = [p.path / "features.npy" for p in cache.parts]

    def windows(rng):  # as TrainingStream: windows of WINDOW_TRACKS tracks in random blocks
        chunks = np.array_split(ids, max(1, -(-len(ids) // block)))
        order = rng.permutation(len(chunks))
        per = max(1, WINDOW_TRACKS // block)
        return [np.concatenate([chunks[i] for i in order[k : k + per]]) for k in range(0, len(order), per)]

    def fresh():  # a new process's reader: no row checked yet
        forget_checks()
        return FeatureCache.open(cache.cache_dir, cache.frontend)

    def run(name: str, reader, rng) -> None:
        if name == "verify pass":
            assert reader.verify(ids) == []
            return
        read = reader.read if name.startswith("checked") else (lambda w: _read_unchecked(cache, w))
        for window in windows(rng):
            read(window)

    def one_pass(name: str, rng) -> tuple[float, float]:
        # An untimed pass of the same reads first, so that every timed pass finds the memory
        # allocator and the page cache in the same state; then a reader that has checked no row,
        # except for "rows known", which keeps the one that has checked every row.
        reader = fresh()
        run(name, reader, rng)
        if name != "checked, rows known":
            reader = fresh()
        for path in paths:
            warm_up_file(path)
        wall, cpu = time.perf_counter(), time.process_time()
        run(name, reader, rng)
        return time.perf_counter() - wall, time.process_time() - cpu

    single = min(one_pass("unchecked", np.random.default_rng(0))[0] for _ in range(3))
    inner = max(1, int(np.ceil(0.5 / max(single, 1e-6))))
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in CHECK_NAMES}
    for rep in range(max(3, args.read_repeats)):
        names = CHECK_NAMES[rep % 5 :] + CHECK_NAMES[: rep % 5]
        for name in names:
            runs = [one_pass(name, np.random.default_rng((rep, i))) for i in range(inner)]
            times[name].append((sum(r[0] for r in runs) / inner, sum(r[1] for r in runs) / inner))
    ratios = {
        name: [float(np.median([t[k] / u[k] for t, u in zip(times[name], times["unchecked"], strict=True)])) for k in (0, 1)]
        for name in CHECK_NAMES
    }
    best = {name: min(t[0] for t in times[name]) for name in CHECK_NAMES}
    return {"tracks": len(ids), "best": best, "ratios": ratios, "inner": inner, "repeats": len(times["unchecked"])}


def print_checks(checks: dict[str, object], epochs: int) -> None:
    n, best, ratios = checks["tracks"], checks["best"], checks["ratios"]
    print(f"\n5. row checks (crc32 per row): pipeline window reads of all {n} tracks, page cache warm; "
          f"{checks['repeats']} repeats of {checks['inner']} passes, rotated; ratio to unchecked in the same "
          "repeat, median (wall / this process's CPU time)")  # fmt: skip
    for name in CHECK_NAMES:
        wall, cpu = ratios[name]
        print(f"   {name:22s} {n / best[name]:>9,.0f} clips/s  {wall:5.2f}x / {cpu:5.2f}x the unchecked time "
              f"({100 * (wall - 1):+.1f}% / {100 * (cpu - 1):+.1f}%)")  # fmt: skip
    for k, what in ((0, "wall"), (1, "CPU")):
        once = ratios["verify pass"][k] / epochs
        per_epoch = ratios["checked, rows known"][k] - 1
        print(
            f"   a training of {epochs} epochs, {what}: the build's verify pass {100 * once:+.1f}% + every "
            f"epoch's reads of known rows {100 * per_epoch:+.1f}% = {100 * (once + per_epoch):+.1f}% of its "
            "read time (target <= 5%)"
        )


# --- Report --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_training_"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(
            f"machine: {os.cpu_count()} CPU cores, load average {load:.2f} at start (shared with other jobs)"
        )
        settings, processed, cache, labels, weights, norm = prepare(args, work)
        if args.checks_only:
            print_checks(bench_checks(args, settings, cache), args.epochs_for_checks)
            cache.close()
            print(f"\ntotal {time.perf_counter() - started:.0f} s")
            return 0
        print(
            f"stream: {len(labels)} tracks x {settings.num_segments} segments, batch {settings.batch_size}, "
            f"shuffle_block {settings.shuffle_block}, window {WINDOW_TRACKS} tracks "
            f"({WINDOW_TRACKS * settings.num_segments} segments permuted together)"
        )
        print(f"4. batch composition ({args.composition_tracks:,} tracks of generated metadata) ...", flush=True)
        comp_labels, comp_artist = composition_labels(args.composition_tracks)
        comp_rows = bench_composition(settings, comp_labels, comp_artist)
        fit_rows, pipe_rows, read_rows, notes = [], [], [], {}
        if not args.skip_fit:
            from genrekit.device import configure_device

            device = configure_device(args.mixed_precision)
            gpus = ", ".join(g["name"] for g in device["gpus"]) or "none (CPU only)"
            print(
                f"TensorFlow {device['tensorflow']}, Keras {device['keras']}; GPU: {gpus}; policy {device['policy']}"
            )
            print("\n1. model.fit ...", flush=True)
            fit_rows = bench_fit(args, settings, processed, cache, labels, weights, norm)
            print("2. pipeline alone ...", flush=True)
            pipe_rows = bench_pipeline(args, settings, processed, cache, labels, weights)
        checks = None
        if not args.skip_reads:
            print("3. reads ...", flush=True)
            read_rows, notes = bench_reads(args, settings, cache)
            print("5. row checks ...", flush=True)
            checks = bench_checks(args, settings, cache)
        cache.close()

        print("\n" + "=" * 100)
        if fit_rows:
            print(
                f"1. model.fit, whole epochs, median of {args.repeats} per side (ABBA order); "
                "overhead = median over repeats of t_pipeline / t_memory - 1"
            )
            print(
                f"{'width':>5} {'params':>10} {'segs/epoch':>10} {'steps':>5} {'pipeline seg/s':>15} "
                f"{'memory seg/s':>13} {'overhead wall':>14} {'CPU ms/seg pipe/mem':>20} {'overhead CPU':>13}"
            )
            for r in fit_rows:
                print(
                    f"{r['width']:>5g} {r['params']:>10,} {r['segments']:>10} {r['steps']:>5} "
                    f"{r['pipeline']:>15.1f} {r['memory']:>13.1f} {100 * r['overhead']:>+13.1f}% "
                    f"{r['pipeline_cpu_ms']:>10.2f} / {r['memory_cpu_ms']:<7.2f} {100 * r['overhead_cpu']:>+12.1f}%"
                )
            print(
                "   memory = the same epoch's float16 segments, targets and weights, pre-shuffled once, in\n"
                "   tf.data.Dataset.from_tensor_slices(...).batch(B).prefetch(AUTOTUNE). CPU = this process's CPU\n"
                "   time (all threads): steadier than wall time when other jobs share the cores. Target: < 10%."
            )
        if pipe_rows:
            print(f"\n2. input pipeline alone, no model (segments/s, best of {max(3, args.repeats)} epochs)")
            base = pipe_rows[1][1]
            for name, rate, extra in pipe_rows:
                print(f"   {name:56s} {rate:>9,.0f}  {rate / base:5.2f}x the pipeline  {extra}")
            if fit_rows:
                print(
                    "   pipeline ceiling / training rate: "
                    + ", ".join(f"width {r['width']:g}: {base / r['pipeline']:.0f}x" for r in fit_rows)
                )
        if read_rows:
            print(
                f"\n3. cache reads, clips/s ({notes['tracks']} tracks of "
                f"{settings.num_segments}x{settings.n_mels}x{settings.segment_frames} float16 = "
                f"{settings.num_segments * settings.n_mels * settings.segment_frames * 2 // 1024} KiB; "
                f"best of {args.read_repeats} passes)"
            )
            print(f"   {'method':55s} {'warm':>10} {'cold once':>10} {'cold each':>10}")
            for name, rates in read_rows:
                print(
                    f"   {name:55s} "
                    + " ".join(f"{rates[m]:>10,.0f}" for m in ("warm", "cold once", "cold each"))
                )
            blocks = read_rows[0][1]
            for name, rates in read_rows[1:]:
                print(
                    f"   blocks / {name.split('(')[0].strip() + ' (' + name.split('(')[1]:46s} "
                    + " ".join(f"{blocks[m] / rates[m]:>9.1f}x" for m in ("warm", "cold once", "cold each"))
                )
            res = notes["residency"]
            fmt = {k: ("?" if v is None else f"{100 * v:.0f}%") for k, v in res.items()}
            if any(v is not None and v > 0.5 for k, v in res.items() if k != "warm"):
                print("   WARNING: the file stayed in the page cache (tmpfs?): the cold columns are not cold")
            print(
                "   eviction: "
                + ", ".join(f"{k} {v}" for k, v in notes["evict"].items())
                + f" ('cold each' always uses fadvise). Resident before reading (mincore): warm {fmt['warm']}, "
                f"cold once {fmt['cold once']}, cold each {fmt['cold each']}; device read_ahead_kb "
                f"{notes['read_ahead_kb']}"
            )
        print(f"\n4. batch composition: mean distinct artists and top genres per batch of {settings.batch_size} "
              f"segments ({len(comp_labels):,} training tracks of {args.composition_tracks:,}, "
              f"weighted sampling; 3 epochs)")  # fmt: skip
        base_a, base_g = comp_rows[-1][1], comp_rows[-1][2]
        for name, a, g in comp_rows:
            print(f"   {name:50s} artists {a:6.2f} ({a / base_a:4.2f}x uniform)   top genres {g:5.2f} ({g / base_g:4.2f}x)")
        if checks:
            print_checks(checks, args.epochs_for_checks)
        print(f"\ntotal {time.perf_counter() - started:.0f} s")
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
