"""The gold dev set for the accuracy benchmarks."""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

from vsil.training.corpora import read_jsonl

DEFAULT_SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")


def dev_set(shared: str) -> tuple[str, list[dict[str, Any]], np.ndarray]:
    """(path, rows, gold levels) of shared/gold/dev.jsonl; exits with a clear message when absent."""
    path = os.path.join(shared, "gold", "dev.jsonl")
    if not os.path.exists(path):
        sys.exit(f"gold dev set not found at {path}; pass --shared")
    gold = read_jsonl(path)
    return path, gold, np.array([g["label"] for g in gold])
