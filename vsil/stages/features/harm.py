"""``text_risk``: a text-only harmfulness model (hashed lemma n-grams + logistic regression).

It answers "would a strict text-only safety judge flag this query by itself?". The weights are trained
by ``vsil train`` on public harmful vs benign prompts and shipped as ``data/harm_model.npz`` (plain
arrays, loaded with ``allow_pickle=False``). Inference needs only numpy.
"""

from __future__ import annotations

import contextlib
import json
import zlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from vsil.stages.risk.text import Token

N_FEATURES = 2**18


def _h(s: str) -> int:
    return zlib.crc32(s.encode("utf-8")) % N_FEATURES


def ngram_keys(tokens: list[Token]) -> list[tuple[int, int, str]]:
    """(first token, last token + 1, key) of every hashed feature of a token list."""
    lem = [t.lemma for t in tokens]
    keys = [(i, i + 1, "u:" + w) for i, w in enumerate(lem)]
    keys += [(i, i + 2, "b:" + lem[i] + " " + lem[i + 1]) for i in range(len(lem) - 1)]
    return keys


def featurize(tokens: list[Token]) -> tuple[np.ndarray, np.ndarray]:
    """Sparse binary l2-normalised feature vector as (indices, values)."""
    idx = np.unique(np.fromiter((_h(k) for _, _, k in ngram_keys(tokens)), dtype=np.int64))
    if idx.size == 0:
        return idx, np.zeros(0, dtype=np.float32)
    return idx, np.full(idx.size, 1.0 / np.sqrt(idx.size), dtype=np.float32)


@dataclass
class HarmModel:
    """Logistic regression over hashed n-grams. ``predict_proba`` gives P(harmful on its own)."""

    coef_: np.ndarray
    intercept_: float
    meta: dict[str, Any]

    def decision(self, tokens: list[Token]) -> float:
        idx, val = featurize(tokens)
        return float(self.intercept_ + (self.coef_[idx] * val).sum()) if idx.size else float(self.intercept_)

    def proba(self, tokens: list[Token]) -> float:
        return float(1.0 / (1.0 + np.exp(-self.decision(tokens))))

    def contributions(self, tokens: list[Token]) -> list[tuple[int, int, float]]:
        """Per n-gram contribution to the harm logit: (token start, token end, contribution)."""
        keys = ngram_keys(tokens)
        n = len({_h(k) for _, _, k in keys}) or 1
        scale = 1.0 / np.sqrt(n)
        return [(a, b, float(self.coef_[_h(k)]) * scale) for a, b, k in keys]

    def token_scores(self, tokens: list[Token]) -> np.ndarray:
        """Each token's share of the harm logit (n-gram contributions split over their tokens)."""
        out = np.zeros(len(tokens))
        for a, b, c in self.contributions(tokens):
            out[a:b] += c / (b - a)
        return out

    def harm_spans(self, tokens: list[Token], min_score: float = 0.12, bridge: int = 2) -> list[tuple[int, int]]:
        """Character spans of the query words that carry its harm: content words whose score
        exceeds ``min_score``, joined across up to ``bridge`` weaker words."""
        sc = self.token_scores(tokens)
        hot = [i for i, t in enumerate(tokens) if sc[i] > min_score and not t.is_stop]
        spans: list[list[int]] = []
        for i in hot:
            if spans and i - spans[-1][1] <= bridge + 1:
                spans[-1][1] = i
            else:
                spans.append([i, i])
        return [(tokens[a].start, tokens[b].end) for a, b in spans]

    def save(self, path: str) -> None:
        nz = np.flatnonzero(self.coef_)
        np.savez_compressed(
            path,
            indices=nz.astype(np.int32),
            values=self.coef_[nz].astype(np.float32),
            intercept=np.array([self.intercept_], dtype=np.float64),
            n_features=np.array([N_FEATURES]),
            meta=np.array(json.dumps(self.meta)),
        )

    @classmethod
    def load(cls, path: str | None = None) -> HarmModel:
        ctx: Any = (
            resources.as_file(resources.files("vsil").joinpath("data/harm_model.npz"))
            if path is None
            else contextlib.nullcontext(path)
        )
        with ctx as p, np.load(p, allow_pickle=False) as z:
            n = int(z["n_features"][0])
            if n != N_FEATURES:
                raise ValueError(f"harm model was trained with {n} hashed features, this vsil uses {N_FEATURES}")
            coef = np.zeros(n, dtype=np.float32)
            coef[z["indices"]] = z["values"]
            return cls(coef, float(z["intercept"][0]), json.loads(str(z["meta"])))


@lru_cache(maxsize=2)
def load_harm_model(path: str | None = None) -> HarmModel:
    """The shipped harm model (cached)."""
    return HarmModel.load(path)
