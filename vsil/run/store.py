"""The audit folder: the one writer and the one reader of each output file.

OUT/run.json              what the run was started with (config, input), checked by --resume
OUT/parts/chunk-NNNNNN.jsonl  one finished chunk's result rows, written atomically, with
OUT/parts/chunk-NNNNNN.sha256 the hash of the records it was computed from
OUT/results.jsonl         every result row, in input order (joined from the parts at the end)
OUT/summary.json          the summary and run manifest
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from typing import Any

from vsil.errors import UsageError
from vsil.util.jsonio import dumps_clean

RUN_FILE = "run.json"
LOCK_FILE = ".vsil.lock"
PARTS = "parts"
RESULTS = "results.jsonl"
SUMMARY = "summary.json"


class AuditStore:
    """Parts, resume state and the final files of one output folder."""

    def __init__(self, out_dir: str) -> None:
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise UsageError(f"--out {out_dir} is a file, not a folder")
        self.out_dir = out_dir
        self.parts_dir = os.path.join(out_dir, PARTS)
        self._lock: Any = None

    def lock(self) -> None:
        """Hold an exclusive lock on the folder for this run: a second audit into it is refused."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            return
        try:
            os.makedirs(self.out_dir, exist_ok=True)
            f = open(os.path.join(self.out_dir, LOCK_FILE), "a+")
        except OSError as e:
            raise UsageError(f"cannot write to --out {self.out_dir}: {e.strerror}") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise UsageError(
                f"another vsil audit is writing to {self.out_dir} (lock {LOCK_FILE} is held); wait for it to finish "
                "or choose another --out"
            ) from None
        self._lock = f

    def close(self) -> None:
        """Release the folder's lock."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def start(self, key: dict[str, Any], *, resume: bool) -> None:
        """Begin a run: with ``resume``, refuse a folder holding another run; without it, drop old parts."""
        self.lock()
        run_path = os.path.join(self.out_dir, RUN_FILE)
        if resume and os.path.exists(run_path):
            try:
                with open(run_path, encoding="utf-8") as f:
                    old = json.load(f)
            except (OSError, ValueError):
                old = None
            if old != key:
                raise UsageError(
                    f"--resume: {self.out_dir} holds a run with other arguments; rerun without --resume to start over"
                )
        elif os.path.isdir(self.parts_dir):
            shutil.rmtree(self.parts_dir)
        os.makedirs(self.parts_dir, exist_ok=True)
        _atomic_write(run_path, json.dumps(key))

    def _part(self, k: int) -> str:
        return os.path.join(self.parts_dir, f"chunk-{k:06d}.jsonl")

    def write_part(
        self, k: int, rows: list[dict[str, Any]], digest: str, stats: dict[str, Any], routed: Any = ()
    ) -> None:
        """Finished chunk ``k``: its rows, and beside them the hash of the records they were computed from,
        the chunk's counters and the rows it sent to the judge, least certain first (written first, so a
        part on disk always has its own)."""
        meta = {"sha256": digest, "stats": stats, "judge_routed": [list(x) for x in routed]}
        _atomic_write(self._meta(k), json.dumps(meta, ensure_ascii=False))
        write_rows(self._part(k), rows)

    def _meta(self, k: int) -> str:
        return os.path.join(self.parts_dir, f"chunk-{k:06d}.meta.json")

    def part_info(self, k: int) -> tuple[list[str], str, dict[str, Any]] | None:
        """(ids, record hash, counters) of finished chunk ``k``, or None when it is not on disk or unreadable."""
        path = self._part(k)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                ids = [json.loads(line)["id"] for line in f if line.strip()]
            with open(self._meta(k), encoding="utf-8") as f:
                meta = json.load(f)
            return ids, str(meta["sha256"]), dict(meta.get("stats") or {})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def iter_part_rows(self, n_chunks: int) -> Iterator[dict[str, Any]]:
        for k in range(n_chunks):
            with open(self._part(k), encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)


def _atomic_write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def iter_results(out_dir: str) -> Iterator[dict[str, Any]]:
    """Stream the rows of ``out_dir/results.jsonl``."""
    path = os.path.join(out_dir, RESULTS)
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError:
                    raise UsageError(f"{path}: line {n} is not valid JSON (truncated or edited file?)") from None


def read_summary(out_dir: str) -> dict[str, Any]:
    """The ``summary.json`` of an audit folder."""
    path = os.path.join(out_dir, SUMMARY)
    try:
        with open(path, encoding="utf-8") as f:
            s = json.load(f)
    except ValueError:
        raise UsageError(f"{path} is not valid JSON (truncated or edited file?)") from None
    if not isinstance(s, dict):
        raise UsageError(f"{path} is not a vsil summary (expected a JSON object)")
    return s


def export_parquet(out_dir: str, batch_rows: int = 4096) -> str:
    """Write ``OUT/results_parquet/part-0.parquet`` from ``results.jsonl`` (the Ray engine's columnar
    output); ``leaked_spans`` and ``risk_terms`` are JSON strings, as in ``vsil.integrations.ray``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vsil.schema import RESULT_COLUMNS

    types = {
        "vsil_score": pa.float64(),
        "image_risk": pa.float64(),
        "text_risk": pa.float64(),
        "overlap": pa.float64(),
        "vsil_level": pa.int64(),
        "row": pa.int64(),
        "is_leak": pa.bool_(),
    }
    schema = pa.schema([(c, types.get(c, pa.string())) for c in RESULT_COLUMNS])
    folder = os.path.join(out_dir, "results_parquet")
    os.makedirs(folder, exist_ok=True)
    writer = pq.ParquetWriter(os.path.join(folder, "part-0.parquet"), schema)
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
        batch.clear()

    for d in iter_results(out_dir):
        batch.append(
            {k: json.dumps(v, ensure_ascii=False) if k in ("leaked_spans", "risk_terms") else v for k, v in d.items()}
        )
        if len(batch) >= batch_rows:
            flush()
    if batch:
        flush()
    writer.close()
    return folder


def write_summary(out_dir: str, summary: dict[str, Any]) -> str:
    """Write ``out_dir/summary.json``; returns its path."""
    path = os.path.join(out_dir, SUMMARY)
    _atomic_write(path, dumps_clean(summary, indent=1))
    return path


def write_rows(path: str, rows: Iterable[dict[Any, Any]]) -> None:
    """Write a part's result rows as JSONL to ``path`` (atomically)."""
    _atomic_write(path, "".join(dumps_clean(r) + "\n" for r in rows))


def write_results(out_dir: str, rows: Iterable[dict[Any, Any]], on_row: Any = None) -> str:
    """The one writer of ``results.jsonl``: every row, in the order given, written atomically at the end;
    ``on_row(row)`` sees each row as it is written (the summary is built from exactly these rows)."""
    path = os.path.join(out_dir, RESULTS)
    tmp = path + ".part"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for d in rows:
                f.write(dumps_clean(d) + "\n")
                if on_row is not None:
                    on_row(d)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
