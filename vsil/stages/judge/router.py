"""Which rows go to the LLM judge, and what its verdict changes.

Routing (``--judge``):

- ``always``: every scored row.
- ``auto`` (the default routing): a fixed budget. In each chunk, the ``floor(budget * n)`` scored rows
  whose calls are least certain go to the judge, where certainty is the distance, in logit space, of
  the row's P(leak) to the nearest decision boundary (the leak threshold, and the partial threshold
  where the model has one); rows farther than ``MAX_LOGIT_DISTANCE`` from every boundary are never
  routed. The rule depends only on the chunk's own rows, so the share holds on any dataset whatever its
  score distribution, and a resumed, streamed or multi-worker run routes exactly the same rows
  (chunks are fixed by ``batch_size``). Each chunk's routed rows are logged in order of uncertainty.
- ``auto`` with ``--judge-band LOW HIGH``: the rows whose P(leak) lies in that fixed band.

A valid verdict sets the level, ``is_leak``, the spans and ``decided_by = "judge"``; a failed call keeps
the classifier's decision with ``judge_error``. The judge is built by whoever builds the stage and
closed by its ``close``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from vsil.errors import UsageError
from vsil.schema import Evidence, LeakageResult, Record
from vsil.stages.judge import Judge, JudgeItem, describe_judge

MAX_LOGIT_DISTANCE = 3.0  # |logit(p) - logit(boundary)| above this is a certain call: never routed


def judge_band(config: Any) -> tuple[float, float] | None:
    """The fixed band routed under ``judge="auto"`` when the user set one (else None: the budget rule)."""
    if config.judge.mode != "auto" or config.judge.band is None:
        return None
    lo, hi = config.judge.band
    return (float(lo), float(hi))


def describe_routing(config: Any, band: tuple[float, float] | None) -> str:
    if config.judge.mode != "auto":
        return str(config.judge.mode)
    if band is not None:
        return f"auto band [{band[0]:.3f}, {band[1]:.3f})"
    return f"auto budget {config.judge.budget:.0%} of each chunk's rows, least certain first"


def describe_config(config: Any) -> str:
    """How the manifest names the configured judge (loads nothing)."""
    if config.judge.mode == "none":
        return "none"
    if not config.judge.model:
        raise UsageError(f"the {config.judge.backend} judge needs a model (--judge-model)")
    return describe_judge(config.judge.backend, config.judge.model)


def build_judge(config: Any) -> Judge:
    """The configured judge: its backend built from the registry (a local model loaded), its cache opened."""
    from vsil.registry import JUDGES
    from vsil.stages.judge.cache import JudgeCache

    describe_config(config)  # the model check, with the same message as a describe-only run
    return Judge(JUDGES.build(config.judge.backend, config), JudgeCache(config.run.cache_dir))


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def uncertainty_distance(p: float, boundaries: tuple[float, ...]) -> float:
    """How far ``p`` is from the nearest decision boundary, in logit space (0 = on a boundary)."""
    lp = _logit(p)
    return min(abs(lp - _logit(b)) for b in boundaries)


def budget_select(scores: list[float], budget: float, boundaries: tuple[float, ...]) -> list[int]:
    """Indices of the ``floor(budget * len(scores))`` least certain scores (nearest a boundary first;
    ties by position), leaving out certain calls (distance above ``MAX_LOGIT_DISTANCE``)."""
    quota = math.floor(budget * len(scores) + 1e-9)
    dist = [(uncertainty_distance(p, boundaries), i) for i, p in enumerate(scores)]
    ranked = sorted((d, i) for d, i in dist if d <= MAX_LOGIT_DISTANCE)
    return [i for _, i in ranked[:quota]]


class JudgeStage:
    """Routes results to the judge and applies its verdicts."""

    def __init__(
        self, config: Any, band: tuple[float, float] | None, judge: Judge, boundaries: tuple[float, ...] = (0.5,)
    ) -> None:
        self.config = config
        self.band = band
        self.judge = judge
        self.boundaries = boundaries
        self.routed_log: list[tuple[str, float]] = []  # the last chunk's routed (id, distance), least certain first

    def select(self, results: list[LeakageResult]) -> list[int]:
        """Indices of the results routed to the judge (in order of uncertainty under the budget rule)."""
        mode = self.config.judge.mode
        if mode == "always":
            return list(range(len(results)))
        if self.band is not None:
            lo, hi = self.band
            return [i for i, r in enumerate(results) if lo <= r.vsil_score < hi]
        return budget_select([r.vsil_score for r in results], self.config.judge.budget, self.boundaries)

    def run(self, items: list[tuple[LeakageResult, Record, Evidence]]) -> list[LeakageResult]:
        """The results of ``items``, in order, with the routed rows' verdicts applied."""
        out = [r for r, _, _ in items]
        sel = self.select(out)
        self.routed_log = [(out[i].id, round(uncertainty_distance(out[i].vsil_score, self.boundaries), 4)) for i in sel]
        if not sel:
            return out
        outcomes = self.judge.judge([_item(out[i], items[i][2]) for i in sel])
        for i, o in zip(sel, outcomes):
            r = out[i]
            if o.verdict is None:
                out[i] = replace(r, judge_error=o.error)
                continue
            v = o.verdict
            spans = r.leaked_spans
            if v.level == 0:
                spans = []
            elif v.span_start >= 0:
                spans = [{"start": v.span_start, "end": v.span_start + len(v.leaked_span), "text": v.leaked_span}]
            out[i] = replace(
                r,
                vsil_level=v.level,
                is_leak=v.level == 2,
                decided_by="judge",
                judge_rationale=v.rationale,
                leaked_spans=spans,
            )
        return out

    def close(self) -> None:
        self.judge.close()


def _item(r: LeakageResult, ev: Evidence) -> JudgeItem:
    """What the judge is asked: the sample, with the classifier's harm and naming evidence as hints."""
    naming = tuple(dict.fromkeys(s["text"] for s in r.leaked_spans if s.get("text")))
    harm = r.text_risk if r.text_risk == r.text_risk else None
    return JudgeItem(r.query, list(ev.parts), text_harm=harm, naming=naming)
