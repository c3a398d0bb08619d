"""Self-contained HTML reports (inline CSS, charts and thumbnails as inline images, no network).

All dataset text is untrusted: every string goes through ``html.escape`` (text and attribute values);
highlighting splits the raw text at the span offsets and escapes each piece. Charts are PNG images, so
no dataset text reaches the page as markup. The page has one static script (``UI_SCRIPT``: sorting and
filtering of the tables) that contains no dataset text; the Content-Security-Policy allows exactly that
script by its sha256 hash and nothing else, so even markup that slipped through could not run.

Besides the HTML, :func:`save_report` writes every flagged row (level 2 and level 1) to a CSV file
beside the report (``report_flagged.csv`` for ``report.html``), with spreadsheet-formula cells
neutralised.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import heapq
import html
import io
import json
import os
import urllib.parse
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from typing import IO, Any

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
.notice{background:#eef3fb;border-left:4px solid #4a69bd;padding:.5rem .8rem;margin:.6rem 0}
.trust{background:#f7f3e8;border-left:6px solid #8a6d1f;padding:.8rem 1.1rem;border-radius:8px;margin:1rem 0}
.trust ul{margin:.3rem 0 .3rem 1.1rem;padding:0}.insample{color:#8a3b12;font-weight:600}
img.thumb{width:auto;height:auto;max-width:96px;max-height:96px;border:1px solid #e4e7ee;border-radius:4px;\
display:block}
th[data-sort]{cursor:pointer;user-select:none;white-space:nowrap}th[data-sort]::after{content:" \\2195";color:#9aa1b2}
th[aria-sort=ascending]::after{content:" \\2191";color:#1d2330}th[aria-sort=descending]::after{content:" \\2193";\
color:#1d2330}
.controls{display:flex;gap:.6rem;align-items:center;margin:.5rem 0;flex-wrap:wrap}.controls input{min-width:260px;\
padding:.25rem .4rem}
details summary{cursor:pointer;color:#4a69bd}
td.num{white-space:nowrap}tr.hdr th{position:sticky;top:0}
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


# --- sorting / filtering: one static script, allowed by its hash ----------------------------------

UI_SCRIPT = """(function(){"use strict";
function params(){var p={},h=location.hash.replace(/^#/,"");h.split("&").forEach(function(kv){var i=kv.indexOf("=");
if(i<1)return;try{p[decodeURIComponent(kv.slice(0,i))]=decodeURIComponent(kv.slice(i+1).replace(/[+]/g," "));}
catch(err){}});return p;}
function val(tr,k,num){var v=tr.getAttribute("data-"+k)||"";if(num){var f=parseFloat(v);return isNaN(f)?-1:f;}
return v.toLowerCase();}
function sortTable(t,k,asc){var ths=t.querySelectorAll("th[data-sort]"),num=false,found=false,i;
for(i=0;i<ths.length;i++){var on=ths[i].getAttribute("data-sort")===k;if(on){found=true;
num=ths[i].getAttribute("data-type")==="num";}ths[i].setAttribute("aria-sort",on?(asc?"ascending":"descending"):"none");}
if(!found||!t.tBodies.length)return;var b=t.tBodies[0],rows=Array.prototype.slice.call(b.rows);
rows.forEach(function(r,j){r.vsilPos=j;});
rows.sort(function(x,y){var a=val(x,k,num),c=val(y,k,num),r=a<c?-1:(a>c?1:0);if(!asc)r=-r;
return r||(x.vsilPos-y.vsilPos);});
rows.forEach(function(r){b.appendChild(r);});t.setAttribute("data-sorted",k+":"+(asc?"asc":"desc"));}
function filterTable(t,q,lv){if(!t.tBodies.length)return 0;var rows=t.tBodies[0].rows,n=0,i;q=(q||"").toLowerCase();
for(i=0;i<rows.length;i++){var ok=(!q||rows[i].textContent.toLowerCase().indexOf(q)>=0)&&
(!lv||rows[i].getAttribute("data-level")===lv);rows[i].hidden=!ok;if(ok)n++;}
t.setAttribute("data-shown",String(n));return n;}
function controls(t){var c=document.querySelector("div.controls[data-for='"+t.id+"']");if(!c)return null;
return{box:c,q:c.querySelector("input"),lv:c.querySelector("select"),count:c.querySelector(".count")};}
function refresh(t){var c=controls(t);if(!c)return;var n=filterTable(t,c.q?c.q.value:"",c.lv?c.lv.value:"");
if(c.count)c.count.textContent=n+" of "+t.tBodies[0].rows.length+" rows shown";}
function apply(){var p=params(),ts=document.querySelectorAll("table.sortable"),i;for(i=0;i<ts.length;i++){var t=ts[i],
c=controls(t);if(c&&c.q&&p.q!==undefined)c.q.value=p.q;if(c&&c.lv&&p.level!==undefined)c.lv.value=p.level;
if(p.sort)sortTable(t,p.sort,p.dir==="asc");refresh(t);}}
function wire(t){var ths=t.querySelectorAll("th[data-sort]"),i;for(i=0;i<ths.length;i++){ths[i].tabIndex=0;
ths[i].addEventListener("click",function(ev){var th=ev.currentTarget,k=th.getAttribute("data-sort");
var asc=th.getAttribute("aria-sort")==="descending"||(th.getAttribute("aria-sort")!=="ascending"&&
th.getAttribute("data-type")!=="num");sortTable(t,k,asc);});}
var c=controls(t);if(!c)return;c.box.hidden=false;if(c.q)c.q.addEventListener("input",function(){refresh(t);});
if(c.lv)c.lv.addEventListener("change",function(){refresh(t);});}
var ts=document.querySelectorAll("table.sortable"),i;for(i=0;i<ts.length;i++)wire(ts[i]);
apply();window.addEventListener("hashchange",apply);document.documentElement.setAttribute("data-vsil-ui","ready");
})();"""


def script_hash(script: str = UI_SCRIPT) -> str:
    """The CSP source expression that allows exactly ``script``."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def csp(script: str | None = UI_SCRIPT) -> str:
    """The page's Content-Security-Policy: nothing but inline styles, data: images and (optionally) the
    one static script, by hash."""
    policy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    if script:
        policy += f"; script-src {script_hash(script)}"
    return policy + "; base-uri 'none'; form-action 'none'"


