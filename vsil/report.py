"""Self-contained HTML reports (inline CSS, charts as inline PNG, no network).

All dataset text is untrusted: every string goes through ``html.escape``; highlighting splits the raw
text at the span offsets and escapes each piece. Charts are PNG images, so no dataset text reaches
the page as markup.
"""

from __future__ import annotations

import base64
import functools
import heapq
import html
import io
import json
from collections.abc import Callable, Iterable
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;\
color:#1d2330;padding:0 1rem}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #e4e7ee;padding-bottom:.3rem;margin-top:2.2rem}
.verdict{font-size:1.25rem;padding:1rem 1.2rem;border-radius:8px;margin:1rem 0}
.high{background:#fde8e8;border-left:6px solid #c0392b}.mid{background:#fff4de;border-left:6px solid #e08e0b}
.low{background:#e6f6ec;border-left:6px solid #1e8449}
.kpis{display:flex;gap:1rem;flex-wrap:wrap}.kpi{background:#f5f7fb;border-radius:8px;padding:.7rem 1rem;min-width:140px}
.kpi b{display:block;font-size:1.4rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}\
th,td{border-bottom:1px solid #e4e7ee;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f7fb}mark{background:#ffd54f;padding:0 2px;border-radius:3px}mark.risk{background:#f8b4b4}
pre{background:#f5f7fb;padding:1rem;overflow:auto;font-size:.8rem;max-height:420px}
.charts{display:flex;flex-wrap:wrap;gap:1rem}.charts img{max-width:100%;border:1px solid #eef0f5;border-radius:6px}
.muted{color:#6b7385}
"""

e = html.escape


def highlight(text: str, spans: Iterable[tuple[int, int]], cls: str = "") -> str:
    """Escape ``text`` and wrap the character ``spans`` in <mark>."""
    out, pos = [], 0
    attr = f' class="{e(cls)}"' if cls else ""
    for s, t in sorted({(max(0, int(a)), min(len(text), int(b))) for a, b in spans}):
        if s < pos or s >= t:
            continue
        out += [e(text[pos:s]), f"<mark{attr}>", e(text[s:t]), "</mark>"]
        pos = t
    out.append(e(text[pos:]))
    return "".join(out)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def literal_text(fn: Callable[..., str]) -> Callable[..., str]:
    """Run a chart function with matplotlib's math syntax off: dataset names such as ``$x^$`` are
    plain text in every label (and cannot break the report)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
            return fn(*args, **kwargs)

    return wrapper


@literal_text
def chart_levels(levels: dict[str, int]) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 2.8))
    names = ["0 none", "1 partial", "2 leak"]
    ax.bar(names, [levels.get(str(i), 0) for i in range(3)], color=["#1e8449", "#e08e0b", "#c0392b"])
    ax.set_title("Level distribution")
    ax.set_ylabel("rows")
    return _png(fig)


@literal_text
def chart_hist(scores: list[float], threshold: float) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.2, 2.8))
    ax.hist(scores, bins=20, range=(0, 1), color="#4a69bd")
    ax.axvline(threshold, color="#c0392b", linestyle="--", label=f"threshold {threshold:.2f}")
    ax.set_xlabel("vsil_score (P(leak))")
    ax.set_ylabel("rows")
    ax.set_title("Score distribution")
    ax.legend()
    return _png(fig)


@literal_text
def chart_rates(rates: dict[str, dict[str, Any]], title: str, max_bars: int = 25) -> str:
    if not rates:
        return ""
    plt = _plt()
    items = sorted(rates.items(), key=lambda kv: -kv[1]["n"])[:max_bars]
    names = [k[:40] for k, _ in items]
    r = [v["leak_rate"] for _, v in items]
    lo = [max(0.0, v["leak_rate"] - v["ci95"][0]) for _, v in items]
    hi = [max(0.0, v["ci95"][1] - v["leak_rate"]) for _, v in items]
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(items) + 1.2))
    ax.barh(names, r, xerr=[lo, hi], color="#c0392b", alpha=0.85, capsize=3)
    ax.set_xlim(0, 1)
    ax.invert_yaxis()
    ax.set_xlabel("leak rate (95% CI)")
    ax.set_title(title)
    return _png(fig)


def verdict(rate: float) -> tuple[str, str]:
    if rate != rate:  # nan
        return "low", "No row could be scored."
    if rate >= 0.5:
        return "high", (
            f"High leakage: {rate:.0%} of the samples reveal their risk in the text. A text-only model could refuse "
            "them without looking at the image, so this set mostly measures text safety, not multimodal safety."
        )
    if rate >= 0.1:
        return (
            "mid",
            f"Moderate leakage: {rate:.0%} of the samples reveal their risk in the text. "
            "Review the leaking samples below.",
        )
    return (
        "low",
        f"Low leakage: {rate:.0%} of the samples reveal their risk in the text; "
        "the image carries the risk for the rest.",
    )


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else e(str(v))


def _rate_table(rates: dict[str, dict[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{e(k)}</td><td>{v['n']}</td><td>{v['leaks']}</td><td>{v['leak_rate']:.1%}</td>"
        f"<td>{v['ci95'][0]:.1%} - {v['ci95'][1]:.1%}</td></tr>"
        for k, v in sorted(rates.items())
    )
    rows = rows or "<tr><td colspan=5 class='muted'>no such column in the input</td></tr>"
    return f"<table><tr><th>group</th><th>n</th><th>leaks</th><th>leak rate</th><th>95% CI</th></tr>{rows}</table>"


def collect(rows: Iterable[dict[str, Any]], top_k: int = 50) -> dict[str, Any]:
    """One pass over result rows: scores for the histogram, the top leaks, the error rows."""
    scores: list[float] = []
    top: list[tuple[float, int, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    for i, r in enumerate(rows):
        if r.get("status") != "ok":
            if len(errors) < 50:
                errors.append(r)
            continue
        s = float(r["vsil_score"])
        scores.append(s)
        if r.get("vsil_level") == 2 or r.get("is_leak"):
            item = (s, -i, r)
            if len(top) < top_k:
                heapq.heappush(top, item)
            else:
                heapq.heappushpop(top, item)
    return {"scores": scores, "top": [r for _, _, r in sorted(top, key=lambda t: (-t[0], -t[1]))], "errors": errors}


def _sample_rows(top: list[dict[str, Any]]) -> str:
    out = []
    for r in top:
        q = r.get("query") or ""
        cap = r.get("caption_used") or ""
        qspans = [(s["start"], s["end"]) for s in r.get("leaked_spans") or []]
        cspans = []
        for t in r.get("risk_terms") or []:
            if t.get("field") == "caption" and t.get("end", 0) <= len(cap):
                cspans.append((t["start"], t["end"]))
        out.append(
            f"<tr><td>{e(str(r.get('id')))}</td><td>{float(r['vsil_score']):.3f}</td><td>{e(str(r.get('vsil_level')))}</td>"
            f"<td>{highlight(q, qspans)}</td><td>{highlight(cap, cspans, 'risk')}</td>"
            f"<td>{e(str(r.get('decided_by')))}</td></tr>"
        )
    return (
        "<table><tr><th>id</th><th>score</th><th>level</th><th>query (leaked span)</th>"
        "<th>image evidence (risk terms)</th><th>decided by</th></tr>" + "".join(out) + "</table>"
    )


def render_report(summary: dict[str, Any], rows: Iterable[dict[str, Any]], title: str = "vsil leakage audit") -> str:
    """The full audit report as one self-contained HTML page."""
    c = collect(rows)
    thr = float(summary.get("threshold") or 0.5)
    rate = summary.get("leak_rate")
    rate = float("nan") if rate is None else float(rate)
    cls, text = verdict(rate)
    lo, hi = summary.get("ci95") or [None, None]
    ci = f"{lo:.1%} - {hi:.1%}" if lo is not None and hi is not None else "n/a"
    man = summary.get("manifest", {})
    gate = summary.get("gate")
    gate_html = ""
    if gate:
        verdict_txt = "PASSED" if gate["passed"] else "FAILED"
        gate_html = f"<div class='kpi'>gate (max {gate['max_leak_rate']:.1%})<b>{verdict_txt}</b></div>"
    err_rows = "".join(f"<tr><td>{e(str(r.get('id')))}</td><td>{e(str(r.get('error')))}</td></tr>" for r in c["errors"])
    err_counts = "".join(f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in (summary.get("errors") or {}).items())
    judge = summary.get("judge") or {}
    judge_rows = "".join(
        f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>"
        for k, v in {**(summary.get("decided_by") or {}), **judge}.items()
    )
    leak_txt = f"{rate:.1%}" if rate == rate else "n/a"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>{e(title)}</title><style>{CSS}</style></head><body>
<h1>{e(title)}</h1>
<p class="muted">vsil {e(str(man.get("vsil_version", "")))} &middot; {e(str(man.get("started", "")))} &middot; \
mode: {e(str((man.get("backends") or {}).get("mode", "")))}</p>
<section id="headline"><h2>Headline</h2>
<div class="verdict {cls}">{e(text)}</div>
<div class="kpis"><div class="kpi">leak rate<b>{leak_txt}</b></div><div class="kpi">95% CI<b>{ci}</b></div>
<div class="kpi">rows<b>{summary.get("n", 0)}</b></div><div class="kpi">errors<b>{summary.get("n_error", 0)}</b></div>
<div class="kpi">threshold<b>{thr:.2f}</b></div>{gate_html}</div></section>
<section id="distribution"><h2>Levels and scores</h2><div class="charts">\
{chart_levels(summary.get("level_counts") or {})}{chart_hist(c["scores"], thr) if c["scores"] else ""}</div></section>
<section id="groups"><h2>Leak rate per category and per source</h2><div class="charts">\
{chart_rates(summary.get("per_category") or {}, "per category")}\
{chart_rates(summary.get("per_source") or {}, "per source")}</div>
<h3>per category</h3>{_rate_table(summary.get("per_category") or {})}<h3>per source</h3>\
{_rate_table(summary.get("per_source") or {})}</section>
<section id="top-leaks"><h2>Top leaking samples</h2><p class="muted">Highlighted: the query words that reveal the \
risk, and the risk terms of the image evidence.</p>{_sample_rows(c["top"])}</section>
<section id="errors"><h2>Errors and judge statistics</h2>
<table><tr><th>error</th><th>rows</th></tr>{err_counts or "<tr><td colspan=2>none</td></tr>"}</table>
<h3>error rows (first 50)</h3><table><tr><th>id</th><th>reason</th></tr>\
{err_rows or "<tr><td colspan=2>none</td></tr>"}</table>
<h3>decisions</h3><table><tr><th>decided by / judge</th><th>rows</th></tr>\
{judge_rows or "<tr><td colspan=2>none</td></tr>"}</table></section>
<section id="manifest"><h2>Run manifest</h2><pre>{e(json.dumps(man, indent=1, default=str))}</pre></section>
</body></html>
"""


def render_comparison(audits: list[tuple[str, dict[str, Any]]], title: str = "vsil audit comparison") -> str:
    """Several audits side by side: one table and one chart of leak rates with intervals."""
    rates = {
        name: {
            "n": s.get("n_scored", 0),
            "leaks": s.get("leaks", 0),
            "leak_rate": s.get("leak_rate") or 0.0,
            "ci95": s.get("ci95") or [0, 0],
        }
        for name, s in audits
    }
    rows = "".join(
        f"<tr><td>{e(name)}</td><td>{s.get('n')}</td><td>{s.get('n_error')}</td>"
        f"<td>{(s.get('leak_rate') or 0):.1%}</td>"
        f"<td>{(s.get('ci95') or [0, 0])[0]:.1%} - {(s.get('ci95') or [0, 0])[1]:.1%}</td>"
        + "".join(f"<td>{(s.get('level_counts') or {}).get(str(i), 0)}</td>" for i in range(3))
        + f"<td>{e(str((s.get('manifest') or {}).get('backends', {}).get('mode', '')))}</td></tr>"
        for name, s in audits
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; \
img-src data:; style-src 'unsafe-inline'">
<title>{e(title)}</title><style>{CSS}</style></head><body><h1>{e(title)}</h1>
<section id="comparison"><h2>Leak rates</h2><div class="charts">{chart_rates(rates, "leak rate per audit")}</div>
<table><tr><th>audit</th><th>rows</th><th>errors</th><th>leak rate</th><th>95% CI</th><th>level 0</th><th>level \
1</th><th>level 2</th><th>mode</th></tr>{rows}</table></section>
</body></html>
"""


def save_report(path: str, summary: dict[str, Any], rows: Iterable[dict[str, Any]], title: str) -> str:
    """The one writer of an audit's HTML report; returns ``path``."""
    html = render_report(summary, rows, title=title)
    with open(path, "w", encoding="utf-8") as f:
        f.write(html)
    return path
