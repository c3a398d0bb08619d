"""The one run loop behind every entry point (``leakage_score`` on a dataset, ``score_dataset``,
``LeakageAudit``, ``vsil audit`` with any engine, ``--resume``).

    read the first chunk (validates the input before any model loads)
    -> for each chunk: hash its records; on resume, keep a finished chunk whose ids and record hash
       match; else send it to the executor
    -> sink the rows (memory, or the audit folder's parts), add up the counters
    -> the summary, computed from the rows in input order, with the run manifest.

Memory does not grow with the input: chunks stream through, and an audit folder joins its parts at
the end.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from vsil.config import VSILConfig
from vsil.io.readers import count_rows, iter_records
from vsil.run.executors import ChunkResult
from vsil.run.store import AuditStore, write_results
from vsil.schema import LeakageResult, Record, RunStats, result_from_dict
from vsil.summary import SummaryBuilder
from vsil.util.progress import Progress


def utc_stamp(t: float) -> str:
    """A manifest's ``started`` time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def chunk_hash(records: list[Record]) -> str:
    """The hash of a chunk's records: what ``--resume`` checks a finished part against."""
    h = hashlib.sha256()
    for rec in records:
        rec.hash_into(h)
    return h.hexdigest()


class MemorySink:
    """Keeps the result rows in memory (the Python API)."""

    def __init__(self, on_result: Callable[[LeakageResult], None] | None = None) -> None:
        self.on_result = on_result
        self.builder = SummaryBuilder()
        self.n_chunks = 0

    def done(self, k: int, records: list[Record]) -> RunStats | None:
        return None

    def put(self, k: int, rows: list[dict[str, Any]], records: list[Record], stats: RunStats, routed: Any) -> None:
        for d in rows:
            r = result_from_dict(d)
            self.builder.add(r)
            if self.on_result is not None:
                self.on_result(r)

    def finish(self, n_chunks: int) -> SummaryBuilder:
        return self.builder


class DirSink:
    """Writes each finished chunk to the audit folder's parts, and skips finished chunks on resume."""

    def __init__(self, store: AuditStore, resume: bool) -> None:
        self.store = store
        self.resume = resume
        self.resumed = 0
        self.recomputed: list[int] = []

    def done(self, k: int, records: list[Record]) -> RunStats | None:
        """The saved counters of chunk ``k`` when it is finished on disk and still matches ``records``."""
        if not self.resume:
            return None
        found = self.store.part_info(k)
        if found is None:
            return None
        ids, digest, stats = found
        if ids == [r.id for r in records] and digest == chunk_hash(records):
            self.resumed += 1
            return RunStats.from_dict(stats)
        self.recomputed.append(k)  # the input changed under this chunk: score it again
        return None

    def put(self, k: int, rows: list[dict[str, Any]], records: list[Record], stats: RunStats, routed: Any) -> None:
        self.store.write_part(k, rows, chunk_hash(records), stats.to_dict(), routed)

    def finish(self, n_chunks: int) -> SummaryBuilder:
        builder = SummaryBuilder()
        write_results(
            self.store.out_dir, self.store.iter_part_rows(n_chunks), lambda d: builder.add(result_from_dict(d))
        )
        return builder


