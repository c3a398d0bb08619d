"""Scaling: per-stage costs, local engine with 1 and 2 worker processes vs Ray with 1 and 2 actors,
a large Ray run checked row by row against the local engine, and a sizing guide derived from the
measured per-stage costs.

    python benchmarks/scaling.py [--rows 3000] [--big-rows 100000] [--big-embedder none] [--update-docs]

Inputs are resampled (seed 0) from real benchmark rows with captions. Peak memory is each process's
own high-water mark (VmHWM): the driver, the local workers and the Ray actors.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _docs import replace_block
from _machine import machine, vm_hwm_mib
from throughput import caption_rows, write_input

HERE = os.path.dirname(os.path.abspath(__file__))


class HWM:
    """Samples the peak RSS (VmHWM) of this process's descendants and of Ray worker processes."""

    def __init__(self) -> None:
        self.peaks: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _scan(self) -> None:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                if not ("ray::" in cmd or "multiprocessing" in cmd or "spawn_main" in cmd):
                    continue
                with open(f"/proc/{pid}/status") as f:
                    hwm = next((int(x.split()[1]) for x in f if x.startswith("VmHWM")), 0)
                name = "ray actor" if "ray::" in cmd else "local worker"
                old = self.peaks.get(int(pid), (name, 0.0))[1]
                self.peaks[int(pid)] = (name, max(old, hwm / 1024))
            except (OSError, StopIteration, ValueError):
                continue

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._scan()

    def __enter__(self) -> HWM:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._scan()
        self._stop.set()
        self._t.join()

    def max_of(self, name: str) -> float:
        return max((v for n, v in self.peaks.values() if n == name), default=0.0)


def stage_costs(path: str, n: int) -> list[dict[str, Any]]:
    """Seconds per 1,000 rows of each pipeline stage, in one process, models already loaded."""
    from vsil import VSILConfig
    from vsil.io.readers import iter_records
    from vsil.pipeline import Pipeline
    from vsil.schema import Evidence
    from vsil.stages.features import FeatureStage

    t0 = time.time()
    pl = Pipeline(VSILConfig(show_progress_bar=False)).load()
    load = time.time() - t0
    recs = [r for chunk in iter_records(path, chunk_size=256) for r in chunk][:n]
    cost = {
        "describe image (given text)": 0.0,
        "lexical features": 0.0,
        "semantic features (MiniLM on CPU)": 0.0,
        "classifier": 0.0,
    }
    semantic = pl.features.semantic
    assert semantic is not None
    lexical_only = FeatureStage(pl.features.taxonomy, pl.features.harm, None)
    for s in range(0, len(recs), 256):
        chunk = recs[s : s + 256]
        t = time.time()
        ev = pl.evidence.run(chunk)
        cost["describe image (given text)"] += time.time() - t
        pairs = [(r, e) for r, e in zip(chunk, ev) if isinstance(e, Evidence)]
        t = time.time()
        lexical_only.run(pairs)
        lex = time.time() - t
        cost["lexical features"] += lex
        t = time.time()
        feats = pl.features.run(pairs)  # lexical + semantic: the semantic share is the difference
        cost["semantic features (MiniLM on CPU)"] += max(0.0, time.time() - t - lex)
        t = time.time()
        pl.classify.run([(r, e, f) for (r, e), f in zip(pairs, feats) if not isinstance(f, str)])
        cost["classifier"] += time.time() - t
    rows = [{"stage": k, "s per 1k rows": 1000 * v / len(recs)} for k, v in cost.items()]
    rows.append({"stage": "model loading (once per worker)", "s per 1k rows": load})
    return rows


def run_engine(kind: str, workers: int, path: str, embedder: str) -> dict[str, Any]:
    """One engine run in a fresh child process (its own Ray instance for kind="ray")."""
    out = tempfile.mkdtemp(prefix=f"vsil_{kind}{workers}_")
    cmd = [sys.executable, __file__, "--child", json.dumps([kind, workers, path, embedder, out])]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if p.returncode != 0:
        sys.exit(f"{kind} x{workers} failed:\n{p.stderr[-3000:]}")
    r: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    return r


def child(spec: str) -> None:
    kind, workers, path, embedder, out = json.loads(spec)
    t0 = time.time()
    from vsil import VSILConfig

    cfg = VSILConfig(embedder=embedder, show_progress_bar=False)
    with HWM() as hwm:
        from vsil.run.executors import make_executor
        from vsil.run.runner import run

        if kind == "local":
            s = run(path, cfg, executor=make_executor(cfg, workers=workers), out_dir=out)
        else:
            import ray

            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, object_store_memory=1024**3)
            s = run(path, cfg, executor=make_executor(cfg, engine="ray", workers=workers), out_dir=out)
            hwm._scan()
            ray.shutdown()
        secs = time.time() - t0
    driver = vm_hwm_mib()
    worker = (
        driver if (kind == "local" and workers == 1) else hwm.max_of("ray actor" if kind == "ray" else "local worker")
    )
    print(
        json.dumps(
            {
                "engine": kind,
                "workers": workers,
                "rows": s["n"],
                "seconds": secs,
                "rows/s": s["n"] / secs,
                "out": out,
                "driver peak MiB": driver,
                "worker peak MiB": worker,
                "leak_rate": s["leak_rate"],
            }
        )
    )


