"""Audit every public benchmark in the shared data folder that has text queries, in one command, and
put vsil's figures next to the VLSBench paper's leakage table (Hu et al., ACL 2025, Table 1).

    python benchmarks/audit_public.py [--data-dir ../shared/data] [--no-ocr] [--cache-dir DIR] [--update-docs]

Writes one Markdown table (n, leak rate with 95% Wilson interval, level distribution, top categories,
seconds), the MM-SafetyBench per-scenario table and the paper comparison; ``--update-docs`` also puts
them into docs/benchmarks.md between the audit_public markers. Benchmarks whose files are missing
are listed as missing, not skipped silently.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from _docs import replace_block
from _machine import machine

from vsil import VSILConfig, score_dataset
from vsil.summary import wilson_interval
from vsil.training.evaluate import format_table

HERE = os.path.dirname(os.path.abspath(__file__))

# VLSBench paper, Table 1: of the pairs judged harmful with the image, the share also harmful from the text alone
PAPER = {
    "FigStep / SafeBench": {"N": 500, "LlamaGuard3-11B-Vision": 0.993, "GPT-4o": 0.934},
    "JailbreakV mini": {"N": 280, "LlamaGuard3-11B-Vision": 0.995, "GPT-4o": 0.960},
    "HarmBench-mm": {"N": 110, "LlamaGuard3-11B-Vision": 0.971, "GPT-4o": 0.923},
    "VLSafe": {"N": 1110, "LlamaGuard3-11B-Vision": 0.997, "GPT-4o": 1.000},
}


@dataclass
class Job:
    name: str
    path: str  # relative to --data-dir
    preset: str
    options: dict[str, Any] = field(default_factory=dict)
    paper: str | None = None  # key into PAPER
    image_root: str | None = None  # relative to --data-dir


JOBS = [
    Job("VLSBench", "vlsbench/data.json", "vlsbench"),
    Job(
        "FigStep harmful questions (given description)",
        "figstep_safebench/safebench.csv",
        "figstep:question",
        paper="FigStep / SafeBench",
    ),
    Job("FigStep generic prompt (given description)", "figstep_safebench/safebench.csv", "figstep:generic"),
    Job(
        "FigStep harmful questions (OCR of the images)",
        "figstep_safebench/safebench.csv",
        "figstep:question",
        {"evidence": "ocr"},
        image_root="figstep_safebench",
    ),
    Job(
        "FigStep generic prompt (OCR of the images)",
        "figstep_safebench/safebench.csv",
        "figstep:generic",
        {"evidence": "ocr"},
        image_root="figstep_safebench",
    ),
    Job("MM-SafetyBench original questions", "mm_safetybench/processed_questions", "mm_safetybench:question"),
    Job("MM-SafetyBench rephrased questions", "mm_safetybench/processed_questions", "mm_safetybench:rephrased"),
    Job("HarmBench-mm", "harmbench/harmbench_behaviors_multimodal_all.csv", "harmbench_mm", paper="HarmBench-mm"),
    Job("VLSafe (examine sample)", "vlsafe/examine_sampled_500_VLSafe.jsonl", "vlsafe", paper="VLSafe"),
    Job("VLGuard test: unsafe images", "vlguard/test.json", "vlguard:unsafes"),
    Job("VLGuard test: safe images, unsafe instructions", "vlguard/test.json", "vlguard:safe_unsafes"),
    Job("VLGuard test: safe images, safe instructions", "vlguard/test.json", "vlguard:safe_safes"),
    Job(
        "MM-Harmful Bench (OCR of the images)",
        "mm_harmfulbench/questions.jsonl",
        "mm_harmfulbench",
        {"evidence": "ocr"},
        image_root="mm_harmfulbench",
    ),
    Job("MMJ-Bench HADES / QR / FigStep cases", "mmj_bench", ""),
]


def run_job(job: Job, data_dir: str, cache_dir: str | None, embedder: str) -> dict[str, Any]:
    path = os.path.join(data_dir, job.path)
    row: dict[str, Any] = {"benchmark": job.name, "preset": job.preset or "-"}
    if not job.preset or not os.path.exists(path):
        row["note"] = f"not in {data_dir} (no local copy)"
        return row
    cfg = VSILConfig(
        preset=job.preset,
        embedder=embedder,
        cache_dir=cache_dir,
        image_root=os.path.join(data_dir, job.image_root) if job.image_root else None,
        show_progress_bar=False,
        **job.options,
    )
    t0 = time.time()
    df = score_dataset(path, config=cfg)
    secs = time.time() - t0
    s = df.attrs["summary"]
    ok = df[df.status == "ok"]
    lv = s["level_counts"]
    cats = sorted(((v["leak_rate"], k, v["n"]) for k, v in s["per_category"].items() if v["n"] >= 5), reverse=True)[:3]
    risky = ok[ok.image_risk >= 0.5]
    k_r = int(risky.is_leak.sum())
    row.update(
        {
            "evidence": s["manifest"]["backends"]["image_evidence"],
            "n": s["n"],
            "errors": s["n_error"],
            "leak_rate": s["leak_rate"],
            "ci95": f"{s['ci95'][0]:.1%}-{s['ci95'][1]:.1%}",
            "levels_0/1/2": f"{lv['0']}/{lv['1']}/{lv['2']}",
            "top_categories": "; ".join(f"{k} {r:.0%}" for r, k, _ in cats),
            "seconds": secs,
            "_risky_n": len(risky),
            "_risky_leak": k_r / len(risky) if len(risky) else float("nan"),
            "_risky_ci": wilson_interval(k_r, len(risky)),
            "_per_category": s["per_category"],
            "_mean_score": float(np.nanmean(df.vsil_score)),
        }
    )
    return row


def fmt_pct(x: float) -> str:
    return "n/a" if x != x else f"{x:.1%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.path.join(HERE, "..", "..", "shared", "data"))
    ap.add_argument(
        "--cache-dir",
        default=os.path.join(HERE, "..", ".vsil_cache"),
        help="OCR and embedding cache (default .vsil_cache)",
    )
    ap.add_argument("--embedder", default="auto")
    ap.add_argument(
        "--no-ocr", action="store_true", help="skip the jobs that OCR images (about 0.4 s per image on 2 CPUs)"
    )
    ap.add_argument("--update-docs", action="store_true", help="write the tables into docs/benchmarks.md")
    a = ap.parse_args()
    data_dir = os.path.abspath(a.data_dir)
    if not os.path.isdir(data_dir):
        sys.exit(f"data folder not found: {data_dir}; pass --data-dir")
    t_all = time.time()
    rows = []
    for job in JOBS:
        if a.no_ocr and job.options.get("evidence") == "ocr":
            continue
        print(f"... {job.name}", file=sys.stderr, flush=True)
        rows.append(run_job(job, data_dir, a.cache_dir, a.embedder))

    out = [f"Machine: {machine()}. Data: `{os.path.relpath(data_dir)}`. Total {time.time() - t_all:.0f} s.", ""]
    cols = [
        "benchmark",
        "preset",
        "evidence",
        "n",
        "errors",
        "leak_rate",
        "ci95",
        "levels_0/1/2",
        "top_categories",
        "seconds",
        "note",
    ]
    out.append(format_table([{k: (fmt_pct(v) if k == "leak_rate" else v) for k, v in r.items()} for r in rows], cols))

    mm = {r["benchmark"]: r.get("_per_category", {}) for r in rows if r["benchmark"].startswith("MM-SafetyBench")}
    if len(mm) == 2:
        q, rp = mm["MM-SafetyBench original questions"], mm["MM-SafetyBench rephrased questions"]
        out += ["", "MM-SafetyBench per scenario (leak rate):", ""]
        out.append(
            format_table(
                [
                    {
                        "scenario": k,
                        "n": q[k]["n"],
                        "original": fmt_pct(q[k]["leak_rate"]),
                        "rephrased": fmt_pct(rp.get(k, {}).get("leak_rate", float("nan"))),
                    }
                    for k in sorted(q)
                ],
                ["scenario", "n", "original", "rephrased"],
            )
        )

    comp = []
    for key, p in PAPER.items():
        r = next(
            (
                x
                for x in rows
                if x["benchmark"].startswith(key.split(" /")[0].split(" mini")[0])
                and "note" not in x
                and "generic" not in x["benchmark"]
                and "OCR" not in x["benchmark"]
            ),
            None,
        )
        comp.append(
            {
                "benchmark": key,
                "paper N": p["N"],
                "paper LlamaGuard": fmt_pct(p["LlamaGuard3-11B-Vision"]),
                "paper GPT-4o": fmt_pct(p["GPT-4o"]),
                "vsil n": r["n"] if r else "no local copy",
                "vsil: risky-image rows that leak": f"{fmt_pct(r['_risky_leak'])} of {r['_risky_n']}" if r else "-",
                "vsil: all rows that leak": fmt_pct(r["leak_rate"]) if r else "-",
            }
        )
    out += ["", "Against the VLSBench paper (Table 1):", ""]
    out.append(format_table(comp, list(comp[0])))
    text = "\n".join(out)
    print(text)
    if a.update_docs:
        replace_block(
            os.path.join(HERE, "..", "docs", "benchmarks.md"),
            "audit_public",
            text + "\n\nReproduce: `python benchmarks/audit_public.py --update-docs`",
        )


if __name__ == "__main__":
    main()
