"""Cost of an audit: samples/second, peak memory and judge-call share per pipeline configuration, on
inputs of growing size, against the cost of judging every row with an LLM.

Inputs are synthesised by resampling real rows with a fixed seed: caption rows from VLSBench, VLSafe,
HarmBench-mm and MM-SafetyBench; image rows (for OCR) from FigStep's 500 typographic images. Every
(configuration, size) runs in a fresh process through ``vsil.run.runner.run`` (start-up and model
loading included, results written to a JSONL file like the CLI does, no warm cache), which reports
its own wall time and peak RSS.

    python benchmarks/throughput.py [--sizes 1000,10000,100000] [--configs lexical,semantic,ocr,judge]
        [--max-rows-ocr 10000] [--max-rows-judge 10000] [--llm-latency 2.0] [--update-docs]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _docs import replace_block
from _machine import machine, vm_hwm_mib

HERE = os.path.dirname(os.path.abspath(__file__))

CONFIGS: dict[str, dict[str, Any]] = {
    "lexical": {"embedder": "none"},
    "semantic": {"embedder": "auto"},
    "ocr": {"embedder": "auto", "evidence": "ocr"},
    "judge": {"embedder": "auto", "judge": "auto", "judge_model": "fake-judge", "judge_concurrency": 8},
}
DESCRIPTION = {
    "lexical": "lexical only",
    "semantic": "semantic default (MiniLM)",
    "ocr": "semantic + OCR on images (no captions)",
    "judge": "semantic + judge auto (local test server)",
}


def caption_rows(data_dir: str) -> list[dict[str, Any]]:
    from vsil.io.readers import iter_records

    rows = []
    for path, preset in (
        ("vlsbench/data.json", "vlsbench"),
        ("vlsafe/examine_sampled_500_VLSafe.jsonl", "vlsafe"),
        ("harmbench/harmbench_behaviors_multimodal_all.csv", "harmbench_mm"),
        ("mm_safetybench/processed_questions", "mm_safetybench:question"),
    ):
        for chunk in iter_records(os.path.join(data_dir, path), preset=preset):
            rows += [
                {"query": r.query, "caption": r.caption, "safety_reason": r.safety_reason, "source": r.source}
                for r in chunk
                if not r.error
            ]
    return rows


def image_rows(data_dir: str) -> list[dict[str, Any]]:
    from vsil.io.readers import iter_records

    out = []
    for chunk in iter_records(os.path.join(data_dir, "figstep_safebench", "safebench.csv"), preset="figstep:question"):
        out += [{"query": r.query, "image": r.image, "source": "figstep"} for r in chunk if not r.error]
    return out


def write_input(pool: list[dict[str, Any]], n: int, path: str, seed: int = 0, unique: bool = True) -> None:
    """``n`` rows drawn with replacement from ``pool``. With ``unique`` every query gets a row
    number (" (request 123)"), so no query repeats: a real 100k-row dataset has ~100k distinct
    queries, and repeats would be served by the per-text embedding cache and flatter the cost."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            row = dict(rng.choice(pool))
            if unique:
                row["query"] = f"{row['query']} (request {i})"
            f.write(json.dumps({"id": f"r{i}", **row}) + "\n")


