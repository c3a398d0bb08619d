"""Ray Data integration: score a ``ray.data.Dataset`` with an actor pool (each actor loads the models
once; GPU actors with ``num_gpus``), with the same per-row results as the local engine.

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
import os
import time
from collections.abc import Iterable, Iterator
from typing import Any

from ..config import VSILConfig
from ..errors import MissingDependencyError
from ..intake import Record, iter_records, normalise
from ..jsonio import dumps_clean
from ..result import CONTRACT_FIELDS
from ..summary import SummaryBuilder

OUTPUT_COLUMNS = [*CONTRACT_FIELDS, "query", "category", "source", "row"]
JSON_COLUMNS = ("leaked_spans", "risk_terms")
REC = "__vsil_record__"  # column of pre-normalised records (the CLI path)


def _require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependencyError("ray[data]", "ray") from None
    return ray


def _config(config: VSILConfig | None, options: dict[str, Any]) -> VSILConfig:
    from ..api import _config as api_config

    return api_config(config, options)


class RunLedger:
    """Where the scoring actors report after every batch: that batch's counters (judge calls, image
    evidence cache), and once per actor the manifest of the scorer it runs with. Runs as a small Ray
    actor (``run_ledger``)."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[str, int]] = {}
        self.manifests: list[dict[str, Any]] = []
        self.batches = 0

    def report(self, delta: dict[str, dict[str, int]], manifest: dict[str, Any] | None) -> None:
        from ..pipeline import add_counters

        add_counters(self.counters, delta)
        if manifest is not None:
            self.manifests.append(manifest)
        self.batches += 1

    def totals(self) -> dict[str, Any]:
        return {"counters": self.counters, "manifests": list(self.manifests), "batches": self.batches}


def run_ledger() -> Any:
    """A ``RunLedger`` actor (no CPU reserved) to pass to ``score(..., ledger=)``."""
    ray = _require_ray()
    return ray.remote(num_cpus=0)(RunLedger).remote()


def ledger_totals(ledger: Any) -> dict[str, Any]:
    """The ledger's totals once the scored Dataset has been consumed: ``counters`` summed over every
    batch (a batch Ray re-ran after a failure counts twice), the actors' ``manifests``, ``batches``."""
    ray = _require_ray()
    return dict(ray.get(ledger.totals.remote()))


class ScoringActor:
    """One Ray actor: a ``Scorer`` loaded once, scoring pandas batches (and reporting to a ledger)."""

    def __init__(self, cfg: dict[str, Any], ledger: Any = None) -> None:
        from ..pipeline import Scorer
        from ..presets import Preset, get_preset

        self.config = VSILConfig.from_dict(cfg)
        self.scorer = Scorer(self.config)
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
            out += normalise({k: _plain(v) for k, v in raw.items()}, row if row >= 0 else i, self.config.columns, self.preset, self.variant)
        return out

    def __call__(self, batch: Any) -> Any:
        import pandas as pd

        results, delta = self.scorer.score_counted(self._records(batch))
        if self.ledger is not None:
            import ray

            # waited for, so every count is in before the Dataset is done
            ray.get(self.ledger.report.remote(delta, None if self.reported else self.scorer.manifest("", time.time())))
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
    ray = _require_ray()
    cfg = _config(config, dict(options))
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
        batch_size=batch_size or cfg.batch_size,
        batch_format="pandas",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        **kw,
    )


def records_dataset(data: Any, config: VSILConfig) -> tuple[Any, str]:
    """A Ray Dataset of records read by vsil's own intake (every format, preset and error row), and
    the input's sha256 as the local engine computes it. The records pass through the driver: for very
    large inputs read them with ``ray.data.read_*`` and call ``score`` on that Dataset instead."""
    import hashlib

    ray = _require_ray()
    h = hashlib.sha256()

    def gen() -> Iterator[dict[str, Any]]:
        for chunk in iter_records(data, config.columns, config.preset, config.batch_size):
            for rec in chunk:
                rec.hash_into(h)
                d = rec.__dict__.copy()
                if d["image"] is not None and not isinstance(d["image"], str):
                    d["image"] = None
                    d["error"] = d["error"] or "the Ray engine reads image paths only; pass images as paths under --image-root"
                yield {REC: json.dumps(d)}

    items = list(gen())
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    return ray.data.from_items(items), h.hexdigest()


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
    from ..engine import result_from_dict

    b = SummaryBuilder()
    for d in rows:
        b.add(result_from_dict(d))
    return b.build(manifest)


def audit_to_dir(data: Any, config: VSILConfig, out_dir: str, *, address: str | None = None, concurrency: int = 1) -> dict[str, Any]:
    """The CLI's ``--engine ray``: score ``data`` on Ray, write Parquet shards to ``OUT/results_parquet/``
    and ``OUT/results.jsonl``, and return the summary computed from the rows."""
    ray = _require_ray()
    started = time.time()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    first = next(iter_records(data, config.columns, config.preset, 1), None)  # validate before any work
    del first
    ds, data_hash = records_dataset(data, config)
    ledger = run_ledger()
    out = score(ds, config=config, concurrency=max(1, concurrency), ledger=ledger)
    os.makedirs(out_dir, exist_ok=True)
    pq = os.path.join(out_dir, "results_parquet")
    out = out.materialize()
    out.write_parquet(pq)
    totals = ledger_totals(ledger)
    manifest = _run_manifest(config, totals, data_hash, started)
    res_path = os.path.join(out_dir, "results.jsonl")
    tmp = res_path + ".part"

    def rows() -> Iterator[dict[str, Any]]:
        with open(tmp, "w", encoding="utf-8") as f:
            for batch in out.iter_batches(batch_format="pandas", batch_size=4096):
                for d in rows_to_results(batch.to_dict("records")):
                    f.write(dumps_clean(d) + "\n")
                    yield d

    summary = summarize_rows(rows(), manifest)
    os.replace(tmp, res_path)
    summary["manifest"]["engine"] = {"name": "ray", "address": address or "local", "actors": concurrency, "actors_reporting": len(totals["manifests"]), "batches": totals["batches"], "parquet": pq}
    summary["manifest"]["seconds"] = round(time.time() - started, 3)
    return summary


def _run_manifest(config: VSILConfig, totals: dict[str, Any], data_hash: str, started: float) -> dict[str, Any]:
    """The manifest of a Ray run: as the actors reported it (the backends that really ran, on the
    workers), with the counters of every batch. Only when no batch reached an actor does the
    driver build a scorer of its own to describe the run (its embedder is loaded; a local judge
    model is not)."""
    from ..pipeline import Scorer, run_counters, utc_stamp

    mans = totals["manifests"]
    if mans:
        manifest = dict(mans[0])
    else:
        manifest = Scorer(config, build_judge=config.judge_backend == "openai").manifest(data_hash, started)
    distinct = {json.dumps(m["backends"], sort_keys=True): m["backends"] for m in mans}
    if len(distinct) > 1:  # a mixed cluster: say which backends each group of actors used
        manifest["backends_by_actor"] = list(distinct.values())
        manifest["warnings"] = [*manifest.get("warnings", []), "the Ray actors did not all run with the same backends"]
    manifest.update(data_sha256=data_hash, started=utc_stamp(started), **run_counters(manifest, totals["counters"]))
    return manifest


__all__ = ["RunLedger", "ScoringActor", "audit_to_dir", "ledger_totals", "records_dataset", "rows_to_results", "run_ledger", "score", "summarize_rows"]
