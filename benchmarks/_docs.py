"""Write benchmark output into docs between ``<!-- BEGIN name -->`` / ``<!-- END name -->`` markers."""

from __future__ import annotations

from typing import Any


def replace_block(path: str, name: str, text: str) -> None:
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    with open(path, encoding="utf-8") as f:
        doc = f.read()
    block = f"{begin}\n{text.strip()}\n{end}"
    if begin in doc and end in doc:
        doc = doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end) :]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(doc)
    print(f"updated {path} ({name})")


class Capture:
    """Tee everything printed to stdout inside the ``with`` block into ``.text``."""

    def __init__(self) -> None:
        import io

        self._buf = io.StringIO()

    def write(self, s: str) -> int:
        self._stdout.write(s)
        return self._buf.write(s)

    def flush(self) -> None:
        self._stdout.flush()

    def __enter__(self) -> Capture:
        import sys

        self._stdout = sys.stdout
        sys.stdout = self  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        import sys

        sys.stdout = self._stdout

    @property
    def text(self) -> str:
        return self._buf.getvalue()


def docs_path() -> str:
    import os

    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmarks.md")


def run_and_document(run: Any, script: str, block: Any) -> None:
    """Run ``run()`` (which returns its parsed args) while capturing its output; with
    ``--update-docs``, write that output as a code block into docs/benchmarks.md under ``block``
    (a name, or a function of the args giving one), with the command that reproduces it."""
    import os
    import sys

    with Capture() as cap:
        a = run()
    if a.update_docs:
        name = block(a) if callable(block) else block
        cmd = " ".join(
            ["python", f"benchmarks/{os.path.basename(script)}", *[x for x in sys.argv[1:] if x != "--update-docs"]]
        )
        replace_block(docs_path(), name, "```\n" + cap.text.strip() + "\n```\n\nReproduce: `" + cmd + "`")
