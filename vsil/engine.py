"""The local engine at scale: chunked, optionally multi-process, written incrementally and resumable.

Input chunks (``VSILConfig.batch_size`` rows) are scored in this process (``workers=1``) or by a pool
of worker processes that each load the models once. Every finished chunk is written atomically to
``OUT/parts/chunk-NNNNNN.jsonl``; a crash loses at most the chunks in flight, and ``resume=True``
skips the chunks already on disk (after checking that their ids match the input). At the end the parts
are joined, in input order, into ``OUT/results.jsonl``, and the summary is computed from those rows.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import fields
from typing import Any

from .config import VSILConfig
from .errors import UsageError
from .intake import Record, iter_records
from .jsonio import dumps_clean
from .pipeline import add_counters, run_counters, utc_stamp
from .result import LeakageResult
from .summary import SummaryBuilder

RUN_FILE = "run.json"
PARTS = "parts"
_RESULT_FIELDS = {f.name for f in fields(LeakageResult)}

_worker_scorer: Any = None


def _init_worker(cfg_dict: dict[str, Any], threads: int | None = None) -> None:
    global _worker_scorer
    from .pipeline import Scorer

    if threads is not None and importlib.util.find_spec("torch") is not None:
        import torch  # share the cores between worker processes instead of oversubscribing them

        torch.set_num_threads(threads)

    _worker_scorer = Scorer(VSILConfig.from_dict(cfg_dict))


def _worker_manifest() -> dict[str, Any]:
    """The static manifest of this process's scorer (for a run whose chunks all came from disk)."""
    assert _worker_scorer is not None, "worker not initialised"
    return _worker_scorer.manifest("", time.time())


def _score_chunk(records: list[Record]) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]], dict[str, Any]]:
    """Score one chunk in a worker: rows, this chunk's counters, and the static manifest."""
    results, delta = _worker_scorer.score_counted(records)
    return [r.to_dict() for r in results], delta, _worker_scorer.manifest("", time.time())


def _part_path(out_dir: str, k: int) -> str:
    return os.path.join(out_dir, PARTS, f"chunk-{k:06d}.jsonl")


def _write_part(out_dir: str, k: int, rows: list[dict[str, Any]]) -> None:
    path = _part_path(out_dir, k)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(dumps_clean(r) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _part_ids(out_dir: str, k: int) -> list[str] | None:
    path = _part_path(out_dir, k)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["id"] for line in f if line.strip()]


def _run_key(cfg: VSILConfig, data: Any) -> dict[str, Any]:
    d = cfg.to_dict()
    d.pop("show_progress_bar", None)
    return {"config": d, "data": str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__}


