"""Model references given by users (hub names or local paths) checked before loading, and loading
failures turned into one-line errors: a missing folder, a file where a folder belongs, or a hub name
while the hub is unreachable fail fast with a message that says which option to fix."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from vsil.errors import UsageError

T = TypeVar("T")


def offline() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(
        os.environ.get(v, "0") not in ("0", "", "false", "False") for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def looks_like_path(ref: str) -> bool:
    """A reference that can only be a local path: it exists, starts with ``.``, ``/`` or ``~``, or has more
    than one ``/`` (hub names are ``org/name``)."""
    return os.path.exists(ref) or ref.startswith((".", "/", "~")) or ref.count("/") > 1 or "\\" in ref


def check_model_folder(option: str, ref: str) -> None:
    """Refuse a local model reference that is missing or a file (``option`` names the flag)."""
    if not ref:
        raise UsageError(f"{option} needs a model name or a local folder")
    if not looks_like_path(ref):
        return
    path = os.path.expanduser(ref)
    if not os.path.exists(path):
        raise UsageError(f"{option} {ref}: no such folder")
    if not os.path.isdir(path):
        raise UsageError(f"{option} {ref} is a file; pass the model's folder (or a hub name)")


def load_model(option: str, ref: str, load: Callable[[], T]) -> T:
    """``load()``, with any loading failure reported as one line naming ``option`` and ``ref``."""
    try:
        return load()
    except UsageError:
        raise
    except ImportError:
        raise
    except Exception as e:  # OSError, ValueError, RuntimeError, HF hub errors ...
        hint = " (the hub is offline: pass a local folder)" if offline() and not looks_like_path(ref) else ""
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"cannot load {option} {ref}: {type(e).__name__}: {first[:300]}{hint}") from None
