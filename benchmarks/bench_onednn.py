"""TensorFlow's oneDNN CPU kernels on and off: CPU time per training step of the toolkit's model.

Run from the repository root (about 2 minutes on 2 cores)::

    python benchmarks/bench_onednn.py
    python benchmarks/bench_onednn.py --width 0.25 --batch 16 --pairs 3

TensorFlow reads ``TF_ENABLE_ONEDNN_OPTS`` once, at import, so each measurement is a fresh process:
pairs of (off, on) runs, alternating, each timing ``--steps`` steps of ``model.fit`` on arrays in
memory (focal/cross-entropy losses of the three heads, Adam) after one warm-up epoch. It prints
each run's CPU and wall milliseconds per step and the median ratio off / on. genrekit sets the
variable to 1 unless the user did (genrekit/__init__.py). No figure is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
import numpy as np, keras
from genrekit.device import configure_device
from genrekit.models.losses import make_losses
from genrekit.models.cnn import build_model
width, batch, steps = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
info = configure_device(mixed_precision=False)
model = build_model((128, 64, 1), num_top=16, num_medium=47, num_all=64, width_factor=width,
                    norm_mean=np.zeros(128), norm_std=np.ones(128), seed=1)
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=make_losses(gamma=2.0))
rng = np.random.default_rng(0)
n = batch * steps
x = rng.normal(size=(n, 128, 64, 1)).astype("float32")
y = {"top": np.eye(16, dtype="float32")[rng.integers(0, 16, n)],
     "medium": np.eye(47, dtype="float32")[rng.integers(0, 47, n)],
     "all": (rng.random((n, 64)) < 0.1).astype("float32")}
model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
wall, cpu = time.perf_counter(), time.process_time()
model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
print(json.dumps({"onednn": info["onednn"], "cpu_ms": 1000 * (time.process_time() - cpu) / steps,
                  "wall_ms": 1000 * (time.perf_counter() - wall) / steps}))
"""


def run(onednn: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO), str(args.width), str(args.batch), str(args.steps)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.125, help="model width factor (default 0.125)")
    parser.add_argument("--batch", type=int, default=32, help="segments per step (default 32)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run (default 20)")
    parser.add_argument("--pairs", type=int, default=2, help="(off, on) pairs (default 2)")
    args = parser.parse_args(argv)
    ratios = []
    print(f"width {args.width:g}, batch {args.batch}, {args.steps} steps per run")
    for i in range(args.pairs):
        off, on = run("0", args), run("1", args)
        for r in (off, on):
            print(f"  pair {i + 1} oneDNN {'on ' if r['onednn'] else 'off'}: "
                  f"{r['cpu_ms']:.0f} ms CPU, {r['wall_ms']:.0f} ms wall per step")  # fmt: skip
        ratios.append(off["cpu_ms"] / on["cpu_ms"])
    print(f"CPU time off / on (median of {len(ratios)} pairs): {statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
