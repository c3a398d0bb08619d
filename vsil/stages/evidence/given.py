"""The ``given`` image evidence: the dataset's own text about the image (caption / description, and
the safety reason where the benchmark has one). Nothing to load."""

from __future__ import annotations

from typing import Any

from vsil.schema import Record


class GivenText:
    name = "given"
    cache_id = "given"

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> GivenText:
        return cls()

    @classmethod
    def describe_config(cls, config: Any) -> str:
        return "given"

    @classmethod
    def weights(cls, name: str = "") -> str:
        return "no model: reads the dataset's own text"

    @staticmethod
    def parts(rec: Record) -> list[tuple[str, str]]:
        """The row's non-empty caption and safety reason, as (field, text) evidence parts."""
        return [(f, t) for f, t in (("caption", rec.caption), ("safety_reason", rec.safety_reason)) if t.strip()]
