"""The text-only harm model: P(a strict text-only safety judge would flag or refuse the query by itself).

An ensemble on sentence embeddings (all-MiniLM-L6-v2, L2-normalised): the mean of (a) a weighted
logistic regression and (b) a weighted cosine k-nearest-neighbour vote over a bank of labelled
messages, PCA-reduced and int8-quantised so the shipped file stays small. Trained by ``vsil train``
(``vsil.training.text_harm``) on our phrasing-diverse ``text_harm.jsonl`` and the public text sets,
each mapped to that definition on purpose, balanced by source and phrasing form.

Shipped as ``vsil/data/text_harm.npz`` (plain arrays, loaded with ``allow_pickle=False``) with its
sha256 in ``vsil/data/text_harm.sha256``; a file whose hash does not match is refused.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

MODEL_FILE = "text_harm.npz"
HASH_FILE = "text_harm.sha256"
KEYS = ("lr_coef", "lr_intercept", "knn_mean", "knn_proj", "knn_bank", "knn_label", "knn_weight", "knn_k")


def _unit(Z: np.ndarray) -> np.ndarray:
    return np.asarray(Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-12))


@dataclass
class TextHarmModel:
    """Plain arrays; ``proba`` needs only numpy."""

    params: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        missing = [k for k in KEYS if k not in self.params]
        if missing:
            raise ValueError(f"text-harm model is missing arrays {missing}")
        self._bank = self.params["knn_bank"].astype(np.float32) / 127.0
        self._proj = self.params["knn_proj"].astype(np.float32)

    @property
    def dim(self) -> int:
        return int(self.params["lr_coef"].shape[0])

    @property
    def version(self) -> str:
        v = self.params.get("version")
        return str(v) if v is not None else ""

    def proba(self, embeddings: np.ndarray, batch: int = 1024) -> np.ndarray:
        """P(harmful by itself) for each row of ``embeddings``."""
        p = self.params
        X = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        p_lr = 1.0 / (1.0 + np.exp(-(X @ p["lr_coef"].astype(np.float32) + float(p["lr_intercept"][0]))))
        y = p["knn_label"].astype(np.float64)
        w = p["knn_weight"].astype(np.float64)
        k = int(p["knn_k"][0])
        Z = _unit((X - p["knn_mean"].astype(np.float32)) @ self._proj.T)
        p_knn = np.empty(len(X))
        for i in range(0, len(X), batch):
            S = Z[i : i + batch] @ self._bank.T
            kk = max(1, min(k, S.shape[1] - 1))
            idx = np.argpartition(-S, kk, axis=1)[:, :kk]
            s = np.take_along_axis(S, idx, 1)
            a = np.clip(s, 1e-6, None) * w[idx]
            p_knn[i : i + batch] = (a * y[idx]).sum(1) / np.maximum(a.sum(1), 1e-12)
        return np.asarray(0.5 * (p_lr + p_knn))

    def save(self, path: str) -> str:
        """Write the arrays (compressed .npz) and the sha256 file beside them; returns the hash."""
        arrays: dict[str, Any] = {k: np.asarray(v) for k, v in self.params.items()}
        np.savez_compressed(path, **arrays)
        digest = _sha256(path)
        with open(os.path.join(os.path.dirname(os.path.abspath(path)), HASH_FILE), "w", encoding="utf-8") as f:
            f.write(digest + "\n")
        return digest

    @classmethod
    def load(cls, path: str, expected_sha256: str | None = None) -> TextHarmModel:
        """Load a model file, refusing it when its sha256 is not ``expected_sha256`` (when given)."""
        if expected_sha256 is not None:
            got = _sha256(path)
            if got != expected_sha256:
                raise ValueError(f"refusing {path}: sha256 {got[:16]}... is not the expected {expected_sha256[:16]}...")
        with np.load(path, allow_pickle=False) as z:
            return cls({k: z[k] for k in z.files})


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=2)
def load_text_harm(path: str | None = None) -> TextHarmModel | None:
    """The shipped model (hash-checked against ``text_harm.sha256``), or the one at ``path`` (with the hash
    file beside it when there is one); None when no model file exists (older trained folders)."""
    if path is None:
        files: Any = resources.files("vsil").joinpath("data")
        model_file, hash_file = files.joinpath(MODEL_FILE), files.joinpath(HASH_FILE)
        if not model_file.is_file():
            return None
        expected = hash_file.read_text(encoding="utf-8").strip() if hash_file.is_file() else None
        if expected is None:
            raise RuntimeError(f"the shipped {MODEL_FILE} has no {HASH_FILE}: reinstall vsil or run `vsil train`")
        with resources.as_file(model_file) as p:
            return TextHarmModel.load(str(p), expected)
    if not os.path.isfile(path):
        return None
    hash_path = os.path.join(os.path.dirname(os.path.abspath(path)), HASH_FILE)
    expected = open(hash_path, encoding="utf-8").read().strip() if os.path.isfile(hash_path) else None
    return TextHarmModel.load(path, expected)
