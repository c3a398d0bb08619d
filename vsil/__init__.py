"""vsil: audit multimodal safety datasets for visual safety information leakage (VSIL).

``vsil_score`` is the probability that a sample leaks (label 2): higher = more leakage.
Heavy modules load lazily; ``import vsil`` imports no torch, open_clip, HTTP client or scikit-learn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["ColumnMap", "LeakageAudit", "LeakageResult", "VSILConfig", "__version__", "leakage_score", "score_dataset"]

if TYPE_CHECKING:
    from vsil.api import leakage_score, score_dataset
    from vsil.audit import LeakageAudit
    from vsil.config import ColumnMap, VSILConfig
    from vsil.schema import LeakageResult

_LAZY = {
    "LeakageAudit": "audit",
    "leakage_score": "api",
    "score_dataset": "api",
    "VSILConfig": "config",
    "ColumnMap": "config",
    "LeakageResult": "schema",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vsil' has no attribute {name!r}")
