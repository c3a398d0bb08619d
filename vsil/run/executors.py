"""Executors: where the runner's chunks are scored. Each maps ``(k, records)`` chunks to
``ChunkResult``s in the order given, with bounded memory (at most a few chunks in flight per worker).

- ``InProcess``: one ``Pipeline`` in this process.
- ``ProcessPool``: ``workers`` spawned processes, each loading the models once; a worker exits when
  its parent dies.
- ``RayActors`` (``vsil.run.ray``): scoring actors on a Ray cluster.

A worker reports what it ran with (``Pipeline.describe()``) with its first chunk only.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from vsil.config import VSILConfig
from vsil.schema import Record, RunStats


@dataclass
class ChunkResult:
    k: int
    rows: list[dict[str, Any]]
    stats: RunStats
    description: dict[str, Any] | None  # the worker's Pipeline.describe(), on its first chunk only
    routed: list[tuple[str, float]] = field(default_factory=list)  # rows sent to the judge, least certain first


class Executor(Protocol):
    name: str

    def start(self) -> None: ...

    def map(self, chunks: Iterable[tuple[int, list[Record]]]) -> Iterator[ChunkResult]: ...

    def describe(self) -> dict[str, Any]: ...

    def engine_info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class Worker:
    """What scores chunks in any process or actor: a loaded pipeline that reports itself once."""

    def __init__(self, config: dict[str, Any] | VSILConfig, threads: int | None = None, pipeline: Any = None) -> None:
        from vsil.pipeline import Pipeline

        if threads is not None:
            _set_torch_threads(threads)
        cfg = config if isinstance(config, VSILConfig) else VSILConfig.from_dict(config)
        self.pipeline = (pipeline or Pipeline(cfg)).load()
        self.reported = False

    def score(self, k: int, records: list[Record]) -> ChunkResult:
        results, stats = self.pipeline.score(records)
        desc = None if self.reported else self.pipeline.describe()
        self.reported = True
        return ChunkResult(k, [r.to_dict() for r in results], stats, desc, self.pipeline.routed())

    def describe(self) -> dict[str, Any]:
        return dict(self.pipeline.describe())

    def close(self) -> None:
        self.pipeline.close()


class InProcess:
    """Score in this process (``workers=1``); ``pipeline`` reuses already loaded models."""

    name = "local"

    def __init__(self, config: VSILConfig, pipeline: Any = None) -> None:
        self.config = config
        self._pipeline = pipeline
        self.worker: Worker | None = None

    def start(self) -> None:
        """Load the models now (the first chunk would otherwise)."""
        if self.worker is None:
            self.worker = Worker(self.config, pipeline=self._pipeline)

    def map(self, chunks: Iterable[tuple[int, list[Record]]]) -> Iterator[ChunkResult]:
        for k, records in chunks:
            self.start()
            assert self.worker is not None
            yield self.worker.score(k, records)

    def engine_info(self) -> dict[str, Any]:
        return {"workers": 1}

    def describe(self) -> dict[str, Any]:
        from vsil.pipeline import Pipeline

        return (self.worker.pipeline if self.worker else self._pipeline or Pipeline(self.config)).describe()

    def close(self) -> None:
        # a shared pipeline (the API's cache) is closed by its owner
        if self.worker is not None and self._pipeline is None:
            self.worker.close()


_worker: Worker | None = None


def _init_worker(cfg: dict[str, Any], threads: int, parent: int) -> None:
    import atexit

    global _worker
    _watch_parent(parent)
    _worker = Worker(cfg, threads)
    atexit.register(_worker.close)  # the worker opened its judge and caches, so it closes them


def _score_in_worker(k: int, records: list[Record]) -> ChunkResult:
    assert _worker is not None, "worker not initialised"
    return _worker.score(k, records)


def _ready() -> bool:
    return _worker is not None


def _describe_in_worker() -> dict[str, Any]:
    assert _worker is not None, "worker not initialised"
    return _worker.pipeline.describe()


class ProcessPool:
    """Score in ``workers`` spawned processes (torch and tokenizers are not fork-safe)."""

    name = "local"

    def __init__(self, config: VSILConfig, workers: int) -> None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.config = config
        self.workers = workers
        threads = max(1, (os.cpu_count() or 1) // workers)  # share the cores instead of oversubscribing
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(config.to_dict(), threads, os.getpid()),
        )

    def start(self) -> None:
        """Start every worker process and wait until each has loaded its models."""
        for f in [self.pool.submit(_ready) for _ in range(self.workers)]:
            f.result()

    def map(self, chunks: Iterable[tuple[int, list[Record]]]) -> Iterator[ChunkResult]:
        inflight: deque[Any] = deque()
        for k, records in chunks:
            inflight.append(self.pool.submit(_score_in_worker, k, records))
            while len(inflight) > 2 * self.workers:  # bounded memory: at most 2 chunks queued per worker
                yield inflight.popleft().result()
        while inflight:
            yield inflight.popleft().result()

    def engine_info(self) -> dict[str, Any]:
        return {"workers": self.workers}

    def describe(self) -> dict[str, Any]:
        return dict(self.pool.submit(_describe_in_worker).result())

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def make_executor(
    config: VSILConfig, *, engine: str = "local", workers: int = 1, pipeline: Any = None, address: str | None = None
) -> Any:
    """The executor for ``--engine`` and ``--workers``."""
    from vsil.errors import UsageError

    if workers < 1:
        raise UsageError("--workers must be >= 1")
    if engine == "ray":
        from vsil.run.ray import RayActors

        return RayActors(config, actors=workers, address=address)
    if engine != "local":
        raise UsageError(f"unknown engine {engine!r}; choose local or ray")
    return InProcess(config, pipeline) if workers == 1 else ProcessPool(config, workers)


def _set_torch_threads(threads: int) -> None:
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(threads)


def _watch_parent(parent: int) -> None:
    """Exit this worker process when its parent dies (even by SIGKILL, which runs no clean-up)."""
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, name="vsil-parent-watch", daemon=True).start()
