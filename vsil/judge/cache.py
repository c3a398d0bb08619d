"""On-disk judge cache (SQLite). Each answer is committed as soon as it arrives, so a run killed with
SIGKILL keeps every completed call, and a re-run with the same arguments repeats none of them."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from typing import Any


def judge_key(backend: str, model: str, prompt_version: str, messages: list[dict[str, str]]) -> str:
    """Cache key: backend, model, prompt version and the exact input."""
    blob = json.dumps([backend, model, prompt_version, messages], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """Key -> answer dict. In memory only when ``cache_dir`` is None; thread-safe."""

    def __init__(self, cache_dir: str | None) -> None:
        self._lock = threading.Lock()
        self._mem: dict[str, dict[str, Any]] = {}
        self._db: sqlite3.Connection | None = None
        self.path: str | None = None
        if cache_dir:
            os.makedirs(cache_dir, exist_ok=True)
            self.path = os.path.join(cache_dir, "judge.sqlite")
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS judge (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            if key in self._mem:
                return self._mem[key]
            if self._db is None:
                return None
            row = self._db.execute("SELECT value FROM judge WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value: dict[str, Any] = json.loads(row[0])
        return value

    def put(self, key: str, value: dict[str, Any]) -> None:
        with self._lock:
            self._mem[key] = value
            if self._db is not None:
                self._db.execute("INSERT OR REPLACE INTO judge (key, value) VALUES (?, ?)", (key, json.dumps(value)))
                self._db.commit()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
