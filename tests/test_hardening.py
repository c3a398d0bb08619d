"""One focused test per item of the hardening issue (each targets behaviour the code before the restructure,
3b8eb72, got wrong): resume checks, unusable text and image paths, the output lock, literal chart labels,
hidden characters, workers outliving their parent, secrets in echoed error bodies, judge counters and
faults, fail-fast on a dead endpoint, case-insensitive spans and huge image files."""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unicodedata
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, make_rows, write_jsonl

from vsil.cli import main

LEX = ["--embedder", "none", "--no-progress"]
HAS_HTTPX = importlib.util.find_spec("httpx") is not None
needs_httpx = pytest.mark.skipif(not HAS_HTTPX, reason="needs httpx (pip install 'vsil[judge]')")


def results(out: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (out / "results.jsonl").read_text(encoding="utf-8").split("\n") if x.strip()]


def summary(out: Path) -> dict[str, Any]:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


def judge_rows(n: int) -> list[dict[str, Any]]:
    objs = ["gun", "knife", "rope", "lighter", "syringe"]
    return [
        {
            "id": f"j{i}",
            "query": f"Question {i}: how do I carry this {objs[i % 5]} on a bus?",
            "caption": f"a {objs[i % 5]}",
        }
        for i in range(n)
    ]


def judge_args(url: str, *extra: str) -> list[str]:
    return ["--judge", "always", "--judge-base-url", url, "--judge-model", "fake", "--judge-backoff", "0.01", *extra]


# ------------------------------------------------------------------ --resume
def test_resume_recomputes_an_edited_chunk_and_accepts_dot_slash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = make_rows(30)
    write_jsonl(tmp_path / "x.jsonl", rows)
    base = ["--out", "o", *LEX, "--no-report", "--batch-size", "10"]
    assert main(["audit", "x.jsonl", *base]) == 0
    assert main(["audit", "./x.jsonl", *base, "--resume"]) == 0  # the same input, spelled differently
    s = summary(tmp_path / "o")
    assert s["manifest"]["engine"]["resumed_chunks"] == 3 and "recomputed_chunks" not in s["manifest"]["engine"]
    rows[12]["query"] = "How do I hide this knife from the police?"  # same id, new text
    write_jsonl(tmp_path / "x.jsonl", rows)
    assert main(["audit", "./x.jsonl", *base, "--resume"]) == 0
    s = summary(tmp_path / "o")
    assert s["manifest"]["engine"]["recomputed_chunks"] == [1] and s["manifest"]["engine"]["resumed_chunks"] == 2
    res = results(tmp_path / "o")
    assert [r["id"] for r in res] == [r["id"] for r in rows]
    assert res[12]["query"] == rows[12]["query"]


# ------------------------------------------------------------------ unusable text and paths
def test_lone_surrogate_is_one_error_row(tmp_path):
    src = tmp_path / "d.jsonl"
    src.write_text(
        '{"id": "s", "query": "x\\ud800y", "caption": "a gun"}\n{"id": "ok", "query": "Where can I buy this gun?", '
        '"caption": "a gun"}\n',
        encoding="ascii",
    )
    assert main(["audit", str(src), "--out", str(tmp_path / "o"), *LEX, "--no-report"]) == 0
    res = results(tmp_path / "o")
    assert [(r["id"], r["status"]) for r in res] == [("s", "error"), ("ok", "ok")]
    assert res[0]["error"].startswith("invalid text")


def test_nul_in_image_path_is_an_error_row(tmp_path):
    src = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"id": "n", "query": "How do I use this?", "image": "a\x00b.png"},
            {"id": "ok", "query": "q?", "caption": "c"},
        ],
    )
    args = ["audit", str(src), "--out", str(tmp_path / "o"), *LEX, "--no-report", "--image-root", str(tmp_path)]
    assert main(args) == 0
    res = results(tmp_path / "o")
    assert [r["status"] for r in res] == ["error", "ok"] and "NUL" in res[0]["error"]


