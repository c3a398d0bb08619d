"""Semantic pair features from sentence embeddings (issue: lexical overlap misses synonyms).

Only the query is embedded as a sentence; risk terms and content words are short and embedded once
per distinct text (cached), so the cost per row stays about one sentence embedding.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from .embed import Embedder
from .features import RENDERED_TERM, PairAnalysis
from .taxonomy import Taxonomy
from .text import Token

SEMANTIC_FEATURES: tuple[str, ...] = (
    "sem_text_risk",
    "sem_term_match",
    "sem_term_query",
    "sem_content_match",
    "sem_proto_max",
    "sem_proto_evidence",
    "sem_deictic_unnamed",
    "sem_text_x_image",
)

SPAN_SIMILARITY = 0.6  # a query word this close to an evidence risk term is reported as a leaked span


@dataclass
class LinearHead:
    """A logistic regression over embeddings (the semantic text-only harm model)."""

    coef: np.ndarray
    intercept: float
    meta: dict[str, Any]

    def proba(self, E: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-(E @ self.coef + self.intercept))))

    def to_json(self) -> str:
        return json.dumps({"coef": self.coef.tolist(), "intercept": self.intercept, "meta": self.meta})

    @classmethod
    def from_json(cls, text: str) -> LinearHead:
        d = json.loads(text)
        return cls(np.asarray(d["coef"], dtype=np.float32), float(d["intercept"]), d.get("meta", {}))


@lru_cache(maxsize=2)
def load_sem_harm(path: str | None = None) -> LinearHead | None:
    try:
        if path is None:
            text = resources.files("vsil").joinpath("data/sem_harm.json").read_text(encoding="utf-8")
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except FileNotFoundError:
        return None
    return LinearHead.from_json(text)


def prototype_texts(tax: Taxonomy, n_terms: int = 12) -> tuple[list[str], list[tuple[str, str]]]:
    """One description per subcategory: its name and its strongest lexicon terms."""
    texts, ids = [], []
    for c in tax.raw["categories"]:
        for s in c["subcategories"]:
            strong = [t for t in s["terms"] if "~" not in t][:n_terms]
            texts.append(f"{s['name']}: {', '.join(strong)}")
            ids.append((c["id"], s["id"]))
    return texts, ids


def _content_words(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if not t.is_stop and len(t.lemma) > 2 and t.lemma.isalpha()]


class SemanticFeaturizer:
    """Adds ``SEMANTIC_FEATURES`` (and semantic leak spans) to lexical ``PairAnalysis`` objects."""

    def __init__(self, embedder: Embedder, taxonomy: Taxonomy, harm_head: LinearHead | None) -> None:
        if harm_head is not None and harm_head.coef.shape[0] != embedder.dim:
            raise ValueError(f"semantic harm model expects {harm_head.coef.shape[0]}-d embeddings, embedder gives {embedder.dim}")
        self.embedder = embedder
        self.taxonomy = taxonomy
        self.harm_head = harm_head
        texts, self.proto_ids = prototype_texts(taxonomy)
        self.P = embedder.encode(texts)

    def harm_probs(self, texts: list[str]) -> dict[str, float]:
        """Semantic text-only harm probability of each distinct text (empty without a harm head)."""
        uniq = sorted({t for t in texts if t.strip()})
        if self.harm_head is None or not uniq:
            return {}
        return dict(zip(uniq, (float(p) for p in self.harm_head.proba(self.embedder.encode(uniq)))))

    def add_features(
        self,
        items: list[tuple[str, list[Token], PairAnalysis]],
        harm_heads: Sequence[LinearHead | None] | None = None,
    ) -> None:
        """Compute the semantic features of a batch in place (one encode call for the batch)."""
        if not items:
            return
        emb = self.embedder
        Q = emb.encode([q for q, _, _ in items])
        words: set[str] = set()
        for _, toks, a in items:
            words.update(t.lemma for t in _content_words(toks))
            words.update(t.term.lower() for t in a.risk_terms)
            words.update(a.evidence_words)
        vocab = sorted(words)
        W = emb.encode(vocab) if vocab else np.zeros((0, emb.dim), dtype=np.float32)
        widx = {w: i for i, w in enumerate(vocab)}
        proto_sim = Q @ self.P.T
        for k, ((_, toks, a), q) in enumerate(zip(items, Q)):
            head = harm_heads[k] if harm_heads is not None else self.harm_head
            sem_harm = float(head.proba(q[None, :])[0]) if head is not None else a.text_risk
            qwords = _content_words(toks)
            Wq = W[[widx[t.lemma] for t in qwords]] if qwords else np.zeros((0, emb.dim), dtype=np.float32)
            terms = [t for t in a.risk_terms if t.weight >= 0.3 and t.lemma != RENDERED_TERM]
            Wr = W[[widx[t.term.lower()] for t in terms]] if terms else np.zeros((0, emb.dim), dtype=np.float32)
            weights = np.array([t.weight for t in terms])
            term_match = 0.0
            if len(Wr) and len(Wq):
                S = Wr @ Wq.T  # risk term x query word
                term_match = float((S.max(axis=1) * weights).max())
                best = np.argwhere(S >= SPAN_SIMILARITY)
                for _, j in best:
                    a.leak_spans.append((qwords[j].start, qwords[j].end))
            term_query = float(((Wr @ q) * weights).max()) if len(Wr) else 0.0
            ev = [widx[w] for w in a.evidence_words]
            content = float((W[ev] @ Wq.T).max(axis=1).mean()) if ev and len(Wq) else 0.0
            subcats = {t.subcategory for t in a.risk_terms}
            ev_proto = [i for i, (_, s) in enumerate(self.proto_ids) if s in subcats]
            a.features.update(
                {
                    "sem_text_risk": sem_harm,
                    "sem_term_match": term_match,
                    "sem_term_query": term_query,
                    "sem_content_match": content,
                    "sem_proto_max": float(proto_sim[k].max()),
                    "sem_proto_evidence": float(proto_sim[k, ev_proto].max()) if ev_proto else 0.0,
                    "sem_deictic_unnamed": float(a.features["deictic"] > 0 and term_match < 0.55 and a.features["risk_overlap"] == 0.0),
                    "sem_text_x_image": sem_harm * a.image_risk,
                }
            )
            a.sem_text_risk = sem_harm
