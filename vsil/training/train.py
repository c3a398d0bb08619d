"""``vsil train``: rebuild the shipped models from the shared data, deterministically, and print metrics.

Models: the lexical harm model (``harm_model.npz``), the semantic harm head (``sem_harm.json``, its
linear half, and ``sem_harm_prototypes.npz``, its nearest-prototype half), and
two leak classifiers (``classifier_lexical.json``, ``classifier_semantic.json``).

Evaluation is leave-one-source-out (LOSO) over the dev set's sources: for each source S the classifier
is refitted without any training pair from S and scores the dev rows of S. The dev rows are never
used for fitting. The default threshold is the one that maximises leak F1 on the LOSO dev
predictions (0.05 grid). Probabilities are Platt-calibrated on out-of-fold predictions where each
fold is one training source (so calibration reflects unseen-benchmark behaviour).
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vsil.stages.classify import LinearLeakModel, ShippedModel
from vsil.stages.features import PairFeatures, combine
from vsil.stages.features.harm import N_FEATURES, HarmModel, featurize
from vsil.stages.features.lexical import LEXICAL_FEATURES, PairAnalysis, analyze_pair
from vsil.stages.features.semantic import (
    PROTOTYPES_FILE,
    SEMANTIC_FEATURES,
    HarmHead,
    LinearHead,
    PrototypeHead,
    SemanticFeaturizer,
)
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


def train_sem_head(
    E: np.ndarray, labels: list[int], C: float = 2.0, seed: int = 0, meta: dict[str, Any] | None = None
) -> LinearHead:
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=3000, random_state=seed)
    lr.fit(E, np.asarray(labels))
    return LinearHead(lr.coef_[0].astype(np.float32), float(lr.intercept_[0]), meta or {})


PROTOTYPES = (512, 1024, 3)  # harmful centroids, benign centroids, nearest centroids averaged


def train_prototypes(E: np.ndarray, labels: list[int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm k-means centroids of the harmful and of the benign embeddings (``PROTOTYPES`` sizes)."""
    from sklearn.cluster import MiniBatchKMeans

    y = np.asarray(labels)
    out = []
    for cls, n in ((1, PROTOTYPES[0]), (0, PROTOTYPES[1])):
        X = E[y == cls]
        km = MiniBatchKMeans(n_clusters=min(n, len(X)), random_state=seed, n_init=3, batch_size=2048).fit(X)
        C = km.cluster_centers_.astype(np.float32)
        out.append(C / np.linalg.norm(C, axis=1, keepdims=True))
    return out[0], out[1]


def calibrate_prototypes(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) of ``sigmoid(a * score + b)``, fitted on out-of-fold prototype scores."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=100.0, class_weight="balanced").fit(scores[:, None], labels)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


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

    def text(self) -> str:
        return f"training pairs per source: {self.n_train}\n\n" + "\n\n".join(m.text() for m in self.models.values())


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

    if semantic:
        from vsil.stages.features.embed import resolve_embedder

        choice = resolve_embedder("auto", show_progress_bar=True, cache_dir=cache_dir)
        if choice.embedder is None:
            raise RuntimeError("semantic training needs an embedder: " + "; ".join(choice.warnings))
        emb = choice.embedder
        E = emb.encode(texts)
        fold_lin, fold_protos, oof_scores, oof_labels = [], [], [], []
        for fs in fold_sets:
            keep = [i for i, t in enumerate(texts) if t not in fs]
            held = [i for i, t in enumerate(texts) if t in fs]
            fold_lin.append(train_sem_head(E[keep], [labels[i] for i in keep], seed=seed))
            H, B = train_prototypes(E[keep], [labels[i] for i in keep], seed=seed)
            fold_protos.append(PrototypeHead(H, B, PROTOTYPES[2], 1.0, 0.0))
            oof_scores.append(fold_protos[-1].score(E[held]))
            oof_labels += [labels[i] for i in held]
        a, b = calibrate_prototypes(np.concatenate(oof_scores), np.asarray(oof_labels))
        fold_heads = [
            HarmHead(lin, PrototypeHead(pr.harmful, pr.benign, pr.k, a, b)) for lin, pr in zip(fold_lin, fold_protos)
        ]
        H, B = train_prototypes(E, labels, seed=seed)
        lin_meta = {
            "embedder": choice.description,
            "n_train": len(texts),
            "prototypes": list(PROTOTYPES),
            "prototype_calibration": [a, b],
        }
        head = HarmHead(train_sem_head(E, labels, seed=seed, meta=lin_meta), PrototypeHead(H, B, PROTOTYPES[2], a, b))
        log(f"semantic harm head on {choice.description}: {time.time() - t0:.1f}s")
        feat = SemanticFeaturizer(emb, tax, head)
        F_tr: list[PairFeatures] = []
        F_dev: list[PairFeatures] = []
        for A, F, pairs, crossfit in ((A_tr, F_tr, train_pairs, True), (A_dev, F_dev, dev, False)):
            for i in range(0, len(pairs), 512):
                items = [(p.query, a.query_tokens, a) for p, a in zip(pairs[i : i + 512], A[i : i + 512])]
                heads = [
                    fold_heads[fold_of[p.query]] if crossfit and p.query in fold_of else head
                    for p in pairs[i : i + 512]
                ]
                F += [combine(a, s) for (_, _, a), s in zip(items, feat.features(items, heads))]
        log(f"semantic features: {time.time() - t0:.1f}s")
        names = LEXICAL_FEATURES + SEMANTIC_FEATURES
        sem_model, sem_rep = fit_and_evaluate(
            "semantic-logreg",
            train_pairs,
            mat(F_tr, names),
            dev,
            mat(F_dev, names),
            names,
            C,
            {**meta, "embedder": choice.description},
        )
        report.models["semantic"] = sem_rep
        outputs["classifier_semantic.json"] = sem_model.to_json()
        outputs["sem_harm.json"] = head.linear.to_json()

    if write:
        os.makedirs(out_dir, exist_ok=True)
        harm.save(os.path.join(out_dir, "harm_model.npz"))
        if semantic:
            assert head.prototypes is not None
            head.prototypes.save(os.path.join(out_dir, PROTOTYPES_FILE))
        for fname, text in outputs.items():
            with open(os.path.join(out_dir, fname), "w", encoding="utf-8") as f:
                f.write(text)
        log(f"wrote harm_model.npz, {', '.join(outputs)}{', ' + PROTOTYPES_FILE if semantic else ''} to {out_dir}")
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
        },
        indent=1,
    )
