"""``LeakageClassifier``: the scikit-learn estimator that fits the shipped ``LinearLeakModel``.

A real estimator (``fit`` / ``predict_proba`` / ``classes_``, ``get_params``), so calibration,
cross-validation and threshold tuning work with stock scikit-learn tools. Training only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from vsil.stages.classify import LinearLeakModel


class LeakageClassifier(ClassifierMixin, BaseEstimator):
    """P(level = 0/1/2 | pair features) by standardisation + multinomial logistic regression.

    Parameters
    ----------
    C: inverse L2 regularisation strength.
    class_weight: "balanced" or None, as in ``LogisticRegression``.
    feature_names: names of the columns of ``X``, stored with the model.
    """

    def __init__(self, C: float = 1.0, class_weight: str | None = None, feature_names: tuple[str, ...] = ()) -> None:
        self.C = C
        self.class_weight = class_weight
        self.feature_names = feature_names

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> LeakageClassifier:
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise ValueError(f"X must be 2-D with one row per label, got {X.shape} and {y.shape}")
        mean = X.mean(axis=0)
        scale = X.std(axis=0)
        scale[scale < 1e-9] = 1.0
        lr = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=5000)
        lr.fit((X - mean) / scale, y, sample_weight=sample_weight)
        names = tuple(self.feature_names) or tuple(f"f{i}" for i in range(X.shape[1]))
        self.model_ = LinearLeakModel(
            names, lr.classes_, mean, scale, lr.coef_, lr.intercept_, {"C": self.C, "class_weight": self.class_weight}
        )
        self.classes_ = lr.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(X)

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])

    def to_dict(self) -> dict[str, Any]:
        return self.model_.to_dict()
