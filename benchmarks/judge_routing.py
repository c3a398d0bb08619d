"""How well ``--judge auto`` routes: on the gold dev set, the share of rows sent to the judge and the
leak F1 before and after, with a judge that answers the gold labels (a local OpenAI-compatible test
server replaying them) and with one that answers from a crude word-overlap rule. The judge here is a
stand-in for an LLM, so this measures routing, not any LLM's accuracy.

With ``--judge-model`` (and ``--judge-base-url`` for an OpenAI-compatible server such as vLLM, SGLang
or Ollama, or ``--judge-backend transformers`` for a local model) the same table gets two more rows:
that real judge under ``auto`` and ``always``, which is the judged system's accuracy on the dev set.

It then checks the budget: the share of rows ``--judge auto`` routes on every shared benchmark.

    python benchmarks/judge_routing.py [--shared ../shared] [--embedder none] [--no-budget-check]
        [--judge-model M [--judge-base-url URL] [--judge-backend openai|transformers]
         [--judge-api-key-env VAR] [--cache-dir DIR]]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))
from _dev import DEFAULT_SHARED, dev_set
from _docs import run_and_document
from _machine import machine

from vsil import VSILConfig, score_dataset
from vsil.testing.judge_server import FakeJudgeServer, gold_answers
from vsil.training.evaluate import format_table, leak_metrics


def main() -> None:
    run_and_document(_run, __file__, "judge_routing")


def _run() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=DEFAULT_SHARED)
    ap.add_argument("--embedder", default="auto", help="auto (semantic default) or none (lexical)")
    ap.add_argument("--update-docs", action="store_true", help="write the output into docs/benchmarks.md")
    ap.add_argument("--no-budget-check", action="store_true", help="skip the routed share on every shared benchmark")
    real = ap.add_argument_group("a real judge (optional)")
    real.add_argument("--judge-model", help="also measure this judge model under auto and always")
    real.add_argument("--judge-backend", default="openai", choices=("openai", "transformers"))
    real.add_argument("--judge-base-url", help="OpenAI-compatible base URL (default: the config's)")
    real.add_argument("--judge-api-key-env", help="environment variable holding the API key (default OPENAI_API_KEY)")
    real.add_argument("--cache-dir", help="judge answer cache, so a rerun repeats no call")
    a = ap.parse_args()
    dev_path, _, y = dev_set(a.shared)
    print(f"machine: {machine()}")
    rows = []
    for judge_name, answers in (("gold-replaying judge", gold_answers(dev_path)), ("word-overlap rule judge", {})):
        with FakeJudgeServer(answers) as srv:
            for mode in ("none", "auto", "always"):
                cfg = VSILConfig(
                    embedder=a.embedder,
                    judge=mode,
                    judge_base_url=srv.base_url,
                    judge_model="replay",
                    show_progress_bar=False,
                )
                t0 = time.time()
                df = score_dataset(dev_path, config=cfg)
                rows.append(_row(judge_name if mode != "none" else "-", mode, df, y, time.time() - t0))
        print(f"judge requests to the {judge_name} server: {srv.requests}")
    if a.judge_model:
        opts = {"judge_backend": a.judge_backend, "judge_model": a.judge_model, "cache_dir": a.cache_dir}
        opts.update(
            {k: v for k, v in (("judge_base_url", a.judge_base_url), ("judge_api_key_env", a.judge_api_key_env)) if v}
        )
        for mode in ("auto", "always"):
            t0 = time.time()
            df = score_dataset(
                dev_path, config=VSILConfig(embedder=a.embedder, judge=mode, show_progress_bar=True, **opts)
            )
            rows.append(_row(f"{a.judge_backend}:{a.judge_model}", mode, df, y, time.time() - t0))
            print(f"{a.judge_model} ({mode}): {df.attrs['summary']['judge']}")
    print(format_table(rows, ["judge", "routing", "call_rate", "f1", "precision", "recall", "kappa3", "seconds"]))
    if not a.no_budget_check:
        budget_check(a)
    return a


BENCHMARKS = [  # (name, path under data/, preset): every shared multimodal benchmark with given evidence
    ("VLSBench", "vlsbench/data.json", "vlsbench"),
    ("FigStep", "figstep_safebench/safebench.csv", "figstep"),
    ("MM-SafetyBench", "mm_safetybench/processed_questions", "mm_safetybench:question"),
    ("HarmBench-mm", "harmbench/harmbench_behaviors_multimodal_all.csv", "harmbench_mm"),
    ("VLSafe", "vlsafe/examine_sampled_500_VLSafe.jsonl", "vlsafe"),
    ("VLGuard test", "vlguard/test.json", "vlguard"),
    ("gold dev", None, None),
]


def budget_check(a: argparse.Namespace) -> None:
    """The share of rows ``--judge auto`` routes under the default budget on every shared benchmark."""
    from vsil.config import JudgeConfig

    budget = JudgeConfig().budget
    rows = []
    with FakeJudgeServer({}) as srv:
        for name, rel, preset in BENCHMARKS:
            path = dev_set(a.shared)[0] if rel is None else os.path.join(a.shared, "data", rel)
            if not os.path.exists(path):
                rows.append({"benchmark": name, "rows": "missing"})
                continue
            cfg = VSILConfig(
                embedder=a.embedder,
                judge="auto",
                judge_base_url=srv.base_url,
                judge_model="rule",
                preset=preset,
                show_progress_bar=False,
            )
            df = score_dataset(path, config=cfg)
            n_ok = int((df.status == "ok").sum())
            routed = int(df.attrs["summary"]["judge"]["rows"])
            rows.append(
                {
                    "benchmark": name,
                    "rows": n_ok,
                    "routed": routed,
                    "share": routed / max(1, n_ok),
                    "within budget": routed <= budget * n_ok,
                }
            )
    print(f"\n--judge auto with the default budget ({budget:.0%} of each chunk's rows) on every shared benchmark:")
    print(format_table(rows, ["benchmark", "rows", "routed", "share", "within budget"]))


def _row(judge: str, mode: str, df: Any, y: Any, secs: float) -> dict[str, Any]:
    """One table row: the routing, the share of rows the judge decided, and the final leak metrics."""
    m = leak_metrics(y, df.is_leak.to_numpy(dtype=float), df.vsil_level.to_numpy(), 0.5)  # F1 of the final is_leak
    band = df.attrs["summary"]["manifest"]["backends"].get("judge_routing", "")
    return {
        "judge": judge,
        "routing": band if mode == "auto" else mode,
        "call_rate": float((df.decided_by == "judge").mean()),
        "f1": m["f1"],
        "precision": m["precision"],
        "recall": m["recall"],
        "kappa3": m["kappa3"],
        "seconds": secs,
    }


if __name__ == "__main__":
    main()