def run(
    data: Any,
    config: VSILConfig,
    *,
    executor: Any = None,
    out_dir: str | None = None,
    resume: bool = False,
    on_result: Callable[[LeakageResult], None] | None = None,
    pipeline: Any = None,
) -> dict[str, Any]:
    """Score ``data`` and return the summary (with the run manifest).

    With ``out_dir`` the rows go to the audit folder (parts, then ``results.jsonl``; ``resume`` keeps
    the finished chunks that still match the input); without it, each result goes to ``on_result``
    in input order. ``executor`` defaults to scoring in this process (reusing ``pipeline``).
    """
    from vsil.run.executors import InProcess

    started = time.time()
    progress = Progress(config.run.show_progress_bar)
    progress.stage(f"reading {_label(data)}")
    total = count_rows(data, config.preset) if progress.on else None  # only the bar reads it
    chunks: Iterator[list[Record]] = iter_records(data, config.columns, config.preset, config.run.batch_size)
    first = next(chunks, [])  # validates the input (columns, format) before any model loads
    ex = executor or InProcess(config, pipeline)
    store = AuditStore(out_dir) if out_dir is not None else None
    sink: MemorySink | DirSink
    if store is not None:
        store.start(_run_key(config, data), resume=resume)
        sink = DirSink(store, resume)
    else:
        sink = MemorySink(on_result)
    h = hashlib.sha256()
    ids = IdTracker()
    stats = RunStats()
    descriptions: list[dict[str, Any]] = []
    n_chunks = 0
    pending: dict[int, list[Record]] = {}
    if progress.on:
        from vsil.pipeline import Pipeline

        b = (pipeline or Pipeline(config)).describe()["backends"]
        judge = f", judge {b['judge']} ({b['judge_routing']})" if b["judge"] != "none" else ""
        info = ex.engine_info()
        where = f" on {ex.name} x{info.get('workers', info.get('actors', 1))}"
        progress.stage(
            f"loading models{where}: embedder {b['embedder']}, classifier {b['classifier']}, "
            f"image evidence {b['image_evidence']}{judge}"
        )
    with progress as bar:
        if first:
            ex.start()
        bar.start_rows(total)

        def todo() -> Iterator[tuple[int, list[Record]]]:
            nonlocal n_chunks
            for k, chunk in enumerate(itertools.chain([first] if first else [], chunks)):
                n_chunks = k + 1
                for rec in chunk:
                    rec.hash_into(h)
                    ids.add(rec.id)
                saved = sink.done(k, chunk)
                if saved is not None:  # a finished chunk of an earlier segment: its rows and counters count
                    stats.add(saved)
                    bar.update(len(chunk))
                    continue
                pending[k] = chunk
                yield k, chunk

        try:
            for res in ex.map(todo()):
                _account(res, stats, descriptions)
                sink.put(res.k, res.rows, pending.pop(res.k), res.stats, res.routed)
                bar.update(len(res.rows), stats.judge.get("rows"))
            manifest = _manifest(config, descriptions, ex)
        finally:
            ex.close()
            if store is not None:
                store.close()
    if isinstance(sink, DirSink):
        progress.stage(f"writing {os.path.join(out_dir or '', 'results.jsonl')}")
    builder = sink.finish(n_chunks)
    manifest.update(
        data_sha256=h.hexdigest(),
        started=utc_stamp(started),
        seconds=round(time.time() - started, 3),
        **stats.manifest_fields(config.judge.mode != "none"),
    )
    engine: dict[str, Any] = {"name": ex.name, "chunks": n_chunks, **ex.engine_info()}
    if isinstance(sink, DirSink):
        engine["resumed_chunks"] = sink.resumed
        if sink.recomputed:
            engine["recomputed_chunks"] = sink.recomputed
            manifest["warnings"] = [
                *manifest.get("warnings", []),
                f"--resume: {len(sink.recomputed)} finished chunk(s) no longer matched the input and were scored again",
            ]
    manifest["engine"] = engine
    manifest["input"] = _input_info(data, config)
    if ids.duplicates:
        manifest["warnings"] = [*manifest.get("warnings", []), ids.warning()]
    return builder.build(manifest)


class IdTracker:
    """Counts duplicate row ids (checked exactly for the first ``limit`` distinct ids)."""

    def __init__(self, limit: int = 2_000_000) -> None:
        self.seen: set[str] = set()
        self.limit = limit
        self.duplicates = 0
        self.examples: list[str] = []

    def add(self, rid: str) -> None:
        if rid in self.seen:
            self.duplicates += 1
            if len(self.examples) < 3:
                self.examples.append(rid)
        elif len(self.seen) < self.limit:
            self.seen.add(rid)

    def warning(self) -> str:
        return (
            f"{self.duplicates} row(s) repeat an earlier id (e.g. {', '.join(map(repr, self.examples))}); "
            "results are still one per input row, in input order, but ids do not identify them"
        )


def _account(res: ChunkResult, stats: RunStats, descriptions: list[dict[str, Any]]) -> None:
    stats.add(res.stats)
    if res.description is not None:
        descriptions.append(res.description)


def _manifest(config: VSILConfig, descriptions: list[dict[str, Any]], ex: Any) -> dict[str, Any]:
    """The run manifest: as the workers reported it (the backends that really ran); when no chunk was
    scored, the executor's description (no model is loaded for it). The config echoed is the run's."""
    manifest = dict(descriptions[0]) if descriptions else ex.describe()
    distinct = {json.dumps(d["backends"], sort_keys=True): d["backends"] for d in descriptions}
    if len(distinct) > 1:  # a mixed cluster: say which backends each group of workers used
        manifest["backends_by_actor"] = list(distinct.values())
        manifest["warnings"] = [*manifest.get("warnings", []), "the workers did not all run with the same backends"]
    manifest["config"] = config.to_dict()
    return manifest


def _run_key(config: VSILConfig, data: Any) -> dict[str, Any]:
    """What ``--resume`` requires to be unchanged: the config (progress bar aside) and the input path."""
    d = config.to_dict()
    d["run"].pop("show_progress_bar", None)
    src = os.path.realpath(os.fspath(data)) if isinstance(data, (str, os.PathLike)) else type(data).__name__
    return {"config": d, "data": src}


def _input_info(data: Any, config: VSILConfig) -> dict[str, Any]:
    """What the run read: the input's resolved path and a short name (the report's title)."""
    if isinstance(data, (str, os.PathLike)):
        path = os.path.realpath(os.fspath(data))
        stem = os.path.basename(path.rstrip(os.sep))
        for suffix in (".gz", ".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".parquet", ".pq"):
            stem = stem[: -len(suffix)] if stem.lower().endswith(suffix) else stem
        return {"path": path, "name": config.preset or stem}
    return {"path": None, "name": config.preset or type(data).__name__}


def _label(data: Any) -> str:
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data)
    return f"a {type(data).__name__}"
