"""Data intake: any supported input -> chunks of validated ``Record`` objects, streamed.

Supported inputs: a path (JSONL, JSON list or id-keyed object, CSV/TSV, Parquet, a Hugging Face
``save_to_disk`` folder), a pandas DataFrame, a ``datasets.Dataset``, a list (or iterable) of dicts.
Every input row becomes exactly one record; a row that cannot be used carries ``error``.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

from vsil.config import ColumnMap
from vsil.errors import UsageError
from vsil.io.presets import Preset, get_preset
from vsil.schema import Record

PEEK_ROWS = 100  # rows of a schemaless input (JSONL, JSON, a list) whose keys are checked against the columns
FIELDS = ("query", "caption", "image", "safety_reason", "id", "category", "source")


RawItem = tuple[dict[str, Any] | None, str]  # (raw row or None, parse error)


# ---------------------------------------------------------------- raw readers (streaming)
GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"


def _magic(path: str, n: int = 4) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None


def _open_binary(path: str) -> Any:
    """The file, transparently gunzipped when it is gzip (whatever its name says)."""
    if _magic(path, 2) == GZIP_MAGIC:
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


def _iter_jsonl(path: str) -> Iterator[RawItem]:
    import gzip

    with _open_binary(path) as f:
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    text = line.decode("utf-8-sig" if n == 1 else "utf-8")  # a byte-order mark on line 1 is fine
                except UnicodeDecodeError as e:
                    yield None, f"undecodable byte: line {n}, position {e.start} (not UTF-8)"
                    continue
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as e:
                    yield None, f"broken JSON: line {n}, {e.msg} at column {e.colno}"
                    continue
                except RecursionError:
                    yield None, f"broken JSON: line {n}, nested too deeply"
                    continue
                if not isinstance(obj, dict):
                    yield None, f"not a JSON object: line {n} holds a {type(obj).__name__}"
                    continue
                yield obj, ""
        except (gzip.BadGzipFile, EOFError, OSError) as e:
            raise UsageError(f"{path}: cannot read the compressed file ({e})") from None


def _iter_json(path: str) -> Iterator[RawItem]:
    try:
        with _open_binary(path) as f:
            data = json.loads(f.read().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not valid UTF-8 JSON ({e})") from None
    except RecursionError:
        raise UsageError(f"{path}: JSON nested too deeply") from None
    except (EOFError, OSError) as e:
        raise UsageError(f"{path}: cannot read ({e})") from None
    if isinstance(data, dict):
        data = [{**v, "_id": k} if isinstance(v, dict) else v for k, v in data.items()]
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a JSON list of objects")
    for i, obj in enumerate(data):
        yield (obj, "") if isinstance(obj, dict) else (None, f"not a JSON object: item {i} is a {type(obj).__name__}")


def _csv_header(path: str, delim: str) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        return next(csv.reader(f, delimiter=delim), [])


def _iter_csv(path: str, delim: str) -> Iterator[RawItem]:
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.reader(f, delimiter=delim)
        header = next(reader, [])
        for n, cells in enumerate(reader, 2):
            if not cells:
                continue
            bad = [header[i] if i < len(header) else str(i) for i, c in enumerate(cells) if _has_surrogate(c)]
            if bad:
                yield None, f"undecodable byte: line {n}, column {bad[0]!r} (not UTF-8)"
            elif len(cells) != len(header):
                yield None, f"malformed CSV row: line {n} has {len(cells)} fields, the header {len(header)}"
            else:
                yield dict(zip(header, cells)), ""


def _has_surrogate(s: str) -> bool:
    """Undecodable bytes (read with surrogateescape) or lone surrogates from JSON escapes."""
    return any("\ud800" <= ch <= "\udfff" for ch in s)


def _parquet_file(path: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if _magic(path) != PARQUET_MAGIC:
        raise UsageError(f"{path} is not a Parquet file (no PAR1 header)")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise UsageError(f"{path}: unreadable Parquet file ({e})") from None


def _iter_parquet(path: str, batch: int) -> Iterator[RawItem]:
    import pyarrow as pa

    try:
        for b in _parquet_file(path).iter_batches(batch_size=batch):
            for r in b.to_pylist():
                yield r, ""
    except (pa.ArrowException, OSError) as e:
        raise UsageError(f"{path}: unreadable Parquet file ({e})") from None


def _iter_frame(df: Any, batch: int) -> Iterator[RawItem]:
    for start in range(0, len(df), batch):
        for r in df.iloc[start : start + batch].to_dict("records"):
            yield r, ""


def _iter_hf(ds: Any, batch: int) -> Iterator[RawItem]:
    for b in ds.iter(batch_size=batch):
        keys = list(b)
        for i in range(len(b[keys[0]]) if keys else 0):
            yield {k: b[k][i] for k in keys}, ""


def _load_hf_dir(path: str) -> Any:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover
        raise UsageError("reading a Hugging Face dataset folder needs: pip install 'vsil[hf]'") from e
    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if len(ds) != 1:
            raise UsageError(f"{path} holds splits {list(ds)}; pass one split's folder")
        ds = next(iter(ds.values()))
    return ds


# ---------------------------------------------------------------- source resolution
@dataclass
class Source:
    """A resolved input: a raw row iterator factory, the known columns (None when schemaless) and a label."""

    rows: Iterator[RawItem]
    columns: list[str] | None
    label: str


def open_source(data: Any, batch: int, preset: Preset | None = None) -> Source:
    """Resolve any supported input into a streaming row iterator."""
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if preset is not None and os.path.isdir(path) and preset.reader is None and preset.default_file:
            path = os.path.join(path, preset.default_file)
        if preset is not None and preset.reader is not None:
            if os.path.isdir(path) and preset.default_file and os.path.exists(os.path.join(path, preset.default_file)):
                path = os.path.join(path, preset.default_file)
            if not os.path.exists(path):
                raise UsageError(f"input not found: {path}")
            return Source(((r, "") for r in preset.reader(path)), None, path)
        if not os.path.exists(path):
            raise UsageError(f"input not found: {path}")
        if os.path.isdir(path):
            if os.path.exists(os.path.join(path, "state.json")) or os.path.exists(
                os.path.join(path, "dataset_dict.json")
            ):
                ds = _load_hf_dir(path)
                return Source(_iter_hf(ds, batch), list(ds.column_names), path)
            raise UsageError(f"{path} is a folder but not a Hugging Face save_to_disk dataset")
        low = path.lower()
        if low.endswith((".jsonl", ".ndjson", ".jsonl.txt")):
            return Source(_iter_jsonl(path), None, path)
        if low.endswith(".json"):
            return Source(_iter_json(path), None, path)
        if low.endswith((".csv", ".tsv")):
            delim = "\t" if low.endswith(".tsv") else ","
            return Source(_iter_csv(path, delim), _csv_header(path, delim), path)
        if low.endswith((".parquet", ".pq")):
            cols = list(_parquet_file(path).schema_arrow.names)
            return Source(_iter_parquet(path, batch), cols, path)
        raise UsageError(f"unsupported input format: {path} (use .jsonl, .json, .csv, .tsv or .parquet)")
    mod = type(data).__module__
    if mod.startswith("pandas") and hasattr(data, "iloc"):
        return Source(_iter_frame(data, batch), [str(c) for c in data.columns], "<DataFrame>")
    if mod.startswith("datasets") and hasattr(data, "column_names"):
        return Source(_iter_hf(data, batch), list(data.column_names), "<datasets.Dataset>")
    if isinstance(data, dict):
        raise UsageError("pass a list of row dicts, not a single dict")
    if isinstance(data, Iterable):
        return Source(
            ((r, "") if isinstance(r, dict) else (None, f"expected a dict, got {type(r).__name__}") for r in data),
            None,
            "<rows>",
        )
    raise UsageError(f"unsupported input type: {type(data).__name__}")


# ---------------------------------------------------------------- normalisation
def _clean(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _text_field(rec: Record, name: str, v: Any, required: bool = False) -> str:
    v = _clean(v)
    if v is None:
        if required:
            rec.error = rec.error or f"missing {name}"
        return ""
    if not isinstance(v, str):
        rec.error = rec.error or f"{name} is {type(v).__name__}, expected text"
        return ""
    if _has_surrogate(v):
        rec.error = rec.error or f"invalid text: {name} has an undecodable byte or an unpaired surrogate"
        return ""
    if required and not v.strip():
        rec.error = rec.error or f"empty {name}"
    return v


def _label(rec: Record, name: str, v: Any) -> str:
    """A category / source label as text; an unusable one is escaped and fails the row."""
    s = str(_clean(v) or "")
    if _has_surrogate(s):
        rec.error = rec.error or f"invalid text: {name} has an undecodable byte or an unpaired surrogate"
        return s.encode("utf-8", "backslashreplace").decode("ascii", "replace")
    return s


def normalise(raw: dict[str, Any], row: int, cols: ColumnMap, preset: Preset | None, variant: str) -> list[Record]:
    """Map one raw row to records (presets may expand one row into several, or skip it)."""
    canon_rows: list[dict[str, Any]]
    if preset is not None and preset.expand is not None:
        canon_rows = preset.expand(raw, variant)
    elif preset is not None and preset.transform is not None:
        c = preset.transform(raw, variant)
        canon_rows = [] if c is None else [c]
    else:
        canon_rows = [{f: raw.get(getattr(cols, f)) for f in FIELDS}]
    if preset is not None:
        for f, col in cols.explicit().items():  # explicit column flags override the preset
            for c in canon_rows:
                c[f] = raw.get(col)
    out = []
    for c in canon_rows:
        rid = _clean(c.get("id"))
        rec = Record(row=row, id=str(rid) if rid is not None and str(rid) != "" else f"row-{row}")
        if _has_surrogate(rec.id) or "\x00" in rec.id:
            rec.id = rec.id.encode("utf-8", "backslashreplace").decode("ascii", "replace").replace("\x00", "\\x00")
            rec.error = "invalid text: id has an undecodable byte, an unpaired surrogate or a NUL"
        rec.query = _text_field(rec, "query", c.get("query"), required=True)
        rec.caption = _text_field(rec, "caption", c.get("caption"))
        rec.safety_reason = _text_field(rec, "safety_reason", c.get("safety_reason"))
        img = _clean(c.get("image"))
        rec.image = img if img not in ("",) else None
        rec.category = _label(rec, "category", c.get("category"))
        rec.source = _label(rec, "source", c.get("source"))
        if not rec.error and not rec.caption.strip() and not rec.safety_reason.strip() and rec.image is None:
            rec.error = "no image evidence: missing caption and no image"
        out.append(rec)
    return out


def iter_records(
    data: Any,
    columns: ColumnMap | None = None,
    preset: str | None = None,
    chunk_size: int = 256,
) -> Iterator[list[Record]]:
    """Stream ``data`` as chunks of at most ``chunk_size`` records, in input order.

    Raises ``UsageError`` before yielding anything when a required column is missing.
    """
    cols = columns or ColumnMap()
    p, variant = get_preset(preset) if preset else (None, "default")
    src = open_source(data, chunk_size, p)
    rows: Iterator[RawItem] = src.rows
    if src.columns is not None:
        _check_columns(src.columns, cols, p)
    elif p is None or p.reader is None:  # schemaless rows: check the columns of the first objects
        head = list(islice(rows, PEEK_ROWS))
        seen = sorted({k for raw, _ in head if raw is not None for k in raw})
        if any(raw is not None for raw, _ in head):
            _check_columns(seen, cols, p)
        rows = itertools.chain(head, rows)
    counter = iter(range(1 << 62))

    def gen() -> Iterator[Record]:
        for raw, err in rows:
            row = next(counter)
            if raw is None:
                yield Record(row=row, id=f"row-{row}", error=err)
                continue
            yield from normalise(raw, row, cols, p, variant)

    it = gen()
    while chunk := list(islice(it, chunk_size)):
        yield chunk


def _check_columns(have: list[str], cols: ColumnMap, preset: Preset | None) -> None:
    hs = set(have)
    if preset is not None:
        missing = [c for c in preset.required if c not in hs]
        missing += [c for c in cols.explicit().values() if c not in hs]
    else:
        missing = [c for c in [cols.query, *cols.explicit().values()] if c not in hs]
        if not missing and not hs & {cols.caption, cols.safety_reason, cols.image}:
            raise UsageError(
                f"no image evidence column: none of {cols.caption!r}, {cols.safety_reason!r}, {cols.image!r} "
                f"is in the input (columns: {', '.join(have)}); pass --caption-col or --image-col"
            )
    if missing:
        raise UsageError(f"missing column {missing[0]!r} (input columns: {', '.join(have)})")


def count_rows(data: Any, preset: str | None = None) -> int | None:
    """The number of input rows when it is cheap to know (for a progress total), else None: a DataFrame's
    or Dataset's length, a Parquet file's metadata, the lines of a JSONL file or the records of a CSV."""
    p = get_preset(preset)[0] if preset else None
    if p is not None and (p.reader is not None or p.expand is not None):
        return None
    if not isinstance(data, (str, os.PathLike)):
        try:
            return len(data)
        except TypeError:
            return None
    path = os.fspath(data)
    low = path.lower()
    try:
        if low.endswith((".parquet", ".pq")):
            return int(_parquet_file(path).metadata.num_rows)
        if low.endswith((".jsonl", ".ndjson", ".jsonl.txt")):
            with _open_binary(path) as f:
                return sum(1 for line in f if line.strip())
        if low.endswith((".csv", ".tsv")):
            delim = "\t" if low.endswith(".tsv") else ","
            with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
                return max(0, sum(1 for row in csv.reader(f, delimiter=delim) if row) - 1)
    except (OSError, UsageError, csv.Error):
        return None
    return None
