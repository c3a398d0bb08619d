"""Dataset summary: leak rate with a Wilson interval, per category and per source, computed from the rows."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from vsil.schema import LeakageResult, Summary


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n ((nan, nan) when n == 0)."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return (max(0.0, centre - half), min(1.0, centre + half))


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n)
    return {"n": n, "leaks": k, "leak_rate": (k / n) if n else float("nan"), "ci95": [lo, hi]}


@dataclass
class SummaryBuilder:
    """Accumulates counts row by row, so the summary never needs all rows in memory."""

    n: int = 0
    n_error: int = 0
    leaks: int = 0
    levels: Counter[int] = field(default_factory=Counter)
    decided_by: Counter[str] = field(default_factory=Counter)
    judge_errors: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    by_cat: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    by_src: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def add(self, r: LeakageResult) -> None:
        self.n += 1
        if r.status != "ok":
            self.n_error += 1
            self.errors[r.error.split(":")[0][:80]] += 1
            return
        self.levels[r.vsil_level] += 1
        self.decided_by[r.decided_by] += 1
        self.judge_errors += int(bool(r.judge_error))
        self.leaks += int(r.is_leak)
        for key, table in ((r.category, self.by_cat), (r.source, self.by_src)):
            if key:
                table[key][0] += int(r.is_leak)
                table[key][1] += 1

    def build(self, manifest: dict[str, Any]) -> Summary:
        ok = self.n - self.n_error
        return Summary(
            {
                "n": self.n,
                "n_scored": ok,
                "n_error": self.n_error,
                **{k: v for k, v in _rate(self.leaks, ok).items() if k != "n"},
                "level_counts": {str(k): self.levels.get(k, 0) for k in (0, 1, 2)},
                "decided_by": dict(self.decided_by),
                "judge": {**manifest.get("judge_stats", {}), "rows_with_judge_error": self.judge_errors}
                if manifest.get("judge_stats") is not None
                else None,
                "errors": dict(self.errors.most_common(20)),
                "per_category": {k: _rate(*v) for k, v in sorted(self.by_cat.items())},
                "per_source": {k: _rate(*v) for k, v in sorted(self.by_src.items())},
                "threshold": manifest.get("threshold"),
                "manifest": manifest,
            }
        )


def format_summary(s: dict[str, Any]) -> str:
    """A short human-readable summary for the terminal."""
    lo, hi = s["ci95"]
    lines = [
        f"vsil audit: {s['n']} rows ({s['n_scored']} scored, {s['n_error']} errors)",
        f"leak rate: {s['leak_rate']:.1%} (95% CI {lo:.1%}-{hi:.1%}) at threshold {s['threshold']:.2f}"
        if s["n_scored"]
        else "leak rate: n/a (no row could be scored)",
        "levels: " + ", ".join(f"{k}={v}" for k, v in s["level_counts"].items()),
    ]
    m = s.get("manifest", {})
    if m.get("backends"):
        lines.append("backends: " + ", ".join(f"{k}={v}" for k, v in m["backends"].items()))
    j = s.get("judge")
    if j:
        lines.append(
            f"judge: {j.get('calls', 0)} calls, {j.get('cached', 0)} from cache, {j.get('failed', 0)} failed"
            + (f", {j['prompt_tokens'] + j['completion_tokens']} tokens" if j.get("prompt_tokens") else "")
            + f"; decided {s['decided_by'].get('judge', 0)} of {s['n_scored']} rows"
        )
    for w in m.get("warnings", []):
        lines.append(f"WARNING: {w}")
    if s["per_source"]:
        lines.append(
            "per source: " + ", ".join(f"{k} {v['leak_rate']:.0%} (n={v['n']})" for k, v in s["per_source"].items())
        )
    if s["errors"]:
        lines.append("errors: " + "; ".join(f"{k} x{v}" for k, v in list(s["errors"].items())[:5]))
    return "\n".join(lines)
