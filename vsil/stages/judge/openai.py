"""Judge backend for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, Ollama),
over ``httpx`` with timeouts, bounded concurrency and exponential back-off.

The API key is read from the environment variable named by ``api_key_env`` and nowhere else.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from vsil.errors import UsageError
from vsil.stages.judge.base import Completion, JudgeCallError, Messages, OnResult

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
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * (2**attempt)
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
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
            try:
                r = self._client.post("/chat/completions", json=body)
            except httpx.TimeoutException as e:
                last = f"timeout ({type(e).__name__})"
            except httpx.TransportError as e:
                last = f"connection error ({type(e).__name__}: {e})"
            else:
                if r.status_code == 200:
                    return _completion(r)
                last = f"HTTP {r.status_code}: {r.text[:200]}"
                if r.status_code not in RETRY_STATUS:
                    raise JudgeCallError(last)
                retry_after = r.headers.get("retry-after")
            if attempt < self.max_retries:
                self._wait(attempt, retry_after)
        raise JudgeCallError(f"{last} (gave up after {self.max_retries + 1} attempts)")

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
                else:
                    err = exc if isinstance(exc, JudgeCallError) else JudgeCallError(f"{type(exc).__name__}: {exc}")
                    on_result(futures[fut], err)

    def close(self) -> None:
        self._client.close()


def _completion(r: Any) -> Completion:
    try:
        data = r.json()
        text = data["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as e:
        raise JudgeCallError(f"malformed chat-completions response ({type(e).__name__}: {str(e)[:100]})") from None
    if not isinstance(text, str):
        raise JudgeCallError("chat-completions response has no text content")
    usage = data.get("usage") or {}
    return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))
