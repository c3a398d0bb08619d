from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from vsil.config import ColumnMap
from vsil.errors import UsageError
from vsil.io.readers import iter_records


def flat(data, **kw):
    return [r for chunk in iter_records(data, **kw) for r in chunk]


def write_jsonl(p: Path, rows) -> Path:
    p.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return p


def test_jsonl_json_csv_tsv_parquet_frame_list_agree(tmp_path, rows):
    df = pd.DataFrame(rows)
    inputs = {
        "jsonl": write_jsonl(tmp_path / "d.jsonl", rows),
        "json": tmp_path / "d.json",
        "csv": tmp_path / "d.csv",
        "tsv": tmp_path / "d.tsv",
        "parquet": tmp_path / "d.parquet",
    }
    inputs["json"].write_text(json.dumps(rows), encoding="utf-8")
    df.to_csv(inputs["csv"], index=False)
    df.to_csv(inputs["tsv"], index=False, sep="\t")
    df.to_parquet(inputs["parquet"])
    expected = [(r["id"], r["query"], r["caption"]) for r in rows]
    for name, src in [*inputs.items(), ("frame", df), ("list", rows), ("iter", iter(rows))]:
        got = [(r.id, r.query, r.caption) for r in flat(src if not isinstance(src, Path) else str(src))]
        assert got == expected, name
        assert all(not r.error for r in flat(src if not isinstance(src, Path) else str(src))), name


def test_hf_dataset_and_load_from_disk(tmp_path, rows):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list(rows)
    assert [r.id for r in flat(ds)] == ["a", "b", "c", "d"]
    ds.save_to_disk(str(tmp_path / "hf"))
    assert [r.query for r in flat(str(tmp_path / "hf"))] == [r["query"] for r in rows]


def test_json_object_keyed_by_id(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"k1": {"query": "q one", "caption": "c"}, "k2": {"query": "q two", "caption": "c"}}))
    recs = flat(str(p), columns=ColumnMap(id="_id"))
    assert [r.id for r in recs] == ["k1", "k2"]


def test_row_number_is_id_without_id_column(rows):
    recs = flat([{k: v for k, v in r.items() if k != "id"} for r in rows])
    assert [r.id for r in recs] == ["row-0", "row-1", "row-2", "row-3"]


def test_column_mapping(tmp_path):
    p = tmp_path / "d.csv"
    pd.DataFrame([{"prompt": "how to hack this", "desc": "a laptop", "uid": 7}]).to_csv(p, index=False)
    recs = flat(str(p), columns=ColumnMap(query="prompt", caption="desc", id="uid"))
    assert (recs[0].id, recs[0].query, recs[0].caption) == ("7", "how to hack this", "a laptop")


def test_chunking_streams_in_order(rows):
    big = [dict(r, id=f"{i}") for i in range(250) for r in rows[:1]]
    chunks = list(iter_records(big, chunk_size=64))
    assert [len(c) for c in chunks] == [64, 64, 64, 58]
    assert [r.id for c in chunks for r in c] == [str(i) for i in range(250)]


def test_bad_rows_are_reported_not_dropped(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(
        b'{"query": "fine query", "caption": "a gun"}\n'
        b'{"query": "", "caption": "a gun"}\n'
        b'{"caption": "a gun"}\n'
        b'{"query": 42, "caption": "a gun"}\n'
        b'{"query": "no evidence"}\n'
        b"{broken json\n"
        b'{"query": "bad \xff byte", "caption": "x"}\n'
        b"[1, 2]\n"
        b'{"query": "ok again", "caption": "a knife"}\n'
    )
    recs = flat(str(p))
    assert len(recs) == 9
    errs = [r.error for r in recs]
    assert errs[0] == "" and errs[-1] == ""
    assert "empty query" in errs[1]
    assert "missing query" in errs[2]
    assert "query is int" in errs[3]
    assert "no image evidence" in errs[4]
    assert "broken JSON" in errs[5]
    assert "undecodable" in errs[6]
    assert "not a JSON object: line 8 holds a list" in errs[7]


def test_csv_undecodable_and_malformed_rows(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_bytes(b'query,caption\nfine,a gun\nbad \xff,a gun\ntoo,many,fields\n"ok","a knife"\n')
    recs = flat(str(p))
    assert len(recs) == 4
    assert recs[0].error == "" and recs[3].error == ""
    assert "undecodable" in recs[1].error
    assert "malformed CSV row" in recs[2].error


def test_missing_required_column_is_usage_error(tmp_path):
    p = tmp_path / "d.csv"
    pd.DataFrame([{"prompt": "x", "caption": "y"}]).to_csv(p, index=False)
    with pytest.raises(UsageError, match="missing column 'query'"):
        flat(str(p))
    with pytest.raises(UsageError, match="missing column 'nope'"):
        flat(str(p), columns=ColumnMap(query="prompt", caption="nope"))


def test_unsupported_and_missing_inputs(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        flat(str(tmp_path / "nope.jsonl"))
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(UsageError, match="unsupported"):
        flat(str(tmp_path / "x.xlsx"))
    with pytest.raises(UsageError):
        flat({"query": "a"})
