"""What every judge backend provides: ``complete_batch`` over chat conversations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

Messages = list[dict[str, str]]


@dataclass
class Completion:
    """One answer of a chat model, with token counts when the backend reports them."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class JudgeCallError(RuntimeError):
    """A judge call failed for good (after the backend's retries); the message says why."""


OnResult = Callable[[int, "Completion | JudgeCallError"], None]


class JudgeBackend(Protocol):
    """A chat model. ``complete_batch`` calls ``on_result(i, answer_or_error)`` once per conversation,
    as soon as that answer is known, so callers can cache each one immediately."""

    name: str
    model: str

    def complete_batch(self, conversations: list[Messages], on_result: OnResult) -> None: ...

    def close(self) -> None: ...