def _page(title: str, body: str, script: str | None = UI_SCRIPT) -> str:
    tag = f'<script id="vsil-ui">{script}</script>' if script else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{e(csp(script))}">
<title>{e(title)}</title><style>{CSS}</style></head><body>
{body}
{tag}
</body></html>
"""


# --- how much to trust the numbers ----------------------------------------------------------------

# Held-out accuracy of the shipped semantic model (docs/model_card.md), used when the manifest's model
# has no ``held_out`` block of its own.
HELD_OUT_FALLBACK: dict[str, Any] = {
    "dev_loso_auroc": 0.973,
    "dev_loso_f1": 0.906,
    "dev_loso_kappa": 0.711,
    "unseen_note": "on two benchmarks the maintainers held out entirely, leak F1 was 0.810 and 0.500",
    "from": "model card of the shipped semantic model",
}
_HELD_OUT_LABELS = {
    "dev_loso_auroc": "dev set, leave-one-source-out: AUROC",
    "dev_loso_f1": "dev set, leave-one-source-out: leak F1",
    "dev_loso_kappa": "dev set, leave-one-source-out: kappa (3 levels)",
    "lobo_mean_f1": "leave-one-benchmark-out: leak F1, mean over benchmarks",
    "lobo_worst_f1": "leave-one-benchmark-out: leak F1, worst benchmark",
    "unseen_f1": "unseen benchmarks: leak F1",
}


def _norm_name(s: Any) -> str:
    return "".join(ch for ch in str(s).lower() if ch.isalnum())


def in_sample_sources(summary: dict[str, Any], sources: Iterable[str] = ()) -> dict[str, int]:
    """The model's training-data keys that this audit's preset or row sources name ({key: n_pairs})."""
    man = summary.get("manifest") or {}
    training = ((man.get("model") or {}).get("training_data")) or {}
    if not isinstance(training, dict):
        return {}
    preset = ((man.get("config") or {}).get("preset")) or ""
    names = {_norm_name(str(preset).split(":")[0])} if preset else set()
    names |= {_norm_name(s) for s in (summary.get("per_source") or {})}
    names |= {_norm_name(s) for s in sources}
    names.discard("")
    return {str(k): v for k, v in training.items() if _norm_name(k) in names}


def _trust_box(summary: dict[str, Any], sources: Iterable[str]) -> str:
    man = summary.get("manifest") or {}
    model = man.get("model") or {}
    held = model.get("held_out")
    own = isinstance(held, dict) and bool(held)
    figures: dict[str, Any] = held if isinstance(held, dict) and held else HELD_OUT_FALLBACK
    items = []
    for k, v in figures.items():
        if k in ("unseen_note", "from"):
            continue
        if isinstance(v, list):
            shown = ", ".join(f"{x:.3f}" if isinstance(x, float) else e(str(x)) for x in v)
        else:
            shown = f"{v:.3f}" if isinstance(v, float) else e(str(v))
        items.append(f"<li>{e(_HELD_OUT_LABELS.get(k, k.replace('_', ' ')))}: <b>{shown}</b></li>")
    note = figures.get("unseen_note")
    origin = "recorded with the model" if own else e(str(HELD_OUT_FALLBACK["from"]))
    insample = in_sample_sources(summary, sources)
    ins = ""
    if insample:
        which = ", ".join(f"{e(k)} ({e(str(v))} pairs)" for k, v in sorted(insample.items()))
        ins = (
            f"<p class='insample'>Partly in-sample: the model was trained on pairs from {which}, the benchmark "
            "audited here. Some of these rows (or near copies) may be training pairs, so the model is likely more "
            "accurate here than the held-out figures say; do not read this audit as an independent evaluation "
            "of the model.</p>"
        )
    mode = (man.get("backends") or {}).get("mode", "")
    lex = (
        "<p class='muted'>This audit ran in the lexical-only mode, which is less accurate than the semantic model "
        "these figures describe.</p>"
        if mode == "lexical" and not own
        else ""
    )
    return (
        f"<div class='trust' id='trust'><b>How much to trust this.</b> Every row is scored by a classifier "
        f"({e(str(model.get('name', 'unknown')))}, trained {e(str(model.get('trained_at', '?')))}), not read by a "
        f"person. Held-out accuracy ({origin}):<ul>{''.join(items)}</ul>"
        + (f"<p>{e(str(note))}.</p>" if note else "")
        + "<p>So the leak rate is an estimate whose error is larger than its 95% interval (which counts only "
        "sampling noise): on a benchmark unlike the training data expect misses and false alarms; check the "
        "borderline rows below before acting on a single row.</p>" + ins + lex + "</div>"
    )


# --- dataset name, image lookup, thumbnails ---------------------------------------------------------


def input_path(summary: dict[str, Any]) -> str | None:
    """The audited input's path, when the run manifest records one."""
    man = summary.get("manifest") or {}
    cfg = man.get("config") or {}
    for v in (man.get("input"), man.get("input_path"), man.get("data"), cfg.get("data"), cfg.get("input")):
        if isinstance(v, dict):
            v = v.get("path")
        if isinstance(v, str) and v:
            return v
    return None


