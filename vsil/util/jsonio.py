"""Strict JSON output: NaN/inf become null, numpy scalars become Python numbers."""

from __future__ import annotations

import json
import math
from typing import Any


def clean(o: Any) -> Any:
    if isinstance(o, float):
        return None if math.isnan(o) or math.isinf(o) else o
    if isinstance(o, dict):
        return {str(k): clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    if hasattr(o, "item") and callable(o.item):  # numpy scalar
        return clean(o.item())
    return o


def dumps_clean(o: Any, indent: int | None = None) -> str:
    return json.dumps(clean(o), indent=indent, ensure_ascii=False, allow_nan=False)
