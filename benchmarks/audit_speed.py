"""Wall time, samples/second and peak memory of a full `vsil audit` run, start-up included.

Default: the full VLSBench audit (2,241 rows) from ../shared/data. Each run is a fresh process
(`vsil audit ...`), so model loading and imports are counted.

    python benchmarks/audit_speed.py [--data-dir ../shared/data] [--repeat 3] [--embedder none|auto]
        [--python VENV/bin/python] [--baseline-code DIR]

``--python`` runs the audits with another interpreter (e.g. the light CPU-only install of the README);
``--baseline-code DIR`` also runs, in the same session, the code checked out in DIR (e.g. a
``git worktree`` of the previous release) so that rows/s of the new default and the previous one
are measured side by side on the same machine state.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from _docs import run_and_document
from _machine import machine


def run_once(args: list[str], python: str = sys.executable, code: str | None = None) -> tuple[float, float, dict]:
    """One audit in a fresh process; (wall seconds, peak RSS MiB of that process, summary)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if code:
        env["PYTHONPATH"] = code
    with tempfile.TemporaryDirectory() as out:
        cmd = [python, "-c", MEASURE, "-m", "vsil.cli", "audit", *args, "--out", out, "--no-progress", "--no-report"]
        t0 = time.perf_counter()
        # run from the output folder: a checkout in the working directory would shadow ``code``
        p = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=out)
        wall = time.perf_counter() - t0
        peak = float(p.stderr.strip().splitlines()[-1].split("=")[1])
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
    return wall, peak, summary


# runs ``python -m vsil.cli ...`` in this process, then prints its own peak RSS (MiB) on stderr
MEASURE = (
    "import resource, runpy, sys\n"
    "sys.argv = sys.argv[2:]\n"
    "code = 0\n"
    "try:\n"
    "    runpy.run_module('vsil.cli', run_name='__main__')\n"
    "except SystemExit as e:\n"
    "    code = e.code or 0\n"
    "print('peak_mib=%.1f' % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def main() -> None:
    run_and_document(_run, __file__, lambda a: f"audit_speed_{a.embedder}")


def _run() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--embedder", default="auto", help="auto (semantic default) or none (lexical only)")
    ap.add_argument("--update-docs", action="store_true", help="write the output into docs/benchmarks.md")
    ap.add_argument("--python", default=sys.executable, help="the interpreter of the install to measure")
    ap.add_argument("--baseline-code", help="also measure the code in this folder (the previous default)")
    a = ap.parse_args()
    data = os.path.abspath(os.path.join(a.data_dir, "vlsbench", "data.json"))
    if a.baseline_code:
        a.baseline_code = os.path.abspath(a.baseline_code)
    if not os.path.exists(data):
        sys.exit(f"VLSBench not found at {data}; pass --data-dir")
    torch = subprocess.run([a.python, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True)
    print(f"machine: {machine()}; interpreter {a.python} (torch {torch.stdout.strip() or 'not installed'})")
    print(f"command: vsil audit {data} --preset vlsbench --embedder {a.embedder}")
    runs = [("new default", None)] + ([("previous default", a.baseline_code)] if a.baseline_code else [])
    for name, code in runs:
        walls, peaks = [], []
        for i in range(a.repeat):
            wall, peak, s = run_once([data, "--preset", "vlsbench", "--embedder", a.embedder], a.python, code)
            walls.append(wall)
            peaks.append(peak)
            print(
                f"{name} run {i + 1}: {s['n']} rows in {wall:.2f}s wall = {s['n'] / wall:.0f} rows/s; "
                f"peak RSS {peak:.0f} MiB; leak rate {s['leak_rate']:.3f}; "
                f"classifier {s['manifest']['backends']['classifier']}"
            )
        best = min(walls)
        print(
            f"{name}: best {best:.2f}s wall, {s['n'] / best:.0f} rows/s (start-up and model load included); "
            f"peak RSS max {max(peaks):.0f} MiB"
        )

    return a


if __name__ == "__main__":
    main()
