"""The shipped leak classifier: standardised pair features -> multinomial logistic regression.

Its learned state is plain arrays saved as JSON (never pickle); inference needs only numpy. The
scikit-learn estimator that fits it is ``vsil.estimator.LeakageClassifier``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from .jsonio import dumps_clean


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
    below = np.where(P[:, 2] >= partial_threshold, 1, 0) if partial_threshold is not None else np.where(P[:, 1] > P[:, 0], 1, 0)
    return np.where(P[:, 2] >= threshold, 2, below)


class ShippedModel:
    """The classifier plus its operating point (threshold) and training metadata."""

    def __init__(
        self,
        clf: LinearLeakModel,
        threshold: float,
        meta: dict[str, Any],
        calibration: tuple[float, float] = (1.0, 0.0),
        partial_threshold: float | None = None,
    ) -> None:
        self.clf = clf
        self.threshold = threshold
        self.meta = meta
        self.calibration = calibration
        self.partial_threshold = partial_threshold

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
        """0/1/2 levels (``level_rule``) at ``threshold`` (default: the shipped one) and the shipped partial threshold."""
        return level_rule(P, self.threshold if threshold is None else threshold, self.partial_threshold)

    def to_json(self) -> str:
        # strict JSON: a metric that is undefined for a source (AUROC with one class) is written as null
        return dumps_clean(
            {
                "classifier": self.clf.to_dict(),
                "threshold": self.threshold,
                "partial_threshold": self.partial_threshold,
                "calibration": list(self.calibration),
                "meta": self.meta,
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> ShippedModel:
        d = json.loads(text)
        a, b = d.get("calibration", (1.0, 0.0))
        pt = d.get("partial_threshold")
        return cls(
            LinearLeakModel.from_dict(d["classifier"]), float(d["threshold"]), d.get("meta", {}), (float(a), float(b)), None if pt is None else float(pt)
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
