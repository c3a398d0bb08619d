"""Write benchmark output into docs between ``<!-- BEGIN name -->`` / ``<!-- END name -->`` markers."""

from __future__ import annotations


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
