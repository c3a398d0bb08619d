"""Which rows go to the LLM judge, and what its verdict changes.

``JudgeStage`` routes the classifier's results (``always``: every scored row; ``auto``: rows whose
P(leak) lies in the uncertainty band), asks the judge through its cache, and returns new results:
a valid verdict sets the level, ``is_leak``, the spans and ``decided_by = "judge"``; a failed call
keeps the classifier's decision with ``judge_error``. The judge is built by whoever builds the stage
and closed by its ``close``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from vsil.errors import UsageError
from vsil.schema import Evidence, LeakageResult, Record
from vsil.stages.judge import Judge, JudgeItem, describe_judge


def judge_band(config: Any, shipped: Any) -> tuple[float, float] | None:
    """Under ``judge="auto"``, the uncertainty band routed to the judge (config, else the model's)."""
    if config.judge.mode != "auto":
        return None
    band = config.judge.band or ((float(shipped[0]), float(shipped[1])) if shipped else None)
    if band is None:
        raise UsageError(
            "judge='auto' needs an uncertainty band: this classifier ships none, so set judge_band=[low, high]"
        )
    return (float(band[0]), float(band[1]))


def describe_routing(config: Any, band: tuple[float, float] | None) -> str:
    if band is None:
        return str(config.judge.mode)
    return f"{config.judge.mode} band [{band[0]:.3f}, {band[1]:.3f})"


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


class JudgeStage:
    """Routes results to the judge and applies its verdicts."""

    def __init__(self, config: Any, band: tuple[float, float] | None, judge: Judge) -> None:
        self.config = config
        self.band = band
        self.judge = judge

    def routes(self, p: float) -> bool:
        """Whether a row with classifier P(leak) ``p`` goes to the judge."""
        if self.config.judge.mode == "always" or self.band is None:
            return True
        return self.band[0] <= p < self.band[1]

    def run(self, items: list[tuple[LeakageResult, Record, Evidence]]) -> list[LeakageResult]:
        """The results of ``items``, in order, with the routed rows' verdicts applied."""
        out = [r for r, _, _ in items]
        sel = [i for i, (r, _, _) in enumerate(items) if self.routes(r.vsil_score)]
        if not sel:
            return out
        outcomes = self.judge.judge([JudgeItem(items[i][1].query, list(items[i][2].parts)) for i in sel])
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
