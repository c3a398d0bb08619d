"""The public scoring functions: ``leakage_score`` (one sample or a dataset) and ``score_dataset``."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING, Any, overload

from .config import ColumnMap, VSILConfig
from .intake import Record, normalise
from .pipeline import Scorer, run_audit
from .result import CONTRACT_FIELDS, LeakageResult

if TYPE_CHECKING:
    import pandas as pd


def _config(config: VSILConfig | None, options: dict[str, Any]) -> VSILConfig:
    if config is not None and options:
        raise TypeError("pass either config= or keyword options, not both")
    if config is not None:
        return config
    cols = {k: options.pop(k) for k in list(options) if k.endswith("_col")}
    cfg = VSILConfig(**options)
    if cols:
        cfg.columns = ColumnMap(**{k[:-4]: v for k, v in cols.items()})
    return cfg


@lru_cache(maxsize=4)
def _scorer(key: str) -> Scorer:
    return Scorer(VSILConfig.from_dict(json.loads(key)))


def get_scorer(cfg: VSILConfig) -> Scorer:
    """A cached ``Scorer`` for this configuration (models load once per process)."""
    return _scorer(json.dumps(cfg.to_dict(), sort_keys=True))


@overload
def leakage_score(
    query: str, *, caption: str | None = ..., image: Any = ..., safety_reason: str | None = ..., config: VSILConfig | None = ..., **options: Any
) -> LeakageResult: ...
@overload
def leakage_score(
    query: Any, *, caption: str | None = ..., image: Any = ..., safety_reason: str | None = ..., config: VSILConfig | None = ..., **options: Any
) -> pd.DataFrame: ...
def leakage_score(
    query: Any,
    *,
    caption: str | None = None,
    image: Any = None,
    safety_reason: str | None = None,
    config: VSILConfig | None = None,
    **options: Any,
) -> LeakageResult | pd.DataFrame:
    """Score visual safety information leakage.

    With a string ``query``: score one sample against its image evidence (``caption``, the
    dataset's ``safety_reason``, or an ``image``) and return a ``LeakageResult``. With any dataset
    input (path, DataFrame, list of dicts, ``datasets.Dataset``): score every row and return a
    DataFrame with one row per input row, in input order (see ``score_dataset``).

    ``vsil_score`` is the calibrated probability of leak (label 2): higher = more leakage.

    Options are ``VSILConfig`` fields (``threshold``, ``batch_size``, ``show_progress_bar``, ...)
    and, for datasets, column names as ``query_col=``, ``caption_col=``, ...
    """
    cfg = _config(config, dict(options))
    if not isinstance(query, str):
        if caption is not None or image is not None or safety_reason is not None:
            raise TypeError("caption/image/safety_reason apply to a single query string; for a dataset use columns")
        return score_dataset(query, config=cfg)
    raw = {"id": "0", "query": query, "caption": caption, "image": image, "safety_reason": safety_reason}
    rec: Record = normalise(raw, 0, ColumnMap(), None, "default")[0]
    return get_scorer(cfg).score([rec])[0]


def score_dataset(data: Any, *, config: VSILConfig | None = None, **options: Any) -> pd.DataFrame:
    """Score every row of ``data``; one output row per input row, in input order.

    Columns: the output contract (``id``, ``vsil_score``, ``vsil_level``, ``is_leak``,
    ``leaked_spans``, ``risk_terms``, ``image_risk``, ``text_risk``, ``overlap``, ``caption_used``,
    ``caption_source``, ``decided_by``, ``judge_rationale``, ``judge_error``, ``status``, ``error``) plus ``query``,
    ``category``, ``source`` and ``row``. ``df.attrs["summary"]`` holds the audit summary.
    """
    import pandas as pd

    cfg = _config(config, dict(options))
    rows: list[dict[str, Any]] = []
    summary = run_audit(data, cfg, on_result=lambda r: rows.append(r.to_dict()), scorer=get_scorer(cfg))
    df = pd.DataFrame(rows, columns=[*CONTRACT_FIELDS, "query", "category", "source", "row"])
    df.attrs["summary"] = summary
    return df
