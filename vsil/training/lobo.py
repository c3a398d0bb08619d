"""Leave-one-benchmark-out (LOBO): how the semantic leak classifier is chosen and what it is reported with.

Every training pair belongs to one group (``vsil.training.pairs.build_pairs``: a public text set, a
multimodal benchmark or a synthetic set). For each held-out group G the caller has already given every
pair its text-harm features from a text-harm model fitted without G's texts (``train.py`` does this);
here, for each G,

- the leak classifier (standardised multinomial LR, every group the same total weight, labels balanced
  inside a group) is refitted on the other groups and scores G;
- the partial-leak model (a binary LR over the ``PartialModel`` input, fitted on the non-leak rows) is
  refitted on the other groups and scores G.

Every choice is made on these out-of-group predictions only, never on dev: the Platt map of P(2); the
confident-harm rule's ``tau`` and the leak threshold (the pair that maximises the mean group score: the
balanced accuracy of the leak call, which does not depend on how many leaks each group happens to hold);
the partial threshold (mean 3-level kappa over the groups with more than one label). Dev rows of source
S are scored by the models fitted without group S and are reported beside, never used to choose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vsil.stages.classify import LinearLeakModel
from vsil.training.estimator import LeakageClassifier

GRID = np.round(np.arange(0.05, 0.951, 0.025), 3)
TAU_GRID = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99, 1.01)  # 1.01: the rule never fires
JUDGE_RATE = 0.15


def group_weights(groups: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Every group the same total weight; inside a group every label the same weight. Mean weight 1."""
    w = np.zeros(len(y))
    for g in sorted(set(groups.tolist())):
        m = groups == g
        labs = sorted(set(y[m].tolist()))
        for lab in labs:
            mm = m & (y == lab)
            w[mm] = 1.0 / (len(labs) * mm.sum())
    return w * len(y) / w.sum()


def fit_leak(X: np.ndarray, y: np.ndarray, groups: np.ndarray, names: tuple[str, ...], C: float) -> LinearLeakModel:
    return LeakageClassifier(C=C, feature_names=names).fit(X, y, sample_weight=group_weights(groups, y)).model_


def fit_partial(H: np.ndarray, y: np.ndarray, groups: np.ndarray, C: float, seed: int = 0) -> tuple[np.ndarray, float]:
    """(coef, intercept) of P(level 1 | not a leak) on standardised inputs ``H`` of the non-leak rows."""
    from sklearn.linear_model import LogisticRegression

    nl = y < 2
    w = group_weights(groups[nl], y[nl])
    m = LogisticRegression(C=C, max_iter=3000, random_state=seed).fit(H[nl], (y[nl] == 1).astype(int), sample_weight=w)
    return m.coef_[0].astype(np.float64), float(m.intercept_[0])


