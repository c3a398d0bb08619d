"""Ray Data integration: score a ``ray.data.Dataset`` you already have with an actor pool (each actor
loads the models once; GPU actors with ``num_gpus``), with the same per-row results as the local
engine. (``vsil audit --engine ray`` runs through the one runner with ``vsil.run.ray.RayActors``.)

    import ray, vsil.integrations.ray as vr
    ds = ray.data.read_parquet("s3://bucket/pairs/")
    out = vr.score(ds, concurrency=8, query_col="prompt", caption_col="description")
    out.write_parquet("s3://bucket/vsil/")

Output columns: the output contract plus ``query``, ``category``, ``source`` and ``row``;
``leaked_spans`` and ``risk_terms`` are JSON strings (their nesting varies from row to row, which
Arrow schemas do not allow across blocks). The summary is computed from the output rows by
``summarize_rows``, never from per-worker partial aggregates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from vsil.config import VSILConfig, resolve_config
from vsil.io.readers import normalise
from vsil.run.ray import require_ray
from vsil.schema import RESULT_COLUMNS, Record, RunStats, result_from_dict
from vsil.summary import SummaryBuilder

OUTPUT_COLUMNS = list(RESULT_COLUMNS)
JSON_COLUMNS = ("leaked_spans", "risk_terms")
REC = "__vsil_record__"  # column of pre-normalised records (JSON of a Record)


class RunLedger:
    """Where the scoring actors report after every batch: that batch's counters (judge calls, image
    evidence cache), and once per actor the manifest of the scorer it runs with. Runs as a small Ray
    actor (``run_ledger``)."""

    def __init__(self) -> None:
        self.counters: dict[str, Any] = RunStats().to_dict()
        self.manifests: list[dict[str, Any]] = []
        self.batches = 0

    def report(self, stats: dict[str, Any], description: dict[str, Any] | None) -> None:
        """One batch's ``RunStats.to_dict()``, and the actor's ``Pipeline.describe()`` with its first batch."""
        total = RunStats.from_dict(self.counters)
        total.add(RunStats.from_dict(stats))
        self.counters = total.to_dict()
        if description is not None:
            self.manifests.append(description)
        self.batches += 1

    def totals(self) -> dict[str, Any]:
        return {"counters": self.counters, "manifests": list(self.manifests), "batches": self.batches}


def run_ledger() -> Any:
    """A ``RunLedger`` actor (no CPU reserved) to pass to ``score(..., ledger=)``."""
    ray = require_ray()
    return ray.remote(num_cpus=0)(RunLedger).remote()


def ledger_totals(ledger: Any) -> dict[str, Any]:
    """The ledger's totals once the scored Dataset has been consumed: ``counters`` summed over every
    batch (a batch Ray re-ran after a failure counts twice), the actors' ``manifests``, ``batches``."""
    ray = require_ray()
    return dict(ray.get(ledger.totals.remote()))


class ScoringActor:
    """One Ray actor: a pipeline loaded once, scoring pandas batches (and reporting to a ledger)."""

    def __init__(self, cfg: dict[str, Any], ledger: Any = None) -> None:
        from vsil.io.presets import Preset, get_preset
        from vsil.pipeline import Pipeline

        self.config = VSILConfig.from_dict(cfg)
        self.pipeline = Pipeline(self.config).load()
        self.ledger = ledger
        self.reported = False
        self.preset: Preset | None = None
        self.variant = "default"
        if self.config.preset:
            self.preset, self.variant = get_preset(self.config.preset)

    def _records(self, batch: Any) -> list[Record]:
        if REC in batch.columns:
            return [Record(**json.loads(s)) for s in batch[REC]]
        out: list[Record] = []
        for i, raw in enumerate(batch.to_dict("records")):
            row = int(raw.pop("__vsil_row__", -1)) if "__vsil_row__" in raw else -1
            clean = {k: _plain(v) for k, v in raw.items()}
            out += normalise(clean, row if row >= 0 else i, self.config.columns, self.preset, self.variant)
        return out

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        results, stats = self.pipeline.score(self._records(batch))
        if self.ledger is not None:
            import ray

            # waited for, so every count is in before the Dataset is done
            ray.get(self.ledger.report.remote(stats.to_dict(), None if self.reported else self.pipeline.describe()))
            self.reported = True
        rows = []
        for r in results:
            d = r.to_dict()
            for c in JSON_COLUMNS:
                d[c] = json.dumps(d[c], ensure_ascii=False)
            rows.append({c: d[c] for c in OUTPUT_COLUMNS})
        return pd.DataFrame(rows, columns=OUTPUT_COLUMNS)


def _plain(v: Any) -> Any:
    """numpy scalars and arrays from Arrow batches back to Python values."""
    if hasattr(v, "tolist") and not isinstance(v, (bytes, str)):
        return v.tolist()
    return v


def score(
    ds: Any,
    *,
    config: VSILConfig | None = None,
    batch_size: int | None = None,
    concurrency: int = 2,
    num_gpus: float | None = None,
    num_cpus: float | None = None,
    ledger: Any = None,
    **options: Any,
) -> Any:
    """Score every row of a ``ray.data.Dataset`` (raw rows in your columns, or records from
    ``records_dataset``); returns a Dataset with the output-contract columns, in input order.

    Options are ``VSILConfig`` fields and ``*_col`` column names, as in ``vsil.leakage_score``.
    ``concurrency`` is the number of scoring actors; ``num_gpus`` per actor makes them GPU actors.
    ``ledger`` (from ``run_ledger()``) collects the actors' counters and manifests; read it with
    ``ledger_totals`` after the Dataset has been consumed.
    """
    ray = require_ray()
    cfg = resolve_config(config, dict(options))
    # results in input order, like the local engine (a Dataset carries the context it was created with)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    if getattr(ds, "context", None) is not None:
        ds.context.execution_options.preserve_order = True
    kw: dict[str, Any] = {}
    if num_gpus is not None:
        kw["num_gpus"] = num_gpus
    if num_cpus is not None:
        kw["num_cpus"] = num_cpus
    return ds.map_batches(
        ScoringActor,
        fn_constructor_kwargs={"cfg": cfg.to_dict(), "ledger": ledger},
        batch_size=batch_size or cfg.run.batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        **kw,
    )


def rows_to_results(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Output rows with the JSON columns decoded back to lists (the local engine's row format)."""
    for r in rows:
        d = dict(r)
        for c in JSON_COLUMNS:
            if isinstance(d.get(c), str):
                d[c] = json.loads(d[c])
        for k, v in list(d.items()):
            d[k] = _plain(v)
        yield d


def summarize_rows(rows: Iterable[dict[str, Any]], manifest: dict[str, Any]) -> dict[str, Any]:
    """The summary of output rows (``rows_to_results``), computed from the rows themselves."""
    b = SummaryBuilder()
    for d in rows:
        b.add(result_from_dict(d))
    return b.build(manifest)


__all__ = ["RunLedger", "ScoringActor", "ledger_totals", "rows_to_results", "run_ledger", "score", "summarize_rows"]