def run_local(
    data: Any,
    config: VSILConfig,
    out_dir: str,
    *,
    workers: int = 1,
    resume: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Audit ``data`` into ``out_dir`` (parts, then ``results.jsonl``); returns the summary.

    ``on_chunk(rows_done, chunk_rows)`` is called after every chunk (skipped ones included).
    """
    if workers < 1:
        raise UsageError("--workers must be >= 1")
    started = time.time()
    os.makedirs(out_dir, exist_ok=True)
    parts_dir = os.path.join(out_dir, PARTS)
    run_path = os.path.join(out_dir, RUN_FILE)
    key = _run_key(config, data)
    if resume and os.path.exists(run_path):
        with open(run_path, encoding="utf-8") as f:
            old = json.load(f)
        if old != key:
            raise UsageError(f"--resume: {out_dir} holds a run with other arguments; rerun without --resume to start over")
    elif os.path.isdir(parts_dir):
        shutil.rmtree(parts_dir)
    os.makedirs(parts_dir, exist_ok=True)
    with open(run_path, "w", encoding="utf-8") as f:
        json.dump(key, f)

    chunks: Iterator[list[Record]] = iter_records(data, config.columns, config.preset, config.batch_size)
    first = next(chunks, [])  # validates the input before any model loads
    h = hashlib.sha256()
    counters: dict[str, dict[str, int]] = {}
    manifest: dict[str, Any] | None = None
    n_chunks = 0
    skipped = 0

    def account(delta: dict[str, dict[str, int]], man: dict[str, Any]) -> None:
        nonlocal manifest
        add_counters(counters, delta)
        manifest = manifest or man

    def all_chunks() -> Iterator[tuple[int, list[Record]]]:
        nonlocal n_chunks
        for k, chunk in enumerate(_chain(first, chunks)):
            n_chunks = k + 1
            for rec in chunk:
                rec.hash_into(h)
            yield k, chunk

    def todo() -> Iterator[tuple[int, list[Record]]]:
        nonlocal skipped
        for k, chunk in all_chunks():
            if resume:
                ids = _part_ids(out_dir, k)
                if ids is not None:
                    if ids != [r.id for r in chunk]:
                        raise UsageError(f"--resume: chunk {k} on disk does not match the input (was the input or --batch-size changed?)")
                    skipped += 1
                    if on_chunk:
                        on_chunk(len(chunk), len(chunk))
                    continue
            yield k, chunk

    cfg_dict = config.to_dict()
    if workers == 1:
        _init_worker(cfg_dict)
        for k, chunk in todo():
            rows, delta, man = _score_chunk(chunk)
            _write_part(out_dir, k, rows)
            account(delta, man)
            if on_chunk:
                on_chunk(len(chunk), len(chunk))
    else:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")  # torch and tokenizers are not fork-safe
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(cfg_dict, threads)) as pool:
            inflight: dict[Future[Any], tuple[int, int]] = {}

            def drain(block_until: int) -> None:
                while len(inflight) > block_until:
                    done = next(as_completed(inflight))
                    k2, n2 = inflight.pop(done)
                    rows, delta, man = done.result()
                    _write_part(out_dir, k2, rows)
                    account(delta, man)
                    if on_chunk:
                        on_chunk(n2, n2)

            for k, chunk in todo():
                inflight[pool.submit(_score_chunk, chunk)] = (k, len(chunk))
                drain(2 * workers)  # bounded memory: at most 2 chunks queued per worker
            drain(0)
            if manifest is None:  # every chunk came from disk, or the input is empty
                manifest = pool.submit(_worker_manifest).result()

    if manifest is None:  # in-process scoring: the scorer built by _init_worker above
        manifest = _worker_manifest()
    return finish(out_dir, n_chunks, manifest, h.hexdigest(), started, counters, workers=workers, resumed_chunks=skipped)


def _chain(first: list[Record], rest: Iterator[list[Record]]) -> Iterator[list[Record]]:
    if first:
        yield first
    yield from rest


def iter_part_rows(out_dir: str, n_chunks: int) -> Iterator[dict[str, Any]]:
    for k in range(n_chunks):
        with open(_part_path(out_dir, k), encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def result_from_dict(d: dict[str, Any]) -> LeakageResult:
    clean = {k: v for k, v in d.items() if k in _RESULT_FIELDS}
    for k in ("vsil_score", "image_risk", "text_risk", "overlap"):
        if clean.get(k) is None:
            clean[k] = float("nan")
    return LeakageResult(**clean)


def finish(
    out_dir: str, n_chunks: int, manifest: dict[str, Any], data_hash: str, started: float, counters: dict[str, dict[str, int]], **extra: Any
) -> dict[str, Any]:
    """Join the parts into results.jsonl (input order) and build the summary from those rows."""
    builder = SummaryBuilder()
    res_path = os.path.join(out_dir, "results.jsonl")
    tmp = res_path + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        for d in iter_part_rows(out_dir, n_chunks):
            builder.add(result_from_dict(d))
            f.write(dumps_clean(d) + "\n")
    os.replace(tmp, res_path)
    man = {
        **manifest,
        "data_sha256": data_hash,
        "started": utc_stamp(started),
        "seconds": round(time.time() - started, 3),
        **run_counters(manifest, counters),
        "engine": {"name": "local", "chunks": n_chunks, **extra},
    }
    return builder.build(man)