def same_rows(a_dir: str, b_dir: str) -> tuple[bool, float]:
    worst = 0.0
    with open(os.path.join(a_dir, "results.jsonl")) as fa, open(os.path.join(b_dir, "results.jsonl")) as fb:
        for la, lb in zip(fa, fb, strict=True):
            x, y = json.loads(la), json.loads(lb)
            if (
                x["id"] != y["id"]
                or x["is_leak"] != y["is_leak"]
                or x["vsil_level"] != y["vsil_level"]
                or x["status"] != y["status"]
            ):
                return False, float("inf")
            if x["vsil_score"] is not None:
                worst = max(worst, abs(x["vsil_score"] - y["vsil_score"]))
    return worst <= 1e-6, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--rows", type=int, default=3000, help="rows for the 1-vs-2 worker comparison (semantic default)")
    ap.add_argument("--big-rows", type=int, default=100000, help="rows for the large local-vs-Ray run")
    ap.add_argument(
        "--big-embedder", default="none", help="embedder of the large run (none = lexical; auto = semantic)"
    )
    ap.add_argument("--update-docs", action="store_true")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child)
        return

    from vsil.training.evaluate import format_table

    pool = caption_rows(os.path.abspath(a.data_dir))
    tmp = tempfile.mkdtemp(prefix="vsil_scaling_")
    small, big = os.path.join(tmp, "small.jsonl"), os.path.join(tmp, "big.jsonl")
    write_input(pool, a.rows, small)
    write_input(pool, a.big_rows, big)
    stages = stage_costs(small, min(a.rows, 3000))
    runs = []
    for kind, w in (("local", 1), ("local", 2), ("ray", 1), ("ray", 2)):
        print(f"... {kind} x{w} on {a.rows} rows", file=sys.stderr, flush=True)
        runs.append(run_engine(kind, w, small, "auto"))
    ok_small, diff_small = same_rows(runs[0]["out"], runs[3]["out"])
    print(f"... large run: {a.big_rows} rows", file=sys.stderr, flush=True)
    big_local = run_engine("local", 1, big, a.big_embedder)
    big_ray = run_engine("ray", 2, big, a.big_embedder)
    ok_big, diff_big = same_rows(big_local["out"], big_ray["out"])

    cols = ["engine", "workers", "rows", "seconds", "rows/s", "driver peak MiB", "worker peak MiB"]
    sem = {r["stage"]: r["s per 1k rows"] for r in stages}
    cpu_row_s = sum(v for k, v in sem.items() if k != "model loading (once per worker)")
    cpu_side = cpu_row_s - sem["semantic features (MiniLM on CPU)"]
    text = "\n".join(
        [
            f"Machine: {machine()}.",
            "",
            f"Per-stage cost, semantic default, one process ({min(a.rows, 3000)} rows):",
            "",
            format_table(stages, ["stage", "s per 1k rows"]),
            "",
            f"Engines on {a.rows} rows (semantic default; each run a fresh process: start-up, model loading and, "
            "for Ray, starting a local Ray instance included; peak RSS per process):",
            "",
            format_table(runs, cols),
            "",
            f"Local 1 worker vs Ray 2 actors: identical rows: {ok_small} (largest score difference {diff_small:.1e}). "
            "One local worker already uses every core through torch's threads, "
            "so on a small machine more workers mostly add "
            "model copies; they pay off when there are more cores than one process's threads use "
            "(each worker gets cores / workers threads). "
            "Ray actors default to one CPU each.",
            "",
            f"Large run, {a.big_rows} rows, embedder={a.big_embedder}:",
            "",
            format_table([big_local, big_ray], cols),
            "",
            f"Local vs Ray on {a.big_rows} rows: identical rows: {ok_big} (largest score difference {diff_big:.1e}).",
            "",
            "Sizing (derived from the per-stage costs above, not measured on a cluster):",
            "",
            f"- the stage costs were measured in one process using all {os.cpu_count()} cores (torch threads): about "
            f"{3600 * 1000 / cpu_row_s:,.0f} rows/hour per {os.cpu_count()}-core worker in the semantic default "
            f"({cpu_row_s:.2f} s per 1k rows), "
            f"i.e. about {3600 * 1000 / cpu_row_s / (os.cpu_count() or 1):,.0f} rows/hour per core "
            "if threads scale linearly; "
            f"lexical-only about {3600 * 1000 / cpu_side:,.0f} rows/hour (single-threaded);",
            f"- a GPU worker moves the embedding off the CPU; its CPU-side stages "
            f"({cpu_side:.2f} s per 1k rows per core) then bound it at "
            f"about {3600 * 1000 / cpu_side:,.0f} rows/hour per CPU core that feeds it "
            "(no GPU was available to measure the embedding there);",
            f"- 10M pairs, semantic default: about "
            f"{1e7 * cpu_row_s * (os.cpu_count() or 1) / 1000 / 3600:,.0f} CPU-core-hours, e.g. "
            f"{1e7 * cpu_row_s * (os.cpu_count() or 1) / 1000 / 3600 / 64:,.1f} h on 64 cores; "
            "add OCR at about 0.4 s per distinct image per core, "
            "and judge calls for the routed share of rows (see the judge routing table).",
            "",
            "Reproduce: `python benchmarks/scaling.py --update-docs`",
        ]
    )
    for r in [*runs, big_local, big_ray]:
        r.pop("out", None)
    print(text)
    if a.update_docs:
        replace_block(os.path.join(HERE, "..", "docs", "scaling.md"), "scaling", text)


if __name__ == "__main__":
    main()
