"""How well ``--judge auto`` routes: on the gold dev set, the share of rows sent to the judge and the
leak F1 before and after, with a judge that answers the gold labels (a local OpenAI-compatible test
server replaying them) and with one that answers from a crude word-overlap rule. The judge here is a
stand-in for an LLM, so this measures routing, not any LLM's accuracy.

    python benchmarks/judge_routing.py [--shared ../shared] [--embedder none]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from _dev import DEFAULT_SHARED, dev_set
from _docs import run_and_document
from _machine import machine

from vsil import VSILConfig, score_dataset
from vsil.evaluate import format_table, leak_metrics
from vsil.judge.testserver import FakeJudgeServer, gold_answers


def main() -> None:
    run_and_document(_run, __file__, "judge_routing")


def _run() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=DEFAULT_SHARED)
    ap.add_argument("--embedder", default="auto", help="auto (semantic default) or none (lexical)")
    ap.add_argument("--update-docs", action="store_true", help="write the output into docs/benchmarks.md")
    a = ap.parse_args()
    dev_path, _, y = dev_set(a.shared)
    print(f"machine: {machine()}")
    rows = []
    for judge_name, answers in (("gold-replaying judge", gold_answers(dev_path)), ("word-overlap rule judge", {})):
        with FakeJudgeServer(answers) as srv:
            for mode in ("none", "auto", "always"):
                cfg = VSILConfig(embedder=a.embedder, judge=mode, judge_base_url=srv.base_url, judge_model="replay", show_progress_bar=False)
                t0 = time.time()
                df = score_dataset(dev_path, config=cfg)
                secs = time.time() - t0
                m = leak_metrics(y, df.is_leak.to_numpy(dtype=float), df.vsil_level.to_numpy(), 0.5)  # F1 of the final is_leak
                band = df.attrs["summary"]["manifest"]["backends"].get("judge_routing", "")
                rows.append(
                    {"judge": judge_name if mode != "none" else "-", "routing": band if mode == "auto" else mode, "call_rate": float((df.decided_by == "judge").mean()),
                     "f1": m["f1"], "precision": m["precision"], "recall": m["recall"], "kappa3": m["kappa3"], "seconds": secs}
                )
        print(f"judge requests to the {judge_name} server: {srv.requests}")
    print(format_table(rows, ["judge", "routing", "call_rate", "f1", "precision", "recall", "kappa3", "seconds"]))

    return a

if __name__ == "__main__":
    main()