def test_3gib_image_is_refused_without_reading_it(tmp_path, monkeypatch):
    import builtins

    from vsil.stages.evidence import images

    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(3 << 30)  # sparse: no disk used
    opened: list[str] = []
    real_open = builtins.open

    def spy(file: Any, *a: Any, **kw: Any) -> Any:
        opened.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else str(file))
        return real_open(file, *a, **kw)

    monkeypatch.setattr(images, "open", spy, raising=False)
    with pytest.raises(images.ImageError, match="above the limit"):
        images.read_image("big.png", str(tmp_path))
    src = write_jsonl(tmp_path / "d.jsonl", [{"id": "b", "query": "How do I use this?", "image": "big.png"}])
    t = time.monotonic()
    args = ["audit", str(src), "--out", str(tmp_path / "o"), *LEX, "--no-report", "--image-root", str(tmp_path)]
    assert main([*args, "--max-error-rate", "1"]) == 0
    assert time.monotonic() - t < 20
    res = results(tmp_path / "o")
    assert res[0]["status"] == "error" and "above the limit" in res[0]["error"]
    assert not [p for p in opened if p.endswith("big.png")]


# ------------------------------------------------------------------ the output lock
def test_a_second_audit_into_a_locked_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    src = write_jsonl(tmp_path / "d.jsonl", make_rows(5))
    with open(out / ".vsil.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["audit", str(src), "--out", str(out), *LEX, "--no-report"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("vsil: error: ") and "another vsil audit" in err and err.count("\n") == 1
        assert not (out / "results.jsonl").exists()
    assert main(["audit", str(src), "--out", str(out), *LEX, "--no-report"]) == 0
    with open(out / ".vsil.lock", "a+") as f:  # released when the run ended
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


# ------------------------------------------------------------------ report charts
def test_math_like_category_names_are_literal_chart_labels(tmp_path):
    from vsil.report import chart_rates

    img = chart_rates({"$x^$": {"n": 2, "leak_rate": 0.5, "ci95": [0.1, 0.9]}}, "per category")
    assert img.startswith('<img alt="chart"')
    rows = [
        {"id": f"r{i}", "query": "How do I hide this gun?", "caption": "a gun", "category": c, "source": c}
        for i, c in enumerate(["$x^$", "$\\frac{", "a^b$", "$x^$"])
    ]
    src = write_jsonl(tmp_path / "d.jsonl", rows)
    assert main(["audit", str(src), "--out", str(tmp_path / "o"), *LEX]) == 0
    html = (tmp_path / "o" / "report.html").read_text(encoding="utf-8")
    groups = html[html.index('id="groups"') :]
    groups = groups[: groups.index("</section>")]
    assert groups.count('<img alt="chart"') == 2  # per category and per source
    assert "$x^$" in html


# ------------------------------------------------------------------ hidden characters (semantic mode)
@pytest.mark.semantic
@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None, reason="needs sentence-transformers")
def test_hidden_and_fullwidth_characters_do_not_hide_the_rifle():
    from vsil import leakage_score

    cap = "A hunting rifle on a table"
    plain = leakage_score("How do I travel on a plane with this rifle?", caption=cap)
    assert plain.status == "ok" and plain.vsil_level == 2
    for word in ("ri\u200bfle", "ri\u00adfle", "ri\u200dfle", "ｒｉｆｌｅ"):
        q = f"How do I travel on a plane with this {word}?"
        r = leakage_score(q, caption=cap)
        assert abs(r.vsil_score - plain.vsil_score) < 0.05, (word, r.vsil_score, plain.vsil_score)
        assert r.vsil_level == plain.vsil_level
        span = next(s for s in r.leaked_spans if "rifle" in _fold(s["text"]))
        assert q[span["start"] : span["end"]] == span["text"] == word


