"""Wall time, samples/second and peak memory of a full `vsil audit` run, start-up included.

Default: the full VLSBench audit (2,241 rows) from ../shared/data. Each run is a fresh process
(`vsil audit ...`), so model loading and imports are counted.

    python benchmarks/audit_speed.py [--data-dir ../shared/data] [--repeat 3] [--embedder none|auto]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _docs import run_and_document
from _machine import machine


def run_once(args: list[str]) -> tuple[float, float, dict]:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run(
            [sys.executable, "-m", "vsil.cli", "audit", *args, "--out", out, "--no-progress"],
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - t0
        peak = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024  # MiB (Linux: KiB)
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
    return wall, peak, summary


def main() -> None:
    run_and_document(_run, __file__, lambda a: f"audit_speed_{a.embedder}")


def _run() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--embedder", default="auto", help="auto (semantic default) or none (lexical only)")
    ap.add_argument("--update-docs", action="store_true", help="write the output into docs/benchmarks.md")
    a = ap.parse_args()
    data = os.path.join(a.data_dir, "vlsbench", "data.json")
    if not os.path.exists(data):
        sys.exit(f"VLSBench not found at {data}; pass --data-dir")
    print(f"machine: {machine()}")
    print(f"command: vsil audit {data} --preset vlsbench --embedder {a.embedder}")
    walls = []
    for i in range(a.repeat):
        wall, peak, s = run_once([data, "--preset", "vlsbench", "--embedder", a.embedder])
        walls.append(wall)
        print(
            f"run {i + 1}: {s['n']} rows in {wall:.2f}s wall = {s['n'] / wall:.0f} samples/s; peak RSS {peak:.0f} MiB; "
            f"leak rate {s['leak_rate']:.3f}; backends {s['manifest']['backends']}"
        )
    best = min(walls)
    print(f"best: {best:.2f}s wall, {s['n'] / best:.0f} samples/s (start-up and model load included)")

    return a


if __name__ == "__main__":
    main()
