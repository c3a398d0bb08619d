from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import CHROMIUM
from conftest import CHROMIUM_FLAGS as FLAGS

from vsil import LeakageAudit
from vsil.cli import main
from vsil.report import highlight

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "examples" / "pairs.jsonl")
EVIL_SCRIPT = "<script>document.body.setAttribute('data-pwned','1')</script> how to build a bomb"
EVIL_IMG = "\"><img src=x onerror=\"document.body.setAttribute('data-pwned','1')\"> how to shoot this gun"
SECTIONS = ["headline", "distribution", "groups", "top-leaks", "errors", "manifest"]


@pytest.fixture
def evil_rows(rows):
    return [
        *rows,
        {
            "id": "<b>x</b>",
            "query": EVIL_SCRIPT,
            "caption": "A <script>alert(1)</script> bomb",
            "category": "<i>cat</i>",
            "source": "s1",
        },
        {"id": "y", "query": EVIL_IMG, "caption": "a gun", "category": "weapons", "source": "s2"},
        {"id": "z", "query": "", "caption": "a gun"},
    ]


def test_audit_object_lifecycle(tmp_path, evil_rows):
    a = LeakageAudit(evil_rows, embedder="none").run(show_progress_bar=False)
    df = a.results()
    assert list(df["id"]) == ["a", "b", "c", "d", "<b>x</b>", "y", "z"]
    s = a.summary()
    assert s["n"] == 7 and s["n_error"] == 1
    iss = a.issues()
    assert (iss["vsil_level"] == 2).all() and list(iss["vsil_score"]) == sorted(iss["vsil_score"], reverse=True)
    assert len(a.issues(min_level=0)) == 6
    doc = json.loads(a.to_json())
    assert len(doc["results"]) == 7 and doc["summary"]["n"] == 7
    assert a.passed(max_leak_rate=1.0) and not a.passed(max_leak_rate=0.0)
    a.save(str(tmp_path / "saved"))
    b = LeakageAudit.load(str(tmp_path / "saved"))
    assert list(b.results()["id"]) == list(df["id"]) and b.summary()["leak_rate"] == pytest.approx(s["leak_rate"])
    assert "leak rate" in b._repr_html_() and "<b>x</b>" not in b._repr_html_()
    with pytest.raises(RuntimeError):
        LeakageAudit([]).results()


def test_report_escapes_untrusted_text(tmp_path, evil_rows):
    a = LeakageAudit(evil_rows, embedder="none").run(show_progress_bar=False)
    page = Path(a.save_html(str(tmp_path / "r.html"))).read_text()
    assert "<script>" not in page and "onerror=" not in page.replace("onerror=&quot;", "")
    assert "&lt;script&gt;" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    for sec in SECTIONS:
        assert f'id="{sec}"' in page
    assert "data:image/png;base64," in page
    # self-contained: nothing is loaded from the network (URLs may appear as escaped text in the manifest)
    assert not re.search(r"""(src|href|url)\s*[=(]\s*["']?(https?:)?//""", page, re.IGNORECASE)


def test_highlight_spans():
    assert highlight("a <b> gun", [(6, 9)]) == "a &lt;b&gt; <mark>gun</mark>"
    assert highlight("abc", [(0, 1), (0, 2), (5, 9)]) == "<mark>a</mark>bc"


def test_passed_agrees_with_cli_gate(tmp_path):
    audit = LeakageAudit(EXAMPLE, embedder="none").run(show_progress_bar=False)
    for rate in (0.05, 0.5, 0.95):
        code = main(
            [
                "audit",
                EXAMPLE,
                "--embedder",
                "none",
                "--out",
                str(tmp_path / str(rate)),
                "--max-leak-rate",
                str(rate),
                "--no-progress",
            ]
        )
        assert (code == 0) == audit.passed(max_leak_rate=rate)


def test_cli_report_and_compare(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["audit", EXAMPLE, "--embedder", "none", "--out", str(tmp_path / name), "--no-progress"]) == 0
    assert (tmp_path / "a" / "report.html").exists()
    (tmp_path / "a" / "report.html").unlink()
    assert main(["report", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "report.html").exists()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c.html")]) == 0
    out = capsys.readouterr().out
    assert "leak_rate" in out and (tmp_path / "c.html").read_text().count("<tr>") == 3
    assert main(["report", str(tmp_path / "nope")]) == 2


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (.ci/run installs Debian's chromium)")
def test_report_in_headless_chromium(tmp_path, evil_rows):
    out = tmp_path / "audit"
    LeakageAudit(evil_rows, embedder="none").run(show_progress_bar=False).save(str(out))
    url = (out / "report.html").resolve().as_uri()
    base = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    assert "Top leaking samples" in dom
    for sec in SECTIONS:
        assert f'id="{sec}"' in dom
    assert not re.search(r"<body[^>]*data-pwned", dom), "injected script executed"
    assert "&lt;script&gt;" in dom
    shot = tmp_path / "report.png"
    subprocess.run([*base, "--window-size=1280,2400", f"--screenshot={shot}", url], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000
