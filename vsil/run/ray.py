"""The Ray executor (``vsil audit --engine ray``): scoring actors on a Ray cluster, each loading the
models once (GPU actors with ``num_gpus``), fed chunks by the one runner like the local engines, so
parts, resume and the summary work the same way. The driver loads no model.

For a ``ray.data.Dataset`` you already have, use ``vsil.integrations.ray.score`` instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

from vsil.config import VSILConfig
from vsil.errors import MissingDependencyError
from vsil.run.executors import ChunkResult, Worker
from vsil.schema import Record


def require_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingDependencyError("ray[data]", "ray") from None
    return ray


class RayActors:
    name = "ray"

    def __init__(
        self, config: VSILConfig, *, actors: int = 1, address: str | None = None, num_gpus: float | None = None
    ) -> None:
        ray = require_ray()
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        self.address = address
        opts: dict[str, Any] = {"num_gpus": num_gpus} if num_gpus is not None else {}
        remote = ray.remote(**opts)(Worker) if opts else ray.remote(Worker)
        self.actors = [remote.remote(config.to_dict()) for _ in range(max(1, actors))]
        self.batches = 0
        self.reporting = 0

    def start(self) -> None:
        """Wait until every actor has loaded its models."""
        import ray

        ray.get([a.describe.remote() for a in self.actors])

    def map(self, chunks: Iterable[tuple[int, list[Record]]]) -> Iterator[ChunkResult]:
        import ray

        inflight: deque[Any] = deque()
        n = len(self.actors)
        for i, (k, records) in enumerate(chunks):
            inflight.append(self.actors[i % n].score.remote(k, records))
            while len(inflight) > 2 * n:  # bounded memory on the driver
                yield self._got(ray.get(inflight.popleft()))
        while inflight:
            yield self._got(ray.get(inflight.popleft()))

    def _got(self, res: ChunkResult) -> ChunkResult:
        self.batches += 1
        self.reporting += res.description is not None
        return res

    def describe(self) -> dict[str, Any]:
        import ray

        return dict(ray.get(self.actors[0].describe.remote()))

    def engine_info(self) -> dict[str, Any]:
        return {
            "address": self.address or "local",
            "actors": len(self.actors),
            "actors_reporting": self.reporting,
            "batches": self.batches,
        }

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
