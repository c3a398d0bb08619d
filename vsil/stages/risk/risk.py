"""Risk extraction: risk terms (with category and character span) and ``image_risk`` from image evidence."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vsil.stages.risk.taxonomy import Match, Taxonomy, load_taxonomy
from vsil.stages.risk.text import Token, phrase_lemmas, tokenize


@dataclass(frozen=True)
class RiskTerm:
    """A risk term found in a text: the matched words, lemma key, category, weight and span in ``field``."""

    term: str
    lemma: str
    category: str
    subcategory: str
    weight: float
    start: int
    end: int
    field: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def noisy_or(weights: list[float]) -> float:
    """1 - prod(1 - w): the probability that at least one independent cue is real."""
    p = 1.0
    for w in weights:
        p *= 1.0 - max(0.0, min(1.0, w))
    return 1.0 - p


def terms_from_matches(text: str, matches: list[Match], field: str) -> list[RiskTerm]:
    return [
        RiskTerm(
            term=text[m.start : m.end],
            lemma=" ".join(phrase_lemmas(m.entry.term)),
            category=m.entry.category,
            subcategory=m.entry.subcategory,
            weight=m.entry.weight,
            start=m.start,
            end=m.end,
            field=field,
        )
        for m in matches
    ]


def extract_risk(
    text: str, field: str = "caption", taxonomy: Taxonomy | None = None, tokens: list[Token] | None = None
) -> list[RiskTerm]:
    """Risk terms in ``text`` (a caption, OCR text, a safety reason, or a query)."""
    if not text:
        return []
    tax = taxonomy or load_taxonomy()
    toks = tokens if tokens is not None else tokenize(text)
    return terms_from_matches(text, tax.risk.find(toks), field)


def image_risk(terms: list[RiskTerm]) -> float:
    """Noisy-or of the distinct risk terms' weights (one weight per distinct lemma)."""
    best: dict[str, float] = {}
    for t in terms:
        best[t.lemma] = max(best.get(t.lemma, 0.0), t.weight)
    return noisy_or(list(best.values()))
