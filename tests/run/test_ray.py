"""The Ray executor (``vsil audit --engine ray``: ``vsil.run.ray.RayActors`` behind the one runner) and
the Ray Data integration (``vsil.integrations.ray.score``)."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import make_rows, read_results, write_jsonl

from vsil.cli import main

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="needs ray[data] (pip install 'vsil[ray]')"
)


@pytest.fixture(scope="module")
def ray_local():
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 1024 * 1024,
        ignore_reinit_error=True,
    )
    yield ray
    ray.shutdown()


def test_ray_data_integration_matches_the_local_engine(ray_local, tmp_path):
    import ray

    from vsil import score_dataset
    from vsil.integrations.ray import rows_to_results, score

    data = make_rows(300)
    local = score_dataset(data, embedder="none", batch_size=64, show_progress_bar=False)
    raw = [{"pid": r["id"], "prompt": r["query"], "caption": r["caption"], "source": r["source"]} for r in data]
    out = score(
        ray.data.from_items(raw), embedder="none", batch_size=64, concurrency=2, id_col="pid", query_col="prompt"
    )
    got = list(rows_to_results(out.take_all()))
    assert [g["id"] for g in got] == list(local.id)
    for g, (_, loc) in zip(got, local.iterrows()):
        assert g["status"] == loc.status and g["is_leak"] == loc.is_leak and g["vsil_level"] == loc.vsil_level
        assert g["leaked_spans"] == loc.leaked_spans and g["decided_by"] == loc.decided_by
        if loc.status == "ok":
            assert abs(g["vsil_score"] - loc.vsil_score) <= 1e-6


def test_cli_ray_engine_writes_parquet_the_same_summary_and_resumes(ray_local, tmp_path):
    import pyarrow.parquet as pq

    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in make_rows(250)) + "\n")
    base = ["audit", str(data), "--no-progress", "--no-report", "--embedder", "none", "--batch-size", "50"]
    assert main([*base, "--out", str(tmp_path / "local")]) == 0
    assert main([*base, "--out", str(tmp_path / "ray"), "--engine", "ray", "--workers", "2"]) == 0
    a, b = read_results(tmp_path / "local"), read_results(tmp_path / "ray")
    assert [r["id"] for r in a] == [r["id"] for r in b]
    assert all(
        abs((x["vsil_score"] or 0) - (y["vsil_score"] or 0)) <= 1e-6 and x["is_leak"] == y["is_leak"]
        for x, y in zip(a, b)
    )
    sa, sb = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "ray"))
    assert (sa["n"], sa["n_error"], sa["leaks"], sa["level_counts"]) == (
        sb["n"],
        sb["n_error"],
        sb["leaks"],
        sb["level_counts"],
    )
    assert sb["manifest"]["engine"]["name"] == "ray" and sa["manifest"]["data_sha256"] == sb["manifest"]["data_sha256"]
    assert sb["manifest"]["engine"]["actors"] == 2 and sb["manifest"]["engine"]["chunks"] == 5
    table = pq.read_table(tmp_path / "ray" / "results_parquet")
    assert table.num_rows == 250 and table.column("id").to_pylist() == [r["id"] for r in b]
    assert json.loads(table.column("leaked_spans")[0].as_py()) == b[0]["leaked_spans"]
    assert sb["manifest"]["engine"]["parquet"].endswith("results_parquet")
    assert sb["manifest"]["backends"] == sa["manifest"]["backends"] and sb["judge"] is None
    # --resume works with Ray: every chunk is on disk, nothing is scored again
    assert main([*base, "--out", str(tmp_path / "ray"), "--engine", "ray", "--resume"]) == 0
    again = json.loads((tmp_path / "ray" / "summary.json").read_text())
    assert again["manifest"]["engine"]["resumed_chunks"] == 5 and again["manifest"]["engine"]["batches"] == 0
    assert read_results(tmp_path / "ray") == b and again["manifest"]["backends"] == sb["manifest"]["backends"]
    assert pq.read_table(tmp_path / "ray" / "results_parquet").num_rows == 250


@pytest.mark.skipif(importlib.util.find_spec("httpx") is None, reason="needs httpx (pip install 'vsil[judge]')")
def test_ray_audit_collects_the_judge_counters_of_every_actor(ray_local, tmp_path):
    from vsil.testing.judge_server import FakeJudgeServer

    data = write_jsonl(tmp_path / "d.jsonl", make_rows(120))
    with FakeJudgeServer() as srv:
        judge = ["--judge", "always", "--judge-base-url", srv.base_url, "--judge-model", "fake"]
        base = ["audit", str(data), "--no-progress", "--no-report", "--embedder", "none", "--batch-size", "20", *judge]
        assert main([*base, "--out", str(tmp_path / "local"), "--cache-dir", str(tmp_path / "c1")]) == 0
        assert (
            main(
                [
                    *base,
                    "--out",
                    str(tmp_path / "ray"),
                    "--cache-dir",
                    str(tmp_path / "c2"),
                    "--engine",
                    "ray",
                    "--workers",
                    "2",
                ]
            )
            == 0
        )
        requests = srv.requests
    sa, sb = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "ray"))
    ok = sa["n"] - sa["n_error"]
    assert sb["decided_by"] == sa["decided_by"] and sa["decided_by"].get("judge") == ok
    # every judged row, summed over the batches (at least 120 / 20) and the actors that scored them
    assert sb["manifest"]["engine"]["batches"] >= 6 and 1 <= sb["manifest"]["engine"]["actors_reporting"] <= 2
    assert sb["judge"]["rows"] == sa["judge"]["rows"] == ok and sb["judge"]["calls"] > 0
    assert sb["judge"]["calls"] + sa["judge"]["calls"] == requests  # what the server saw from both runs
    assert sb["manifest"]["backends"] == sa["manifest"]["backends"] and "judge_stats" in sb["manifest"]
    assert {**sb["manifest"]["judge_stats"], "rows_with_judge_error": 0} == sb["judge"]
