"""Metrics against gold labels: AUROC, F1/precision/recall of the leak class, 3-level Cohen's kappa."""

from __future__ import annotations

from typing import Any

import numpy as np


def leak_metrics(y_level: np.ndarray, score: np.ndarray, pred_level: np.ndarray, threshold: float) -> dict[str, Any]:
    """Binary metrics treat label 2 as positive; kappa compares the 0/1/2 levels."""
    from sklearn.metrics import cohen_kappa_score, f1_score, precision_score, recall_score, roc_auc_score

    y = (np.asarray(y_level) == 2).astype(int)
    pred = (np.asarray(score) >= threshold).astype(int)
    out: dict[str, Any] = {"n": len(y), "positives": int(y.sum())}
    out["auroc"] = float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else float("nan")
    out["f1"] = float(f1_score(y, pred, zero_division=0))
    out["precision"] = float(precision_score(y, pred, zero_division=0))
    out["recall"] = float(recall_score(y, pred, zero_division=0))
    out["accuracy"] = float((y == pred).mean())
    lv = np.asarray(y_level)
    out["kappa3"] = (
        float(cohen_kappa_score(lv, pred_level))
        if len(set(lv.tolist()) | set(np.asarray(pred_level).tolist())) > 1
        else float("nan")
    )
    return out


def best_f1_threshold(y_level: np.ndarray, score: np.ndarray, grid: np.ndarray | None = None) -> float:
    """The threshold on a 0.05 grid that maximises leak F1 (ties: the one closest to 0.5)."""
    from sklearn.metrics import f1_score

    y = (np.asarray(y_level) == 2).astype(int)
    g = grid if grid is not None else np.round(np.arange(0.05, 0.951, 0.05), 2)
    scores = [(f1_score(y, (score >= t).astype(int), zero_division=0), -abs(t - 0.5), float(t)) for t in g]
    return max(scores)[2]


def choose_partial_threshold(
    y_level: np.ndarray, P: np.ndarray, threshold: float, grid: np.ndarray | None = None
) -> float | None:
    """How the classifier says "partial leak" (level 1), chosen by 3-level Cohen's kappa.

    Candidates: the multinomial rule (``None``: level 1 when P(1) > P(0)) and every partial threshold
    on a 0.05 grid below ``threshold`` (level 1 when P(2) reaches it); see ``classifier.level_rule``.
    Returns the candidate with the highest kappa (ties: ``None``, then the higher threshold, which says
    "partial" less often).
    """
    from sklearn.metrics import cohen_kappa_score

    from vsil.stages.classify import level_rule

    g = grid if grid is not None else np.round(np.arange(0.05, threshold - 1e-9, 0.05), 2)
    cands: list[float | None] = [None, *sorted((float(t) for t in g), reverse=True)]
    best: tuple[float, float | None] | None = None
    for pt in cands:
        k = float(cohen_kappa_score(y_level, level_rule(P, threshold, pt)))
        if best is None or k > best[0] + 1e-12:
            best = (k, pt)
    assert best is not None
    return best[1]


def format_table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """A plain Markdown table."""

    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def oracle_judged_f1(
    y_level: np.ndarray, score: np.ndarray, threshold: float, band: tuple[float, float]
) -> tuple[float, float]:
    """(leak F1, share of rows judged) when rows with ``band[0] <= score < band[1]`` get their gold
    label from an ideal judge and the others keep the classifier's decision."""
    s = np.asarray(score)
    inside = (s >= band[0]) & (s < band[1])
    return routed_f1(y_level, s, threshold, inside), float(inside.mean())


def routed_f1(y_level: np.ndarray, score: np.ndarray, threshold: float, judged: np.ndarray) -> float:
    """Leak F1 when the ``judged`` rows get their gold label and the others the classifier's decision."""
    y = np.asarray(y_level) == 2
    pred = np.where(judged, y, np.asarray(score) >= threshold)
    tp, fp, fn = int((pred & y).sum()), int((pred & ~y).sum()), int((~pred & y).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def choose_judge_band(
    y_level: np.ndarray, score: np.ndarray, threshold: float, max_rate: float = 0.12, step: float = 0.01
) -> tuple[float, float]:
    """The uncertainty band [low, high) around ``threshold`` sent to the judge under ``--judge auto``.

    Rule: over bands on a ``step`` grid that contain the threshold and hold at most ``max_rate`` of
    the rows, take the one with the highest leak F1 when its rows get the gold label (an ideal
    judge); ties go to the band with fewer rows.
    """
    lows = np.round(np.arange(0.0, threshold + 1e-9, step), 4)
    highs = np.round(np.arange(threshold, 1.0 + step / 2, step), 4)
    best: tuple[float, float, float, float] | None = None
    for lo in lows:
        for hi in highs:
            if hi <= lo:
                continue
            f1, rate = oracle_judged_f1(y_level, score, threshold, (float(lo), float(hi)))
            if rate > max_rate:
                continue
            cand = (f1, -rate, float(lo), float(hi))
            if best is None or cand > best:
                best = cand
    if best is None:
        return (threshold, threshold)
    return (best[2], best[3])
