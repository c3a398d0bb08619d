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
    out["kappa3"] = float(cohen_kappa_score(lv, pred_level)) if len(set(lv.tolist()) | set(np.asarray(pred_level).tolist())) > 1 else float("nan")
    return out


def best_f1_threshold(y_level: np.ndarray, score: np.ndarray, grid: np.ndarray | None = None) -> float:
    """The threshold on a 0.05 grid that maximises leak F1 (ties: the one closest to 0.5)."""
    from sklearn.metrics import f1_score

    y = (np.asarray(y_level) == 2).astype(int)
    g = grid if grid is not None else np.round(np.arange(0.05, 0.951, 0.05), 2)
    scores = [(f1_score(y, (score >= t).astype(int), zero_division=0), -abs(t - 0.5), float(t)) for t in g]
    return max(scores)[2]


def format_table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    """A plain Markdown table."""
    def fmt(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)
