"""Risk extraction from image evidence and the taxonomy it reads."""

from __future__ import annotations

from vsil.stages.risk.risk import extract_risk, image_risk
from vsil.stages.risk.taxonomy import load_taxonomy


def test_risk_extraction_spans_and_lemmas():
    cap = "Two loaded rifles and a box of sleeping pills next to a swastika flag."
    terms = extract_risk(cap)
    found = {t.lemma: t for t in terms}
    assert {"rifle", "sleep pill", "swastika"} <= set(found)
    t = found["rifle"]
    assert cap[t.start : t.end] == "rifles" and t.category == "violent"
    assert found["swastika"].category == "hate"
    assert image_risk(terms) > 0.9
    assert image_risk(extract_risk("A child's playroom with toys")) < 0.3


def test_strong_terms_are_the_full_weight_terms_of_every_subcategory():
    tax = load_taxonomy()
    strong = tax.strong_terms()
    assert [(c, s) for c, s, _, _ in strong] == [
        (c["id"], s["id"]) for c in tax.raw["categories"] for s in c["subcategories"]
    ]
    for cid, sid, name, terms in strong:
        assert tax.subcategories[sid] == (cid, name)
        assert terms and all("~" not in t for t in terms)
    assert not hasattr(tax, "concepts")
    from vsil.stages.evidence.clip import risk_concepts

    concepts = risk_concepts(tax, per_subcategory=2)
    assert concepts == [(t, sid, cid) for cid, sid, _, terms in strong for t in terms[:2]]
