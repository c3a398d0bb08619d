"""``vsil train``: rebuild the shipped harm model and leak classifier from the shared data.

Deterministic for a given seed. Evaluation is leave-one-source-out over the dev set's sources:
for each source S the classifier is trained without any pair from S and scores the dev rows of S.
The dev rows themselves are never used for fitting; the default threshold is the one that
maximises leak F1 on those held-out predictions.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .classifier import LinearLeakModel, ShippedModel
from .corpora import Pair, benchmark_pairs, harm_corpus, load_gold
from .estimator import LeakageClassifier
from .evaluate import best_f1_threshold, format_table, leak_metrics
from .features import LEXICAL_FEATURES, analyze_pair
from .harm import N_FEATURES, HarmModel, featurize
from .taxonomy import load_taxonomy
from .text import tokenize

PKG_DATA = os.path.join(os.path.dirname(__file__), "data")
N_FOLDS = 5


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
class TrainReport:
    loso: dict[str, dict[str, Any]] = field(default_factory=dict)
    overall_loso: dict[str, Any] = field(default_factory=dict)
    dev_holdout: dict[str, Any] = field(default_factory=dict)
    threshold: float = 0.5
    n_train: dict[str, int] = field(default_factory=dict)

    def text(self) -> str:
        rows = [{"source": s, **m} for s, m in self.loso.items()]
        rows.append({"source": "ALL (LOSO)", **self.overall_loso})
        rows.append({"source": "ALL (shipped model)", **self.dev_holdout})
        cols = ["source", "n", "positives", "auroc", "f1", "precision", "recall", "kappa3"]
        return (
            f"training pairs per source: {self.n_train}\n"
            f"default threshold (max leak F1 on LOSO dev predictions): {self.threshold:.2f}\n\n"
            + format_table(rows, cols)
        )


def pair_matrix(pairs: list[Pair], names: tuple[str, ...], analyzer: Any) -> np.ndarray:
    return np.stack([analyzer(p).vector(names) for p in pairs]) if pairs else np.zeros((0, len(names)))


def _weights(pairs: list[Pair]) -> np.ndarray:
    """Each (source, label) group gets the same total weight, so big sources do not dominate."""
    cnt = Counter((p.source, p.label) for p in pairs)
    w = np.array([1.0 / cnt[(p.source, p.label)] for p in pairs])
    return w * len(pairs) / w.sum()


def fit_classifier(X: np.ndarray, pairs: list[Pair], names: tuple[str, ...], C: float) -> LinearLeakModel:
    y = np.array([p.label for p in pairs])
    return LeakageClassifier(C=C, feature_names=names).fit(X, y, sample_weight=_weights(pairs)).model_


def train(
    shared: str,
    out_dir: str = PKG_DATA,
    *,
    seed: int = 0,
    C: float = 1.0,
    write: bool = True,
    log: Any = print,
) -> TrainReport:
    """Train the harm model and the lexical leak classifier; write them to ``out_dir``."""
    t0 = time.time()
    tax = load_taxonomy()
    texts, labels = harm_corpus(shared, seed=seed)
    harm = train_harm_model(texts, labels, seed=seed)
    log(f"harm model: {len(texts)} prompts ({sum(labels)} harmful), {time.time() - t0:.1f}s")

    dev = load_gold(shared, "dev")
    exclude = {(p.source, p.ref) for p in dev}
    train_pairs = load_gold(shared, "synthetic") + benchmark_pairs(shared, exclude, seed=seed)
    names = LEXICAL_FEATURES

    # cross-fit: a synthetic pair's text_risk comes from a harm model that never saw its query,
    # so the classifier learns how much to trust text_risk on unseen text
    synth = sorted({p.query for p in train_pairs if p.source == "synthetic"})
    fold_of = {q: i % N_FOLDS for i, q in enumerate(random.Random(seed).sample(synth, len(synth)))}
    fold_models = [
        train_harm_model(*harm_corpus(shared, seed=seed, exclude={q for q, f in fold_of.items() if f == k}), seed=seed)
        for k in range(N_FOLDS)
    ]
    log(f"cross-fitted harm models: {N_FOLDS} folds, {time.time() - t0:.1f}s")

    def analyzer(p: Pair) -> Any:
        ev = [("caption", p.caption)] + ([("safety_reason", p.safety_reason)] if p.safety_reason else [])
        h = fold_models[fold_of[p.query]] if p.query in fold_of else harm
        return analyze_pair(p.query, ev, tax, h)

    Xtr = pair_matrix(train_pairs, names, analyzer)
    Xdev = pair_matrix(dev, names, analyzer)
    ydev = np.array([p.label for p in dev])
    srcs = np.array([p.source for p in dev])
    tr_src = np.array([p.source for p in train_pairs])
    log(f"features: {len(train_pairs)} training pairs, {len(dev)} dev rows, {time.time() - t0:.1f}s")

    # leave-one-source-out over the dev sources
    P_loso = np.zeros((len(dev), 3))
    for s in sorted(set(srcs.tolist())):
        keep = tr_src != s
        clf = fit_classifier(Xtr[keep], [p for p, k in zip(train_pairs, keep) if k], names, C)
        P_loso[srcs == s] = _proba3(clf, Xdev[srcs == s])
    threshold = best_f1_threshold(ydev, P_loso[:, 2])
    shipped_tmp = ShippedModel(fit_classifier(Xtr, train_pairs, names, C), threshold, {})
    rep = TrainReport(threshold=threshold, n_train=dict(Counter(tr_src.tolist())))
    lv_loso = shipped_tmp.levels(P_loso, threshold)
    for s in sorted(set(srcs.tolist())):
        m = srcs == s
        rep.loso[s] = leak_metrics(ydev[m], P_loso[m, 2], lv_loso[m], threshold)
    rep.overall_loso = leak_metrics(ydev, P_loso[:, 2], lv_loso, threshold)
    P_dev = _proba3(shipped_tmp.clf, Xdev)
    rep.dev_holdout = leak_metrics(ydev, P_dev[:, 2], shipped_tmp.levels(P_dev, threshold), threshold)

    meta = {
        "name": "lexical-logreg",
        "trained_at": time.strftime("%Y-%m-%d"),
        "seed": seed,
        "features": list(names),
        "training_data": rep.n_train,
        "threshold_rule": "max leak F1 on leave-one-source-out dev predictions, 0.05 grid",
        "dev_metrics_loso": rep.overall_loso,
        "dev_metrics_shipped": rep.dev_holdout,
    }
    shipped = ShippedModel(shipped_tmp.clf, threshold, meta)
    if write:
        os.makedirs(out_dir, exist_ok=True)
        harm.save(os.path.join(out_dir, "harm_model.npz"))
        with open(os.path.join(out_dir, "classifier_lexical.json"), "w", encoding="utf-8") as f:
            f.write(shipped.to_json())
        log(f"wrote {out_dir}/harm_model.npz and classifier_lexical.json")
    log(rep.text())
    log(f"total {time.time() - t0:.1f}s")
    return rep


def _proba3(clf: LinearLeakModel, X: np.ndarray) -> np.ndarray:
    P = clf.predict_proba(X)
    out = np.zeros((len(X), 3))
    for j, c in enumerate(clf.classes_):
        out[:, int(c)] = P[:, j]
    return out


def main_json(report: TrainReport) -> str:
    return json.dumps({"loso": report.loso, "overall_loso": report.overall_loso, "shipped": report.dev_holdout}, indent=1)
