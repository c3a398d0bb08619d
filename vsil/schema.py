"""The types that cross stage boundaries: ``Record`` (an input row), ``Evidence`` (the text that stands
for its image) and ``LeakageResult`` (the output contract, one per input row), with the column lists."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Record:
    """One normalised input row. A row that cannot be used carries ``error``."""

    row: int
    id: str
    query: str = ""
    caption: str = ""
    safety_reason: str = ""
    image: Any = None
    category: str = ""
    source: str = ""
    error: str = ""

    def hash_into(self, h: Any) -> None:
        """Feed this record's content to a hashlib object: the run manifest's ``data_sha256`` and the
        per-chunk hashes that resume checks."""
        h.update(json.dumps([self.id, self.query, self.caption, self.safety_reason, str(self.image)]).encode())


@dataclass(frozen=True)
class Evidence:
    """The text that stands for the image, with where it came from."""

    parts: tuple[tuple[str, str], ...]  # (field, text)
    source: str

    @property
    def caption_used(self) -> str:
        return " ".join(t for f, t in self.parts if f != "safety_reason")


CONTRACT_FIELDS: tuple[str, ...] = (
    "id",
    "vsil_score",
    "vsil_level",
    "is_leak",
    "leaked_spans",
    "risk_terms",
    "image_risk",
    "text_risk",
    "overlap",
    "caption_used",
    "caption_source",
    "decided_by",
    "judge_rationale",
    "judge_error",
    "status",
    "error",
)
# the columns of results.jsonl and of every results DataFrame: the contract plus the row's own fields
RESULT_COLUMNS: tuple[str, ...] = (*CONTRACT_FIELDS, "query", "category", "source", "row")


@dataclass
class LeakageResult:
    """Leakage verdict for one (image, query) sample.

    ``vsil_score`` is the calibrated probability that the sample leaks (label 2): higher means more
    leakage. ``vsil_level`` is 0 (none), 1 (partial) or 2 (leak); ``is_leak`` applies the threshold.
    ``leaked_spans`` are ``{"start", "end", "text"}`` character spans of the query.
    A row that could not be scored has ``status == "error"``, a reason in ``error`` and NaN scores.
    ``decided_by`` is "classifier" or "judge". When the judge decided, ``vsil_level``, ``is_leak`` and
    ``leaked_spans`` are the judge's and ``vsil_score`` stays the classifier's probability. When a judge
    call failed, the classifier's decision stands and ``judge_error`` says why (``status`` stays "ok").
    """

    id: str
    vsil_score: float
    vsil_level: int
    is_leak: bool
    leaked_spans: list[dict[str, Any]] = field(default_factory=list)
    risk_terms: list[dict[str, Any]] = field(default_factory=list)
    image_risk: float = float("nan")
    text_risk: float = float("nan")
    overlap: float = float("nan")
    caption_used: str = ""
    caption_source: str = ""
    decided_by: str = "classifier"
    judge_rationale: str = ""
    judge_error: str = ""
    status: str = "ok"
    error: str = ""
    query: str = ""
    category: str = ""
    source: str = ""
    row: int = -1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def failed(
        cls, id: str, error: str, *, row: int = -1, query: str = "", category: str = "", source: str = ""
    ) -> LeakageResult:
        return cls(
            id=id,
            vsil_score=float("nan"),
            vsil_level=-1,
            is_leak=False,
            status="error",
            error=error,
            decided_by="none",
            query=query,
            category=category,
            source=source,
            row=row,
        )


_RESULT_FIELDS = frozenset(RESULT_COLUMNS)


def result_from_dict(d: dict[str, Any]) -> LeakageResult:
    """A ``LeakageResult`` from a ``results.jsonl`` row (null scores read back as NaN)."""
    clean = {k: v for k, v in d.items() if k in _RESULT_FIELDS}
    for k in ("vsil_score", "image_risk", "text_risk", "overlap"):
        if clean.get(k) is None:
            clean[k] = float("nan")
    return LeakageResult(**clean)


@dataclass
class RunStats:
    """Counters of a run, added up over chunks, worker processes and Ray actors: the judge's
    (``judge``; empty when the run has no judge) and the image-evidence cache's hits and misses."""

    judge: dict[str, int] = field(default_factory=dict)
    image_evidence_cache: dict[str, int] = field(default_factory=lambda: {"hits": 0, "misses": 0})

    def add(self, other: RunStats) -> None:
        for mine, theirs in ((self.judge, other.judge), (self.image_evidence_cache, other.image_evidence_cache)):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v

    def minus(self, before: RunStats) -> RunStats:
        """The counts since ``before`` (this pipeline's counters are running totals)."""
        return RunStats(
            {k: v - before.judge.get(k, 0) for k, v in self.judge.items()},
            {k: v - before.image_evidence_cache.get(k, 0) for k, v in self.image_evidence_cache.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        return {"judge": dict(self.judge), "image_evidence_cache": dict(self.image_evidence_cache)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunStats:
        return cls(dict(d.get("judge") or {}), dict(d.get("image_evidence_cache") or {"hits": 0, "misses": 0}))

    def manifest_fields(self, has_judge: bool) -> dict[str, Any]:
        """The manifest's ``judge_stats`` (null without a judge) and ``image_evidence_cache``."""
        return {
            "judge_stats": dict(self.judge) if has_judge else None,
            "image_evidence_cache": dict(self.image_evidence_cache),
        }


class Summary(dict[str, Any]):
    """An audit summary: a plain dict (``n``, ``leak_rate``, ``ci95``, ``level_counts``, ``per_category``,
    ``per_source``, ``errors``, ``judge``, ``manifest``, ...), the same shape everywhere: ``df.attrs["summary"]``,
    ``LeakageAudit.summary``, ``summary.json``. Calling it (``audit.summary()``, the older spelling) returns
    itself."""

    def __call__(self) -> Summary:
        import warnings

        warnings.warn("LeakageAudit.summary is a dict now: use audit.summary[...]", DeprecationWarning, stacklevel=2)
        return self
