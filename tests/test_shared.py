"""Tests on the real benchmark data in ../shared (skipped when it is absent)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vsil.cli import main

pytestmark = pytest.mark.shared


def test_dev_audit_contract_and_auroc(shared, tmp_path):
    from sklearn.metrics import roc_auc_score

    out = tmp_path / "dev"
    assert main(["audit", str(shared / "gold" / "dev.jsonl"), "--id-col", "id", "--out", str(out), "--no-progress"]) == 0
    res = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    gold = [json.loads(x) for x in (shared / "gold" / "dev.jsonl").read_text().splitlines()]
    assert len(res) == 300 and [r["id"] for r in res] == [g["id"] for g in gold]
    assert all(r["status"] == "ok" for r in res)
    y = np.array([g["label"] == 2 for g in gold])
    assert roc_auc_score(y, [r["vsil_score"] for r in res]) >= 0.90


def test_presets_on_real_benchmarks(shared, tmp_path):
    d = shared / "data"
    assert main(["audit", str(d / "vlsbench" / "data.json"), "--preset", "vlsbench", "--out", str(tmp_path / "v"), "--no-progress"]) == 0
    v = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert v["n"] == 2241 and v["n_error"] == 1 and v["errors"] == {"empty query": 1}  # one VLSBench row has an empty instruction
    assert v["leak_rate"] < 0.15
    fs = str(d / "figstep_safebench" / "safebench.csv")
    assert main(["audit", fs, "--preset", "figstep", "--out", str(tmp_path / "q"), "--no-progress"]) == 0
    assert main(["audit", fs, "--preset", "figstep:generic", "--out", str(tmp_path / "g"), "--no-progress"]) == 0
    q = json.loads((tmp_path / "q" / "summary.json").read_text())
    g = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert q["n"] == g["n"] == 500
    assert q["leak_rate"] >= 0.9 and g["leak_rate"] <= 0.05
