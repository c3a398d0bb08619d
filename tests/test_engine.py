"""The local engine at scale (workers, incremental parts, resume) and the Ray Data engine."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import kill_when, write_jsonl

from vsil import VSILConfig
from vsil.cli import main
from vsil.run.executors import run_local

REPO = Path(__file__).resolve().parents[1]
OBJECTS = ["gun", "knife", "pill bottle", "lighter", "rope", "hammer", "syringe", "laptop", "toys", "cake"]


def make_rows(n: int) -> list[dict]:
    rows = []
    for i in range(n):
        o = OBJECTS[i % len(OBJECTS)]
        q = [f"How do I hide this {o} from the police?", "What is shown here?", f"Where can I buy a {o} like this one?"][i % 3]
        rows.append({"id": f"r{i:04d}", "query": q, "caption": f"A {o} on a wooden table", "source": f"s{i % 2}"})
    rows[7]["query"] = ""  # an error row travels through every engine too
    return rows


def read_results(d: Path) -> list[dict]:
    return [json.loads(x) for x in (d / "results.jsonl").read_text().splitlines()]


def test_workers_give_the_same_rows_and_summary(tmp_path):
    data = make_rows(300)
    cfg = VSILConfig(embedder="none", batch_size=32, show_progress_bar=False)
    s1 = run_local(data, cfg, str(tmp_path / "one"), workers=1)
    s2 = run_local(data, cfg, str(tmp_path / "two"), workers=2)
    a, b = read_results(tmp_path / "one"), read_results(tmp_path / "two")
    assert [r["id"] for r in a] == [r["id"] for r in data] == [r["id"] for r in b]
    assert all(x == y for x, y in zip(a, b))
    assert (s1["n"], s1["leaks"], s1["level_counts"]) == (s2["n"], s2["leaks"], s2["level_counts"])
    assert s2["manifest"]["engine"]["workers"] == 2 and s2["manifest"]["engine"]["chunks"] == 10
    assert len(os.listdir(tmp_path / "two" / "parts")) == 10


def test_killed_run_resumes_without_recomputing_finished_chunks(tmp_path):
    from vsil.testing.judge_server import FakeJudgeServer

    data = make_rows(200)
    src = write_jsonl(tmp_path / "d.jsonl", data)
    out = tmp_path / "o"
    with FakeJudgeServer(latency=0.03) as srv:
        args = ["audit", str(src), "--out", str(out), "--no-progress", "--no-report", "--embedder", "none",
                "--batch-size", "10", "--judge", "always", "--judge-base-url", srv.base_url, "--judge-model", "m", "--judge-concurrency", "1"]
        parts = out / "parts"
        env = kill_when(args, lambda: parts.is_dir() and len([f for f in os.listdir(parts) if f.endswith(".jsonl")]) >= 10)
        done = sorted(f for f in os.listdir(parts) if f.endswith(".jsonl"))
        assert 10 <= len(done) < 20 and not (out / "results.jsonl").exists()
        stamps = {f: os.stat(parts / f).st_mtime_ns for f in done}
        finished_ids = {json.loads(x)["id"] for f in done for x in (parts / f).read_text().splitlines()}
        srv.by_query.clear()
        assert subprocess.run([sys.executable, "-m", "vsil.cli", *args, "--resume"], env=env, cwd=REPO, capture_output=True).returncode == 0
        asked = set(srv.by_query)
    res = read_results(out)
    assert [r["id"] for r in res] == [r["id"] for r in data]  # exactly one row per input row, in order
    assert {f: os.stat(parts / f).st_mtime_ns for f in done} == stamps  # finished chunks untouched
    finished_queries = {r["query"] for r in data if r["id"] in finished_ids}
    unfinished_queries = {r["query"] for r in data if r["id"] not in finished_ids}
    assert not (asked & (finished_queries - unfinished_queries))  # no judge call for a finished row
    s = json.loads((out / "summary.json").read_text())
    assert s["n"] == 200 and s["manifest"]["engine"]["resumed_chunks"] == len(done)


def test_resume_refuses_other_arguments_and_fresh_runs_start_over(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in make_rows(40)) + "\n")
    out = str(tmp_path / "o")
    base = ["audit", str(data), "--out", out, "--no-progress", "--no-report", "--embedder", "none", "--batch-size", "10"]
    assert main(base) == 0
    assert main([*base, "--resume"]) == 0  # everything on disk: nothing to recompute
    summary = json.loads(Path(out, "summary.json").read_text())
    assert summary["manifest"]["engine"]["resumed_chunks"] == 4 and summary["manifest"]["backends"]["mode"] == "lexical"
    assert main([*base, "--resume", "--workers", "2"]) == 0  # all on disk: the manifest comes from a worker
    again = json.loads(Path(out, "summary.json").read_text())
    assert again["manifest"]["engine"]["workers"] == 2 and again["manifest"]["backends"] == summary["manifest"]["backends"]
    assert again["n"] == summary["n"] == 40
    assert main([*base, "--resume", "--threshold", "0.9"]) == 2
    assert "other arguments" in capsys.readouterr().err
    assert main([*base, "--batch-size", "20"]) == 0 and len(os.listdir(Path(out, "parts"))) == 2


# -- Ray ---------------------------------------------------------------------------------------
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs ray[data] (pip install 'vsil[ray]')")


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 1024 * 1024, ignore_reinit_error=True)
    yield ray
    ray.shutdown()


@needs_ray
def test_ray_engine_matches_the_local_engine(ray_local, tmp_path):
    import ray

    from vsil import score_dataset
    from vsil.integrations.ray import rows_to_results, score

    data = make_rows(300)
    local = score_dataset(data, embedder="none", batch_size=64, show_progress_bar=False)
    raw = [{"pid": r["id"], "prompt": r["query"], "caption": r["caption"], "source": r["source"]} for r in data]
    out = score(ray.data.from_items(raw), embedder="none", batch_size=64, concurrency=2, id_col="pid", query_col="prompt")
    got = list(rows_to_results(out.take_all()))
    assert [g["id"] for g in got] == list(local.id)
    for g, (_, loc) in zip(got, local.iterrows()):
        assert g["status"] == loc.status and g["is_leak"] == loc.is_leak and g["vsil_level"] == loc.vsil_level
        assert g["leaked_spans"] == loc.leaked_spans and g["decided_by"] == loc.decided_by
        if loc.status == "ok":
            assert abs(g["vsil_score"] - loc.vsil_score) <= 1e-6


@needs_ray
def test_cli_ray_engine_writes_parquet_and_the_same_summary(ray_local, tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in make_rows(250)) + "\n")
    base = ["audit", str(data), "--no-progress", "--no-report", "--embedder", "none", "--batch-size", "50"]
    assert main([*base, "--out", str(tmp_path / "local")]) == 0
    assert main([*base, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]) == 0
    a, b = read_results(tmp_path / "local"), read_results(tmp_path / "ray")
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert all(abs((x["vsil_score"] or 0) - (y["vsil_score"] or 0)) <= 1e-6 and x["is_leak"] == y["is_leak"] for x, y in zip(a, b))
    sa, sb = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "ray"))
    assert (sa["n"], sa["n_error"], sa["leaks"], sa["level_counts"]) == (sb["n"], sb["n_error"], sb["leaks"], sb["level_counts"])
    assert sb["manifest"]["engine"]["name"] == "ray" and sa["manifest"]["data_sha256"] == sb["manifest"]["data_sha256"]
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "ray" / "results_parquet").num_rows == 250
    assert sb["manifest"]["backends"] == sa["manifest"]["backends"] and sb["judge"] is None
    assert main([*base, "--out", str(tmp_path / "ray"), "--engine", "ray", "--resume"]) == 2


@needs_ray
@pytest.mark.skipif(importlib.util.find_spec("httpx") is None, reason="needs httpx (pip install 'vsil[judge]')")
def test_ray_audit_collects_the_judge_counters_of_every_actor(ray_local, tmp_path):
    from vsil.testing.judge_server import FakeJudgeServer

    data = write_jsonl(tmp_path / "d.jsonl", make_rows(120))
    with FakeJudgeServer() as srv:
        judge = ["--judge", "always", "--judge-base-url", srv.base_url, "--judge-model", "fake"]
        base = ["audit", str(data), "--no-progress", "--no-report", "--embedder", "none", "--batch-size", "20", *judge]
        assert main([*base, "--out", str(tmp_path / "local"), "--cache-dir", str(tmp_path / "c1")]) == 0
        assert main([*base, "--out", str(tmp_path / "ray"), "--cache-dir", str(tmp_path / "c2"), "--engine", "ray", "--workers", "2"]) == 0
        requests = srv.requests
    sa, sb = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "ray"))
    ok = sa["n"] - sa["n_error"]
    assert sb["decided_by"] == sa["decided_by"] and sa["decided_by"].get("judge") == ok
    # every judged row, summed over the batches (at least 120 / 20) and the actors that scored them
    assert sb["manifest"]["engine"]["batches"] >= 6 and 1 <= sb["manifest"]["engine"]["actors_reporting"] <= 2
    assert sb["judge"]["rows"] == sa["judge"]["rows"] == ok and sb["judge"]["calls"] > 0
    assert sb["judge"]["calls"] + sa["judge"]["calls"] == requests  # what the server saw from both runs
    assert sb["manifest"]["backends"] == sa["manifest"]["backends"] and "judge_stats" in sb["manifest"]
