"""Stages 2 and 3, extract risk and compute pair features: risk terms of the image evidence compared
with the query, lexically (``lexical``) and, with an embedder, semantically (``semantic``), next to
the query's text-only harm (``harm``; the semantic harm head when an embedder is loaded).

``FeatureStage.run`` gives one frozen ``PairFeatures`` per scorable pair: every named feature, the
risk terms, and the query spans that explain them. Data flows one way: the text-harm scores of the
texts rendered in images (OCR) are computed first and read by risk extraction; the lexical analysis
is read, never changed, by the semantic step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from vsil.schema import Evidence, Record
from vsil.stages.evidence import RENDERED_TEXT_FIELDS
from vsil.stages.features.harm import HarmModel
from vsil.stages.features.lexical import PairAnalysis, analyze_pair
from vsil.stages.features.semantic import SemanticFeatures, SemanticFeaturizer
from vsil.stages.risk.risk import RiskTerm
from vsil.stages.risk.taxonomy import Taxonomy
from vsil.stages.risk.text import Token, merge_spans, tokenize


@dataclass(frozen=True)
class PairFeatures:
    """Everything the classifier and the explanation read about one (evidence, query) pair."""

    values: Mapping[str, float]
    risk_terms: tuple[RiskTerm, ...]
    leak_spans: tuple[tuple[int, int], ...]  # query spans that name or imply the risk (merged)
    hint_spans: tuple[tuple[int, int], ...]  # query spans of partial-leak hints
    text_risk: float  # the query's text-only harm (semantic head when available, else lexical)
    lexical_text_risk: float
    image_risk: float
    overlap: float
    query_tokens: tuple[Token, ...]
    query_embedding: np.ndarray | None = None  # the query's sentence embedding (semantic mode)
    hint_sims: np.ndarray = field(default_factory=lambda: np.zeros(0))  # cosine to each partial-leak hint phrase

    def vector(self, names: tuple[str, ...]) -> np.ndarray:
        return np.array([self.values[n] for n in names], dtype=np.float64)


def combine(lex: PairAnalysis, sem: SemanticFeatures | None) -> PairFeatures:
    """One frozen ``PairFeatures`` from the lexical analysis and, when computed, the semantic features."""
    values = dict(lex.features)
    spans = list(lex.leak_spans)
    if sem is not None:
        values.update(sem.values)
        spans += sem.spans
    return PairFeatures(
        values=MappingProxyType(values),
        risk_terms=tuple(lex.risk_terms),
        leak_spans=tuple(merge_spans(spans)),
        hint_spans=tuple(lex.hint_spans),
        text_risk=sem.text_risk if sem is not None else lex.text_risk,
        lexical_text_risk=lex.text_risk,
        image_risk=lex.image_risk,
        overlap=lex.overlap,
        query_tokens=tuple(lex.query_tokens),
        query_embedding=None if sem is None else sem.query_embedding,
        hint_sims=np.zeros(0) if sem is None else sem.hint_sims,
    )


class FeatureStage:
    """(record, evidence) pairs -> ``PairFeatures`` (or an error reason) per pair."""

    def __init__(self, taxonomy: Taxonomy, harm: HarmModel, semantic: SemanticFeaturizer | None) -> None:
        self.taxonomy = taxonomy
        self.harm = harm
        self.semantic = semantic

    def run(self, pairs: list[tuple[Record, Evidence]]) -> list[PairFeatures | str]:
        rendered: dict[str, float] = {}
        if self.semantic is not None:
            rendered = self.semantic.harm_probs(
                [t for _, ev in pairs for f, t in ev.parts if f in RENDERED_TEXT_FIELDS]
            )
        lexical: list[PairAnalysis | str] = []
        for rec, ev in pairs:
            try:
                lexical.append(
                    analyze_pair(
                        rec.query,
                        list(ev.parts),
                        self.taxonomy,
                        self.harm,
                        query_tokens=tokenize(rec.query),
                        rendered_harm=rendered,
                    )
                )
            except Exception as e:  # one bad row must not stop the run
                lexical.append(f"feature extraction failed: {e}")
        ok = [(rec.query, a.query_tokens, a) for (rec, _), a in zip(pairs, lexical) if not isinstance(a, str)]
        sem: list[Any] = [None] * len(ok)
        if ok and self.semantic is not None:
            sem = list(self.semantic.features(ok))
            self.semantic.embedder.clear_memory()
        it = iter(sem)
        return [a if isinstance(a, str) else combine(a, next(it)) for a in lexical]


def fallback_spans(query: str, harm: HarmModel) -> list[tuple[int, int]]:
    """The query words with the strongest harm signal, when no risk term explains a leak."""
    toks = tokenize(query)
    return harm.harm_spans(toks, min_score=0.0) if toks else []


__all__ = ["FeatureStage", "PairFeatures", "combine", "fallback_spans"]
