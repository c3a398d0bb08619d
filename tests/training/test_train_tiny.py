"""A tiny text-harm model and semantic leak classifier trained in seconds through the training code
(``vsil.training.text_harm``, ``vsil.training.lobo``), saved, hash-checked, loaded and scored."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vsil.stages.classify import HarmRule, PartialModel, ShippedModel
from vsil.stages.features.text_harm import HASH_FILE, KEYS, TextHarmModel, load_text_harm
from vsil.training import lobo
from vsil.training import text_harm as th

DIM = 384


def _unit(X: np.ndarray) -> np.ndarray:
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def _corpus(rng: np.random.Generator, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Harmful rows point one way, benign rows the other, plus noise."""
    y = np.arange(n) % 2
    direction = _unit(rng.normal(size=(1, DIM)))[0]
    X = rng.normal(size=(n, DIM)) * 0.5 + np.where(y[:, None] == 1, 1.0, -1.0) * direction
    return _unit(X), y


def test_text_harm_fit_save_hash_load(tmp_path):
    rng = np.random.default_rng(0)
    E, y = _corpus(rng)
    w = th.sample_weights(["text_harm"] * 30 + ["advbench"] * 30, ["f1", "f2"] * 30, y)
    assert w.mean() == pytest.approx(1.0)
    model = th.fit(E, y, w, seed=0, k=5, dim=16)
    assert isinstance(model, TextHarmModel) and set(KEYS) <= set(model.params)
    assert model.dim == DIM and model.version == th.MODEL_VERSION
    p = model.proba(E)
    assert p.shape == (len(y),) and ((p >= 0) & (p <= 1)).all()
    assert p[y == 1].mean() > 0.7 > 0.3 > p[y == 0].mean()

    path = tmp_path / "text_harm.npz"
    digest = model.save(str(path))
    assert (tmp_path / HASH_FILE).read_text().strip() == digest
    loaded = load_text_harm(str(path))
    assert loaded is not None
    np.testing.assert_allclose(loaded.proba(E), p, atol=1e-6)
    # the same seed gives the same file
    again = th.fit(E, y, w, seed=0, k=5, dim=16)
    np.testing.assert_array_equal(again.params["knn_bank"], model.params["knn_bank"])
    # a tampered file is refused
    (tmp_path / HASH_FILE).write_text("0" * 64 + "\n")
    load_text_harm.cache_clear()
    with pytest.raises(ValueError, match="sha256"):
        load_text_harm(str(path))
    load_text_harm.cache_clear()


def test_tiny_semantic_classifier_lobo_and_shipped_json():
    rng = np.random.default_rng(1)
    names = ("sem_text_risk", "risk_overlap", "hint")
    hints = ("without anyone noticing", "use this on someone")
    rows = []
    for g in ("a", "b", "c", "d"):
        for i in range(15):
            label = i % 3
            harm = (0.9 if label == 2 else 0.2) + rng.normal(0, 0.05)
            rows.append((g, label, [harm, float(label == 2) + rng.normal(0, 0.1), float(label == 1)]))
    groups = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    X = np.array([r[2] for r in rows])
    hint_sims = rng.uniform(0, 1, size=(len(y), len(hints))) * (y[:, None] == 1)
    qemb = _unit(rng.normal(size=(len(y), DIM)))
    Hraw = np.hstack([X, hint_sims, qemb])
    mu, sd = Hraw.mean(0), Hraw.std(0) + 1e-9
    H = (Hraw - mu) / sd
    dev = groups == "a"
    res = lobo.run_lobo(
        X, y, groups, X[:, 0], H, X[dev], y[dev], groups[dev], X[dev, 0], H[dev], names, log=lambda *_: None
    )
    assert set(res.per_group) == {"a", "b", "c", "d"}
    assert res.summary["lobo_mean_f1"] > 0.8
    assert 0.0 < res.threshold < 1.0 and res.tau in lobo.TAU_GRID
    assert "| **worst** |" in lobo.format_lobo(res)

    clf = lobo.fit_leak(X, y, groups, names, 0.3)
    coef, b = lobo.fit_partial(H, y, groups, 0.05)
    pm = PartialModel(names, hints, True, mu, sd, coef, b, res.partial_threshold)
    meta = {"name": "tiny", "harm_head": "text_harm", "held_out": res.summary, "lobo": res.per_group}
    shipped = ShippedModel(clf, res.threshold, meta, res.calibration, None, HarmRule("sem_text_risk", res.tau), pm)
    text = shipped.to_json()
    assert "NaN" not in text
    back = ShippedModel.from_json(text)
    assert back.meta["harm_head"] == "text_harm" and back.harm_rule == HarmRule("sem_text_risk", res.tau)
    assert json.loads(text)["partial_threshold"] is None
    # the partial model's input is exactly PartialModel.vector(values, hint_sims, query_emb)
    v = back.partial_model.vector(dict(zip(names, X[0])), hint_sims[0], qemb[0])
    np.testing.assert_allclose(v, Hraw[0])
    P = back.harm_rule.apply(back.proba3(X), X[:, 0])
    assert P.shape == (len(y), 3) and np.allclose(P.sum(1), 1.0)
    assert (P[y == 2, 2] >= back.threshold).mean() > 0.8
