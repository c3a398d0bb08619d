"""What a person sees in a terminal: ``vsil audit --progress`` under a pseudo-terminal shows the stage
messages, a bar with the row total and an ETA, and the closing one-line summary."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from conftest import REPO, make_rows, write_jsonl

pty = pytest.importorskip("pty")


def run_in_pty(args: list[str], timeout: float = 120.0) -> tuple[int, str]:
    """Run ``python -m vsil.cli *args`` with stdin, stdout and stderr on a pty; (exit status, what it printed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120x40 terminal (a new pty is 0x0)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120", "LINES": "40", "TERM": "xterm"}
    p = subprocess.Popen(
        [sys.executable, "-m", "vsil.cli", *args], cwd=REPO, env=env, stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif p.poll() is not None:
                break
    finally:
        if p.poll() is None:
            p.kill()
        rc = p.wait()
        os.close(master)
    return rc, b"".join(chunks).decode("utf-8", "replace")


def test_progress_in_a_terminal(tmp_path: Path):
    src = write_jsonl(tmp_path / "d.jsonl", make_rows(2000))
    rc, text = run_in_pty(
        ["audit", str(src), "--out", str(tmp_path / "o"), "--embedder", "none", "--progress", "--batch-size", "100"]
    )
    assert rc == 0, text
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)  # drop cursor movements and colours
    for stage in ("reading", "loading models", "scoring", "writing"):
        assert stage in screen, (stage, screen[-2000:])
    # a tqdm bar with the total and an ETA: "vsil: scoring:  45%|####   | 900/2000 [00:01<00:01, 807rows/s]"
    bars = re.findall(r"vsil: scoring:\s+\d+%\|[^|]*\|\s*(\d+)/2000 \[(\d+:\d\d)<(\d+:\d\d|\?)", screen)
    assert bars, screen[-2000:]
    assert any(eta != "?" for _, _, eta in bars) and len({n for n, _, _ in bars}) >= 2  # it moved
    assert re.search(r"done: 2,000 rows, leak rate \d+\.\d%", screen), screen[-2000:]
    assert "Traceback" not in screen
