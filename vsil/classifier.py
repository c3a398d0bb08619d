"""The trained leak classifier: standardised pair features -> multinomial logistic regression.

A real scikit-learn style estimator (``fit`` / ``predict_proba`` / ``classes_``), whose learned state
is plain arrays saved as JSON (never pickle). Inference needs only numpy.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np


class LeakageClassifier:
    """P(level = 0/1/2 | pair features). ``vsil_score`` is the probability of class 2 (leak).

    Parameters
    ----------
    C: inverse L2 regularisation strength of the logistic regression.
    class_weight: passed to scikit-learn's ``LogisticRegression`` ("balanced" or None).
    feature_names: names of the columns of ``X``, stored with the model.
    """

    def __init__(
        self, C: float = 1.0, class_weight: str | None = "balanced", feature_names: tuple[str, ...] = ()
    ) -> None:
        self.C = C
        self.class_weight = class_weight
        self.feature_names = feature_names

    # scikit-learn estimator protocol -------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"C": self.C, "class_weight": self.class_weight, "feature_names": self.feature_names}

    def set_params(self, **params: Any) -> LeakageClassifier:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> LeakageClassifier:
        from sklearn.linear_model import LogisticRegression

        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be 2-D with one row per label, got {X.shape} and {y.shape}")
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0)
        self.scale_[self.scale_ < 1e-9] = 1.0
        lr = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=5000)
        lr.fit((X - self.mean_) / self.scale_, y, sample_weight=sample_weight)
        self.classes_ = lr.classes_
        self.coef_ = lr.coef_
        self.intercept_ = lr.intercept_
        return self

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

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])

    # plain-data persistence --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "multinomial_logistic_regression",
            "params": {"C": self.C, "class_weight": self.class_weight},
            "feature_names": list(self.feature_names),
            "classes": [int(c) for c in self.classes_],
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LeakageClassifier:
        if d.get("kind") != "multinomial_logistic_regression":
            raise ValueError(f"unknown classifier kind {d.get('kind')!r}")
        m = cls(C=d["params"]["C"], class_weight=d["params"]["class_weight"], feature_names=tuple(d["feature_names"]))
        m.classes_ = np.array(d["classes"])
        m.mean_ = np.array(d["mean"], dtype=np.float64)
        m.scale_ = np.array(d["scale"], dtype=np.float64)
        m.coef_ = np.array(d["coef"], dtype=np.float64)
        m.intercept_ = np.array(d["intercept"], dtype=np.float64)
        if m.coef_.shape[1] != len(m.feature_names):
            raise ValueError("classifier coefficients do not match its feature names")
        return m


class ShippedModel:
    """The classifier plus its operating point (threshold) and training metadata."""

    def __init__(self, clf: LeakageClassifier, threshold: float, meta: dict[str, Any]) -> None:
        self.clf = clf
        self.threshold = threshold
        self.meta = meta

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.clf.feature_names

    def leak_proba(self, X: np.ndarray) -> np.ndarray:
        """P(label 2) for each row of ``X``; the full class matrix is in ``proba``."""
        P = self.clf.predict_proba(X)
        return np.asarray(P[:, list(self.clf.classes_).index(2)])

    def levels(self, P: np.ndarray, threshold: float | None = None) -> np.ndarray:
        """0/1/2 level: 2 when P(2) >= threshold, else the likelier of 0 and 1."""
        t = self.threshold if threshold is None else threshold
        cls = list(self.clf.classes_)
        p2 = P[:, cls.index(2)]
        p1 = P[:, cls.index(1)] if 1 in cls else np.zeros(len(P))
        p0 = P[:, cls.index(0)]
        return np.where(p2 >= t, 2, np.where(p1 > p0, 1, 0))

    def to_json(self) -> str:
        return json.dumps({"classifier": self.clf.to_dict(), "threshold": self.threshold, "meta": self.meta}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ShippedModel:
        d = json.loads(text)
        return cls(LeakageClassifier.from_dict(d["classifier"]), float(d["threshold"]), d.get("meta", {}))


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
