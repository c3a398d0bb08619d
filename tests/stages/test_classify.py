"""Stage ``classify``: the shipped classifier (plain JSON arrays), the level rule, the estimator that fits
it, ``ClassifyStage`` and a custom classifier with its own harm model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vsil import VSILConfig
from vsil.stages.classify import ClassifyStage, ShippedModel, load_classifier
from vsil.training.estimator import LeakageClassifier


def test_classifier_roundtrip_and_load_path(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 3))
    y = np.array([0, 1, 2] * 30)
    X[y == 2, 0] += 3
    clf = LeakageClassifier(feature_names=("a", "b", "c")).fit(X, y)
    m = ShippedModel(clf.model_, 0.4, {"name": "t", "auroc": float("nan")}, partial_threshold=0.25)
    p = tmp_path / "m.json"
    p.write_text(m.to_json())
    meta = json.loads(p.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))["meta"]
    assert meta["auroc"] is None
    m2 = load_classifier(str(p))
    np.testing.assert_allclose(m2.leak_proba(X), m.leak_proba(X))
    assert m2.threshold == 0.4 and m2.partial_threshold == 0.25 and list(m2.clf.classes_) == [0, 1, 2]
    bad = json.loads(p.read_text())
    bad["classifier"]["kind"] = "pickle"
    p.write_text(json.dumps(bad))
    load_classifier.cache_clear()
    with pytest.raises(ValueError, match="unknown classifier kind"):
        load_classifier(str(p))


def test_level_rule_and_partial_threshold_choice():
    from vsil.stages.classify import level_rule
    from vsil.training.evaluate import choose_partial_threshold

    P = np.array([[0.7, 0.1, 0.2], [0.3, 0.3, 0.4], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2], [0.8, 0.15, 0.05]])
    assert level_rule(P, 0.5, None).tolist() == [0, 0, 2, 1, 0]  # below the threshold: P(1) > P(0)
    assert level_rule(P, 0.5, 0.3).tolist() == [0, 1, 2, 0, 0]  # below the threshold: P(2) >= 0.3
    assert level_rule(P, 0.3, 0.4).tolist() == [0, 2, 2, 0, 0]  # a partial threshold above the threshold never fires
    # gold partial leaks sit where P(2) is middling: a partial threshold wins over the P(1) rule
    assert choose_partial_threshold(np.array([0, 1, 2, 0, 0]), P, 0.5) == 0.4  # ties: the highest
    # gold partial leaks where P(1) is high: the multinomial rule wins
    assert choose_partial_threshold(np.array([0, 0, 2, 1, 0]), P, 0.5) is None


def test_shipped_model_files_are_plain_data():
    from importlib import resources

    m = load_classifier()
    assert m.feature_names and 0 < m.threshold < 1
    with resources.as_file(resources.files("vsil").joinpath("data/harm_model.npz")) as p:
        with np.load(p, allow_pickle=False) as z:
            assert z["values"].dtype == np.float32


def test_sklearn_compatible_estimator():
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 2))
    y = np.where(X[:, 0] > 0.5, 2, np.where(X[:, 0] > -0.5, 1, 0))
    clf = LeakageClassifier(C=2.0, feature_names=("a", "b"))
    assert clone(clf).get_params()["C"] == 2.0
    assert cross_val_score(clf, X, y, cv=3).mean() > 0.7


def test_classifier_registry_picks_the_shipped_or_a_file(tmp_path):
    from vsil.errors import UsageError
    from vsil.registry import CLASSIFIERS
    from vsil.stages.classify import classifier_backend

    cfg = VSILConfig(embedder="none")
    assert classifier_backend(cfg, semantic=False) == "lexical" and classifier_backend(cfg, semantic=True) == "semantic"
    lex = CLASSIFIERS.build("lexical", cfg, semantic=False)
    sem = CLASSIFIERS.build("semantic", cfg, semantic=True)
    assert lex.meta["name"] == "lexical-logreg" and sem.meta["name"] == "semantic-logreg"
    assert any(n.startswith("sem_") for n in sem.feature_names) and not any(
        n.startswith("sem_") for n in lex.feature_names
    )
    missing = VSILConfig(embedder="none", classifier_path=str(tmp_path / "nope.json"))
    assert classifier_backend(missing, semantic=True) == "file"
    assert CLASSIFIERS.describe("file", missing) == str(tmp_path / "nope.json")
    with pytest.raises(UsageError, match="classifier file not found"):
        CLASSIFIERS.build("file", missing)


def test_classify_stage_applies_threshold_and_levels(rows):
    from vsil.pipeline import Pipeline

    p = Pipeline(VSILConfig(embedder="none")).load()
    from vsil.io.readers import iter_records

    [recs] = list(iter_records(rows))
    ev = p.evidence.run(recs)
    feats = p.features.run(list(zip(recs, ev)))
    items = list(zip(recs, ev, feats))
    base = p.classify.run(items)
    assert p.classify.threshold == p.model.threshold
    assert [r.id for r in base] == ["a", "b", "c", "d"] and all(r.decided_by == "classifier" for r in base)
    assert all(r.is_leak == (r.vsil_score >= p.model.threshold) for r in base)
    low, high = ClassifyStage(p.model, 0.0, p.features.harm), ClassifyStage(p.model, 1.0, p.features.harm)
    assert all(r.is_leak for r in low.run(items)) and not any(r.is_leak for r in high.run(items))
    assert [r.vsil_score for r in low.run(items)] == [r.vsil_score for r in base]
    assert ClassifyStage(p.model, None, p.features.harm).run([]) == []
    for r, rec in zip(base, recs):
        assert (r.query, r.row, r.source, r.category) == (rec.query, rec.row, rec.source, rec.category)
        for s in r.leaked_spans:
            assert rec.query[s["start"] : s["end"]] == s["text"]
        assert r.vsil_level != 0 or r.leaked_spans == []


def test_custom_classifier_uses_the_harm_model_trained_beside_it(tmp_path):
    """A folder written by `vsil train --out DIR`: its classifier comes with its own harm model; a
    classifier file alone keeps the shipped one."""
    from importlib import resources

    from vsil.pipeline import Pipeline
    from vsil.stages.features.harm import HarmModel, load_harm_model

    shipped = load_harm_model()
    clf = resources.files("vsil").joinpath("data/classifier_lexical.json").read_text(encoding="utf-8")
    (tmp_path / "alone").mkdir()
    (tmp_path / "alone" / "classifier_lexical.json").write_text(clf)
    alone = Pipeline(VSILConfig(embedder="none", classifier_path=str(tmp_path / "alone" / "classifier_lexical.json")))
    alone.load()
    assert alone.features.harm.intercept_ == shipped.intercept_ and alone.classify.harm is alone.features.harm
    (tmp_path / "classifier_lexical.json").write_text(clf)
    HarmModel(shipped.coef_ * 2, shipped.intercept_ - 1.0, shipped.meta).save(str(tmp_path / "harm_model.npz"))
    own = Pipeline(VSILConfig(embedder="none", classifier_path=str(tmp_path / "classifier_lexical.json"))).load()
    assert own.features.harm.intercept_ == pytest.approx(shipped.intercept_ - 1.0)
    np.testing.assert_allclose(own.features.harm.coef_, shipped.coef_ * 2, rtol=1e-6)
    assert own.classify.harm is own.features.harm
    assert own.describe()["backends"]["classifier"] == own.model.meta["name"]
