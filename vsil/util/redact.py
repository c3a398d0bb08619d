"""Secrets never reach a stored or printed message: ``redact`` removes the values of the API-key
environment variables in use and anything shaped like a bearer token or an API key."""

from __future__ import annotations

import os
import re
import threading

_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]{6,}"),
    re.compile(r"(?i)((?:api[_-]?key|authorization|x-api-key|token)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]{6,}"),
    re.compile(r"\b(sk|pk|rk|hf|gsk|xai)[-_][A-Za-z0-9_\-]{12,}"),
)
_SECRETS: set[str] = set()
_LOCK = threading.Lock()


def register_secret_env(var: str) -> None:
    """Redact the value of environment variable ``var`` (an API key) from every message from now on."""
    value = os.environ.get(var, "")
    if len(value) >= 4:
        with _LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with known secrets and token-like strings replaced by ``[REDACTED]``."""
    if not text:
        return text
    with _LOCK:
        secrets = sorted(_SECRETS, key=len, reverse=True)
    for s in secrets:
        text = text.replace(s, "[REDACTED]")
    text = _PATTERNS[0].sub(r"\1[REDACTED]", text)
    text = _PATTERNS[1].sub(r"\1[REDACTED]", text)
    return _PATTERNS[2].sub("[REDACTED]", text)
