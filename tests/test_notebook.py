"""The stored notebook runs top to bottom on the example data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NB = Path(__file__).resolve().parents[1] / "notebooks" / "audit_a_benchmark.ipynb"


def test_notebook_runs_on_example_data(monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("VSIL_NOTEBOOK_EXAMPLE", "1")
    nb = nbformat.read(str(NB), as_version=4)
    assert all(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "notebook is stored executed"
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NB.parent)}}
    ).execute()
    text = "\n".join(str(o.get("text", "")) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "auditing pairs.jsonl" in text and "after masking" in text
    assert os.environ["VSIL_NOTEBOOK_EXAMPLE"] == "1"
