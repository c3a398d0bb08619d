"""``KVCache`` (the one on-disk cache of every stage), ``JudgeCache`` on top of it, and the device picker."""

from __future__ import annotations

import logging
import sqlite3
import threading

import pytest

from vsil.util.cache import KVCache


def test_memory_only_round_trip_and_counts():
    c = KVCache(None, "x.sqlite")
    assert c.path is None and c.get("ns", "k") is None
    c.put("ns", "k", "v")
    c.put_many("ns", {"a": b"\x00\x01", "b": "text"})
    assert c.get("ns", "k") == "v" and c.get("other", "k") is None  # keys are namespaced
    assert c.get_many("ns", ["a", "b", "zz", "a"]) == {"a": b"\x00\x01", "b": "text"}
    # hits and misses count distinct keys asked for
    assert c.stats() == {"hits": 1 + 2, "misses": 1 + 1 + 1}
    c.put_many("ns", {})
    c.close()


def test_disk_round_trip_survives_reopening(tmp_path):
    c = KVCache(str(tmp_path / "cache"), "kv.sqlite")
    assert c.path == str(tmp_path / "cache" / "kv.sqlite")
    c.put_many("emb", {"k1": b"\x00" * 16, "k2": "two"})
    c.put("emb", "k2", "two again")  # a write replaces
    c.close()
    d = KVCache(str(tmp_path / "cache"), "kv.sqlite")
    assert d.get_many("emb", ["k1", "k2", "k3"]) == {"k1": b"\x00" * 16, "k2": "two again"}
    assert d.stats() == {"hits": 2, "misses": 1} and d.warnings == []
    many = {f"k{i}": str(i) for i in range(1200)}  # more keys than one SELECT takes
    d.put_many("big", many)
    d.close()
    e = KVCache(str(tmp_path / "cache"), "kv.sqlite", memory_limit=0)
    assert e.get_many("big", list(many)) == many
    e.close()


def test_writes_are_committed_at_once(tmp_path):
    c = KVCache(str(tmp_path), "kv.sqlite")
    c.put("ns", "k", "v")
    with sqlite3.connect(tmp_path / "kv.sqlite") as db:  # another connection sees it before close
        assert db.execute("SELECT value FROM kv WHERE ns = 'ns' AND key = 'k'").fetchone() == ("v",)
    c.close()


def test_memory_limit_bounds_the_memory_layer(tmp_path):
    c = KVCache(None, "x.sqlite", memory_limit=3)
    c.put_many("ns", {str(i): str(i) for i in range(3)})
    c.put("ns", "3", "3")  # the memory layer is cleared when full
    assert len(c._mem) <= 3 and c.get("ns", "3") == "3"
    d = KVCache(str(tmp_path), "kv.sqlite", memory_limit=0)
    d.put("ns", "k", "v")
    assert d._mem == {} and d.get("ns", "k") == "v"  # served from SQLite
    d.close()


def test_corrupt_file_is_moved_aside_and_rebuilt_with_a_warning(tmp_path, caplog):
    path = tmp_path / "judge.sqlite"
    path.write_bytes(b"this is not a database\x00\xff" * 200)
    with caplog.at_level(logging.WARNING, logger="vsil.util.cache"):
        c = KVCache(str(tmp_path), "judge.sqlite")
    assert (tmp_path / "judge.sqlite.corrupt").read_bytes().startswith(b"this is not a database")
    assert len(c.warnings) == 1 and "unreadable" in c.warnings[0] and "judge.sqlite.corrupt" in c.warnings[0]
    assert any("judge.sqlite.corrupt" in r.getMessage() for r in caplog.records)
    assert c.get("ns", "k") is None
    c.put("ns", "k", "v")
    c.close()
    again = KVCache(str(tmp_path), "judge.sqlite")
    assert again.get("ns", "k") == "v" and again.warnings == []
    again.close()


def test_cache_dir_that_is_a_file_is_a_usage_error(tmp_path):
    from vsil.errors import UsageError

    (tmp_path / "f").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        KVCache(str(tmp_path / "f"), "kv.sqlite")


def test_thread_safe_writes(tmp_path):
    c = KVCache(str(tmp_path), "kv.sqlite")

    def work(t: int) -> None:
        for i in range(50):
            c.put("ns", f"{t}-{i}", str(i))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.close()
    d = KVCache(str(tmp_path), "kv.sqlite", memory_limit=0)
    assert len(d.get_many("ns", [f"{t}-{i}" for t in range(4) for i in range(50)])) == 200
    d.close()


def test_judge_cache_on_kv_cache(tmp_path):
    from vsil.stages.judge.cache import NS, JudgeCache, judge_key

    k = judge_key("openai", "m", "v1", [{"role": "user", "content": "q"}])
    assert k == judge_key("openai", "m", "v1", [{"role": "user", "content": "q"}])
    assert k != judge_key("openai", "m2", "v1", [{"role": "user", "content": "q"}])
    c = JudgeCache(str(tmp_path))
    assert c.path == str(tmp_path / "judge.sqlite") and c.get(k) is None
    c.put(k, {"verdict": {"level": 2}, "raw": "{}"})
    c.store.put(NS, "garbage", "{not json")
    c.store.put(NS, "no-verdict", '{"raw": "x"}')
    c.close()
    d = JudgeCache(str(tmp_path))
    assert d.get(k) == {"verdict": {"level": 2}, "raw": "{}"}
    assert d.get("garbage") is None and d.get("no-verdict") is None  # unreadable entries are misses
    d.close()
    assert JudgeCache(None).path is None


def test_embeddings_and_image_evidence_use_kv_cache(tmp_path):
    from vsil import VSILConfig
    from vsil.stages.evidence import EvidenceStage

    stage = EvidenceStage(VSILConfig(cache_dir=str(tmp_path)))
    assert isinstance(stage.cache, KVCache) and stage.cache.path == str(tmp_path / "image_evidence.sqlite")
    stage.close()


def test_pick_device(monkeypatch):
    from vsil.util.device import pick_device

    assert pick_device("cpu") == "cpu" and pick_device("cuda:1") == "cuda:1"
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    if getattr(torch.backends, "mps", None) is not None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device(None) == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device(None) == "cuda"