def child(args: argparse.Namespace) -> None:
    """Run one audit in this process and print a JSON line with its cost."""
    t0 = time.time()
    from vsil import VSILConfig
    from vsil.run.runner import run
    from vsil.util.jsonio import dumps_clean

    opts = json.loads(args.child_config)
    cfg = VSILConfig(show_progress_bar=False, **opts)
    with open(args.child_out, "w", encoding="utf-8") as f:
        summary = run(args.child_input, cfg, on_result=lambda r: f.write(dumps_clean(r.to_dict()) + "\n"))
    secs = time.time() - t0
    rss = vm_hwm_mib()
    j = summary.get("judge") or {}
    print(
        json.dumps(
            {
                "rows": summary["n"],
                "seconds": secs,
                "peak_mib": rss,
                "judge_rows": (summary.get("decided_by") or {}).get("judge", 0),
                "judge_calls": j.get("calls", 0),
                "errors": summary["n_error"],
                "leak_rate": summary["leak_rate"],
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--configs", default="lexical,semantic,ocr,judge")
    ap.add_argument("--max-rows-ocr", type=int, default=10000, help="largest input for the OCR configuration")
    ap.add_argument("--max-rows-judge", type=int, default=10000, help="largest input for the judge configuration")
    ap.add_argument(
        "--llm-latency", type=float, default=2.0, help="seconds per call assumed for judging every row with an LLM"
    )
    ap.add_argument("--llm-concurrency", type=int, default=8)
    ap.add_argument("--update-docs", action="store_true")
    ap.add_argument("--child-config", help=argparse.SUPPRESS)
    ap.add_argument("--child-input", help=argparse.SUPPRESS)
    ap.add_argument("--child-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child_config:
        child(a)
        return
    data_dir = os.path.abspath(a.data_dir)
    if not os.path.isdir(data_dir):
        sys.exit(f"data folder not found: {data_dir}; pass --data-dir")
    sizes = [int(s) for s in a.sizes.split(",")]
    configs = a.configs.split(",")
    from vsil.testing.judge_server import FakeJudgeServer

    pools = {"captions": caption_rows(data_dir), "images": image_rows(data_dir)}
    tmp = tempfile.mkdtemp(prefix="vsil_throughput_")
    results = []
    with FakeJudgeServer() as srv:
        for name in configs:
            limit = {"ocr": a.max_rows_ocr, "judge": a.max_rows_judge}.get(name)
            for n in sizes:
                if limit is not None and n > limit:
                    continue
                pool = pools["images"] if name == "ocr" else pools["captions"]
                inp = os.path.join(tmp, f"{name}_{n}.jsonl")
                write_input(pool, n, inp)
                opts = dict(CONFIGS[name])
                if name == "ocr":
                    opts["image_root"] = os.path.join(data_dir, "figstep_safebench")
                if name == "judge":
                    opts["judge_base_url"] = srv.base_url
                cmd = [
                    sys.executable,
                    __file__,
                    "--child-config",
                    json.dumps(opts),
                    "--child-input",
                    inp,
                    "--child-out",
                    os.path.join(tmp, "out.jsonl"),
                ]
                print(f"... {name} n={n}", file=sys.stderr, flush=True)
                p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                if p.returncode != 0:
                    sys.exit(f"{name} n={n} failed:\n{p.stderr[-2000:]}")
                r = json.loads(p.stdout.strip().splitlines()[-1])
                r.update({"config": DESCRIPTION[name], "n": n, "rows/s": r["rows"] / r["seconds"]})
                results.append(r)
                os.remove(inp)
    rows = []
    for r in results:
        rows.append(
            {
                "configuration": r["config"],
                "rows": r["n"],
                "seconds": f"{r['seconds']:.1f}",
                "rows/s": f"{r['rows/s']:.0f}",
                "peak RSS MiB": f"{r['peak_mib']:.0f}",
                "judge share": f"{r['judge_rows'] / r['rows']:.1%}" if r["judge_calls"] else "-",
                "s per 1k rows": f"{1000 * r['seconds'] / r['n']:.2f}",
            }
        )
    from vsil.training.evaluate import format_table

    cols = ["configuration", "rows", "seconds", "rows/s", "s per 1k rows", "peak RSS MiB", "judge share"]
    llm = [
        {
            "rows": n,
            "LLM calls": n,
            f"hours at {a.llm_latency:g} s/call, {a.llm_concurrency} in flight": (
                f"{n * a.llm_latency / a.llm_concurrency / 3600:.2f}"
            ),
        }
        for n in sizes
    ]
    text = "\n".join(
        [
            f"Machine: {machine()}. Inputs resampled (seed 0) from real benchmark rows, "
            "each query made unique with its row number "
            "(so the per-text embedding cache cannot flatter large inputs); "
            "each run is a fresh process, start-up included; no warm cache.",
            "",
            format_table(rows, cols),
            "",
            f"Judging every row with an LLM instead (no classifier), at an assumed {a.llm_latency:g} s per call "
            f"and {a.llm_concurrency} calls in flight:",
            "",
            format_table(llm, list(llm[0])),
            "",
            "Reproduce: `python benchmarks/throughput.py --update-docs`",
        ]
    )
    print(text)
    if a.update_docs:
        replace_block(os.path.join(HERE, "..", "docs", "benchmarks.md"), "throughput", text)


if __name__ == "__main__":
    main()