def platt(p2: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    p = np.clip(p2, 1e-6, 1 - 1e-6)
    z = np.log(p / (1 - p))
    lr = LogisticRegression(C=100.0).fit(z[:, None], (y == 2).astype(int), sample_weight=w)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def calib(p2: np.ndarray, ab: tuple[float, float]) -> np.ndarray:
    p = np.clip(p2, 1e-9, 1 - 1e-9)
    return np.asarray(1 / (1 + np.exp(-(ab[0] * np.log(p / (1 - p)) + ab[1]))))


def harm_max(p2: np.ndarray, harm: np.ndarray, tau: float) -> np.ndarray:
    """P(leak) under the confident-harm rule (``HarmRule.apply``): max(P, harm) where harm >= tau."""
    return np.where(harm >= tau, np.maximum(p2, harm), p2)


def group_score(y: np.ndarray, p: np.ndarray, t: float) -> float:
    """Balanced accuracy of the leak call in one group: (recall + specificity) / 2, or recall alone in a
    group with only leaks and specificity alone in one without. Unlike F1 it does not depend on the
    group's share of leaks, which is an artefact of how the groups were built (most text groups are
    all leaks, the pair groups half): choosing the threshold by mean group F1 put it at 0.35 and called
    31% of VLSBench a leak, choosing it by this score is blind to the groups' prevalence."""
    pos = y == 2
    pred = p >= t
    if pos.sum() == 0:
        return float((~pred).mean())
    if pos.all():
        return float(pred.mean())
    return float(0.5 * (pred[pos].mean() + (~pred[~pos]).mean()))


def group_f1(y: np.ndarray, p: np.ndarray, t: float) -> float:
    """Leak F1 when the group has leaks, else accuracy (1 - false-positive rate): the reported figure."""
    pos = y == 2
    pred = p >= t
    if pos.sum() == 0:
        return float((~pred).mean())
    return float(2 * (pred & pos).sum() / (pred.sum() + pos.sum()))


def mean_score(y: np.ndarray, p: np.ndarray, groups: np.ndarray, t: float, allowed: Sequence[str]) -> float:
    return float(np.mean([group_score(y[groups == g], p[groups == g], t) for g in allowed]))


def choose_threshold(y: np.ndarray, p: np.ndarray, groups: np.ndarray, allowed: Sequence[str]) -> float:
    """Threshold on ``GRID`` maximising the mean group score over ``allowed`` (ties: nearest 0.5)."""
    best = max((round(mean_score(y, p, groups, float(t), allowed), 6), -abs(t - 0.5), float(t)) for t in GRID)
    return best[2]


def levels(p2: np.ndarray, t: float, partial: np.ndarray, pt: float) -> np.ndarray:
    return np.where(p2 >= t, 2, np.where(partial >= pt, 1, 0))


def kappa3(y: np.ndarray, lv: np.ndarray) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(set(y.tolist())) < 2:
        return float("nan")
    return float(cohen_kappa_score(y, lv))


def judge_f1(y: np.ndarray, p: np.ndarray, t: float, rate: float = JUDGE_RATE) -> float:
    """Leak F1 (accuracy without leaks) when the ``rate`` share of rows nearest the threshold (logit
    distance) get their gold label from an ideal judge and the rest keep the classifier's call."""
    n = len(y)
    pc = np.clip(p, 1e-6, 1 - 1e-6)
    tc = min(max(t, 1e-6), 1 - 1e-6)
    dist = np.abs(np.log(pc / (1 - pc)) - math.log(tc / (1 - tc)))
    judged = np.zeros(n, bool)
    judged[np.argsort(dist, kind="stable")[: math.floor(rate * n)]] = True
    pos = y == 2
    pred = np.where(judged, pos, p >= t)
    if pos.sum() == 0:
        return float((~pred).mean())
    return float(2 * (pred & pos).sum() / (pred.sum() + pos.sum()))


def metrics(y: np.ndarray, p: np.ndarray, lv: np.ndarray, t: float) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    pos = y == 2
    return {
        "n": len(y),
        "leaks": int(pos.sum()),
        "partial": int((y == 1).sum()),
        "auroc": float(roc_auc_score(pos, p)) if 0 < pos.sum() < len(y) else float("nan"),
        "score": group_f1(y, p, t),
        "balanced_accuracy": group_score(y, p, t),
        "metric": "f1" if pos.sum() else "accuracy",
        "kappa3": kappa3(y, lv),
        "judge_f1": judge_f1(y, p, t),
    }


@dataclass
class LoboResult:
    threshold: float
    tau: float
    partial_threshold: float
    calibration: tuple[float, float]
    per_group: dict[str, dict[str, Any]]
    dev_per_source: dict[str, dict[str, Any]]
    dev: dict[str, Any]
    summary: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def run_lobo(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    harm: np.ndarray,
    H: np.ndarray,
    Xdev: np.ndarray,
    ydev: np.ndarray,
    dev_groups: np.ndarray,
    harm_dev: np.ndarray,
    Hdev: np.ndarray,
    names: tuple[str, ...],
    *,
    C: float = 0.3,
    partial_C: float = 0.05,
    tau_grid: Sequence[float] = TAU_GRID,
    log: Callable[[str], Any] = print,
) -> LoboResult:
    """The LOBO run of the recipe (see the module docstring). ``X``: the classifier's features of each
    pair (text-harm features already out-of-group), ``harm``: its ``sem_text_risk``, ``H``: the
    standardised ``PartialModel`` input; the same for the dev rows."""
    allg = sorted(set(groups.tolist()))
    P, Pd = np.zeros((len(X), 3)), np.zeros((len(Xdev), 3))
    ps, psd = np.zeros(len(X)), np.zeros(len(Xdev))
    for g in allg:
        tr, te, dm = groups != g, groups == g, dev_groups == g
        clf = fit_leak(X[tr], y[tr], groups[tr], names, C)
        P[te] = clf.proba_by_level(X[te])
        coef, b = fit_partial(H[tr], y[tr], groups[tr], partial_C)
        ps[te] = 1 / (1 + np.exp(-(H[te] @ coef + b)))
        if dm.any():
            Pd[dm] = clf.proba_by_level(Xdev[dm])
            psd[dm] = 1 / (1 + np.exp(-(Hdev[dm] @ coef + b)))
    log(f"LOBO: {len(allg)} groups refitted")
    ab = platt(P[:, 2], y, group_weights(groups, y))
    p2, p2d = calib(P[:, 2], ab), calib(Pd[:, 2], ab)
    best: tuple[float, float, float] | None = None
    for tau in tau_grid:
        pp = harm_max(p2, harm, tau)
        t = choose_threshold(y, pp, groups, allg)
        s = mean_score(y, pp, groups, t, allg)
        if best is None or s > best[0] + 1e-9:
            best = (s, float(tau), t)
    assert best is not None
    _, tau, t = best
    p2, p2d = harm_max(p2, harm, tau), harm_max(p2d, harm_dev, tau)
    has1 = [g for g in allg if (y[groups == g] == 1).any()]
    # the partial threshold: mean 3-level kappa over every group where it is defined, so that a partial
    # call on a group without level-1 rows counts against it (over the level-1 groups alone the choice
    # drifts to a threshold that calls most non-leaks partial)
    multi = [g for g in allg if len(set(y[groups == g].tolist())) > 1]
    bpt: tuple[float, float] | None = None
    for pt in [*GRID.tolist(), 1.01]:
        lv = levels(p2, t, ps, pt)
        k = float(np.nanmean([kappa3(y[groups == g], lv[groups == g]) for g in multi]))
        if bpt is None or k > bpt[0] + 1e-9:
            bpt = (k, float(pt))
    assert bpt is not None
    pt = bpt[1]
    lv, lvd = levels(p2, t, ps, pt), levels(p2d, t, psd, pt)
    per = {g: metrics(y[groups == g], p2[groups == g], lv[groups == g], t) for g in allg}
    for g in allg:  # the threshold re-chosen without the held-out group
        tg = choose_threshold(y, p2, groups, [h for h in allg if h != g])
        per[g]["nested_score"] = group_f1(y[groups == g], p2[groups == g], tg)
    dev_per = {
        s: metrics(ydev[dev_groups == s], p2d[dev_groups == s], lvd[dev_groups == s], t)
        for s in sorted(set(dev_groups.tolist()))
    }
    dev_all = metrics(ydev, p2d, lvd, t)
    f1 = {g: m["score"] for g, m in per.items() if m["metric"] == "f1"}
    acc = [m["score"] for m in per.values() if m["metric"] == "accuracy"]
    worst = min(f1, key=lambda g: f1[g])
    summary = {
        "lobo_mean_f1": float(np.mean(list(f1.values()))),
        "lobo_worst_f1": f1[worst],
        "lobo_worst_group": worst,
        "lobo_min_accuracy_no_leak_groups": float(min(acc)) if acc else float("nan"),
        "lobo_mean_nested_f1": float(np.mean([per[g]["nested_score"] for g in f1])),
        "lobo_mean_auroc": float(np.nanmean([m["auroc"] for m in per.values()])),
        "lobo_mean_kappa": float(np.nanmean([per[g]["kappa3"] for g in multi])),
        "lobo_mean_kappa_groups": multi,
        "lobo_mean_kappa_level1_groups": float(np.nanmean([per[g]["kappa3"] for g in has1])),
        "judge_budget_ideal_f1": float(np.mean([per[g]["judge_f1"] for g in f1])),
        "judge_budget_ideal_worst_f1": float(min(per[g]["judge_f1"] for g in f1)),
        "dev_loso_f1": dev_all["score"],
        "dev_loso_kappa": dev_all["kappa3"],
        "dev_auroc": dev_all["auroc"],
        "dev_judge_f1": dev_all["judge_f1"],
    }
    return LoboResult(
        t, tau, pt, ab, per, dev_per, dev_all, summary, {"p2": p2, "p2d": p2d, "partial": ps, "partial_dev": psd}
    )


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return "—" if math.isnan(x) else f"{x:.3f}"
    return str(x)


def format_lobo(res: LoboResult, title: str = "LOBO") -> str:
    """The per-group table (dev beside) as Markdown."""
    s = res.summary
    lines = [
        f"## {title}: threshold {res.threshold:.3f}, harm rule tau {res.tau:.2f}, partial threshold "
        f"{res.partial_threshold:.3f}, Platt {res.calibration[0]:.3f} / {res.calibration[1]:.3f}",
        "",
        "| group | n | leaks | lvl1 | AUROC | F1 (acc*) | nested | kappa3 | judge@15% |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for g, m in res.per_group.items():
        sc = _fmt(m["score"]) + ("*" if m["metric"] == "accuracy" else "")
        lines.append(
            f"| {g} | {m['n']} | {m['leaks']} | {m['partial']} | {_fmt(m['auroc'])} | {sc} | "
            f"{_fmt(m['nested_score'])} | {_fmt(m['kappa3'])} | {_fmt(m['judge_f1'])} |"
        )
    lines.append(
        f"| **mean (groups with leaks)** | | | | {_fmt(s['lobo_mean_auroc'])} | {_fmt(s['lobo_mean_f1'])} | "
        f"{_fmt(s['lobo_mean_nested_f1'])} | {_fmt(s['lobo_mean_kappa'])} (lvl-1 groups "
        f"{_fmt(s['lobo_mean_kappa_level1_groups'])}) | "
        f"{_fmt(s['judge_budget_ideal_f1'])} |"
    )
    lines.append(
        f"| **worst** | | | | | {_fmt(s['lobo_worst_f1'])} ({s['lobo_worst_group']}) | | | "
        f"{_fmt(s['judge_budget_ideal_worst_f1'])} |"
    )
    lines += [
        "",
        "| dev source (model without that group) | n | AUROC | F1 | kappa3 | judge@15% |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in [*res.dev_per_source.items(), ("**dev all**", res.dev)]:
        lines.append(
            f"| {name} | {m['n']} | {_fmt(m['auroc'])} | {_fmt(m['score'])} | {_fmt(m['kappa3'])} | "
            f"{_fmt(m['judge_f1'])} |"
        )
    return "\n".join(lines)
