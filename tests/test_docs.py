"""The documentation runs as written: every ```python block of README.md and docs/*.md is executed, and every
``vsil ...`` line of a ```bash block that uses only files of the repository is run (in a temporary working
folder holding ``examples/``, so relative paths and ``--out`` land there).

Any other block (installs, ../shared data, files that are not in the repository, S3, Ray clusters, API keys)
must be preceded in the markdown by ``<!-- docs-test: skip (reason) -->``; ``test_every_block_is_run_or_marked``
fails listing the blocks that are neither, so the docs cannot silently rot. Fences without a language
(diagrams, usage synopses, tables of output) are prose and are ignored.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([A-Za-z0-9_+-]*)")
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b(.*?)-->", re.IGNORECASE)
SHELL_LANGS = {"bash", "sh", "shell", "console"}
SHELL_OPERATORS = {"&&", "||", "|", ";", ">", ">>", "<", "&"}
NOT_LOCAL = ("://", "../", "/models", "s3:", "~/")


@dataclass
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None  # the reason of a docs-test: skip marker, or None

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"


def parse_blocks(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.group(1), m.group(2), m.group(3).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence[0] * len(fence)):
            j += 1
        body = [x[len(indent) :] if x.startswith(indent) else x for x in lines[i + 1 : j]]
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = SKIP.search(prev)
        if lang:
            skip = (marker.group(1).strip(" ()") or "marked") if marker else None
            blocks.append(Block(path, i + 1, lang, "\n".join(body) + "\n", skip))
        i = j + 1
    return blocks


ALL = [b for p in DOCS for b in parse_blocks(p)]
PYTHON = [b for b in ALL if b.lang in ("python", "py")]
SHELL = [b for b in ALL if b.lang in SHELL_LANGS]


def command_lines(code: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and prompts dropped."""
    out: list[str] = []
    cur = ""
    for raw in code.splitlines():
        line = raw.rstrip()
        if line.startswith("$ "):
            line = line[2:]
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        if cur.strip() and not cur.strip().startswith("#"):
            out.append(cur.strip())
        cur = ""
    return out


def runnable(line: str, cwd: Path, produced: set[str]) -> tuple[bool, str]:
    """Whether ``line`` is a ``vsil`` command that needs only files of the repository (or made by an earlier
    line of the docs); (ok, why not)."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as e:
        return False, f"cannot parse: {e}"
    if not tokens or tokens[0] != "vsil":
        return False, "not a vsil command"
    if any(t in SHELL_OPERATORS or t.startswith("$") for t in tokens) or "$(" in line or "`" in line:
        return False, "uses the shell"
    if any(s in t for t in tokens for s in NOT_LOCAL):
        return False, "uses a file or service outside the repository"
    args = tokens[1:]
    if not args or args[0] in ("--version", "backends") or "--help" in args or "-h" in args:
        return True, ""
    cmd, rest = args[0], args[1:]
    opts = dict(zip(rest, rest[1:]))
    if cmd == "audit":
        if opts.get("--judge", "none") != "none" or opts.get("--engine", "local") != "local":
            return False, "needs a judge endpoint or a Ray cluster"
        if any(e in opts.get("--evidence", "") for e in ("clip", "caption")):
            return False, "needs image models"
        positional = [
            t for k, t in enumerate(rest) if not t.startswith("-") and (k == 0 or not rest[k - 1].startswith("-"))
        ]
        if not positional or not (cwd / positional[0]).exists():
            return False, f"input {positional[:1]} is not in the repository"
        return True, ""
    if cmd in ("report", "compare"):
        dirs = [t for k, t in enumerate(rest) if not t.startswith("-") and (k == 0 or rest[k - 1] != "--out")]
        missing = [d for d in dirs if d not in produced and not (cwd / d).exists()]
        return (not missing), f"needs audits {missing}" if missing else ""
    return False, f"`vsil {cmd}` needs data outside the repository"


@pytest.fixture(scope="module")
def docs_cwd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("docs")
    (d / "examples").symlink_to(REPO / "examples", target_is_directory=True)
    (d / "out").mkdir()
    return d


def test_every_block_is_run_or_marked(docs_cwd: Path):
    """A block that cannot run here needs ``<!-- docs-test: skip (reason) -->`` right above it."""
    unmarked = []
    produced: set[str] = set()
    for b in SHELL:
        if b.skip is not None:
            continue
        bad = []
        for line in command_lines(b.code):
            ok, why = runnable(line, docs_cwd, produced)
            if ok:
                produced.update(_outs(line))
            else:
                bad.append(f"{line[:70]!r}: {why}")
        if bad:
            unmarked.append(f"{b.name} [bash]: " + "; ".join(bad))
    for b in PYTHON:
        if b.skip is None and (why := _python_needs_outside(b.code)):
            unmarked.append(f"{b.name} [python]: {why}")
    assert not unmarked, "blocks neither run nor marked <!-- docs-test: skip (reason) -->:\n" + "\n".join(unmarked)


def _outs(line: str) -> list[str]:
    tokens = shlex.split(line, comments=True)
    return [v for k, v in zip(tokens, tokens[1:]) if k == "--out"]


def _python_needs_outside(code: str) -> str:
    """Why a python block cannot run in the repository (a path or service outside it), or ""."""
    for pat, why in (
        (r"""["'](s3|gs|https?)://""", "reads a remote URL"),
        (r"""["']/models/""", "reads a model folder outside the repository"),
        (r"""["']\.\./""", "reads ../ (outside the repository)"),
        (r"^\s*import ray\b", "needs a Ray cluster"),
    ):
        if re.search(pat, code, re.MULTILINE):
            return why
    return ""


