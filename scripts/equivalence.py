"""Guard for behaviour-preserving changes: run a fixed set of audits, then compare two sets of outputs.

    python scripts/equivalence.py run --out /tmp/before          # with the old code installed / on PYTHONPATH
    python scripts/equivalence.py run --out /tmp/after           # with the new code
    python scripts/equivalence.py compare /tmp/before /tmp/after # exit 1 on any difference

``results.jsonl`` must match row for row (floats to 1e-6); ``summary.json`` must match except for
timestamps, run times, the platform string and the shape of the echoed config (compared flattened).
The audits: the repository example, the dev set, VLSBench in semantic and lexical mode (both need
``--shared``), and the dev set with ``--judge auto`` against the fake judge server on 2 workers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TOLERANCE = 1e-6  # float noise from batching the embedder differently; every level and span must match exactly
IGNORED = {"started", "seconds", "platform", "python", "config", "warnings"}


def audits(shared: str) -> dict[str, list[str]]:
    dev = os.path.join(shared, "gold", "dev.jsonl")
    vls = os.path.join(shared, "data", "vlsbench", "data.json")
    jobs = {"example": [os.path.join(ROOT, "examples", "pairs.jsonl")]}
    if os.path.exists(dev):
        jobs["dev"] = [dev]
        jobs["dev_lexical"] = [dev, "--embedder", "none"]
        jobs["dev_judge_workers"] = [dev, "--judge", "auto", "--judge-model", "fake", "--workers", "2"]
    if os.path.exists(vls):
        jobs["vlsbench"] = [vls, "--preset", "vlsbench"]
        jobs["vlsbench_lexical"] = [vls, "--preset", "vlsbench", "--embedder", "none"]
    return jobs


def run(out: str, shared: str, only: list[str] | None) -> None:
    try:
        from vsil.testing.judge_server import FakeJudgeServer
    except ImportError:  # the code before the restructure
        from vsil.judge.testserver import FakeJudgeServer  # type: ignore[no-redef]

    with FakeJudgeServer() as srv:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": "test-key"}
        for name, args in audits(shared).items():
            if only and name not in only:
                continue
            extra = ["--judge-base-url", srv.base_url] if "--judge" in args else []
            cmd = [
                sys.executable,
                "-m",
                "vsil.cli",
                "audit",
                *args,
                *extra,
                "--out",
                os.path.join(out, name),
                "--no-report",
                "--no-progress",
            ]
            print("$", " ".join(cmd), flush=True)
            rc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL).returncode
            if rc != 0:
                raise SystemExit(f"{name}: exit {rc}")


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOLERANCE
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def compare(a: str, b: str) -> int:
    bad = 0
    for name in sorted(os.listdir(a)):
        before = bad
        pa, pb = os.path.join(a, name), os.path.join(b, name)
        if not os.path.isdir(pb):
            print(f"{name}: missing in {b}")
            bad += 1
            continue
        with open(os.path.join(pa, "results.jsonl")) as f:
            ra = [json.loads(x) for x in f]
        with open(os.path.join(pb, "results.jsonl")) as f:
            rb = [json.loads(x) for x in f]
        diffs = [i for i, (x, y) in enumerate(zip(ra, rb)) if not _same(x, y)]
        if len(ra) != len(rb) or diffs:
            bad += 1
            print(f"{name}: results differ ({len(ra)} vs {len(rb)} rows; {len(diffs)} rows differ, first {diffs[:5]})")
            for i in diffs[:2]:
                print("   ", {k: (ra[i].get(k), rb[i].get(k)) for k in ra[i] if not _same(ra[i].get(k), rb[i].get(k))})
        with open(os.path.join(pa, "summary.json")) as f:
            sa = json.load(f)
        with open(os.path.join(pb, "summary.json")) as f:
            sb = json.load(f)
        ma, mb = sa.pop("manifest", {}), sb.pop("manifest", {})
        if not _same(sa, sb):
            bad += 1
            print(f"{name}: summary differs: {[k for k in sa if not _same(sa.get(k), sb.get(k))]}")
        fa = {k: v for k, v in _flatten(ma).items() if k.split(".")[0] not in IGNORED}
        fb = {k: v for k, v in _flatten(mb).items() if k.split(".")[0] not in IGNORED}
        mdiff = sorted(k for k in fa.keys() | fb.keys() if not _same(fa.get(k), fb.get(k)))
        if mdiff:
            bad += 1
            print(f"{name}: manifest differs: " + "; ".join(f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in mdiff))
        if bad == before:
            print(f"{name}: identical ({len(ra)} rows)")
    return 1 if bad else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", required=True)
    r.add_argument("--shared", default=os.environ.get("VSIL_SHARED", os.path.join(ROOT, "..", "shared")))
    r.add_argument("--only", nargs="*")
    c = sub.add_parser("compare")
    c.add_argument("a")
    c.add_argument("b")
    args = ap.parse_args()
    if args.cmd == "run":
        run(args.out, args.shared, args.only)
    else:
        raise SystemExit(compare(args.a, args.b))


if __name__ == "__main__":
    main()
