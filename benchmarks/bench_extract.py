"""Benchmark: extract a >= 1 GB FMA-like archive with genrekit's extractor vs ``ZipFile.extractall``.

Writes a zip of incompressible random bytes (mostly ZIP_STORED members, since BZIP2-compressing
1 GB of random data takes many minutes on 2 cores, plus a few BZIP2 members as in the real
archives) to a temporary folder, extracts it in a fresh child process with each method, and prints
wall time, throughput and the child's peak RSS (``ru_maxrss``), which must stay under 200 MB for
ours. All temporary data is deleted at the end.

    python benchmarks/bench_extract.py                      # 1 GiB, 300 members, in /tmp
    python benchmarks/bench_extract.py --size_mib 2048 --members 600 --tmp /scratch
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIMIT_MB = 200


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size_mib", type=int, default=1024, help="archive size in MiB (default 1024)")
    parser.add_argument("--members", type=int, default=300, help="ZIP_STORED members (default 300)")
    parser.add_argument("--bzip2_members", type=int, default=4, help="extra 2 MiB BZIP2 members (default 4)")
    parser.add_argument("--tmp", default=None, help="folder for the temporary data (default: the system's)")
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "ARCHIVE", "DEST"), help=argparse.SUPPRESS)
    return parser


def write_archive(path: Path, size: int, members: int, bzip2_members: int) -> None:
    """Stream random bytes into ``path`` (never a whole member in memory)."""
    each = size // members
    block = 1 << 20
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("fma_bench/README.txt", "benchmark archive\n")
        for i in range(members):
            info = zipfile.ZipInfo(f"fma_bench/{i // 100:03d}/{i:06d}.mp3", date_time=(2017, 4, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as out:
                left = each
                while left:
                    n = min(block, left)
                    out.write(os.urandom(n))
                    left -= n
        for i in range(bzip2_members):
            info = zipfile.ZipInfo(f"fma_bench/bz2/{i:06d}.mp3", date_time=(2017, 4, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_BZIP2
            zf.writestr(info, os.urandom(2 << 20))


def child(method: str, archive: str, dest: str) -> int:
    """Run one extraction in this (fresh) process and print its time and peak RSS as JSON; 0."""
    import resource

    sys.path.insert(0, str(REPO))
    start = time.perf_counter()
    if method == "genrekit":
        from genrekit.download.archives import extract_archive

        result = extract_archive(archive, dest, progress=False)
        files = result.extracted
    elif method == "genrekit-resume":
        from genrekit.download.archives import extract_archive

        result = extract_archive(archive, dest, progress=False)
        files = result.skipped
    else:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(dest)
            files = sum(not i.is_dir() for i in zf.infolist())
    seconds = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": seconds, "peak_mb": peak_kib / 1024, "files": files}))
    return 0


def run_child(method: str, archive: Path, dest: Path) -> dict:
    os.sync()  # start each run with the previous run's writes on disk
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, str(archive), str(dest)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return child(*args.child)
    size = args.size_mib << 20
    root = Path(tempfile.mkdtemp(prefix="genrekit_bench_extract_", dir=args.tmp))
    try:
        free = shutil.disk_usage(root).free
        if free < 3.2 * size:
            print(f"need {3.2 * size / 2**30:.1f} GiB free in {root}, have {free / 2**30:.1f} GiB")
            return 1
        archive = root / "fma_bench.zip"
        t0 = time.perf_counter()
        write_archive(archive, size, args.members, args.bzip2_members)
        total = archive.stat().st_size
        print(
            f"archive: {total / 2**20:,.0f} MiB, {args.members} ZIP_STORED + {args.bzip2_members} BZIP2 "
            f"members of random bytes, written in {time.perf_counter() - t0:.1f} s"
        )

        base = run_child("extractall", archive, root / "baseline")
        shutil.rmtree(root / "baseline")
        ours = run_child("genrekit", archive, root / "ours")
        again = run_child("genrekit-resume", archive, root / "ours")

        print(f"{'method':<34} {'time s':>8} {'MiB/s':>8} {'peak RSS MB':>12}")
        for name, r in (
            ("ZipFile.extractall (baseline)", base),
            ("genrekit extract_archive", ours),
            ("genrekit again (all in place)", again),
        ):
            print(
                f"{name:<34} {r['seconds']:>8.2f} {total / 2**20 / r['seconds']:>8.0f} {r['peak_mb']:>12.1f}"
            )
        print(f"time ratio genrekit / extractall: {ours['seconds'] / base['seconds']:.2f}x")
        print(f"peak RSS ratio genrekit / extractall: {ours['peak_mb'] / base['peak_mb']:.2f}x")
        ok = ours["peak_mb"] < LIMIT_MB
        print(f"peak RSS under {LIMIT_MB} MB: {'yes' if ok else 'NO'} ({ours['peak_mb']:.1f} MB)")
        return 0 if ok else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
