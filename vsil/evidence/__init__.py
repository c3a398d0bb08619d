"""Image evidence: turning an image into text that risk extraction can read.

Backends (registry kind ``image_evidence``): ``given`` (the dataset's caption / description / safety
reason), ``ocr`` (rendered text, RapidOCR), ``clip`` (open_clip zero-shot risk tags) and ``caption``
(a transformers captioner). ``parse_policy`` reads ``--evidence``; ``EvidenceCache`` keeps each
backend's output per image hash on disk, so a second audit of the same images costs nothing.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any, Protocol

from ..errors import UsageError

IMAGE_BACKENDS = ("ocr", "clip", "caption")
POLICIES = ("auto", "given", *IMAGE_BACKENDS)


class ImageBackend(Protocol):
    """Describes a batch of RGB PIL images as text (one string per image; "" when nothing found)."""

    name: str
    cache_id: str  # backend + model + settings: part of the cache key

    def describe(self, images: list[Any]) -> list[str]: ...


def parse_policy(spec: str) -> list[str]:
    """``auto`` | ``given`` | a comma-separated combination of ``given,ocr,clip,caption``."""
    parts = [p.strip().lower() for p in (spec or "auto").split(",") if p.strip()]
    if not parts:
        parts = ["auto"]
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise UsageError(f"unknown evidence {', '.join(bad)}; choose auto, given, ocr, clip, caption or a comma-separated combination")
    if "auto" in parts and len(parts) > 1:
        raise UsageError("--evidence auto cannot be combined with other sources")
    return list(dict.fromkeys(parts))


class EvidenceCache:
    """(backend cache_id, image sha256) -> text. In memory only when ``cache_dir`` is None."""

    def __init__(self, cache_dir: str | None) -> None:
        self._lock = threading.Lock()
        self._mem: dict[tuple[str, str], str] = {}
        self._db: sqlite3.Connection | None = None
        if cache_dir:
            os.makedirs(cache_dir, exist_ok=True)
            self._db = sqlite3.connect(os.path.join(cache_dir, "image_evidence.sqlite"), check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS evidence (backend TEXT, sha256 TEXT, text TEXT, PRIMARY KEY (backend, sha256))")
            self._db.commit()
        self.hits = 0
        self.misses = 0

    def get(self, backend: str, sha: str) -> str | None:
        with self._lock:
            if (backend, sha) in self._mem:
                self.hits += 1
                return self._mem[(backend, sha)]
            if self._db is not None:
                row = self._db.execute("SELECT text FROM evidence WHERE backend = ? AND sha256 = ?", (backend, sha)).fetchone()
                if row is not None:
                    self._mem[(backend, sha)] = row[0]
                    self.hits += 1
                    return str(row[0])
            self.misses += 1
            return None

    def put_many(self, backend: str, items: dict[str, str]) -> None:
        with self._lock:
            for sha, text in items.items():
                self._mem[(backend, sha)] = text
            if self._db is not None and items:
                self._db.executemany("INSERT OR REPLACE INTO evidence VALUES (?, ?, ?)", [(backend, s, t) for s, t in items.items()])
                self._db.commit()

    def stats(self) -> dict[str, Any]:
        return {"hits": self.hits, "misses": self.misses}
