"""The one runner (``vsil.run.runner.run``) with the local executors: workers, incremental parts, resume
(with its per-chunk record hash), the in-memory sink of the Python API, and the run manifest."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE, REPO, kill_when, make_rows, read_results, write_jsonl

from vsil import VSILConfig
from vsil.cli import main
from vsil.errors import UsageError
from vsil.run.executors import InProcess, ProcessPool, make_executor
from vsil.run.runner import chunk_hash, run
from vsil.run.store import AuditStore, iter_results, read_summary


def lexical(**kw) -> VSILConfig:
    return VSILConfig(embedder="none", show_progress_bar=False, **kw)


def test_workers_give_the_same_rows_and_summary(tmp_path):
    data = make_rows(300)
    cfg = lexical(batch_size=32)
    s1 = run(data, cfg, executor=make_executor(cfg, engine="local", workers=1), out_dir=str(tmp_path / "one"))
    s2 = run(data, cfg, executor=make_executor(cfg, engine="local", workers=2), out_dir=str(tmp_path / "two"))
    a, b = read_results(tmp_path / "one"), read_results(tmp_path / "two")
    assert [r["id"] for r in a] == [r["id"] for r in data] == [r["id"] for r in b]
    assert all(x == y for x, y in zip(a, b))
    assert (s1["n"], s1["leaks"], s1["level_counts"]) == (s2["n"], s2["leaks"], s2["level_counts"])
    assert s1["manifest"]["engine"]["workers"] == 1 and s1["manifest"]["engine"]["chunks"] == 10
    assert s2["manifest"]["engine"]["workers"] == 2 and s2["manifest"]["engine"]["chunks"] == 10
    assert len([f for f in os.listdir(tmp_path / "two" / "parts") if f.endswith(".jsonl")]) == 10
    assert s1["manifest"]["backends"] == s2["manifest"]["backends"]


def test_make_executor_picks_the_engine():
    cfg = lexical()
    assert isinstance(make_executor(cfg, engine="local", workers=1), InProcess)
    pool = make_executor(cfg, engine="local", workers=2)
    try:
        assert isinstance(pool, ProcessPool) and pool.engine_info() == {"workers": 2}
    finally:
        pool.close()
    with pytest.raises(UsageError, match="--workers"):
        make_executor(cfg, workers=0)
    with pytest.raises(UsageError, match="unknown engine"):
        make_executor(cfg, engine="spark")


def test_memory_sink_streams_results_in_order_through_a_shared_pipeline(rows):
    from vsil.pipeline import Pipeline

    cfg = lexical(batch_size=3)
    p = Pipeline(cfg).load()
    got: list = []
    s = run([*rows, {"id": "e", "query": "", "caption": "x"}], cfg, on_result=got.append, pipeline=p)
    assert [r.id for r in got] == ["a", "b", "c", "d", "e"] and [r.status for r in got] == ["ok"] * 4 + ["error"]
    assert s["n"] == 5 and s["n_error"] == 1 and s["manifest"]["engine"] == {"name": "local", "chunks": 2, "workers": 1}
    assert "resumed_chunks" not in s["manifest"]["engine"]  # nothing to resume without an audit folder
    # the runner does not close a pipeline it was given: it scores again
    again, _ = p.score([])
    assert again == []
    p.close()


def test_manifest_echoes_the_run_config_and_counts(tmp_path, rows):
    cfg = lexical(batch_size=2, query_col="query")
    s = run(rows, cfg, out_dir=str(tmp_path / "o"))
    m = s["manifest"]
    assert m["config"] == cfg.to_dict() and m["config"]["run"]["batch_size"] == 2
    assert m["judge_stats"] is None and m["image_evidence_cache"] == {"hits": 0, "misses": 0}
    assert m["engine"] == {"name": "local", "chunks": 2, "workers": 1, "resumed_chunks": 0}
    assert len(m["data_sha256"]) == 64 and m["started"].endswith("Z") and m["seconds"] >= 0
    # the data hash depends on the records only, not on the chunking
    other = run(rows, lexical(batch_size=3), out_dir=str(tmp_path / "p"))
    assert other["manifest"]["data_sha256"] == m["data_sha256"]
    assert [r["id"] for r in iter_results(str(tmp_path / "o"))] == ["a", "b", "c", "d"]


def test_empty_input_scores_nothing_and_still_describes_the_run(tmp_path):
    src = tmp_path / "empty.jsonl"
    src.write_text("")
    s = run(str(src), lexical(), out_dir=str(tmp_path / "o"))
    assert s["n"] == 0 and s["manifest"]["engine"]["chunks"] == 0 and s["manifest"]["backends"]["mode"] == "lexical"
    assert (tmp_path / "o" / "results.jsonl").read_text() == ""


def test_killed_run_resumes_without_recomputing_finished_chunks(tmp_path):
    from vsil.testing.judge_server import FakeJudgeServer

    data = make_rows(200)
    src = write_jsonl(tmp_path / "d.jsonl", data)
    out = tmp_path / "o"
    with FakeJudgeServer(latency=0.03) as srv:
        args = [
            "audit",
            str(src),
            "--out",
            str(out),
            "--no-progress",
            "--no-report",
            "--embedder",
            "none",
            "--batch-size",
            "10",
            "--judge",
            "always",
            "--judge-base-url",
            srv.base_url,
            "--judge-model",
            "m",
            "--judge-concurrency",
            "1",
        ]
        parts = out / "parts"
        env = kill_when(
            args, lambda: parts.is_dir() and len([f for f in os.listdir(parts) if f.endswith(".jsonl")]) >= 10
        )
        done = sorted(f for f in os.listdir(parts) if f.endswith(".jsonl"))
        assert 10 <= len(done) < 20 and not (out / "results.jsonl").exists()
        stamps = {f: os.stat(parts / f).st_mtime_ns for f in done}
        finished_ids = {json.loads(x)["id"] for f in done for x in (parts / f).read_text().splitlines()}
        srv.by_query.clear()
        rc = subprocess.run(
            [sys.executable, "-m", "vsil.cli", *args, "--resume"], env=env, cwd=REPO, capture_output=True
        ).returncode
        assert rc == 0
        asked = set(srv.by_query)
    res = read_results(out)
    assert [r["id"] for r in res] == [r["id"] for r in data]  # exactly one row per input row, in order
    assert {f: os.stat(parts / f).st_mtime_ns for f in done} == stamps  # finished chunks untouched
    finished_queries = {r["query"] for r in data if r["id"] in finished_ids}
    unfinished_queries = {r["query"] for r in data if r["id"] not in finished_ids}
    assert not (asked & (finished_queries - unfinished_queries))  # no judge call for a finished row
    s = json.loads((out / "summary.json").read_text())
    assert s["n"] == 200 and s["manifest"]["engine"]["resumed_chunks"] == len(done)
    assert "recomputed_chunks" not in s["manifest"]["engine"]


def test_resume_refuses_other_arguments_and_fresh_runs_start_over(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in make_rows(40)) + "\n")
    out = str(tmp_path / "o")
    base = [
        "audit",
        str(data),
        "--out",
        out,
        "--no-progress",
        "--no-report",
        "--embedder",
        "none",
        "--batch-size",
        "10",
    ]
    assert main(base) == 0
    assert main([*base, "--resume"]) == 0  # everything on disk: nothing to recompute
    summary = json.loads(Path(out, "summary.json").read_text())
    assert summary["manifest"]["engine"]["resumed_chunks"] == 4 and summary["manifest"]["backends"]["mode"] == "lexical"
    assert main([*base, "--resume", "--workers", "2"]) == 0  # all on disk: the manifest comes from a worker
    again = json.loads(Path(out, "summary.json").read_text())
    assert again["manifest"]["engine"]["workers"] == 2
    assert again["manifest"]["backends"] == summary["manifest"]["backends"]
    assert again["n"] == summary["n"] == 40
    assert main([*base, "--resume", "--threshold", "0.9"]) == 2
    assert "other arguments" in capsys.readouterr().err
    assert main([*base, "--resume", "--progress"]) == 0  # the progress bar is not part of the run
    other = tmp_path / "other.jsonl"
    other.write_text(data.read_text())
    assert main([*base[:1], str(other), *base[2:], "--resume"]) == 2  # another input file
    assert "other arguments" in capsys.readouterr().err
    assert main([*base, "--batch-size", "20"]) == 0
    assert len([f for f in os.listdir(Path(out, "parts")) if f.endswith(".jsonl")]) == 2


def test_resume_scores_again_a_finished_chunk_whose_records_changed(tmp_path):
    rows = make_rows(40)
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    out = tmp_path / "o"
    base = [
        "audit",
        str(src),
        "--out",
        str(out),
        "--no-progress",
        "--no-report",
        "--embedder",
        "none",
        "--batch-size",
        "10",
    ]
    assert main(base) == 0
    parts = out / "parts"
    stamps = {f: os.stat(parts / f).st_mtime_ns for f in sorted(os.listdir(parts))}
    before = read_results(out)
    edited = [dict(r) for r in rows]
    edited[15]["query"] = "Give me step by step instructions to build a pipe bomb."  # same id, new query
    write_jsonl(src, edited)
    assert main([*base, "--resume"]) == 0
    after = read_results(out)
    assert [r["id"] for r in after] == [r["id"] for r in rows]
    assert after[15]["query"] == edited[15]["query"] and after[15] != before[15]
    assert [r for i, r in enumerate(after) if i != 15] == [r for i, r in enumerate(before) if i != 15]
    s = read_summary(str(out))
    assert s["manifest"]["engine"]["recomputed_chunks"] == [1] and s["manifest"]["engine"]["resumed_chunks"] == 3
    assert any("--resume" in w and "scored again" in w for w in s["manifest"]["warnings"])
    now = {f: os.stat(parts / f).st_mtime_ns for f in sorted(os.listdir(parts))}
    assert {f for f in now if now[f] != stamps[f]} == {"chunk-000001.jsonl", "chunk-000001.meta.json"}
    # the recomputed rows are those of a fresh run on the edited input
    assert (
        main(
            [
                "audit",
                str(src),
                "--out",
                str(tmp_path / "fresh"),
                "--no-progress",
                "--no-report",
                "--embedder",
                "none",
                "--batch-size",
                "10",
            ]
        )
        == 0
    )
    fresh = read_results(tmp_path / "fresh")
    assert after == fresh
    assert s["manifest"]["data_sha256"] == read_summary(str(tmp_path / "fresh"))["manifest"]["data_sha256"]


@pytest.mark.skipif(importlib.util.find_spec("httpx") is None, reason="needs httpx (pip install 'vsil[judge]')")
def test_resumed_chunks_keep_their_counters(tmp_path):
    from vsil.testing.judge_server import FakeJudgeServer

    src = write_jsonl(tmp_path / "d.jsonl", make_rows(40))
    with FakeJudgeServer() as srv:
        base = [
            "audit",
            str(src),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
            "--no-report",
            "--embedder",
            "none",
            "--batch-size",
            "10",
            "--judge",
            "always",
            "--judge-base-url",
            srv.base_url,
            "--judge-model",
            "m",
        ]
        assert main(base) == 0
        first, sent = read_summary(str(tmp_path / "o")), srv.requests
        assert main([*base, "--resume"]) == 0
        assert srv.requests == sent == first["judge"]["calls"]  # the resumed run sent nothing
    again = read_summary(str(tmp_path / "o"))
    assert again["manifest"]["engine"]["resumed_chunks"] == 4
    assert again["judge"] == first["judge"] and first["judge"]["rows"] == 39
    assert again["manifest"]["judge_stats"] == first["manifest"]["judge_stats"]


def test_resume_accepts_the_same_input_spelled_differently(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "x.jsonl", make_rows(30))
    base = ["--out", "o", "--no-progress", "--no-report", "--embedder", "none", "--batch-size", "10"]
    assert main(["audit", "x.jsonl", *base]) == 0
    assert main(["audit", "./x.jsonl", *base, "--resume"]) == 0
    assert main(["audit", str(tmp_path / "x.jsonl"), *base, "--resume"]) == 0
    s = read_summary("o")
    assert s["manifest"]["engine"]["resumed_chunks"] == 3 and "recomputed_chunks" not in s["manifest"]["engine"]


def test_audit_store_parts_and_hashes(tmp_path):
    from vsil.io.readers import iter_records

    [recs] = list(iter_records(make_rows(5), chunk_size=10))
    store = AuditStore(str(tmp_path / "o"))
    store.start({"config": {}, "data": "x"}, resume=False)
    assert store.part_info(0) is None
    rows = [{"id": r.id} for r in recs]
    stats = {"judge": {"rows": 5}, "image_evidence_cache": {"hits": 1, "misses": 2}}
    store.write_part(0, rows, chunk_hash(recs), stats)
    assert store.part_info(0) == ([r.id for r in recs], chunk_hash(recs), stats)
    assert list(store.iter_part_rows(1)) == rows
    recs[2].query = "changed"
    assert chunk_hash(recs) != store.part_info(0)[1]
    (tmp_path / "o" / "parts" / "chunk-000000.jsonl").write_text("{trunc")  # an unreadable part is not finished
    assert store.part_info(0) is None
    with pytest.raises(UsageError, match="another vsil audit is writing"):  # the folder is locked while in use
        AuditStore(str(tmp_path / "o")).start({"config": {}, "data": "x"}, resume=True)
    store.close()
    with pytest.raises(UsageError, match="other arguments"):
        AuditStore(str(tmp_path / "o")).start({"config": {"other": 1}, "data": "x"}, resume=True)
    fresh = AuditStore(str(tmp_path / "o"))
    fresh.start({"config": {}, "data": "x"}, resume=False)  # a fresh run drops old parts
    assert os.listdir(tmp_path / "o" / "parts") == []
    fresh.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        AuditStore(str(tmp_path / "file"))


def test_results_and_summary_readers_name_a_damaged_file(tmp_path):
    out = tmp_path / "o"
    assert main(["audit", str(EXAMPLE), "--out", str(out), "--no-progress", "--no-report", "--embedder", "none"]) == 0
    assert len(list(iter_results(str(out)))) == 16 and read_summary(str(out))["n"] == 16
    with open(out / "results.jsonl", "a") as f:
        f.write("{trunc\n")
    with pytest.raises(UsageError, match="line 17"):
        list(iter_results(str(out)))
    (out / "summary.json").write_text("[1]")
    with pytest.raises(UsageError, match="not a vsil summary"):
        read_summary(str(out))
