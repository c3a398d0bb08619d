"""Audit the dev set (or the example data), then screenshot report.html in headless Chromium.

python scripts/report_screenshot.py [--data ../shared/gold/dev.jsonl] [--out docs/img/report.png]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

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
]


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    dev = os.path.join(here, "..", "..", "shared", "gold", "dev.jsonl")
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--data", default=dev if os.path.exists(dev) else os.path.join(here, "..", "examples", "pairs.jsonl")
    )
    ap.add_argument("--out", default=os.path.join(here, "..", "docs", "img", "report.png"))
    a = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("chromium not found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as tmp:
        vsil_main(["audit", a.data, "--out", tmp, "--no-progress"])
        url = "file://" + os.path.join(tmp, "report.html")
        subprocess.run(
            [
                chromium,
                *FLAGS,
                f"--user-data-dir={tmp}/profile",
                "--window-size=1280,2600",
                f"--screenshot={os.path.abspath(a.out)}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
