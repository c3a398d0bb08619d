"""Screenshot vsil reports in headless Chromium (the pictures in docs/report.md).

python scripts/report_screenshot.py                      # audit the dev set (or the example), screenshot it
python scripts/report_screenshot.py --audit DIR [--data INPUT] [--anchor borderline] --out docs/img/x.png
python scripts/report_screenshot.py --compare DIR DIR... --out docs/img/compare.png

``--audit`` rebuilds DIR/report.html from a saved audit first (``--data``: the audited input, so the
report can find the images of the listed rows for thumbnails). ``--anchor`` scrolls to a section
(``top-leaks``, ``borderline``, ``spans``, ...): only that section is shot.

The docs' pictures:

    vsil audit ../shared/data/vlsbench/data.json --preset vlsbench --out /tmp/vls
    vsil audit ../shared/data/vlsbench/data.json --preset vlsbench --embedder none --out /tmp/vls_lexical
    head -101 ../shared/data/figstep_safebench/safebench.csv > /tmp/figstep100.csv
    vsil audit /tmp/figstep100.csv --preset figstep --evidence ocr \\
        --image-root ../shared/data/figstep_safebench --batch-size 64 --out /tmp/figstep
    python scripts/report_screenshot.py --audit /tmp/vls --out docs/img/report.png
    python scripts/report_screenshot.py --audit /tmp/figstep --data /tmp/figstep100.csv --anchor top-leaks \\
        --out docs/img/report_figstep.png
    python scripts/report_screenshot.py --audit /tmp/figstep --data /tmp/figstep100.csv --anchor borderline \\
        --out docs/img/report_borderline.png
    python scripts/report_screenshot.py --compare /tmp/vls /tmp/vls_lexical --out docs/img/compare.png
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from vsil.cli import main as vsil_main

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def only_section(page: str, anchor: str) -> str:
    """The page with its title and the one section ``anchor`` (headless Chromium screenshots ignore a
    URL fragment's scroll, so a section deep in the page is cut out instead). The static script and its
    CSP hash stay as they are."""
    m = re.search(rf"<section id=[\"']{re.escape(anchor)}[\"']", page)
    if not m:
        sys.exit(f"no section {anchor!r} in the report")
    end = page.index("</section>", m.start()) + len("</section>")
    body = page.index("<body>") + len("<body>")
    h1 = page[body : page.index("</h1>", body) + len("</h1>")]
    tail = page.find('<script id="vsil-ui">')
    return page[:body] + h1 + page[m.start() : end] + (page[tail:] if tail >= 0 else "</body></html>")


def shoot(chromium: str, html_path: str, out: str, anchor: str | None, size: str) -> None:
    with tempfile.TemporaryDirectory() as profile:
        if anchor:
            cut = os.path.join(profile, "section.html")
            Path(cut).write_text(only_section(Path(html_path).read_text(encoding="utf-8"), anchor), encoding="utf-8")
            html_path = cut
        url = Path(html_path).resolve().as_uri()
        subprocess.run(
            [chromium, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}", f"--screenshot={out}", url],
            check=True,
            capture_output=True,
            timeout=120,
        )
    print(f"wrote {out}")


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    dev = os.path.join(here, "..", "..", "shared", "gold", "dev.jsonl")
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", help="the input to audit (default: the dev set, else the example); with --audit: the audited input"
    )
    ap.add_argument("--audit", metavar="DIR", help="screenshot the report of this saved audit (rebuilt first)")
    ap.add_argument("--compare", metavar="DIR", nargs="+", help="screenshot `vsil compare DIR...`")
    ap.add_argument("--anchor", help="section id to scroll to (top-leaks, borderline, spans, flips, ...)")
    ap.add_argument("--size", default="1280,2600", help="window size W,H")
    ap.add_argument("--out", default=os.path.join(here, "..", "docs", "img", "report.png"))
    a = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("chromium not found (apt-get install chromium)")
    out = os.path.abspath(a.out)
    if a.compare:
        from vsil.audit import compare

        with tempfile.TemporaryDirectory() as tmp:
            page = os.path.join(tmp, "compare.html")
            print(compare(a.compare, page).to_string(index=False))
            shoot(chromium, page, out, a.anchor, a.size)
        return
    if a.audit:
        from vsil.audit import write_report

        shoot(chromium, write_report(a.audit, data=a.data), out, a.anchor, a.size)
        return
    data = a.data or (dev if os.path.exists(dev) else os.path.join(here, "..", "examples", "pairs.jsonl"))
    with tempfile.TemporaryDirectory() as tmp:
        vsil_main(["audit", data, "--out", tmp, "--no-progress"])
        from vsil.audit import write_report

        shoot(chromium, write_report(tmp, data=data), out, a.anchor, a.size)


if __name__ == "__main__":
    main()