def dataset_name(summary: dict[str, Any]) -> str | None:
    """The audited dataset's name: the preset, else the input file's stem (None when neither is known)."""
    man = summary.get("manifest") or {}
    preset = (man.get("config") or {}).get("preset")
    if preset:
        return str(preset)
    inp = man.get("input")
    if isinstance(inp, dict) and inp.get("name"):
        return str(inp["name"])
    path = input_path(summary)
    if path:
        base = os.path.basename(os.path.normpath(path))
        return os.path.splitext(base)[0] or base
    return None


def image_refs(summary: dict[str, Any], wanted: Iterable[int], data: Any = None) -> dict[int, Any]:
    """Image references of the input rows numbered ``wanted``, read again from the input (``data``, else
    the manifest's input path) with the audit's columns and preset. Reads up to the last wanted row only;
    {} when the input is unknown or unreadable."""
    want = {int(i) for i in wanted if isinstance(i, int) and i >= 0}
    man = summary.get("manifest") or {}
    src = data if data is not None else input_path(summary)
    if not want or src is None or (isinstance(src, str) and not os.path.exists(src)):
        return {}
    from dataclasses import fields

    from vsil.config import ColumnMap
    from vsil.io.readers import iter_records

    cfg = man.get("config") or {}
    names = {f.name for f in fields(ColumnMap)}
    cols = ColumnMap(**{k: v for k, v in (cfg.get("columns") or {}).items() if k in names and isinstance(v, str)})
    out: dict[int, Any] = {}
    last = max(want)
    it = iter_records(src, cols, cfg.get("preset"), chunk_size=512)
    try:
        for chunk in it:
            for rec in chunk:
                if rec.row in want:
                    out[rec.row] = rec.image
            if chunk and chunk[-1].row >= last:
                break
    except Exception:  # a report without thumbnails beats no report
        pass
    finally:
        close = getattr(it, "close", None)
        if close:
            close()
    return out


THUMB_PX = 96


def thumbnail(ref: Any, image_root: str | None, *, max_bytes: int = 64 << 20, max_pixels: int = 64_000_000) -> str:
    """``<img>`` with a <= 96 px data: thumbnail of the local image file ``ref`` (confined to
    ``image_root``, default the working directory), or "" when it is not a readable local image."""
    if not isinstance(ref, str) or not ref:
        return ""
    from PIL import Image

    from vsil.stages.evidence.images import resolve_path

    try:
        path = resolve_path(ref, image_root)
        if os.path.getsize(path) > max_bytes:
            return ""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    return ""
                fmt = im.format
                if fmt == "JPEG":
                    im.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))
                im.seek(0)
                small = im.copy()
        small.thumbnail((THUMB_PX, THUMB_PX))
        buf = io.BytesIO()
        if fmt == "JPEG":
            small.convert("RGB").save(buf, format="JPEG", quality=80)
            mime = "jpeg"
        else:
            small = small.convert("RGBA" if "A" in small.getbands() or "transparency" in small.info else "RGB")
            small.save(buf, format="PNG", optimize=True)
            mime = "png"
    except Exception:  # missing, outside the root, not an image: none
        return ""
    b64 = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img class="thumb" alt="{e(os.path.basename(ref))}" src="data:image/{mime};base64,{e(b64)}">'


