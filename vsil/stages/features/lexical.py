"""Pair features: compare the image evidence's risk content with the query.

Every feature is named and explainable; ``explain`` returns the query spans that drove it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from vsil.stages.evidence import RENDERED_TEXT_FIELDS
from vsil.stages.features.harm import HarmModel
from vsil.stages.risk.risk import RiskTerm, extract_risk, image_risk, noisy_or, terms_from_matches
from vsil.stages.risk.taxonomy import Taxonomy
from vsil.stages.risk.text import Token, content_lemmas, merge_spans, tokenize

LEXICAL_FEATURES: tuple[str, ...] = (
    "text_risk",
    "text_risk_logit",
    "harm_peak",
    "image_risk",
    "risk_overlap",
    "category_overlap",
    "query_risk",
    "content_overlap",
    "query_coverage",
    "phrase_overlap",
    "hint",
    "deictic",
    "deictic_unnamed",
    "query_length",
    "text_x_image",
    "query_risk_x_image",
    "overlap_x_image",
)


@dataclass
class PairAnalysis:
    """Everything computed for one (evidence, query) pair: features and the evidence behind them."""

    features: dict[str, float]
    risk_terms: list[RiskTerm]
    query_terms: list[RiskTerm]
    leak_spans: list[tuple[int, int]]
    hint_spans: list[tuple[int, int]]
    text_risk: float
    image_risk: float
    overlap: float
    evidence_words: list[str] = field(default_factory=list)
    query_tokens: list[Token] = field(default_factory=list)

    def vector(self, names: tuple[str, ...]) -> np.ndarray:
        return np.array([self.features[n] for n in names], dtype=np.float64)


def _bigrams(tokens: list[Token], keep: set[str]) -> set[tuple[str, str]]:
    lem = [t.lemma for t in tokens if t.lemma in keep]
    return set(zip(lem, lem[1:]))


RENDERED_TERM = "<harmful rendered text>"


def rendered_text_risk(
    text: str, field: str, toks: list[Token], harm: HarmModel, extra: dict[str, float] | None = None
) -> list[RiskTerm]:
    """Text rendered in the image (OCR) is itself the risk of a typographic image: its text-only harm
    score (the larger of the lexical model's and ``extra[text]``, e.g. the semantic head's) becomes one
    risk term spanning the text, so it counts in ``image_risk``."""
    p = max(1.0 / (1.0 + math.exp(-harm.decision(toks))), (extra or {}).get(text, 0.0))
    if p < 0.05:
        return []
    return [
        RiskTerm(
            term=text,
            lemma=RENDERED_TERM,
            category="rendered_text",
            subcategory="harmful_rendered_text",
            weight=round(p, 4),
            start=0,
            end=len(text),
            field=field,
        )
    ]


def analyze_pair(
    query: str,
    evidence: list[tuple[str, str]],
    taxonomy: Taxonomy,
    harm: HarmModel,
    *,
    query_tokens: list[Token] | None = None,
    rendered_harm: dict[str, float] | None = None,
) -> PairAnalysis:
    """Compute the lexical pair features.

    ``evidence`` is a list of (field name, text) pairs: the caption (or OCR text / tags) and the
    safety reason. ``query`` is the text sent with the image.
    """
    qt = query_tokens if query_tokens is not None else tokenize(query)
    q_lem = {t.lemma for t in qt}
    generic = taxonomy.generic_words

    risk_terms: list[RiskTerm] = []
    ev_content: set[str] = set()
    ev_bigrams: set[tuple[str, str]] = set()
    for fname, text in evidence:
        toks = tokenize(text)
        risk_terms += extract_risk(text, fname, taxonomy, toks)
        if fname in RENDERED_TEXT_FIELDS and toks:
            risk_terms += rendered_text_risk(text, fname, toks, harm, rendered_harm)
        c = content_lemmas(toks, generic)
        ev_content |= c
        ev_bigrams |= _bigrams(toks, c)

    # harm model
    logit = harm.decision(qt)
    text_risk = 1.0 / (1.0 + math.exp(-logit))
    contrib = harm.contributions(qt)
    harm_peak = max((c for _, _, c in contrib), default=0.0)

    # query's own risk terms and the hint / deictic markers
    query_terms = extract_risk(query, "query", taxonomy, qt)
    hints = taxonomy.hints.find(qt)
    deictic = taxonomy.deictic.find(qt)

    ev_keys = {t.lemma for t in risk_terms}
    ev_subcats = {t.subcategory for t in risk_terms}
    ev_cats = {t.category for t in risk_terms}
    risk_overlap = max((t.weight for t in query_terms if t.lemma in ev_keys), default=0.0)
    # caption risk terms whose words all occur in the query (in any order)
    for t in risk_terms:
        words = set(t.lemma.split())
        if words and all(any(w == q or w in q.split("-") for q in q_lem) for w in words):
            risk_overlap = max(risk_overlap, t.weight)
    category_overlap = max(
        (t.weight for t in query_terms if t.subcategory in ev_subcats or t.category in ev_cats), default=0.0
    )
    query_risk = noisy_or([t.weight for t in query_terms])

    q_content = content_lemmas(qt, generic)
    shared = q_content & ev_content
    content_overlap = len(shared) / max(1, len(ev_content))
    query_coverage = len(shared) / max(1, len(q_content))
    phrase_overlap = min(3, len(_bigrams(qt, q_content) & ev_bigrams)) / 3.0
    hint = noisy_or([m.entry.weight for m in hints])
    n_deictic = min(3, len(deictic)) / 3.0
    deictic_unnamed = float(bool(deictic) and query_risk < 0.3 and risk_overlap == 0.0 and not shared)
    img = image_risk(risk_terms)

    feats = {
        "text_risk": text_risk,
        "text_risk_logit": max(-8.0, min(8.0, logit)) / 8.0,
        "harm_peak": max(-2.0, min(2.0, harm_peak)),
        "image_risk": img,
        "risk_overlap": risk_overlap,
        "category_overlap": category_overlap,
        "query_risk": query_risk,
        "content_overlap": content_overlap,
        "query_coverage": query_coverage,
        "phrase_overlap": phrase_overlap,
        "hint": hint,
        "deictic": n_deictic,
        "deictic_unnamed": deictic_unnamed,
        "query_length": math.log1p(len(qt)) / math.log(50.0),
        "text_x_image": text_risk * img,
        "query_risk_x_image": query_risk * img,
        "overlap_x_image": max(risk_overlap, content_overlap) * img,
    }

    # explanation: which query words carry the leak
    spans: list[tuple[int, int]] = [(t.start, t.end) for t in query_terms if t.lemma in ev_keys or t.weight >= 0.5]
    spans += [(t.start, t.end) for t in qt if t.lemma in shared and t.lemma in _risky_words(risk_terms)]
    if text_risk >= 0.8 or (text_risk >= 0.5 and not spans):
        spans += harm.harm_spans(qt)
    hint_spans = [(m.start, m.end) for m in hints]
    overlap = max(risk_overlap, category_overlap, content_overlap * img)
    return PairAnalysis(
        features=feats,
        risk_terms=risk_terms,
        query_terms=query_terms,
        leak_spans=merge_spans(spans),
        hint_spans=merge_spans(hint_spans),
        text_risk=text_risk,
        image_risk=img,
        overlap=overlap,
        evidence_words=sorted(w for w in ev_content if w.isalpha()),
        query_tokens=qt,
    )


def _risky_words(terms: list[RiskTerm]) -> set[str]:
    return {w for t in terms if t.weight >= 0.3 for w in t.lemma.split()}


__all__ = ["LEXICAL_FEATURES", "PairAnalysis", "analyze_pair", "terms_from_matches"]
