"""Forward-pass cost of a model on mel segments: FLOPs, parameters and segments/s, batched vs one at a time.

Run from the repository root::

    python benchmarks/bench_model.py                      # the CNN at width 1.0, 256 segments, batch 64
    python benchmarks/bench_model.py --width 0.25 --segments 512
    python benchmarks/bench_model.py --backbone ast       # the spectrogram transformer at the AST_* defaults

The naive baseline calls the model on one segment at a time (what a per-file loop without
batching does); the figure that matters is the batched rate and its ratio to that baseline.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", choices=("cnn", "ast"), default="cnn", help="the model (default cnn)")
    parser.add_argument("--width", type=float, default=1.0, help="the CNN's width factor (default 1.0)")
    parser.add_argument("--segments", type=int, default=256, help="segments predicted batched")
    parser.add_argument("--naive_segments", type=int, default=32, help="segments predicted one by one")
    parser.add_argument("--batch_size", type=int, default=64, help="batch size of the batched run")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best is reported")
    parser.add_argument("--mixed_precision", action="store_true", help="mixed_float16 (GPU only)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from genrekit.device import configure_device
    from genrekit.models import ast, cnn
    from genrekit.models.registry import ModelSpec
    from genrekit.settings import Settings

    summary = configure_device(mixed_precision=args.mixed_precision)
    print(f"device: {summary['gpus'] or 'CPU'}  policy: {summary['policy']}  backend: {summary['backend']}")
    settings = Settings(backbone=args.backbone, width_factor=args.width, seed=0)
    spec = ModelSpec(settings.input_shape, {"top": 16, "medium": 150, "all": 163}, settings)  # fma_large's
    module = ast if args.backbone == "ast" else cnn
    model = module.build_from_spec(spec)
    flops = module.count_flops(model)
    size = (
        f"patch {settings.ast_patch}, dim {settings.ast_dim}, depth {settings.ast_depth}, heads {settings.ast_heads}"
        if args.backbone == "ast"
        else f"width {args.width}"
    )
    print(
        f"{args.backbone} ({size}): {model.count_params():,} parameters, {flops / 1e9:.4f} GFLOP per segment"
    )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.segments, *Settings().input_shape)).astype(np.float32)

    def batched() -> None:
        for start in range(0, len(x), args.batch_size):
            model(x[start : start + args.batch_size], training=False)

    def naive() -> None:
        for i in range(args.naive_segments):
            model(x[i : i + 1], training=False)

    def best_seconds(fn) -> float:
        fn()  # warm-up: graph tracing and allocation are not the steady state
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    batched_rate = args.segments / best_seconds(batched)
    naive_rate = args.naive_segments / best_seconds(naive)
    for label, rate in (
        (f"batched (batch {args.batch_size})", batched_rate),
        ("naive (batch 1)", naive_rate),
    ):
        print(f"{label:22s} {rate:8.1f} segments/s  {rate * flops / 1e9:7.1f} GFLOP/s")
    print(f"ratio batched / naive: {batched_rate / naive_rate:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
