"""Stage 5, the LLM judge fallback: a versioned prompt, strict JSON verdicts with one corrective retry,
a cache keyed by backend, model, prompt version and input, and call statistics for the summary.

Backends live in the registry (``openai``, ``transformers``) and load lazily; ``router.JudgeStage``
decides which rows go to the judge and applies the verdicts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from vsil.stages.judge.base import Completion, JudgeBackend, JudgeCallError, Messages
from vsil.stages.judge.cache import JudgeCache, judge_key
from vsil.stages.judge.prompt import (
    PROMPT_VERSION,
    Verdict,
    VerdictError,
    build_messages,
    parse_verdict,
    retry_messages,
)
from vsil.util.redact import redact

__all__ = ["PROMPT_VERSION", "Judge", "JudgeItem", "JudgeOutcome", "JudgeStats", "Verdict", "describe_judge"]


@dataclass(frozen=True)
class JudgeItem:
    """One sample for the judge: the query, the image evidence, and what the classifier found (its
    text-only harm score of the query and the query words that name the image's risk), when known."""

    query: str
    evidence: list[tuple[str, str]]
    text_harm: float | None = None
    naming: tuple[str, ...] = ()


@dataclass
class JudgeOutcome:
    verdict: Verdict | None
    error: str = ""
    cached: bool = False


@dataclass
class JudgeStats:
    """Counts for the summary. ``rows`` were routed to the judge; ``cached`` of them were served from
    the cache; ``calls`` are conversations sent to the backend (the corrective retry after a malformed
    answer counts again); ``requests`` are the HTTP requests (or generations) those took, network
    ``retries`` included; ``answers`` are the replies received; ``malformed`` of them were not a valid
    verdict; ``failed`` rows got no valid verdict at all."""

    rows: int = 0
    calls: int = 0
    requests: int = 0
    retries: int = 0
    answers: int = 0
    cached: int = 0
    failed: int = 0
    malformed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Pending:
    item: JudgeItem
    key: str
    messages: Messages
    outcome: JudgeOutcome | None = None
    retry: Messages | None = None
    errors: list[str] = field(default_factory=list)


class Judge:
    """Judges items with a backend, through the cache. ``judge`` never raises for a single row."""

    def __init__(self, backend: JudgeBackend, cache: JudgeCache) -> None:
        self.backend = backend
        self.cache = cache
        self.stats = JudgeStats()
        self._lock = threading.Lock()

    def describe(self) -> str:
        return describe_judge(self.backend.name, self.backend.model)

    def judge(self, items: list[JudgeItem]) -> list[JudgeOutcome]:
        pend = []
        for it in items:
            msgs = build_messages(it.query, it.evidence, text_harm=it.text_harm, naming=it.naming)
            p = _Pending(it, judge_key(self.backend.name, self.backend.model, PROMPT_VERSION, msgs), msgs)
            hit = self.cache.get(p.key)
            if hit is not None:
                p.outcome = JudgeOutcome(Verdict.from_dict(hit["verdict"]), cached=True)
                self.stats.cached += 1
            pend.append(p)
        self.stats.rows += len(items)
        todo = [p for p in pend if p.outcome is None]
        self._round(todo, first=True)
        self._round([p for p in todo if p.retry is not None], first=False)
        for p in pend:
            if p.outcome is None:
                p.outcome = JudgeOutcome(None, error="; ".join(p.errors) or "no answer")
                self.stats.failed += 1
        return [p.outcome for p in pend if p.outcome is not None]

    def _round(self, todo: list[_Pending], first: bool) -> None:
        if not todo:
            return
        convs = [p.messages if first else (p.retry or p.messages) for p in todo]

        def on_result(i: int, ans: Completion | JudgeCallError) -> None:
            p = todo[i]
            p.retry = None
            with self._lock:
                self.stats.calls += 1
                if isinstance(ans, Completion):
                    self.stats.answers += 1
                    self.stats.prompt_tokens += ans.prompt_tokens
                    self.stats.completion_tokens += ans.completion_tokens
            if isinstance(ans, JudgeCallError):
                p.errors.append(redact(f"judge call failed: {ans}"))
                return
            try:
                v = parse_verdict(ans.text, p.item.query)
            except VerdictError as e:
                with self._lock:
                    self.stats.malformed += 1
                p.errors.append(redact(f"malformed judge answer: {e}"))
                if first:
                    p.retry = retry_messages(p.messages, ans.text, str(e))
                return
            p.outcome = JudgeOutcome(v)
            self.cache.put(p.key, {"verdict": v.to_dict(), "raw": ans.text, "prompt_version": PROMPT_VERSION})

        self.backend.complete_batch(convs, on_result)
        counts = getattr(self.backend, "counts", None)
        with self._lock:  # the HTTP requests and retries of this backend so far (running totals)
            self.stats.requests = counts.requests if counts is not None else self.stats.calls
            self.stats.retries = counts.retries if counts is not None else 0

    def close(self) -> None:
        self.backend.close()
        self.cache.close()


def describe_judge(backend: str, model: str) -> str:
    """How manifests name a judge: backend, model and prompt version."""
    return f"{backend}:{model} (prompt {PROMPT_VERSION})"
