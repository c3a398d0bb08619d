"""One on-disk key-value cache for every stage (embeddings, image evidence, judge answers).

``KVCache(cache_dir, "judge.sqlite")`` keeps values in memory and, with a ``cache_dir``, in SQLite:
each write is committed at once, so a run killed with SIGKILL keeps what it computed. A cache file
that SQLite cannot read is moved aside (``*.corrupt``) and rebuilt, with a warning, instead of failing
the run. Keys are namespaced (a model or backend id), values are ``str`` or ``bytes``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable

log = logging.getLogger(__name__)
Value = str | bytes


class KVCache:
    """(namespace, key) -> value. In memory only when ``cache_dir`` is None; thread-safe."""

    def __init__(self, cache_dir: str | None, filename: str, *, memory_limit: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._mem: dict[tuple[str, str], Value] = {}
        self._memory_limit = memory_limit
        self._db: sqlite3.Connection | None = None
        self.path: str | None = None
        self.warnings: list[str] = []
        self.hits = 0
        self.misses = 0
        if cache_dir:
            if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
                from vsil.errors import UsageError

                raise UsageError(f"cache dir {cache_dir} is a file, not a folder")
            os.makedirs(cache_dir, exist_ok=True)
            self.path = os.path.join(cache_dir, filename)
            self._db = self._open(self.path)

    def _open(self, path: str) -> sqlite3.Connection:
        try:
            return _connect(path)
        except sqlite3.DatabaseError as e:
            aside = path + ".corrupt"
            os.replace(path, aside)
            msg = f"cache {path} was unreadable ({e}); moved it to {aside} and started a new one"
            log.warning(msg)
            self.warnings.append(msg)
            return _connect(path)

    def get(self, ns: str, key: str) -> Value | None:
        return self.get_many(ns, [key]).get(key)

    def get_many(self, ns: str, keys: Iterable[str]) -> dict[str, Value]:
        out: dict[str, Value] = {}
        todo: list[str] = []
        wanted = list(dict.fromkeys(keys))
        with self._lock:
            for k in wanted:
                v = self._mem.get((ns, k))
                if v is None:
                    todo.append(k)
                else:
                    out[k] = v
            if self._db is not None:
                for i in range(0, len(todo), 500):
                    part = todo[i : i + 500]
                    q = f"SELECT key, value FROM kv WHERE ns = ? AND key IN ({','.join('?' * len(part))})"
                    for k, v in self._db.execute(q, [ns, *part]):
                        out[k] = v
                        self._remember(ns, k, v)
            self.hits += len(out)
            self.misses += len(wanted) - len(out)
        return out

    def put(self, ns: str, key: str, value: Value) -> None:
        self.put_many(ns, {key: value})

    def put_many(self, ns: str, items: dict[str, Value]) -> None:
        if not items:
            return
        with self._lock:
            for k, v in items.items():
                self._remember(ns, k, v)
            if self._db is not None:
                self._db.executemany(
                    "INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", [(ns, k, v) for k, v in items.items()]
                )
                self._db.commit()

    def _remember(self, ns: str, k: str, v: Value) -> None:
        if self._memory_limit <= 0:  # the caller keeps its own memory layer
            return
        if len(self._mem) >= self._memory_limit:  # bounded memory on long streaming runs
            self._mem.clear()
        self._mem[(ns, k)] = v

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, timeout=30)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB, PRIMARY KEY (ns, key))"
        )
        db.execute("SELECT count(*) FROM kv LIMIT 1").fetchone()
        db.commit()
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db
