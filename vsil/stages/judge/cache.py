"""On-disk judge cache, keyed by backend, model, prompt version and the exact input. Each answer is
committed as soon as it arrives (``KVCache``), so a run killed with SIGKILL keeps every completed call,
and a re-run with the same arguments repeats none of them."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from vsil.util.cache import KVCache

NS = "judge"


def judge_key(backend: str, model: str, prompt_version: str, messages: list[dict[str, str]]) -> str:
    """Cache key: backend, model, prompt version and the exact input."""
    blob = json.dumps([backend, model, prompt_version, messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


class JudgeCache:
    """Key -> answer dict. In memory only when ``cache_dir`` is None; thread-safe."""

    def __init__(self, cache_dir: str | None) -> None:
        self.store = KVCache(cache_dir, "judge.sqlite")

    @property
    def path(self) -> str | None:
        return self.store.path

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.store.get(NS, key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except (ValueError, TypeError):  # an entry that cannot be read is a miss, not a crash
            return None
        return value if isinstance(value, dict) and isinstance(value.get("verdict"), dict) else None

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.store.put(NS, key, json.dumps(value))

    def close(self) -> None:
        self.store.close()