# --- one pass over the rows -------------------------------------------------------------------------

FLAGGED_COLUMNS = ("id", "vsil_score", "vsil_level", "is_leak", "category", "source", "leaked_spans", "query", "row")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(v: Any) -> Any:
    """A cell value that spreadsheets will not run as a formula: text starting with = + - @ (or a tab /
    carriage return) gets a leading quote."""
    if isinstance(v, str) and v.startswith(_FORMULA_START):
        return "'" + v
    return v


def flagged_csv_path(report_path: str) -> str:
    """Where the flagged-rows CSV of the report at ``report_path`` goes: ``report.html`` ->
    ``report_flagged.csv``."""
    return os.path.splitext(report_path)[0] + "_flagged.csv"


def _span_texts(r: dict[str, Any]) -> list[str]:
    out = []
    for s in r.get("leaked_spans") or []:
        t = s.get("text") if isinstance(s, dict) else None
        if isinstance(t, str) and t.strip():
            out.append(" ".join(t.split()))
    return out


def _push(heap: list[Any], item: Any, k: int) -> None:
    if len(heap) < k:
        heapq.heappush(heap, item)
    elif k:
        heapq.heappushpop(heap, item)


def _is_flag(r: dict[str, Any]) -> bool:
    return r.get("vsil_level") == 2 or bool(r.get("is_leak"))