@pytest.mark.parametrize("block", [b for b in ALL if b in PYTHON or b in SHELL], ids=lambda b: b.name)
def test_block_runs(block: Block, docs_cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """Blocks run in document order (README.md, then docs/*.md by name) in one working folder, so a block can
    read what an earlier one wrote."""
    if block.skip is not None:
        pytest.skip(f"marked: {block.skip}")
    monkeypatch.chdir(docs_cwd)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if block in PYTHON:
        if why := _python_needs_outside(block.code):
            pytest.skip(f"not marked yet ({why}); test_every_block_is_run_or_marked lists it")
        namespace: dict[str, object] = {"__name__": "__docs__"}
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(block.code, block.name, "exec"), namespace)
        return
    from vsil.cli import main

    ran = 0
    for line in command_lines(block.code):
        ok, _ = runnable(line, docs_cwd, set())  # audits made by earlier lines exist by now
        if not ok:
            continue  # an unmarked block with such a line fails test_every_block_is_run_or_marked
        args = shlex.split(line, comments=True)[1:]
        rc = main(args)
        err = capsys.readouterr().err
        allowed = (0, 1) if "--max-leak-rate" in args else (0,)
        assert rc in allowed, f"{block.name}: `{line}` exited {rc}: {err}"
        ran += 1
    if not ran:
        pytest.skip("no line of this block can run here (and it is not marked)")


def test_the_parser_sees_the_docs():
    assert len(PYTHON) >= 3 and len(SHELL) >= 3
    assert any(b.path.name == "README.md" for b in PYTHON)
    assert os.path.exists(REPO / "examples" / "pairs.jsonl")


def test_skip_marker_is_read(tmp_path: Path):
    md = tmp_path / "x.md"
    md.write_text(
        "text\n\n<!-- docs-test: skip (needs ../shared) -->\n```bash\nvsil audit ../shared/d.json\n```\n\n"
        "```bash\npip install vsil\n```\n\n```\nvsil audit anything   # prose, no language\n```\n",
        encoding="utf-8",
    )
    blocks = parse_blocks(md)
    assert [(b.line, b.skip) for b in blocks] == [(4, "needs ../shared"), (8, None)]
