from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vsil.cli import main

REPO = Path(__file__).resolve().parents[1]


def run(args: list[str]) -> int:
    return main(args)


def test_audit_example_writes_results_and_summary(tmp_path, capsys):
    out = tmp_path / "o"
    assert run(["audit", str(REPO / "examples" / "pairs.jsonl"), "--out", str(out), "--no-progress"]) == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    src = (REPO / "examples" / "pairs.jsonl").read_text().splitlines()
    assert len(lines) == len(src)
    assert [json.loads(x)["id"] for x in lines] == [json.loads(x)["id"] for x in src]
    s = json.loads((out / "summary.json").read_text())
    assert s["n"] == len(src) and 0 < s["leak_rate"] < 1 and len(s["ci95"]) == 2
    assert s["manifest"]["vsil_version"] and s["manifest"]["data_sha256"]
    assert "leak rate" in capsys.readouterr().out


def test_gate_exit_codes(tmp_path):
    ex = str(REPO / "examples" / "pairs.jsonl")
    assert run(["audit", ex, "--out", str(tmp_path / "a"), "--max-leak-rate", "1.0", "--no-progress"]) == 0
    assert run(["audit", ex, "--out", str(tmp_path / "b"), "--max-leak-rate", "0.05", "--no-progress"]) == 1
    s = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert s["gate"] == {"max_leak_rate": 0.05, "passed": False}


def test_usage_errors_exit_2(tmp_path, capsys):
    assert run(["audit", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    csvp = tmp_path / "d.csv"
    csvp.write_text("prompt,caption\nhello,a gun\n")
    assert run(["audit", str(csvp), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "missing column 'query'" in err and err.count("\n") == 1
    assert run(["audit", str(csvp), "--query-col", "prompt", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    assert run(["audit", str(csvp), "--preset", "nope", "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(SystemExit) as e:
        run(["audit"])
    assert e.value.code == 2


def test_bad_rows_in_output(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(b'{"id": "x", "query": "how to shoot this gun", "caption": "a gun"}\n{oops\n{"id": "z", "query": "", "caption": "c"}\n')
    assert run(["audit", str(p), "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    res = [json.loads(x) for x in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in res] == ["ok", "error", "error"]
    assert res[1]["vsil_score"] is None and "broken JSON" in res[1]["error"]


def test_console_script_version_and_help():
    exe = Path(sys.executable).with_name("vsil")
    v = subprocess.run([str(exe), "--version"], capture_output=True, text=True)
    assert v.returncode == 0 and v.stdout.startswith("vsil ")
    h = subprocess.run([str(exe), "audit", "--help"], capture_output=True, text=True)
    assert "examples:" in h.stdout and "--max-leak-rate" in h.stdout
    b = subprocess.run([str(exe), "backends"], capture_output=True, text=True)
    assert b.returncode == 0 and "vlsbench" in b.stdout
