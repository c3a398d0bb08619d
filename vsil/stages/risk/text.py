"""Tokenisation and lemmatisation with character spans (offline, via simplemma).

Text is normalised before matching (``normalize``): NFKC (fullwidth and compatibility forms become
plain letters), format characters (zero-width spaces, soft hyphens, joiners, BOMs) dropped, and the
commonest Cyrillic and Greek look-alikes folded to Latin, so "ｒｉｆｌｅ" or "ri\u200bfle" match
"rifle". Token offsets always point into the ORIGINAL text, so spans show what the user wrote.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:[-'’][A-Za-z0-9]+)*")

STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from into onto about as is are was were be been being
    am do does did doing have has had having i me my myself we our ours you your yours he him his she her hers
    it its they them their theirs what which who whom whose this that these those there here when where why how
    all any both each few more most other some such no nor not only own same so than too very s t can will just
    should would could may might must shall also up down out over under again further then once into while
    during before after above below between through until off i'm it's what's can't don't won't""".split()
)


@dataclass(frozen=True)
class Token:
    """One word of a text: surface form, lower-cased lemma and character span."""

    text: str
    lemma: str
    start: int
    end: int

    @property
    def is_stop(self) -> bool:
        return self.lemma in STOPWORDS or self.text.lower() in STOPWORDS


@lru_cache(maxsize=200_000)
def lemma(word: str) -> str:
    """Lower-cased English lemma of one word (simplemma; falls back to the word)."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    try:
        import simplemma

        out = simplemma.lemmatize(w, lang="en")
    except Exception:  # pragma: no cover - simplemma is a hard dependency
        out = w
    return str(out).lower()


# Cyrillic and Greek letters that look like Latin ones (a cheap subset of Unicode's confusables)
_CONFUSABLES = str.maketrans(
    "аеорсхуіѕјԁһԛԝАВЕНІЈКМОРСТХУЅԌαορτυνιΑΒΕΗΙΚΜΝΟΡΤΥΧΖ",
    "aeopcxyisjdhqwABEHIJKMOPCTXYSGaoptuviABEHIKMNOPTYXZ",
)


def normalize(text: str) -> tuple[str, list[int] | None]:
    """(normalised text, index of each of its characters in ``text``); the index is None when the text
    needs no change (plain ASCII), so the offsets are the same."""
    if text.isascii():
        return text, None
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch) == "Cf":  # zero-width space, soft hyphen, joiners, BOM, bidi marks
            continue
        for c in unicodedata.normalize("NFKC", ch).translate(_CONFUSABLES):
            out.append(c)
            index.append(i)
    return "".join(out), index


def normalized(text: str) -> str:
    """``text`` as matching and the embedder see it (``normalize`` without the offsets)."""
    return normalize(text)[0]


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into word tokens with lemmas, matched on the normalised text, with character
    offsets into ``text`` itself."""
    norm, index = normalize(text)
    if index is None:
        return [Token(m.group(0), lemma(m.group(0)), m.start(), m.end()) for m in _TOKEN_RE.finditer(text)]
    return [
        Token(m.group(0), lemma(m.group(0)), index[m.start()], index[m.end() - 1] + 1) for m in _TOKEN_RE.finditer(norm)
    ]


def phrase_lemmas(phrase: str) -> tuple[str, ...]:
    """Lemma sequence of a lexicon phrase (hyphens split like the tokenizer does not; keep both)."""
    return tuple(t.lemma for t in tokenize(phrase))


def content_lemmas(tokens: list[Token], extra_stop: frozenset[str] = frozenset()) -> set[str]:
    """Lemmas of the content words (not stop words, not in ``extra_stop``, longer than 2 chars)."""
    return {t.lemma for t in tokens if not t.is_stop and t.lemma not in extra_stop and len(t.lemma) > 2}


def merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping or touching (gap <= 1 char) spans, sorted."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out
