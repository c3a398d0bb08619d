"""The output contract: one ``LeakageResult`` per input row."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

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
    def failed(cls, id: str, error: str, *, row: int = -1, query: str = "", category: str = "", source: str = "") -> LeakageResult:
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