def collect(
    rows: Iterable[dict[str, Any]],
    top_k: int = 50,
    *,
    threshold: float = 0.5,
    near_k: int = 25,
    partial_k: int = 50,
    flagged: IO[str] | None = None,
) -> dict[str, Any]:
    """One pass over result rows: scores for the histogram, the top leaks, the rows nearest the threshold,
    the top level-1 rows, the leaked span texts per category, the error rows; with ``flagged`` (a text
    file) every level-2 and level-1 row is written to it as CSV, in input order."""
    scores: list[float] = []
    top: list[tuple[float, int, dict[str, Any]]] = []
    near: list[tuple[float, int, dict[str, Any]]] = []
    partial: list[tuple[float, int, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    spans: dict[str, Counter[str]] = {}
    sources: set[str] = set()
    n_leak = n_partial = 0
    writer = None
    if flagged is not None:
        writer = csv.writer(flagged)
        writer.writerow(FLAGGED_COLUMNS)
    for i, r in enumerate(rows):
        if r.get("status") != "ok":
            if len(errors) < 50:
                errors.append(r)
            continue
        s = float(r["vsil_score"])
        if s != s:
            continue
        scores.append(s)
        if r.get("source") and len(sources) < 1000:
            sources.add(str(r["source"]))
        _push(near, (-abs(s - threshold), -i, r), near_k)
        level = r.get("vsil_level")
        leak = _is_flag(r)
        if leak:
            n_leak += 1
            _push(top, (s, -i, r), top_k)
            cat = str(r.get("category") or "(no category)")
            counter = spans.setdefault(cat, Counter()) if len(spans) < 500 or cat in spans else None
            if counter is not None:
                for t in set(x.lower() for x in _span_texts(r)):
                    if t in counter or len(counter) < 5000:
                        counter[t] += 1
        elif level == 1:
            n_partial += 1
            _push(partial, (s, -i, r), partial_k)
        if writer is not None and (leak or level == 1):
            writer.writerow(
                [
                    csv_safe(str(r.get("id"))),
                    f"{s:.6f}",
                    level,
                    bool(r.get("is_leak")),
                    csv_safe(str(r.get("category") or "")),
                    csv_safe(str(r.get("source") or "")),
                    csv_safe(" | ".join(_span_texts(r))),
                    csv_safe(str(r.get("query") or "")),
                    r.get("row", i),
                ]
            )
    return {
        "scores": scores,
        "top": [r for _, _, r in sorted(top, key=lambda t: (-t[0], -t[1]))],
        "near": [r for _, _, r in sorted(near, key=lambda t: (-t[0], -t[1]))],
        "partial": [r for _, _, r in sorted(partial, key=lambda t: (-t[0], -t[1]))],
        "errors": errors,
        "spans": spans,
        "sources": sources,
        "n_leak": n_leak,
        "n_partial": n_partial,
    }


# --- tables ---------------------------------------------------------------------------------------


def _controls(table_id: str) -> str:
    """The filter box of a sortable table (static markup; hidden until the script wires it)."""
    return (
        f"<div class='controls' data-for='{e(table_id)}' hidden><input type='search' aria-label='filter rows' "
        "placeholder='filter: text in any cell'><select aria-label='level'><option value=''>all levels</option>"
        "<option value='2'>2 leak</option><option value='1'>1 partial</option><option value='0'>0 none</option>"
        "</select><span class='count muted'></span><span class='muted'>click a column header to sort</span></div>"
    )


def _sample_rows(
    top: list[dict[str, Any]],
    thumbs: dict[int, str] | None = None,
    table_id: str = "leak-table",
    threshold: float | None = None,
) -> str:
    thumbs = thumbs or {}
    show_img = bool(thumbs)
    out = []
    for r in top:
        q = r.get("query") or ""
        cap = r.get("caption_used") or ""
        qspans = [(s["start"], s["end"]) for s in r.get("leaked_spans") or []]
        cspans = []
        for t in r.get("risk_terms") or []:
            if t.get("field") == "caption" and t.get("end", 0) <= len(cap):
                cspans.append((t["start"], t["end"]))
        score = float(r["vsil_score"])
        rid, cat, lvl = str(r.get("id")), str(r.get("category") or ""), str(r.get("vsil_level"))
        dist = f" data-dist='{abs(score - threshold):.4f}'" if threshold is not None else ""
        img = f"<td>{thumbs.get(r.get('row', -1), '')}</td>" if show_img else ""
        out.append(
            f"<tr data-id='{e(rid)}' data-score='{score:.4f}' data-level='{e(lvl)}' data-cat='{e(cat)}'{dist}>"
            f"{img}<td>{e(rid)}</td><td class='num'>{score:.3f}</td><td>{e(lvl)}</td><td>{e(cat)}</td>"
            f"<td>{highlight(q, qspans)}</td><td>{highlight(cap, cspans, 'risk')}</td>"
            f"<td>{e(str(r.get('decided_by')))}</td></tr>"
        )
    head = (
        ("<th>image</th>" if show_img else "")
        + "<th data-sort='id'>id</th><th data-sort='score' data-type='num'>score</th>"
        "<th data-sort='level' data-type='num'>level</th><th data-sort='cat'>category</th><th>query (leaked span)</th>"
        "<th>image evidence (risk terms)</th><th>decided by</th>"
    )
    if not out:
        return "<p class='muted'>none</p>"
    return (
        _controls(table_id)
        + f"<table class='sortable' id='{e(table_id)}'><thead><tr class='hdr'>{head}</tr></thead><tbody>"
        + "".join(out)
        + "</tbody></table>"
    )


def _span_table(spans: dict[str, Counter[str]], per_cat: dict[str, dict[str, Any]], top_n: int = 5) -> str:
    if not spans:
        return "<p class='muted'>no leaked spans</p>"
    cats = sorted(spans, key=lambda c: (-sum(spans[c].values()), c))[:40]
    body = []
    for c in cats:
        top = spans[c].most_common(top_n)
        words = ", ".join(f"<mark>{e(t)}</mark> ({k})" for t, k in top) or "<span class='muted'>none</span>"
        leaks = (per_cat.get(c) or {}).get("leaks", "")
        body.append(f"<tr data-cat='{e(c)}'><td>{e(c)}</td><td>{e(str(leaks))}</td><td>{words}</td></tr>")
    more = f"<p class='muted'>{len(spans) - len(cats)} more categories not shown.</p>" if len(spans) > len(cats) else ""
    return (
        "<table><thead><tr class='hdr'><th>category</th><th>leaks</th><th>top leaked spans (rows)</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>{more}"
    )


def _thumbs_for(summary: dict[str, Any], shown: list[dict[str, Any]], data: Any = None) -> tuple[dict[int, str], str]:
    """Thumbnails of the shown rows, keyed by input row number, and a note on why there are none."""
    man = summary.get("manifest") or {}
    cfg = man.get("config") or {}
    ev = cfg.get("evidence") or {}
    root = ev.get("image_root") or None
    max_pixels = int(ev.get("max_image_pixels") or 64_000_000)
    max_bytes = int(ev.get("max_image_bytes") or (64 << 20))
    rows = {int(r["row"]): r for r in shown if isinstance(r.get("row"), int)}
    if not rows:
        return {}, ""
    refs = {k: r["image"] for k, r in rows.items() if isinstance(r.get("image"), str)}
    missing = [k for k in rows if k not in refs]
    if missing:
        refs.update(image_refs(summary, missing, data))
    refs = {k: v for k, v in refs.items() if isinstance(v, str) and v}
    thumbs = {}
    for k, ref in refs.items():
        t = thumbnail(ref, root, max_bytes=max_bytes, max_pixels=max_pixels)
        if t:
            thumbs[k] = t
    if thumbs:
        return thumbs, ""
    if refs:
        why = "no listed row's image is a readable local file under the image root"
    elif root:
        why = "the image paths of these rows were not found (the input is not recorded in the run manifest)"
    else:
        return {}, ""
    return {}, f"<p class='muted'>No thumbnails: {e(why)}.</p>"


def render_report(
    summary: dict[str, Any],
    rows: Iterable[dict[str, Any]],
    title: str | None = None,
    *,
    flagged: IO[str] | None = None,
    flagged_href: str | None = None,
    data: Any = None,
    fallback_name: str | None = None,
    top_k: int = 50,
    near_k: int = 25,
) -> str:
    """The full audit report as one self-contained HTML page.

    ``title`` defaults to "vsil audit: NAME" with the dataset's name (:func:`dataset_name`, else
    ``fallback_name``). ``flagged``: a text file that receives every flagged row as CSV, linked from the
    page as ``flagged_href``. ``data``: the input, to look up image paths for the thumbnails when the
    rows do not carry them (default: the manifest's input path).
    """
    thr = float(summary.get("threshold") or 0.5)
    c = collect(rows, top_k, threshold=thr, near_k=near_k, flagged=flagged)
    name = dataset_name(summary) or fallback_name
    if title is None:
        title = f"vsil audit: {name}" if name else "vsil leakage audit"
    rate = summary.get("leak_rate")
    rate = float("nan") if rate is None else float(rate)
    cls, text = verdict(rate)
    lo, hi = summary.get("ci95") or [None, None]
    ci = f"{lo:.1%} - {hi:.1%}" if lo is not None and hi is not None else "n/a"
    man = summary.get("manifest", {})
    cfg = man.get("config") or {}
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

    seen: dict[int, dict[str, Any]] = {}
    for r in [*c["top"], *c["near"], *c["partial"]]:
        seen.setdefault(id(r), r)
    thumbs, thumb_note = _thumbs_for(summary, list(seen.values()), data)

    link = (
        f" The full list of the {c['n_leak']} leaking and {c['n_partial']} partial rows is in "
        f"<a download href='{e(urllib.parse.quote(flagged_href))}'>{e(flagged_href)}</a> beside this report."
        if flagged_href
        else ""
    )
    notice = f"<p class='notice'>Showing {len(c['top'])} of {c['n_leak']} leaks (highest score first).{link}</p>"
    partial_note = (
        f"<p class='notice'>Showing {len(c['partial'])} of {c['n_partial']} level-1 (partial) rows, highest score "
        "first: the query hints at the risk without stating it.</p>"
        if c["n_partial"]
        else "<p class='muted'>No level-1 rows.</p>"
    )
    sub = [
        f"vsil {e(str(man.get('vsil_version', '')))}",
        e(str(man.get("started", ""))),
        f"mode: {e(str((man.get('backends') or {}).get('mode', '')))}",
    ]
    if cfg.get("preset"):
        sub.append(f"preset: {e(str(cfg['preset']))}")
    inp = input_path(summary)
    if inp:
        sub.append(f"input: {e(inp)}")
    body = f"""<h1>{e(title)}</h1>
<p class="muted">{" &middot; ".join(sub)}</p>
<section id="headline"><h2>Headline</h2>
<div class="verdict {cls}">{e(text)}</div>
<div class="kpis"><div class="kpi">leak rate<b>{leak_txt}</b></div><div class="kpi">95% CI<b>{ci}</b></div>
<div class="kpi">rows<b>{summary.get("n", 0)}</b></div><div class="kpi">leaks<b>{c["n_leak"]}</b></div>
<div class="kpi">partial<b>{c["n_partial"]}</b></div><div class="kpi">errors<b>{summary.get("n_error", 0)}</b></div>
<div class="kpi">threshold<b>{thr:.2f}</b></div>{gate_html}</div>
{_trust_box(summary, c["sources"])}</section>
<section id="distribution"><h2>Levels and scores</h2><div class="charts">\
{chart_levels(summary.get("level_counts") or {})}{chart_hist(c["scores"], thr) if c["scores"] else ""}</div></section>
<section id="groups"><h2>Leak rate per category and per source</h2><div class="charts">\
{chart_rates(summary.get("per_category") or {}, "per category")}\
{chart_rates(summary.get("per_source") or {}, "per source")}</div>
<h3>per category</h3>{_rate_table(summary.get("per_category") or {})}<h3>per source</h3>\
{_rate_table(summary.get("per_source") or {})}</section>
<section id="spans"><h2>What gives the risk away</h2><p class="muted">The query words that leak most often, per \
category (top 5, counted once per leaking row, lower-cased).</p>\
{_span_table(c["spans"], summary.get("per_category") or {})}</section>
<section id="top-leaks"><h2>Top leaking samples</h2>{notice}<p class="muted">Highlighted: the query words that reveal \
the risk, and the risk terms of the image evidence.</p>{thumb_note}{_sample_rows(c["top"], thumbs, "leak-table")}\
</section>
<section id="borderline"><h2>Borderline rows</h2><p class="muted">The {len(c["near"])} rows whose score is nearest \
the threshold ({thr:.2f}): the calls most likely to be wrong, worth a human look before you drop or keep them.</p>\
{_sample_rows(c["near"], thumbs, "near-table", threshold=thr)}
<h3>Partial leaks (level 1)</h3>{partial_note}{_sample_rows(c["partial"], thumbs, "partial-table")}</section>
<section id="errors"><h2>Errors and judge statistics</h2>
<table><tr><th>error</th><th>rows</th></tr>{err_counts or "<tr><td colspan=2>none</td></tr>"}</table>
<h3>error rows (first 50)</h3><table><tr><th>id</th><th>reason</th></tr>\
{err_rows or "<tr><td colspan=2>none</td></tr>"}</table>
<h3>decisions</h3><table><tr><th>decided by / judge</th><th>rows</th></tr>\
{judge_rows or "<tr><td colspan=2>none</td></tr>"}</table></section>
<section id="manifest"><h2>Run manifest</h2><details><summary>The raw run manifest (config, backends, model, \
input hash): what produced these numbers</summary><pre>{e(json.dumps(man, indent=1, default=str))}</pre></details>\
</section>"""
    return _page(title, body)


# --- comparison -----------------------------------------------------------------------------------


def compare_rows(audits: list[tuple[str, Iterable[dict[str, Any]]]], cap: int = 50) -> list[dict[str, Any]]:
    """Rows whose call changed between the first audit and each later one (same ids, scored in both;
    ``is_leak`` or ``vsil_level`` differs). One dict per later audit: counts and up to ``cap`` flipped
    rows, largest score change first. Holds the first audit's calls (not its text) in memory."""
    if len(audits) < 2:
        return []
    base: dict[str, tuple[bool, int, float]] = {}
    for r in audits[0][1]:
        if r.get("status") == "ok":
            base[str(r.get("id"))] = (bool(r.get("is_leak")), int(r.get("vsil_level", -1)), float(r["vsil_score"]))
    out = []
    for name, rows in audits[1:]:
        common = flipped = to_leak = to_clean = level_only = 0
        heap: list[tuple[float, int, dict[str, Any]]] = []
        for i, r in enumerate(rows):
            b = base.get(str(r.get("id")))
            if b is None or r.get("status") != "ok":
                continue
            common += 1
            leak, level, score = bool(r.get("is_leak")), int(r.get("vsil_level", -1)), float(r["vsil_score"])
            if leak == b[0] and level == b[1]:
                continue
            flipped += 1
            to_leak += int(leak and not b[0])
            to_clean += int(b[0] and not leak)
            level_only += int(leak == b[0])
            item = {
                "id": str(r.get("id")),
                "query": str(r.get("query") or ""),
                "category": str(r.get("category") or ""),
                "before": {"is_leak": b[0], "vsil_level": b[1], "vsil_score": b[2]},
                "after": {"is_leak": leak, "vsil_level": level, "vsil_score": score},
            }
            _push(heap, (abs(score - b[2]), -i, item), cap)
        out.append(
            {
                "audit": name,
                "baseline": audits[0][0],
                "common": common,
                "flipped": flipped,
                "to_leak": to_leak,
                "to_clean": to_clean,
                "level_only": level_only,
                "rows": [it for _, _, it in sorted(heap, key=lambda t: (-t[0], -t[1]))],
            }
        )
    return out


def _flip_row(it: dict[str, Any]) -> str:
    b, a = it["before"], it["after"]
    delta = a["vsil_score"] - b["vsil_score"]
    return (
        f"<tr data-id='{e(it['id'])}' data-level='{e(str(a['vsil_level']))}' data-score='{a['vsil_score']:.4f}' "
        f"data-delta='{delta:.4f}' data-cat='{e(it['category'])}'><td>{e(it['id'])}</td><td>{e(it['category'])}</td>"
        f"<td class='num'>{b['vsil_level']} ({b['vsil_score']:.3f})</td>"
        f"<td class='num'>{a['vsil_level']} ({a['vsil_score']:.3f})</td>"
        f"<td class='num'>{delta:+.3f}</td><td>{e(it['query'])}</td></tr>"
    )


def _flip_section(flips: list[dict[str, Any]]) -> str:
    if not flips:
        return ""
    parts = [
        "<section id='flips'><h2>Rows whose call changed</h2><p class='muted'>Against the first audit, by row id "
        "(rows scored in both): a flip is a changed <code>is_leak</code> or <code>vsil_level</code>. Listed: the "
        "largest score changes.</p>"
    ]
    for k, f in enumerate(flips):
        tid = f"flip-table-{k}"
        rows = "".join(_flip_row(it) for it in f["rows"])
        parts.append(
            f"<h3>{e(f['baseline'])} &rarr; {e(f['audit'])}</h3><p class='notice'>{f['flipped']} of {f['common']} "
            f"common rows changed: {f['to_leak']} became leaks, {f['to_clean']} stopped being leaks, "
            f"{f['level_only']} changed level only. Showing {len(f['rows'])}.</p>"
        )
        if rows:
            parts.append(
                _controls(tid) + f"<table class='sortable' id='{tid}'><thead><tr class='hdr'><th data-sort='id'>id</th>"
                "<th data-sort='cat'>category</th><th>before: level (score)</th>"
                "<th data-sort='level' data-type='num'>after: level (score)</th>"
                "<th data-sort='delta' data-type='num'>score change</th><th>query</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>"
            )
    parts.append("</section>")
    return "".join(parts)


def _category_compare(audits: list[tuple[str, dict[str, Any]]], max_rows: int = 40) -> str:
    total: Counter[str] = Counter()
    for _, s in audits:
        for cat, v in (s.get("per_category") or {}).items():
            total[cat] += int(v.get("n") or 0)
    if not total:
        return ""
    cats = [c for c, _ in total.most_common(max_rows)]
    head = "".join(f"<th>{e(n)}: leak rate (n)</th>" for n, _ in audits)
    body = []
    for cat in cats:
        cells = []
        for _, s in audits:
            v = (s.get("per_category") or {}).get(cat)
            if v and v.get("n"):
                cells.append(f"<td class='num'>{float(v['leak_rate']):.1%} ({v['n']})</td>")
            else:
                cells.append("<td class='muted'>-</td>")
        body.append(f"<tr data-cat='{e(cat)}'><td>{e(cat)}</td>{''.join(cells)}</tr>")
    more = f"<p class='muted'>{len(total) - len(cats)} more categories not shown.</p>" if len(total) > len(cats) else ""
    return (
        "<section id='per-category'><h2>Leak rate per category</h2><table><thead><tr class='hdr'><th>category</th>"
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}</section>"
    )


def render_comparison(
    audits: list[tuple[str, dict[str, Any]]],
    title: str = "vsil audit comparison",
    flips: list[dict[str, Any]] | None = None,
) -> str:
    """Several audits side by side: one table and one chart of leak rates with intervals, the leak rate
    per category, and (with ``flips`` from :func:`compare_rows`) the rows whose call changed."""
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
        f"<tr><td>{e(name)}</td><td>{e(str(dataset_name(s) or ''))}</td><td>{s.get('n')}</td>"
        f"<td>{s.get('n_error')}</td>"
        f"<td>{(s.get('leak_rate') or 0):.1%}</td>"
        f"<td>{(s.get('ci95') or [0, 0])[0]:.1%} - {(s.get('ci95') or [0, 0])[1]:.1%}</td>"
        + "".join(f"<td>{(s.get('level_counts') or {}).get(str(i), 0)}</td>" for i in range(3))
        + f"<td>{e(str((s.get('manifest') or {}).get('backends', {}).get('mode', '')))}</td></tr>"
        for name, s in audits
    )
    body = f"""<h1>{e(title)}</h1>
<section id="comparison"><h2>Leak rates</h2><div class="charts">{chart_rates(rates, "leak rate per audit")}</div>
<table><thead><tr><th>audit</th><th>dataset</th><th>rows</th><th>errors</th><th>leak rate</th>\
<th>95% CI</th><th>level 0</th><th>level 1</th><th>level 2</th><th>mode</th></tr></thead>{rows}</table></section>
{_category_compare(audits)}{_flip_section(flips or [])}"""
    return _page(title, body, UI_SCRIPT if flips else None)


def save_report(
    path: str,
    summary: dict[str, Any],
    rows: Iterable[dict[str, Any]],
    title: str | None = None,
    *,
    data: Any = None,
    fallback_name: str | None = None,
    flagged_csv: bool = True,
) -> str:
    """The one writer of an audit's HTML report (and, beside it, the flagged-rows CSV, see
    :func:`flagged_csv_path`); returns ``path``."""
    csv_path = flagged_csv_path(path) if flagged_csv else None
    if csv_path:
        with open(csv_path, "w", encoding="utf-8", newline="") as f:
            page = render_report(
                summary,
                rows,
                title=title,
                flagged=f,
                flagged_href=os.path.basename(csv_path),
                data=data,
                fallback_name=fallback_name,
            )
    else:
        page = render_report(summary, rows, title=title, data=data, fallback_name=fallback_name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
