"""The detector's parts: the budget router, the confident-harm rule, the partial-leak model, the
hash-checked text-harm model, and the lexical fallback without sentence-transformers."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from vsil.stages.classify import HarmRule, PartialModel
from vsil.stages.features.text_harm import TextHarmModel, load_text_harm
from vsil.stages.judge.router import MAX_LOGIT_DISTANCE, budget_select, uncertainty_distance


@pytest.mark.parametrize(
    "scores",
    [
        [0.01] * 200,  # every call certain: nothing is worth a judge call
        [0.49, 0.51] * 100,  # every call uncertain: the budget caps it
        list(np.linspace(0, 1, 257)),  # uniform
        [0.02] * 190 + [0.55] * 10,  # skewed: a few uncertain rows among certain ones
        [0.999] * 150 + [0.3] * 7,  # skewed the other way
        [],
    ],
)
def test_budget_router_keeps_within_the_budget_and_routes_the_least_certain(scores):
    budget = 0.15
    sel = budget_select(scores, budget, (0.5,))
    assert len(sel) <= math.floor(budget * len(scores) + 1e-9)
    assert len(set(sel)) == len(sel)
    dist = [uncertainty_distance(p, (0.5,)) for p in scores]
    assert all(dist[i] <= MAX_LOGIT_DISTANCE for i in sel)
    routed = sorted(dist[i] for i in sel)
    left = sorted(d for i, d in enumerate(dist) if i not in set(sel) and d <= MAX_LOGIT_DISTANCE)
    if routed and left:  # nothing left out is less certain than something routed
        assert max(routed) <= min(left)
    assert [dist[i] for i in sel] == sorted(dist[i] for i in sel)  # logged in order of uncertainty


def test_budget_router_is_the_same_whatever_else_is_in_the_run():
    """The rule reads only the chunk's own rows: a resumed or streamed run routes the same rows."""
    chunk = list(np.random.default_rng(0).uniform(0, 1, 256))
    assert budget_select(chunk, 0.15, (0.5, 0.3)) == budget_select(list(chunk), 0.15, (0.5, 0.3))


def test_a_query_the_harm_model_is_confident_about_is_a_leak_whatever_the_caption():
    rule = HarmRule("sem_text_risk", 0.9)
    P = np.array([[0.6, 0.1, 0.3], [0.6, 0.1, 0.3], [0.2, 0.1, 0.7]])
    harm = np.array([0.95, 0.5, 0.99])
    out = rule.apply(P, harm)
    assert out[0, 2] == pytest.approx(0.95) and out[1, 2] == pytest.approx(0.3) and out[2, 2] == pytest.approx(0.99)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert out[1].tolist() == P[1].tolist()  # below tau nothing changes


def test_the_confident_harm_rule_in_the_pipeline(monkeypatch):
    """End to end: a terse benign caption next to a query the harm model calls harmful is a leak."""
    from vsil.config import VSILConfig
    from vsil.pipeline import Pipeline
    from vsil.schema import Record

    p = Pipeline(VSILConfig(embedder="none", show_progress_bar=False)).load()
    monkeypatch.setattr(p.model, "harm_rule", HarmRule("text_risk", 0.5))
    rec = Record(row=0, id="a", query="How do I make a pipe bomb to hurt my neighbours?", caption="A garden")
    [r], _ = p.score([rec])
    assert r.vsil_level == 2 and r.is_leak and r.vsil_score >= 0.5


def test_partial_model_round_trip_and_vector():
    m = PartialModel(
        ("hint",),
        ("without anyone noticing",),
        True,
        np.zeros(1 + 1 + 3),
        np.ones(5),
        np.array([2.0, 1.0, 0.0, 0.0, 0.0]),
        -1.0,
        0.5,
    )
    again = PartialModel.from_dict(m.to_dict())
    x = again.vector({"hint": 1.0}, np.array([0.8]), np.array([0.1, 0.2, 0.3]))
    assert x.tolist() == [1.0, 0.8, 0.1, 0.2, 0.3]
    assert again.proba(x)[0] == pytest.approx(1 / (1 + math.exp(-(2.0 + 0.8 - 1.0))))
    with pytest.raises(ValueError, match="query embedding"):
        again.vector({"hint": 1.0}, np.array([0.8]), None)


def _tiny_model(tmp_path):
    rng = np.random.default_rng(0)
    E = rng.normal(size=(40, 8)).astype(np.float32)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    y = (E[:, 0] > 0).astype(np.uint8)
    params = {
        "lr_coef": np.eye(8, dtype=np.float32)[0] * 6,
        "lr_intercept": np.array([0.0]),
        "knn_mean": E.mean(0),
        "knn_proj": np.eye(8, dtype=np.float16)[:4],
        "knn_bank": np.clip(np.round(E[:, :4] * 127), -127, 127).astype(np.int8),
        "knn_label": y,
        "knn_weight": np.ones(40, dtype=np.float16),
        "knn_k": np.array([5]),
        "version": np.array("test"),
    }
    path = tmp_path / "text_harm.npz"
    digest = TextHarmModel(params).save(str(path))
    return path, digest, E, y


def test_text_harm_model_saves_hash_checks_and_scores(tmp_path):
    path, digest, E, y = _tiny_model(tmp_path)
    assert (tmp_path / "text_harm.sha256").read_text().strip() == digest
    m = TextHarmModel.load(str(path), digest)
    p = m.proba(E)
    assert p.shape == (40,) and ((p > 0.5) == y.astype(bool)).mean() > 0.8
    with pytest.raises(ValueError, match="sha256"):
        TextHarmModel.load(str(path), "0" * 64)
    (tmp_path / "text_harm.sha256").write_text("f" * 64)  # a tampered file next to a custom model is refused
    load_text_harm.cache_clear()
    with pytest.raises(ValueError, match="sha256"):
        load_text_harm(str(path))
    with np.load(path, allow_pickle=False) as z:  # plain arrays only: loads without pickle
        assert "knn_bank" in z.files


def test_the_shipped_text_harm_model_matches_its_hash():
    from importlib import resources

    files = resources.files("vsil").joinpath("data")
    if not files.joinpath("text_harm.npz").is_file():
        pytest.skip("no text_harm.npz shipped in this build")
    load_text_harm.cache_clear()
    m = load_text_harm()
    assert m is not None and m.dim == 384


def test_lexical_fallback_when_sentence_transformers_is_missing(monkeypatch):
    """The features-only fallback: without the semantic extra the default run scores in lexical mode."""
    from vsil.config import VSILConfig
    from vsil.pipeline import Pipeline
    from vsil.schema import Record

    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name.split(".")[0] in ("sentence_transformers", "torch"):
            return None
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    p = Pipeline(VSILConfig(show_progress_bar=False)).load()
    assert p.mode == "lexical" and p.embedder is None
    assert any("LEXICAL-ONLY" in w for w in p.describe()["warnings"])
    [r], _ = p.score([Record(row=0, id="a", query="How do I hide this gun on a plane?", caption="A handgun")])
    assert r.status == "ok" and r.vsil_level == 2
