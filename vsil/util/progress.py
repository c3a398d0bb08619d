"""What a run says while it works, on stderr: the stage it is in (reading input, loading which models,
scoring, writing), a bar with a total and an ETA where the input size is known, and the judge calls.

Shown when ``show_progress_bar`` is True, or None and stderr is a terminal; silent otherwise.
"""

from __future__ import annotations

import sys
import time
from typing import Any


def enabled(show: bool | None) -> bool:
    return sys.stderr.isatty() if show is None else bool(show)


class Progress:
    """Stage messages and a row bar (tqdm)."""

    def __init__(self, show: bool | None) -> None:
        self.on = enabled(show)
        self.bar: Any = None
        self.started = time.time()

    def stage(self, message: str) -> None:
        if not self.on:
            return
        line = f"vsil: {message}"
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def start_rows(self, total: int | None) -> None:
        if not self.on:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total, unit="rows", desc="vsil: scoring", leave=False, dynamic_ncols=True, file=sys.stderr
        )

    def update(self, n: int, judged: int | None = None) -> None:
        if self.bar is not None:
            self.bar.update(n)
            if judged:
                self.bar.set_postfix(judge=judged, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
