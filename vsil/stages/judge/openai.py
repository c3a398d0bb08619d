"""Judge backend for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, Ollama),
over ``httpx`` with timeouts, bounded concurrency and exponential back-off.

The API key is read from the environment variable named by ``api_key_env`` and nowhere else.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from vsil.errors import UsageError
from vsil.stages.judge.base import Completion, JudgeCallError, Messages, OnResult
from vsil.util.redact import redact, register_secret_env

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class OpenAIJudge:
    """Chat completions at ``base_url`` (e.g. ``https://api.openai.com/v1``, ``http://localhost:8000/v1``).

    Retries timeouts, connection errors, 429 and 5xx up to ``max_retries`` times, waiting
    ``backoff * 2**attempt`` seconds (with jitter, or the server's ``Retry-After``, at most ``max_backoff``).
    """

    name = "openai"

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> OpenAIJudge:
        j = config.judge
        return cls(
            j.model or "",
            j.base_url,
            j.api_key_env,
            concurrency=j.concurrency,
            timeout=j.timeout,
            max_retries=j.max_retries,
            backoff=j.backoff,
            seed=config.run.seed,
        )

    @classmethod
    def weights(cls, name: str = "") -> str:
        from vsil.config import JudgeConfig

        env = JudgeConfig().api_key_env
        key = "set" if os.environ.get(env) else "not set"
        return f"a remote model: pass --judge-model and --judge-base-url (default OpenAI; ${env} is {key})"

    @classmethod
    def describe_config(cls, config: Any) -> str:
        return f"openai:{config.judge.model}"

    def __init__(
        self,
        model: str,
        base_url: str = "https://api.openai.com/v1",
        api_key_env: str = "OPENAI_API_KEY",
        *,
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_tokens: int = 200,
        json_mode: bool = True,
        seed: int = 0,
    ) -> None:
        import httpx

        if not model:
            raise UsageError("the openai judge needs a model name (--judge-model)")
        if concurrency < 1:
            raise UsageError("judge concurrency must be >= 1")
        key = os.environ.get(api_key_env, "")
        register_secret_env(api_key_env)
        if not key and "api.openai.com" in base_url:
            raise UsageError(
                f"no API key: set the environment variable {api_key_env} (keys are never read from flags or files)"
            )
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_tokens = max_tokens
        self.json_mode = json_mode
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self.timeout = timeout
        self.fail_fast = FAIL_FAST
        self.counts = RequestCounts()
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = max(self.backoff * (2**attempt), retry_after_seconds(retry_after))
        with self._rng_lock:
            jitter = self._rng.uniform(0, delay * 0.25)
        time.sleep(min(self.max_backoff, delay + jitter))

    def complete(self, messages: Messages) -> Completion:
        """One chat completion, with retries. Raises ``JudgeCallError`` when it fails for good."""
        import httpx

        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        if self.json_mode:
            body["response_format"] = {"type": "json_object"}
        last = ""
        for attempt in range(self.max_retries + 1):
            retry_after = None
            self.counts.add(requests=1, retries=int(attempt > 0))
            try:
                status, text, retry_after = self._post(body)
            except httpx.TimeoutException as e:
                last = f"timeout ({type(e).__name__})"
            except httpx.TransportError as e:
                last = f"connection error ({type(e).__name__}: {e})"
                if isinstance(e, httpx.ConnectError) and self.counts.connect_failed(self.fail_fast):
                    raise JudgeUnreachable(
                        f"the judge endpoint {self.base_url} refused the first {self.fail_fast} connections "
                        f"({type(e).__name__}); check --judge-base-url"
                    ) from None
            else:
                self.counts.add(connected=1)
                if status == 200:
                    try:
                        return _completion(text)
                    except JudgeCallError as e:  # a 200 whose body is not a chat completion: retried
                        last = str(e)
                else:
                    last = f"HTTP {status}: {text[:200]}"
                    if status not in RETRY_STATUS:
                        raise JudgeCallError(redact(last))
            if attempt < self.max_retries:
                self._wait(attempt, retry_after)
        raise JudgeCallError(redact(f"{last} (gave up after {self.max_retries + 1} attempts)"))

    def _post(self, body: dict[str, Any]) -> tuple[int, str, str | None]:
        """One HTTP request: (status, body text, Retry-After), within a total deadline of ``timeout``
        seconds (httpx's timeout is per read, so a reply trickled slowly would otherwise pass)."""
        import httpx

        deadline = time.monotonic() + self.timeout
        with self._client.stream("POST", "/chat/completions", json=body) as r:
            chunks: list[bytes] = []
            for chunk in r.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"no complete answer within {self.timeout:g} s")
            return r.status_code, b"".join(chunks).decode("utf-8", "replace"), r.headers.get("retry-after")

    def complete_batch(self, conversations: list[Messages], on_result: OnResult) -> None:
        if not conversations:
            return
        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, len(conversations)), thread_name_prefix="vsil-judge"
        ) as pool:
            futures = {pool.submit(self.complete, c): i for i, c in enumerate(conversations)}
            for fut in as_completed(futures):
                exc = fut.exception()
                if exc is None:
                    on_result(futures[fut], fut.result())
                elif isinstance(exc, JudgeUnreachable):
                    for f in futures:
                        f.cancel()
                    raise exc
                else:
                    err = exc if isinstance(exc, JudgeCallError) else JudgeCallError(f"{type(exc).__name__}: {exc}")
                    on_result(futures[fut], JudgeCallError(redact(str(err))))

    def close(self) -> None:
        self._client.close()


FAIL_FAST = 3  # connection failures, with no connection ever made, after which the run stops


class JudgeUnreachable(UsageError):
    """The endpoint refused every one of the first connections: stop the run instead of failing every row."""


class RequestCounts:
    """HTTP requests sent (retries included), retries, and connections that got any reply."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.retries = 0
        self.connected = 0
        self.connect_failures = 0

    def add(self, *, requests: int = 0, retries: int = 0, connected: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.retries += retries
            self.connected += connected

    def connect_failed(self, limit: int) -> bool:
        """Count a refused connection; True when ``limit`` were refused and none ever succeeded."""
        with self._lock:
            self.connect_failures += 1
            return self.connected == 0 and self.connect_failures >= limit


def retry_after_seconds(value: str | None) -> float:
    """A ``Retry-After`` header in seconds: delta-seconds or an HTTP date (0 when absent or unreadable)."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return 0.0
    if when is None:
        return 0.0
    import datetime as dt

    now = dt.datetime.now(when.tzinfo or dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _completion(body: str) -> Completion:
    try:
        data = json.loads(body)
        text = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise JudgeCallError(f"malformed chat-completions response ({type(e).__name__}: {str(e)[:100]})") from None
    if not isinstance(text, str):
        raise JudgeCallError("chat-completions response has no text content")
    usage = data.get("usage") or {}
    return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
