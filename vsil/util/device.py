"""The one torch device picker for every model backend."""

from __future__ import annotations


def pick_device(requested: str | None = None) -> str:
    """``requested`` when given, else ``cuda`` when available, then ``mps``, then ``cpu`` (imports torch)."""
    if requested:
        return requested
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"
