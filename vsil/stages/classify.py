"""The shipped leak classifier: standardised pair features -> multinomial logistic regression.

Its learned state is plain arrays saved as JSON (never pickle); inference needs only numpy. The
scikit-learn estimator that fits it is ``vsil.training.estimator.LeakageClassifier``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from vsil.schema import LeakageResult
from vsil.util.jsonio import dumps_clean


@dataclass
class LinearLeakModel:
    """Standardised features -> multinomial logistic regression, as plain arrays (numpy inference)."""

    feature_names: tuple[str, ...]
    classes_: np.ndarray
    mean_: np.ndarray
    scale_: np.ndarray
    coef_: np.ndarray
    intercept_: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        Z = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        return np.asarray(Z @ self.coef_.T + self.intercept_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        d = self.decision_function(X)
        if d.shape[1] == 1:  # binary
            p = 1.0 / (1.0 + np.exp(-d[:, 0]))
            return np.stack([1 - p, p], axis=1)
        d = d - d.max(axis=1, keepdims=True)
        e = np.exp(d)
        return np.asarray(e / e.sum(axis=1, keepdims=True))

    def proba_by_level(self, X: np.ndarray) -> np.ndarray:
        """(n, 3) matrix whose column k is P(level k); levels absent from training get 0."""
        P = self.predict_proba(X)
        out = np.zeros((len(P), 3))
        for j, c in enumerate(self.classes_):
            out[:, int(c)] = P[:, j]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "multinomial_logistic_regression",
            "params": self.params,
            "feature_names": list(self.feature_names),
            "classes": [int(c) for c in self.classes_],
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearLeakModel:
        if d.get("kind") != "multinomial_logistic_regression":
            raise ValueError(f"unknown classifier kind {d.get('kind')!r}")
        m = cls(
            feature_names=tuple(d["feature_names"]),
            classes_=np.array(d["classes"]),
            mean_=np.array(d["mean"], dtype=np.float64),
            scale_=np.array(d["scale"], dtype=np.float64),
            coef_=np.array(d["coef"], dtype=np.float64),
            intercept_=np.array(d["intercept"], dtype=np.float64),
            params=dict(d.get("params", {})),
        )
        if m.coef_.shape[1] != len(m.feature_names) or m.mean_.shape[0] != len(m.feature_names):
            raise ValueError("classifier coefficients do not match its feature names")
        return m


def level_rule(P: np.ndarray, threshold: float, partial_threshold: float | None) -> np.ndarray:
    """0/1/2 level from a (n, 3) class matrix: 2 when P(2) >= ``threshold``; below it, 1 when P(2) >=
    ``partial_threshold`` (a partial leak is a leak the query only half states), or, when that is
    None, the likelier of levels 0 and 1."""
    below = (
        np.where(P[:, 2] >= partial_threshold, 1, 0)
        if partial_threshold is not None
        else np.where(P[:, 1] > P[:, 0], 1, 0)
    )
    return np.where(P[:, 2] >= threshold, 2, below)


@dataclass
class PartialModel:
    """P(level 1 | not a leak): a logistic regression of its own for partial leaks (a query that hints
    at a risky goal, "without anyone noticing", while the risky content is only in the image).

    Its input, standardised by ``mean_`` / ``scale_``: the named pair features ``feature_names``, then
    the cosine similarity of the query to each of ``hint_phrases``, then (``query_embedding``) the
    query's embedding itself. A row that is not a leak is level 1 when this probability is at least
    ``threshold``."""

    feature_names: tuple[str, ...]
    hint_phrases: tuple[str, ...]
    query_embedding: bool
    mean_: np.ndarray
    scale_: np.ndarray
    coef_: np.ndarray
    intercept_: float
    threshold: float

    def vector(self, values: Any, hint_sims: np.ndarray, query_emb: np.ndarray | None) -> np.ndarray:
        parts = [np.array([values[n] for n in self.feature_names], dtype=np.float64), np.asarray(hint_sims, float)]
        if self.query_embedding:
            if query_emb is None:
                raise ValueError("this partial-leak model needs the query embedding (semantic mode)")
            parts.append(np.asarray(query_emb, dtype=np.float64))
        return np.concatenate(parts)

    def proba(self, X: np.ndarray) -> np.ndarray:
        Z = (np.atleast_2d(np.asarray(X, dtype=np.float64)) - self.mean_) / self.scale_
        return np.asarray(1.0 / (1.0 + np.exp(-(Z @ self.coef_ + self.intercept_))))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "logistic_regression",
            "feature_names": list(self.feature_names),
            "hint_phrases": list(self.hint_phrases),
            "query_embedding": self.query_embedding,
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_,
            "threshold": self.threshold,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PartialModel:
        if d.get("kind") != "logistic_regression":
            raise ValueError(f"unknown partial-leak model kind {d.get('kind')!r}")
        m = cls(
            tuple(d["feature_names"]),
            tuple(d.get("hint_phrases", ())),
            bool(d.get("query_embedding", False)),
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["scale"], dtype=np.float64),
            np.asarray(d["coef"], dtype=np.float64),
            float(d["intercept"]),
            float(d["threshold"]),
        )
        if len(m.coef_) != len(m.mean_) or len(m.scale_) != len(m.mean_):
            raise ValueError("partial-leak model arrays do not match")
        return m


@dataclass(frozen=True)
class HarmRule:
    """The definition's rule: a query harmful by itself is a leak whatever the image shows. When the
    text-only harm ``feature`` is at least ``tau``, P(leak) becomes max(P(leak), harm)."""

    feature: str
    tau: float

    def apply(self, P: np.ndarray, harm: np.ndarray) -> np.ndarray:
        out = P.copy()
        hit = harm >= self.tau
        boosted = np.maximum(out[hit, 2], harm[hit])
        rest = np.clip(1.0 - out[hit, 2], 1e-12, None)
        for c in (0, 1):  # P(0), P(1) shrink in proportion so the row still sums to 1
            out[hit, c] = out[hit, c] / rest * (1.0 - boosted)
        out[hit, 2] = boosted
        return out


class ShippedModel:
    """The classifier plus its operating point (threshold), the harm rule, the partial-leak model and
    training metadata."""

    def __init__(
        self,
        clf: LinearLeakModel,
        threshold: float,
        meta: dict[str, Any],
        calibration: tuple[float, float] = (1.0, 0.0),
        partial_threshold: float | None = None,
        harm_rule: HarmRule | None = None,
        partial_model: PartialModel | None = None,
    ) -> None:
        self.clf = clf
        self.threshold = threshold
        self.meta = meta
        self.calibration = calibration
        self.partial_threshold = partial_threshold
        self.harm_rule = harm_rule
        self.partial_model = partial_model

    def calibrate3(self, P: np.ndarray) -> np.ndarray:
        """Class matrix (columns 0, 1, 2) with P(2) Platt-calibrated and P(0), P(1) rescaled to sum to 1."""
        a, b = self.calibration
        p2 = np.clip(P[:, 2], 1e-9, 1 - 1e-9)
        c2 = 1.0 / (1.0 + np.exp(-(a * np.log(p2 / (1 - p2)) + b)))
        rest = np.clip(1.0 - p2, 1e-12, None)
        out = P.copy()
        out[:, 0] = P[:, 0] / rest * (1 - c2)
        out[:, 1] = P[:, 1] / rest * (1 - c2)
        out[:, 2] = c2
        return out

    def proba3(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(level 0), P(level 1), P(level 2) for each row of ``X``."""
        return self.calibrate3(self.clf.proba_by_level(X))

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.clf.feature_names

    def leak_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(label 2) for each row of ``X``."""
        return np.asarray(self.proba3(X)[:, 2])

    def levels(self, P: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """0/1/2 levels (``level_rule``) at ``threshold`` (default: the shipped one) and the shipped partial
        threshold."""
        return level_rule(P, self.threshold if threshold is None else threshold, self.partial_threshold)

    def to_json(self) -> str:
        # strict JSON: a metric that is undefined for a source (AUROC with one class) is written as null
        return dumps_clean(
            {
                "classifier": self.clf.to_dict(),
                "threshold": self.threshold,
                "partial_threshold": self.partial_threshold,
                "calibration": list(self.calibration),
                "harm_rule": None
                if self.harm_rule is None
                else {"feature": self.harm_rule.feature, "tau": self.harm_rule.tau},
                "partial_model": None if self.partial_model is None else self.partial_model.to_dict(),
                "meta": self.meta,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> ShippedModel:
        d = json.loads(text)
        a, b = d.get("calibration", (1.0, 0.0))
        pt = d.get("partial_threshold")
        hr = d.get("harm_rule")
        pm = d.get("partial_model")
        return cls(
            LinearLeakModel.from_dict(d["classifier"]),
            float(d["threshold"]),
            d.get("meta", {}),
            (float(a), float(b)),
            None if pt is None else float(pt),
            None if not hr else HarmRule(str(hr["feature"]), float(hr["tau"])),
            None if not pm else PartialModel.from_dict(pm),
        )


def model_resource(name: str) -> str:
    return resources.files("vsil").joinpath(f"data/{name}").read_text(encoding="utf-8")


@lru_cache(maxsize=4)
def load_classifier(path: str | None = None, name: str = "classifier_lexical.json") -> ShippedModel:
    """Load a classifier JSON file (the shipped one by default)."""
    if path is None:
        try:
            text = model_resource(name)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"the shipped model {name} is missing; run `vsil train`") from e
    else:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    return ShippedModel.from_json(text)


SHIPPED_FILES = {"semantic": "classifier_semantic.json", "lexical": "classifier_lexical.json"}


def classifier_backend(config: Any, semantic: bool) -> str:
    """The ``CLASSIFIERS`` registry name for a config: ``file`` with ``classifier_path``, else the shipped
    semantic classifier when an embedder is available, else the lexical one."""
    if config.classify.classifier_path:
        return "file"
    return "semantic" if semantic else "lexical"


class ShippedClassifier:
    """Registry entry for the classifiers: loads a shipped JSON or the ``classifier_path`` file."""

    @classmethod
    def from_config(cls, config: Any, *, semantic: bool = False, **context: Any) -> ShippedModel:
        path = config.classify.classifier_path
        if path:
            if not os.path.isfile(path):
                from vsil.errors import UsageError

                raise UsageError(f"classifier file not found: {path}")
            return load_classifier(path)
        return load_classifier(None, SHIPPED_FILES["semantic" if semantic else "lexical"])

    @classmethod
    def describe_config(cls, config: Any) -> str:
        return config.classify.classifier_path or "shipped"

    @classmethod
    def weights(cls, name: str = "") -> str:
        if name not in SHIPPED_FILES:
            return "the JSON file given with --classifier-path (with the harm models trained beside it)"
        return str(resources.files("vsil").joinpath("data").joinpath(SHIPPED_FILES[name]))


def beside(classifier_path: str | None, name: str) -> str | None:
    """``name`` in the folder of a custom classifier file, when it is there (else None: the shipped file).
    A classifier written by ``vsil train --out DIR`` is used with the harm models trained beside it."""
    if not classifier_path:
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(classifier_path)), name)
    return path if os.path.isfile(path) else None


class ClassifyStage:
    """``PairFeatures`` -> ``LeakageResult``: the model's calibrated P(leak), the level rule, the spans."""

    def __init__(self, model: ShippedModel, threshold: float | None, harm: Any) -> None:
        self.model = model
        self.threshold = model.threshold if threshold is None else float(threshold)
        self.harm = harm  # the lexical harm model: spans for a leak that no risk term explains

    def run(self, items: list[tuple[Any, Any, Any]]) -> list[LeakageResult]:
        """One result per (record, evidence, features) item, in order."""
        if not items:
            return []
        m = self.model
        X = np.stack([f.vector(m.feature_names) for _, _, f in items])
        P = m.proba3(X)
        if m.harm_rule is not None:  # a query harmful by itself is a leak whatever the image shows
            P = m.harm_rule.apply(P, np.array([f.values[m.harm_rule.feature] for _, _, f in items]))
        levels = m.levels(P, self.threshold)
        if m.partial_model is not None:
            pm = m.partial_model
            X1 = np.stack([pm.vector(f.values, f.hint_sims, f.query_embedding) for _, _, f in items])
            p1 = pm.proba(X1)
            levels = np.where(levels == 2, 2, np.where(p1 >= pm.threshold, 1, 0))
        return [self.result(rec, ev, f, float(p), int(lvl)) for (rec, ev, f), p, lvl in zip(items, P[:, 2], levels)]

    def result(self, rec: Any, ev: Any, f: Any, p: float, level: int) -> LeakageResult:
        from vsil.stages.features import fallback_spans

        if level == 2:
            spans = list(f.leak_spans) or fallback_spans(rec.query, self.harm)
        elif level == 1:
            spans = list(f.hint_spans) or list(f.leak_spans)
        else:
            spans = []
        return LeakageResult(
            id=rec.id,
            vsil_score=p,
            vsil_level=level,
            is_leak=p >= self.threshold,
            leaked_spans=[{"start": s, "end": e, "text": rec.query[s:e]} for s, e in spans],
            risk_terms=[t.to_dict() for t in f.risk_terms],
            image_risk=f.image_risk,
            text_risk=f.text_risk,
            overlap=f.overlap,
            caption_used=ev.caption_used,
            caption_source=ev.source,
            decided_by="classifier",
            query=rec.query,
            category=rec.category,
            source=rec.source,
            row=rec.row,
        )
