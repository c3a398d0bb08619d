"""The risk taxonomy and lexicon, shipped as data (``vsil/data/taxonomy.json``), and a lemma matcher."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from vsil.stages.risk.text import Token, phrase_lemmas


@dataclass(frozen=True)
class LexEntry:
    """One lexicon phrase with its category, subcategory and weight in [0, 1]."""

    term: str
    category: str
    subcategory: str
    weight: float


@dataclass(frozen=True)
class Match:
    """A lexicon phrase found in a token list: token index range and character span."""

    entry: LexEntry
    tok_start: int
    tok_end: int
    start: int
    end: int


def _parse_term(raw: str) -> tuple[str, float]:
    if "~" in raw:
        term, w = raw.rsplit("~", 1)
        return term.strip(), float(w)
    return raw.strip(), 1.0


class PhraseMatcher:
    """Greedy longest-match lookup of lemma n-grams in a token sequence."""

    def __init__(self, entries: list[LexEntry]) -> None:
        self._table: dict[tuple[str, ...], LexEntry] = {}
        for e in entries:
            key = phrase_lemmas(e.term)
            if not key:
                continue
            old = self._table.get(key)
            if old is None or e.weight > old.weight:
                self._table[key] = e
        self.max_len = max((len(k) for k in self._table), default=1)

    def __len__(self) -> int:
        return len(self._table)

    def find(self, tokens: list[Token]) -> list[Match]:
        """All non-overlapping longest matches, left to right."""
        out: list[Match] = []
        i, n = 0, len(tokens)
        lemmas = [t.lemma for t in tokens]
        while i < n:
            hit = None
            for L in range(min(self.max_len, n - i), 0, -1):
                e = self._table.get(tuple(lemmas[i : i + L]))
                if e is not None:
                    hit = Match(e, i, i + L, tokens[i].start, tokens[i + L - 1].end)
                    break
            if hit is None:
                i += 1
            else:
                out.append(hit)
                i = hit.tok_end
        return out


@dataclass(frozen=True)
class Taxonomy:
    """Categories, subcategories and the matchers built from the shipped data."""

    version: str
    categories: dict[str, str]
    subcategories: dict[str, tuple[str, str]]
    risk: PhraseMatcher
    hints: PhraseMatcher
    deictic: PhraseMatcher
    generic_words: frozenset[str]
    raw: dict[str, Any]

    def strong_terms(self) -> list[tuple[str, str, str, list[str]]]:
        """(category id, subcategory id, subcategory name, its full-weight terms in order) for every
        subcategory: what CLIP concepts and the semantic prototypes are made of."""
        return [
            (c["id"], s["id"], s["name"], [t for t in s["terms"] if "~" not in t])
            for c in self.raw["categories"]
            for s in c["subcategories"]
        ]


def _build(data: dict[str, Any]) -> Taxonomy:
    cats: dict[str, str] = {}
    subs: dict[str, tuple[str, str]] = {}
    entries: list[LexEntry] = []
    for c in data["categories"]:
        cats[c["id"]] = c["name"]
        for s in c["subcategories"]:
            subs[s["id"]] = (c["id"], s["name"])
            for raw in s["terms"]:
                term, w = _parse_term(raw)
                entries.append(LexEntry(term, c["id"], s["id"], w))
    hints = [LexEntry(t, "hint", "hint", w) for t, w in map(_parse_term, data.get("hint_phrases", []))]
    deictic = [LexEntry(t, "deictic", "deictic", w) for t, w in map(_parse_term, data.get("deictic_phrases", []))]
    generic = frozenset(phrase_lemmas(" ".join(data.get("generic_words", []))))
    return Taxonomy(
        version=str(data.get("version", "0")),
        categories=cats,
        subcategories=subs,
        risk=PhraseMatcher(entries),
        hints=PhraseMatcher(hints),
        deictic=PhraseMatcher(deictic),
        generic_words=generic,
        raw=data,
    )


@lru_cache(maxsize=4)
def load_taxonomy(path: str | None = None) -> Taxonomy:
    """Load the taxonomy (the shipped one by default, or a JSON file of the same shape)."""
    if path is None:
        text = resources.files("vsil").joinpath("data/taxonomy.json").read_text(encoding="utf-8")
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    return _build(json.loads(text))
