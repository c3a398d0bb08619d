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
    assert (
        main(["audit", str(shared / "gold" / "dev.jsonl"), "--id-col", "id", "--out", str(out), "--no-progress"]) == 0
    )
    res = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    gold = [json.loads(x) for x in (shared / "gold" / "dev.jsonl").read_text().splitlines()]
    assert len(res) == 300 and [r["id"] for r in res] == [g["id"] for g in gold]
    assert all(r["status"] == "ok" for r in res)
    y = np.array([g["label"] == 2 for g in gold])
    assert roc_auc_score(y, [r["vsil_score"] for r in res]) >= 0.90


def test_presets_on_real_benchmarks(shared, tmp_path):
    d = shared / "data"
    assert (
        main(
            [
                "audit",
                str(d / "vlsbench" / "data.json"),
                "--preset",
                "vlsbench",
                "--out",
                str(tmp_path / "v"),
                "--no-progress",
            ]
        )
        == 0
    )
    v = json.loads((tmp_path / "v" / "summary.json").read_text())
    assert (
        v["n"] == 2241 and v["n_error"] == 1 and v["errors"] == {"empty query": 1}
    )  # one VLSBench row has an empty instruction
    # VLSBench is built so that the image carries the risk (about 4% of its dev rows leak): the detector chosen
    # by leave-one-benchmark-out calls 22% of it a leak (the model before it, which trained on VLSBench rows and
    # chose its threshold on dev, 7%); the model card states this cost. The bound guards against a collapse.
    assert v["leak_rate"] < 0.30
    fs = str(d / "figstep_safebench" / "safebench.csv")
    assert main(["audit", fs, "--preset", "figstep", "--out", str(tmp_path / "q"), "--no-progress"]) == 0
    assert main(["audit", fs, "--preset", "figstep:generic", "--out", str(tmp_path / "g"), "--no-progress"]) == 0
    q = json.loads((tmp_path / "q" / "summary.json").read_text())
    g = json.loads((tmp_path / "g" / "summary.json").read_text())
    assert q["n"] == g["n"] == 500
    assert q["leak_rate"] >= 0.9 and g["leak_rate"] <= 0.05


def test_train_reproduces_the_shipped_lexical_model(shared, tmp_path):
    """`vsil train` rebuilds the shipped models deterministically (the lexical half: the semantic half
    needs the same code path plus MiniLM and takes a minute)."""
    from importlib import resources

    from vsil.training.train import train

    report = train(str(shared), str(tmp_path), semantic=False, log=lambda *a: None)
    shipped = json.loads(resources.files("vsil").joinpath("data/classifier_lexical.json").read_text(encoding="utf-8"))
    built = json.loads((tmp_path / "classifier_lexical.json").read_text(encoding="utf-8"))
    for key in ("threshold", "partial_threshold", "calibration"):
        assert built[key] == pytest.approx(shipped[key], abs=1e-9), key
    for key in ("coef", "intercept", "mean", "scale"):
        np.testing.assert_allclose(built["classifier"][key], shipped["classifier"][key], atol=1e-8, err_msg=key)
    assert built["meta"]["judge_band"] == shipped["meta"]["judge_band"]
    assert built["meta"]["dev_metrics_loso"] == pytest.approx(shipped["meta"]["dev_metrics_loso"])
    with (
        np.load(tmp_path / "harm_model.npz") as got,
        np.load(str(resources.files("vsil").joinpath("data/harm_model.npz"))) as ref,
    ):
        for k in ref.files:
            if ref[k].dtype.kind in "iuf":
                np.testing.assert_allclose(got[k], ref[k], atol=1e-8, err_msg=k)
            else:
                assert got[k] == ref[k], k
    lex = report.models["lexical"]
    assert lex.overall_loso["n"] == 300 and lex.overall_loso["auroc"] > 0.9
    # every training source is also scored by a classifier fitted without it
    assert {s: m["n"] for s, m in lex.train_loso.items()} == report.n_train
    for src, metrics in shipped["meta"]["train_pairs_leave_source_out"].items():
        assert built["meta"]["train_pairs_leave_source_out"][src] == pytest.approx(metrics), src
    # strict JSON: an undefined metric (vlsafe's dev rows are all leaks, so no AUROC) is null, never NaN
    assert "NaN" not in (tmp_path / "classifier_lexical.json").read_text(encoding="utf-8")
    assert built["meta"]["dev_metrics_loso_per_source"]["vlsafe"]["auroc"] is None


def test_text_prompt_pairs_and_cross_fitting_exclusion(shared):
    """The text-only prompt pairs carry their prompt-set label on an unrelated VLGuard caption, and a
    query given to ``exclude`` leaves the harm corpus (so its cross-fitted text_risk is honest)."""
    from vsil.training.corpora import benchmark_pairs, harm_corpus, text_prompts, vlguard_train_pairs

    harmful, benign = text_prompts(str(shared))
    pairs = [p for p in benchmark_pairs(str(shared), set()) if p.source == "text_prompts"]
    assert sum(p.label == 2 for p in pairs) == sum(p.label == 0 for p in pairs) == 400
    assert {p.query for p in pairs if p.label == 2} <= set(harmful)
    assert {p.query for p in pairs if p.label == 0} <= set(benign)
    captions = {p.caption for p in vlguard_train_pairs(str(shared))[0]}
    assert all(p.caption in captions for p in pairs)
    q = pairs[0].query
    texts, _ = harm_corpus(str(shared))
    assert q in texts and q not in harm_corpus(str(shared), exclude={q})[0]