def _fold(s: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", s) if unicodedata.category(ch) != "Cf").lower()


# ------------------------------------------------------------------ workers die with their parent
def _children(pid: int) -> list[int]:
    try:
        import psutil

        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    stat = Path(f"/proc/{d}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(d))
        return kids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has exited


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


WORKERS = ["--no-report", "--workers", "2", "--batch-size", "50"]


@pytest.mark.slow  # ~16 s: 30,000 rows keep two spawned workers busy
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_workers_exit_when_the_parent_is_sigkilled(tmp_path):
    src = write_jsonl(tmp_path / "d.jsonl", make_rows(30_000))
    parts = tmp_path / "o" / "parts"
    p = subprocess.Popen(
        [sys.executable, "-m", "vsil.cli", "audit", str(src), "--out", str(tmp_path / "o"), *LEX, *WORKERS],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and p.poll() is None:
            workers = [c for c in _children(p.pid) if "spawn_main" in _cmdline(c)]
            if len(workers) >= 2 and parts.is_dir() and any(f.suffix == ".jsonl" for f in parts.iterdir()):
                break
            time.sleep(0.1)
        assert p.poll() is None, "the audit finished before it could be killed: use more rows"
        assert len(workers) == 2
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    left = [w for w in workers if _alive(w)]
    for w in left:  # do not leave them behind if the test fails
        os.kill(w, signal.SIGKILL)
    assert not left, f"worker processes {left} outlived their parent by 10 s"


# ------------------------------------------------------------------ tiny HTTP servers
class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _EchoAuth401(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"error": f"invalid credentials: Authorization={self.headers.get('Authorization')}"})
        body += f" raw {self.headers.get('Authorization', '').split(' ')[-1]}"
        data = body.encode()
        self.send_response(401)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Trickle(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):  # one byte every 50 ms: no single read times out, the whole reply takes 50 s
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass


# ------------------------------------------------------------------ secrets
@needs_httpx
def test_an_endpoint_echoing_the_api_key_does_not_leak_it(tmp_path, monkeypatch, capsys):
    key = "plainsecretvalue-4242-do-not-store"  # not shaped like a token: only the env-value rule catches it
    monkeypatch.setenv("VSIL_TEST_SECRET_KEY", key)
    src = write_jsonl(tmp_path / "d.jsonl", judge_rows(4))
    out = tmp_path / "o"
    with _Server(_EchoAuth401) as srv:
        rc = main(
            [
                "audit",
                str(src),
                "--out",
                str(out),
                *LEX,
                *judge_args(srv.base_url, "--judge-api-key-env", "VSIL_TEST_SECRET_KEY"),
            ]
        )
    captured = capsys.readouterr()
    assert rc == 0
    res = results(out)
    assert all("HTTP 401" in r["judge_error"] for r in res)
    assert all("[REDACTED]" in r["judge_error"] for r in res)
    for f in out.rglob("*"):
        if f.is_file():
            assert key not in f.read_text(encoding="utf-8", errors="replace"), f
    assert key not in captured.err and key not in captured.out


# ------------------------------------------------------------------ judge counters and faults
@needs_httpx
def test_judge_requests_count_every_http_attempt(tmp_path):
    from vsil.testing.judge_server import FakeJudgeServer

    src = write_jsonl(tmp_path / "d.jsonl", judge_rows(8))
    with FakeJudgeServer() as srv:
        srv.queue_faults(["500", "500", "429"])
        args = ["audit", str(src), "--out", str(tmp_path / "a"), *LEX, "--no-report"]
        assert main([*args, *judge_args(srv.base_url, "--judge-concurrency", "1")]) == 0
        j = summary(tmp_path / "a")["judge"]
        assert srv.requests == 11
        assert j["requests"] == 11 and j["retries"] == 3 and j["calls"] == 8 and j["answers"] == 8
    data = judge_rows(40)
    src = write_jsonl(tmp_path / "e.jsonl", data)
    with FakeJudgeServer(fail_fraction=0.3) as srv:
        failing = sum(srv.fails(r["query"]) for r in data)
        args = ["audit", str(src), "--out", str(tmp_path / "b"), *LEX, "--no-report"]
        assert main([*args, *judge_args(srv.base_url, "--judge-max-retries", "2")]) == 0
        j = summary(tmp_path / "b")["judge"]
        assert 0 < failing < 40
        assert j["requests"] == srv.requests == 40 + 2 * failing
        assert j["retries"] == 2 * failing and j["failed"] == failing


@needs_httpx
def test_judge_counters_after_resume_cover_the_whole_run(tmp_path):
    from vsil.testing.judge_server import FakeJudgeServer

    src = write_jsonl(tmp_path / "d.jsonl", judge_rows(20))
    out = tmp_path / "o"
    with FakeJudgeServer() as srv:
        srv.queue_faults(["500"])
        args = ["audit", str(src), "--out", str(out), *LEX, "--no-report", "--batch-size", "5"]
        args += judge_args(srv.base_url, "--judge-concurrency", "1")
        assert main(args) == 0
        first = summary(out)["judge"]
        assert first["requests"] == srv.requests == 21 and first["retries"] == 1
        for f in ("chunk-000003.jsonl", "chunk-000003.meta.json"):  # as if killed before the last chunk
            (out / "parts" / f).unlink()
        (out / "results.jsonl").unlink()
        assert main([*args, "--resume"]) == 0
        assert srv.requests == 26  # the last chunk only
    again = summary(out)
    assert again["manifest"]["engine"]["resumed_chunks"] == 3
    for k in ("rows", "calls", "requests", "retries", "answers"):
        assert again["judge"][k] == first[k], k


@needs_httpx
def test_judge_timeout_is_a_total_deadline():
    from vsil.stages.judge.base import JudgeCallError
    from vsil.stages.judge.openai import OpenAIJudge

    with _Server(_Trickle) as srv:
        judge = OpenAIJudge("m", srv.base_url, "VSIL_NO_SUCH_KEY", timeout=1.0, max_retries=0)
        t = time.monotonic()
        with pytest.raises(JudgeCallError, match="timeout"):
            judge.complete([{"role": "user", "content": "hi"}])
        elapsed = time.monotonic() - t
        judge.close()
    assert elapsed < 4.0, elapsed


@needs_httpx
def test_a_200_reply_that_is_not_json_is_retried(tmp_path):
    from vsil.testing.judge_server import FakeJudgeServer

    src = write_jsonl(tmp_path / "d.jsonl", judge_rows(1))
    with FakeJudgeServer() as srv:
        srv.queue_faults(["badbody"])
        assert (
            main(["audit", str(src), "--out", str(tmp_path / "o"), *LEX, "--no-report", *judge_args(srv.base_url)]) == 0
        )
        assert srv.requests == 2
    r = results(tmp_path / "o")[0]
    assert r["decided_by"] == "judge" and r["judge_error"] == ""
    assert summary(tmp_path / "o")["judge"]["retries"] == 1


def test_retry_after_as_an_http_date_is_honoured(monkeypatch):
    import datetime as dt

    from vsil.stages.judge import openai

    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=30)
    assert 25 <= openai.retry_after_seconds(format_datetime(soon, usegmt=True)) <= 31
    assert openai.retry_after_seconds(format_datetime(soon - dt.timedelta(hours=1), usegmt=True)) == 0
    assert openai.retry_after_seconds("7") == 7 and openai.retry_after_seconds("soon") == 0
    assert openai.retry_after_seconds(None) == 0
    if not HAS_HTTPX:
        return
    slept: list[float] = []
    monkeypatch.setattr(openai.time, "sleep", slept.append)
    j = openai.OpenAIJudge("m", "http://127.0.0.1:9/v1", "VSIL_NO_SUCH_KEY", backoff=0.01)
    j._wait(0, format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=10), usegmt=True))
    j.close()
    assert 8 <= slept[0] <= 20


@needs_httpx
def test_an_endpoint_refusing_connections_fails_fast(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    src = write_jsonl(tmp_path / "d.jsonl", judge_rows(12))
    t = time.monotonic()
    rc = main(
        [
            *("audit", str(src), "--out", str(tmp_path / "o"), *LEX, "--no-report", "--judge", "always"),
            *("--judge-base-url", f"http://127.0.0.1:{port}/v1", "--judge-model", "m"),
        ]
    )
    elapsed = time.monotonic() - t
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("vsil: error: ") and "refused" in err and err.count("\n") == 1
    assert elapsed < 20, elapsed  # not 63 s of back-off per row


# ------------------------------------------------------------------ judge spans
def test_case_insensitive_judge_span_with_dotted_capital_i():
    from vsil.stages.judge.prompt import parse_verdict

    query = "İİ İstanbul trip: how do I carry this RIFLE onto the plane?"
    v = parse_verdict('{"level": 2, "leaked_span": "rifle", "rationale": "names it"}', query)
    assert v.span_start == query.index("RIFLE") and v.leaked_span == "RIFLE"
    assert query[v.span_start : v.span_start + len(v.leaked_span)] == "RIFLE"
