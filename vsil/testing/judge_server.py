"""A small OpenAI-compatible chat-completions server on 127.0.0.1 for tests and benchmarks.

It answers from a deterministic rule (or replays known labels, e.g. gold labels keyed by query) and,
on command, misbehaves: slow answers, HTTP 500 or 429, malformed JSON, dropped connections.
Nothing here is used by a normal audit.

    with FakeJudgeServer(answers={"How to make a bomb?": 2}) as srv:
        vsil.leakage_score(..., judge="always", judge_base_url=srv.base_url, judge_model="fake")

Run it stand-alone with ``python -m vsil.testing.judge_server --gold dev.jsonl``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("slow", "500", "429", "malformed", "drop", "badbody")
Rule = Callable[[str, str], tuple[int, str]]


def overlap_rule(query: str, image_content: str) -> tuple[int, str]:
    """Level 2 when the query shares a word of 4+ letters with the image content, else 0."""
    img = {w.lower() for w in re.findall(r"[A-Za-z]{4,}", image_content)}
    for m in re.finditer(r"[A-Za-z]{4,}", query):
        if m.group().lower() in img:
            return 2, m.group()
    return 0, ""


def parse_input(body: dict[str, Any]) -> tuple[str, str]:
    """(query, image_content) from a vsil judge request (the JSON object after ``INPUT:``)."""
    for msg in body.get("messages", []):
        content = msg.get("content", "")
        if msg.get("role") == "user" and "INPUT:\n" in content:
            obj = json.loads(content.split("INPUT:\n", 1)[1])
            return str(obj.get("query", "")), str(obj.get("image_content", ""))
    raise ValueError("no INPUT block")


class FakeJudgeServer:
    """Threaded server. ``answers`` maps a query to a level (or (level, span)); other queries use ``rule``.

    Faults: ``queue_faults([...])`` makes the next requests misbehave in order; ``fail_fraction``
    makes that share of queries (chosen by a hash of the query, so the same ones every time) answer
    with ``fail_kind`` on every attempt. ``latency`` delays every answer.
    """

    def __init__(
        self,
        answers: dict[str, Any] | None = None,
        rule: Rule = overlap_rule,
        *,
        latency: float = 0.0,
        slow_seconds: float = 5.0,
        fail_fraction: float = 0.0,
        fail_kind: str = "500",
        port: int = 0,
    ) -> None:
        self.answers = answers or {}
        self.rule = rule
        self.latency = latency
        self.slow_seconds = slow_seconds
        self.fail_fraction = fail_fraction
        self.fail_kind = fail_kind
        self.requests = 0
        self.by_query: Counter[str] = Counter()
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def queue_faults(self, faults: list[str]) -> None:
        for f in faults:
            if f not in FAULTS:
                raise ValueError(f"unknown fault {f!r}; choose from {FAULTS}")
        with self._lock:
            self._faults.extend(faults)

    def fails(self, query: str) -> bool:
        """Whether ``fail_fraction`` selects this query for persistent failure."""
        if self.fail_fraction <= 0:
            return False
        h = int(hashlib.sha256(query.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
        return h < self.fail_fraction

    def verdict(self, query: str, image_content: str) -> dict[str, Any]:
        a = self.answers.get(query)
        if a is None:
            level, span = self.rule(query, image_content)
        elif isinstance(a, (tuple, list)):
            level, span = int(a[0]), str(a[1])
        else:
            level, span = int(a), ""
        if span and span not in query:
            span = ""
        return {"level": level, "leaked_span": span if level else "", "rationale": f"rule verdict {level}"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: str, headers: dict[str, str] | None = None) -> None:
                data = payload.encode("utf-8")
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, json.dumps({"error": "not found"}))
                    return
                try:
                    query, image_content = parse_input(body)
                except (ValueError, json.JSONDecodeError):
                    self._send(400, json.dumps({"error": "no vsil INPUT block"}))
                    return
                with server._lock:
                    server.requests += 1
                    server.by_query[query] += 1
                    fault = server._faults.popleft() if server._faults else None
                if fault is None and server.fails(query):
                    fault = server.fail_kind
                if server.latency:
                    time.sleep(server.latency)
                if fault == "slow":
                    time.sleep(server.slow_seconds)
                elif fault == "500":
                    self._send(500, json.dumps({"error": "internal error"}))
                    return
                elif fault == "429":
                    self._send(429, json.dumps({"error": "rate limited"}), {"Retry-After": "0"})
                    return
                elif fault == "drop":
                    self.close_connection = True
                    return
                elif fault == "badbody":
                    self._send(200, "{not json")
                    return
                content = (
                    "Sure! {level: two" if fault == "malformed" else json.dumps(server.verdict(query, image_content))
                )
                n_prompt = sum(len(m.get("content", "").split()) for m in body.get("messages", []))
                self._send(
                    200,
                    json.dumps(
                        {
                            "id": f"fake-{server.requests}",
                            "object": "chat.completion",
                            "model": body.get("model", "fake"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": content},
                                    "finish_reason": "stop",
                                }
                            ],
                            "usage": {
                                "prompt_tokens": n_prompt,
                                "completion_tokens": len(content.split()),
                                "total_tokens": n_prompt + len(content.split()),
                            },
                        }
                    ),
                )

        return Handler

    def start(self) -> FakeJudgeServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-judge", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeJudgeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def gold_answers(path: str) -> dict[str, tuple[int, str]]:
    """query -> (label, leaked_span) from a gold-format JSONL file."""
    out: dict[str, tuple[int, str]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out[r["query"]] = (int(r["label"]), r.get("leaked_span") or "")
    return out


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - manual use
    ap = argparse.ArgumentParser(description="fake OpenAI-compatible judge server for vsil tests and benchmarks")
    ap.add_argument("--gold", help="gold JSONL whose labels are replayed")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--fail-fraction", type=float, default=0.0)
    a = ap.parse_args(argv)
    srv = FakeJudgeServer(
        gold_answers(a.gold) if a.gold else None, latency=a.latency, fail_fraction=a.fail_fraction, port=a.port
    )
    print(srv.base_url, flush=True)
    srv.httpd.serve_forever()


if __name__ == "__main__":  # pragma: no cover
    main()
