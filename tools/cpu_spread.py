"""How far the stored old run's numbers move on other CPUs, emulated on this one.

    python tools/cpu_spread.py --work /tmp/spread                 # every variant this CPU can run
    python tools/cpu_spread.py --work /tmp/spread --variants base intel_avx512

``tests/test_old_run.py`` compares what the run in ``tests/fixtures/run_94faa63`` predicts and
evaluates on the session's demo dataset with numbers stored on one machine. On another CPU three
things take other code paths: OpenBLAS picks its kernels by CPU (``OPENBLAS_CORETYPE`` forces
one), numpy dispatches its ufuncs by SIMD level (``NPY_DISABLE_CPU_FEATURES``), and TensorFlow's
oneDNN by ISA (``ONEDNN_MAX_CPU_ISA``; ``TF_ENABLE_ONEDNN_OPTS=0``: Eigen's kernels). Each variant
runs the test's steps in a fresh process with those variables: the demo dataset is written again
(its audio changes too: the synthesizer's products run on the forced kernels), then inference and
evaluation as in the test. The table gives, per variant, the largest absolute difference of any
stored float, the rtol that ``np.isclose(new, old, rtol, atol=1e-6)`` would need, and whether
every non-float value (genre names, votes, counts) is equal.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OLD = REPO / "tests" / "fixtures" / "run_94faa63"
ATOL = 1e-6  # the reports round probabilities to 6 decimals

# Variables each variant sets; a variant whose CPU features this machine lacks is skipped.
_NO_AVX512_NUMPY = "X86_V4 AVX512_ICL AVX512_SPR"
VARIANTS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "base": ({}, ()),
    "blas_skylakex": ({"OPENBLAS_CORETYPE": "SkylakeX"}, ("avx512f", "avx512bw", "avx512dq", "avx512vl")),
    "blas_haswell": ({"OPENBLAS_CORETYPE": "Haswell"}, ("avx2", "fma")),
    "blas_sandybridge": ({"OPENBLAS_CORETYPE": "Sandybridge"}, ("avx",)),
    "numpy_avx2": ({"NPY_DISABLE_CPU_FEATURES": _NO_AVX512_NUMPY}, ()),
    "numpy_sse4": ({"NPY_DISABLE_CPU_FEATURES": "X86_V3 " + _NO_AVX512_NUMPY}, ()),
    "onednn_avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, ()),
    "onednn_avx512_core": ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}, ("avx512f",)),
    "onednn_off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, ()),
    # A Skylake/Cascade Lake Xeon: Intel's AVX-512 BLAS kernels, oneDNN without VNNI/BF16.
    "intel_avx512": (
        {"OPENBLAS_CORETYPE": "SkylakeX", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
        ("avx512f", "avx512bw", "avx512dq", "avx512vl"),
    ),
    # A machine without AVX-512 at all (Haswell to Zen 3).
    "avx2_machine": (
        {
            "OPENBLAS_CORETYPE": "Haswell",
            "NPY_DISABLE_CPU_FEATURES": _NO_AVX512_NUMPY,
            "ONEDNN_MAX_CPU_ISA": "AVX2",
        },
        ("avx2", "fma"),
    ),
}


def cpu_flags() -> set[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def child(work: Path) -> None:
    """The test's steps in this process: the session demo, inference and evaluation of the old run."""
    sys.path.insert(0, str(REPO))
    import balanced_inference
    import model_evaluation
    from genrekit.datasets.demo.writer import write_demo_dataset

    demo = write_demo_dataset(work / "demo", n_tracks=120, clip_seconds=3.0, seed=0, progress=False)
    run = work / "run"
    shutil.copytree(OLD, run, dirs_exist_ok=True)
    # Its config names the machine it was trained on's feature cache: build one here instead.
    config = json.loads((run / "balanced_training_config.json").read_text(encoding="utf-8"))
    config["settings"]["cache_dir"] = str(work / "features")
    (run / "balanced_training_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    model = ["--model", str(run / "balanced_hierarchical_genre_model.h5")]
    model += ["--config", str(run / "balanced_training_config.json")]
    with contextlib.redirect_stdout(io.StringIO()):
        argv = [*model, "--folder", str(demo.audio_dir / "000"), "--output", str(work / "predictions.json")]
        assert balanced_inference.main([*argv, "--workers", "1"]) == 0
        argv = [
            *model,
            "--split",
            "test",
            "--metadata",
            str(demo.metadata_dir),
            "--audio",
            str(demo.audio_dir),
        ]
        argv += ["--output_dir", str(work / "evaluation"), "--no_plots", "--workers", "1"]
        assert model_evaluation.main(argv) == 0


def spread(new, old, out: dict) -> dict:
    """Largest ``|new - old|``, the rtol ``np.isclose(..., atol=ATOL)`` needs, non-float mismatches."""
    if isinstance(old, dict):
        for key, value in old.items():
            if key != "_note":
                spread(new.get(key) if isinstance(new, dict) else None, value, out)
    elif isinstance(old, list):
        if not isinstance(new, list) or len(new) != len(old):
            out["other"] += 1
        else:
            for a, b in zip(new, old, strict=True):
                spread(a, b, out)
    elif isinstance(old, float) and isinstance(new, int | float):
        diff = abs(new - old)
        out["abs"] = max(out["abs"], diff)
        if diff > ATOL:
            out["rtol"] = max(out["rtol"], (diff - ATOL) / abs(old))
    elif new != old:
        out["other"] += 1
    return out


def measure(name: str, work: Path) -> dict:
    env = {**os.environ, **VARIANTS[name][0], "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    subprocess.run([sys.executable, __file__, "--child", str(folder)], env=env, check=True, cwd=REPO)
    row = {"variant": name, **VARIANTS[name][0]}
    pairs = (("predictions", "predictions.json", "predictions_94faa63.json"),
             ("evaluation", "evaluation/evaluation_report.json", "evaluation_94faa63.json"))  # fmt: skip
    for label, new, old in pairs:
        found = json.loads((folder / new).read_text(encoding="utf-8"))
        stored = json.loads((OLD / old).read_text(encoding="utf-8"))
        if label == "predictions":
            found, stored = found["results"], stored["results"]
        row[label] = spread(found, stored, {"abs": 0.0, "rtol": 0.0, "other": 0})
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/genrekit_cpu_spread"))
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    flags, rows = cpu_flags(), []
    for name in args.variants:
        missing = [f for f in VARIANTS[name][1] if f not in flags]
        if missing:
            print(f"{name:20s} skipped: this CPU lacks {', '.join(missing)}")
            continue
        row = measure(name, args.work)
        rows.append(row)
        p, e = row["predictions"], row["evaluation"]
        print(f"{name:20s} predictions: max |diff| {p['abs']:.2e}, rtol needed {p['rtol']:.2e}, other {p['other']}"
              f" | evaluation: max |diff| {e['abs']:.2e}, rtol needed {e['rtol']:.2e}, other {e['other']}",
              flush=True)  # fmt: skip
    (args.work / "spread.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
