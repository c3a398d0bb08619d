"""Semantic pair features from sentence embeddings (lexical overlap alone misses synonyms).

Only the query is embedded as a sentence; risk terms and content words are short and embedded once
per distinct text (cached), so the cost per row stays about one sentence embedding.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from vsil.stages.features.embed import Embedder
from vsil.stages.features.lexical import RENDERED_TERM, PairAnalysis
from vsil.stages.features.text_harm import TextHarmModel
from vsil.stages.risk.taxonomy import Taxonomy
from vsil.stages.risk.text import Token, normalized

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

PROTOTYPES_FILE = "sem_harm_prototypes.npz"
SPAN_SIMILARITY = 0.6  # a query word this close to an evidence risk term is reported as a leaked span


@dataclass(frozen=True)
class SemanticFeatures:
    """The semantic features of one pair, its semantic text-only harm probability, and the query spans
    that are close to an evidence risk term."""

    values: dict[str, float]
    text_risk: float
    spans: list[tuple[int, int]]
    query_embedding: np.ndarray | None = None
    hint_sims: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass
class LinearHead:
    """A logistic regression over embeddings (the semantic text-only harm model's linear half)."""

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


@dataclass
class PrototypeHead:
    """Nearest-prototype harm score: how much closer a text is to harmful prompts than to benign ones.

    ``harmful`` and ``benign`` are unit-norm k-means centroids of the harm corpus's embeddings; the
    score is the mean similarity to the ``k`` nearest harmful centroids minus that to the ``k`` nearest
    benign ones, mapped to a probability by ``sigmoid(a * score + b)``. Unlike a linear head it cannot
    extrapolate far from the corpus: a text unlike any harmful prompt scores low.
    """

    harmful: np.ndarray
    benign: np.ndarray
    k: int
    a: float
    b: float

    def score(self, E: np.ndarray) -> np.ndarray:
        X = np.asarray(E, dtype=np.float32)

        def top(C: np.ndarray) -> np.ndarray:
            S = X @ C.T
            k = min(self.k, S.shape[1])
            return np.asarray(np.partition(S, S.shape[1] - k, axis=1)[:, -k:].mean(axis=1))

        return top(self.harmful) - top(self.benign)

    def proba(self, E: np.ndarray) -> np.ndarray:
        return np.asarray(1.0 / (1.0 + np.exp(-(self.a * self.score(E) + self.b))))

    def save(self, path: str) -> None:
        np.savez_compressed(
            path,
            harmful=self.harmful.astype(np.float16),
            benign=self.benign.astype(np.float16),
            params=np.array([self.k, self.a, self.b], dtype=np.float64),
        )

    @classmethod
    def load(cls, source: Any) -> PrototypeHead:
        with np.load(source, allow_pickle=False) as z:
            k, a, b = (float(x) for x in z["params"])
            return cls(z["harmful"].astype(np.float32), z["benign"].astype(np.float32), int(k), a, b)


@dataclass
class HarmHead:
    """The semantic text-only harm model: the geometric mean of the linear head's probability and the
    nearest-prototype head's (the linear head alone when no prototypes are given)."""

    linear: LinearHead
    prototypes: PrototypeHead | None = None

    @property
    def dim(self) -> int:
        return int(self.linear.coef.shape[0])

    @property
    def meta(self) -> dict[str, Any]:
        return self.linear.meta

    def proba(self, E: np.ndarray) -> np.ndarray:
        p = self.linear.proba(E)
        return p if self.prototypes is None else np.sqrt(p * self.prototypes.proba(E))


@lru_cache(maxsize=2)
def load_sem_harm(path: str | None = None) -> HarmHead | None:
    """The shipped semantic harm model (``data/sem_harm.json`` + ``data/sem_harm_prototypes.npz``), or
    one saved by ``vsil train --out DIR`` (``path`` = the JSON file; the npz beside it is used when present)."""
    try:
        if path is None:
            files = resources.files("vsil").joinpath("data")
            linear = LinearHead.from_json(files.joinpath("sem_harm.json").read_text(encoding="utf-8"))
            proto_file = files.joinpath(PROTOTYPES_FILE)
            if not proto_file.is_file():  # the shipped classifier was trained on the blended head
                raise RuntimeError(
                    f"the shipped model file {PROTOTYPES_FILE} is missing: reinstall vsil or run `vsil train`"
                )
            with proto_file.open("rb") as f:
                return HarmHead(linear, PrototypeHead.load(f))
        with open(path, encoding="utf-8") as f:
            linear = LinearHead.from_json(f.read())
    except FileNotFoundError:
        return None
    proto_path = os.path.join(os.path.dirname(path), PROTOTYPES_FILE)
    return HarmHead(linear, PrototypeHead.load(proto_path) if os.path.exists(proto_path) else None)


def prototype_texts(tax: Taxonomy, n_terms: int = 12) -> tuple[list[str], list[tuple[str, str]]]:
    """One description per subcategory: its name and its strongest lexicon terms."""
    items = tax.strong_terms()
    return [f"{name}: {', '.join(terms[:n_terms])}" for _, _, name, terms in items], [(c, s) for c, s, _, _ in items]


def _content_words(tokens: list[Token]) -> list[Token]:
    return [t for t in tokens if not t.is_stop and len(t.lemma) > 2 and t.lemma.isalpha()]


class SemanticFeaturizer:
    """Computes ``SEMANTIC_FEATURES`` (and semantic leak spans) for lexical ``PairAnalysis`` objects."""

    def __init__(
        self,
        embedder: Embedder,
        taxonomy: Taxonomy,
        harm_head: HarmHead | TextHarmModel | None,
        hint_phrases: tuple[str, ...] = (),
    ) -> None:
        if harm_head is not None and harm_head.dim != embedder.dim:
            raise ValueError(f"semantic harm model expects {harm_head.dim}-d embeddings, embedder gives {embedder.dim}")
        self.embedder = embedder
        self.taxonomy = taxonomy
        self.harm_head = harm_head
        texts, self.proto_ids = prototype_texts(taxonomy)
        self.P = embedder.encode(texts)
        self.H = embedder.encode(list(hint_phrases)) if hint_phrases else np.zeros((0, embedder.dim), np.float32)

    def harm_probs(self, texts: list[str]) -> dict[str, float]:
        """Semantic text-only harm probability of each distinct text (empty without a harm head)."""
        uniq = sorted({t for t in texts if t.strip()})
        if self.harm_head is None or not uniq:
            return {}
        probs = self.harm_head.proba(self.embedder.encode([normalized(t) for t in uniq]))
        return dict(zip(uniq, (float(p) for p in probs)))

    def features(
        self,
        items: list[tuple[str, list[Token], PairAnalysis]],
        harm_heads: Sequence[HarmHead | TextHarmModel | None] | None = None,
    ) -> list[SemanticFeatures]:
        """The semantic features of a batch of lexical analyses (one encode call for the batch); the
        lexical analyses are read, never changed."""
        if not items:
            return []
        out: list[SemanticFeatures] = []
        emb = self.embedder
        queries = [normalized(q) for q, _, _ in items]
        words: set[str] = set()
        for _, toks, a in items:
            words.update(t.lemma for t in _content_words(toks))
            words.update(normalized(t.term).lower() for t in a.risk_terms)
            words.update(a.evidence_words)
        vocab = sorted(words)
        E = emb.encode(queries + vocab)  # one call: the queries and the short words batch together
        Q, W = E[: len(queries)], E[len(queries) :]
        widx = {w: i for i, w in enumerate(vocab)}
        proto_sim = Q @ self.P.T
        # the harm model scores the whole chunk in one call (per row only when each row has its own head)
        chunk_harm = self.harm_head.proba(Q) if harm_heads is None and self.harm_head is not None else None
        for k, ((_, toks, a), q) in enumerate(zip(items, Q)):
            head = harm_heads[k] if harm_heads is not None else self.harm_head
            if chunk_harm is not None:
                sem_harm = float(chunk_harm[k])
            else:
                sem_harm = float(head.proba(q[None, :])[0]) if head is not None else a.text_risk
            qwords = _content_words(toks)
            Wq = W[[widx[t.lemma] for t in qwords]] if qwords else np.zeros((0, emb.dim), dtype=np.float32)
            terms = [t for t in a.risk_terms if t.weight >= 0.3 and t.lemma != RENDERED_TERM]
            Wr = (
                W[[widx[normalized(t.term).lower()] for t in terms]]
                if terms
                else np.zeros((0, emb.dim), dtype=np.float32)
            )
            weights = np.array([t.weight for t in terms])
            term_match = 0.0
            spans: list[tuple[int, int]] = []
            if len(Wr) and len(Wq):
                S = Wr @ Wq.T  # risk term x query word
                term_match = float((S.max(axis=1) * weights).max())
                spans = [(qwords[j].start, qwords[j].end) for _, j in np.argwhere(S >= SPAN_SIMILARITY)]
            term_query = float(((Wr @ q) * weights).max()) if len(Wr) else 0.0
            ev = [widx[w] for w in a.evidence_words]
            content = float((W[ev] @ Wq.T).max(axis=1).mean()) if ev and len(Wq) else 0.0
            subcats = {t.subcategory for t in a.risk_terms}
            ev_proto = [i for i, (_, s) in enumerate(self.proto_ids) if s in subcats]
            values = {
                "sem_text_risk": sem_harm,
                "sem_term_match": term_match,
                "sem_term_query": term_query,
                "sem_content_match": content,
                "sem_proto_max": float(proto_sim[k].max()),
                "sem_proto_evidence": float(proto_sim[k, ev_proto].max()) if ev_proto else 0.0,
                "sem_deictic_unnamed": float(
                    a.features["deictic"] > 0 and term_match < 0.55 and a.features["risk_overlap"] == 0.0
                ),
                "sem_text_x_image": sem_harm * a.image_risk,
            }
            hint_sims = self.H @ q if len(self.H) else np.zeros(0)
            out.append(SemanticFeatures(values, sem_harm, spans, q, hint_sims))
        return out
