"""The public scoring functions: ``leakage_score`` (one sample or a dataset) and ``score_dataset``."""

from __future__ import annotations

import atexit
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, overload

from vsil.config import ColumnMap, VSILConfig, resolve_config
from vsil.io.readers import normalise
from vsil.pipeline import Pipeline
from vsil.schema import RESULT_COLUMNS, LeakageResult

if TYPE_CHECKING:
    import pandas as pd

_PIPELINES: OrderedDict[str, Pipeline] = OrderedDict()
_LOCK = threading.Lock()


@atexit.register
def _close_pipelines() -> None:
    """The cache opened these pipelines, so it closes them (judge HTTP clients, SQLite caches)."""
    with _LOCK:
        while _PIPELINES:
            _PIPELINES.popitem()[1].close()


def get_pipeline(cfg: VSILConfig) -> Pipeline:
    """A loaded ``Pipeline`` for this configuration, cached per process on what determines the models
    (so a different progress-bar, batch-size or column setting reuses them)."""
    key = cfg.model_key()
    with _LOCK:
        if key in _PIPELINES:
            _PIPELINES.move_to_end(key)
            return _PIPELINES[key]
    p = Pipeline(VSILConfig.from_dict(cfg.to_dict())).load()
    with _LOCK:
        _PIPELINES[key] = p
        while len(_PIPELINES) > 4:
            _PIPELINES.popitem(last=False)[1].close()
    return p


@overload
def leakage_score(
    query: str,
    *,
    caption: str | None = ...,
    image: Any = ...,
    safety_reason: str | None = ...,
    config: VSILConfig | None = ...,
    **options: Any,
) -> LeakageResult: ...
@overload
def leakage_score(
    query: Any,
    *,
    caption: Any = ...,
    image: Any = ...,
    safety_reason: Any = ...,
    config: VSILConfig | None = ...,
    **options: Any,
) -> pd.DataFrame: ...
def leakage_score(
    query: Any,
    *,
    caption: Any = None,
    image: Any = None,
    safety_reason: Any = None,
    config: VSILConfig | None = None,
    **options: Any,
) -> LeakageResult | pd.DataFrame:
    """Score visual safety information leakage.

    - A query string: score one sample against its image evidence (``caption``, the dataset's
      ``safety_reason``, or an ``image``) and return a ``LeakageResult``.
    - A list of query strings, with ``caption`` (and ``image``, ``safety_reason``) as a parallel list:
      score them in one batch and return a DataFrame.
    - Any dataset input (a path to a data file, a DataFrame, a list of dicts, a ``datasets.Dataset``):
      score every row and return a DataFrame with one row per input row, in input order
      (``score_dataset``). A string that names an existing data file (``.jsonl``, ``.json``, ``.csv``,
      ``.tsv``, ``.parquet``) is read as a dataset when no caption or image is given.

    ``vsil_score`` is the calibrated probability of leak (label 2): higher = more leakage.

    Options are ``VSILConfig`` fields (``threshold``, ``batch_size``, ``show_progress_bar``, ...)
    and, for datasets, column names as ``query_col=``, ``caption_col=``, ...
    """
    cfg = resolve_config(config, dict(options))
    single = caption is None and image is None and safety_reason is None
    if isinstance(query, str) and not (single and _is_data_file(query)):
        raw = {"id": "0", "query": query, "caption": caption, "image": image, "safety_reason": safety_reason}
        rec = normalise(raw, 0, ColumnMap(), None, "default")[0]
        return get_pipeline(cfg).score([rec])[0][0]
    if isinstance(query, (list, tuple)) and query and all(isinstance(q, str) for q in query):
        return score_dataset(_parallel_rows(list(query), caption, image, safety_reason), config=cfg)
    if not single:
        raise TypeError(
            "caption/image/safety_reason go with a query string or a list of query strings (as parallel lists); "
            "for a dataset, name its columns (caption_col=...)"
        )
    return score_dataset(query, config=cfg)


DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".pq", ".jsonl.gz")


def _is_data_file(s: str) -> bool:
    import os

    return len(s) < 4096 and s.lower().endswith(DATA_SUFFIXES) and os.path.isfile(s)


def _parallel_rows(queries: list[str], caption: Any, image: Any, safety_reason: Any) -> list[dict[str, Any]]:
    """Rows from a list of queries and parallel lists (or one shared value) of captions / images / reasons."""

    def column(name: str, v: Any) -> list[Any]:
        if v is None or isinstance(v, str) or not isinstance(v, (list, tuple)):
            return [v] * len(queries)
        if len(v) != len(queries):
            raise ValueError(f"{name} has {len(v)} items for {len(queries)} queries; pass one per query")
        return list(v)

    cols = {n: column(n, v) for n, v in (("caption", caption), ("image", image), ("safety_reason", safety_reason))}
    return [{"id": str(i), "query": q, **{n: vals[i] for n, vals in cols.items()}} for i, q in enumerate(queries)]


def score_dataset(data: Any, *, config: VSILConfig | None = None, **options: Any) -> pd.DataFrame:
    """Score every row of ``data``; one output row per input row, in input order.

    Columns: the output contract (``id``, ``vsil_score``, ``vsil_level``, ``is_leak``,
    ``leaked_spans``, ``risk_terms``, ``image_risk``, ``text_risk``, ``overlap``, ``caption_used``,
    ``caption_source``, ``decided_by``, ``judge_rationale``, ``judge_error``, ``status``, ``error``) plus ``query``,
    ``category``, ``source`` and ``row``. ``df.attrs["summary"]`` holds the audit summary.
    """
    import pandas as pd

    from vsil.run.runner import run

    cfg = resolve_config(config, dict(options))
    rows: list[dict[str, Any]] = []
    summary = run(data, cfg, on_result=lambda r: rows.append(r.to_dict()), pipeline=get_pipeline(cfg))
    df = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    df.attrs["summary"] = summary
    return df
