"""Backend registries: lazy targets, availability, build / describe, and clean errors."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from vsil import VSILConfig
from vsil.errors import MissingDependencyError, UsageError
from vsil.registry import CLASSIFIERS, EMBEDDERS, IMAGE_EVIDENCE, JUDGES, REGISTRIES


def test_the_registries_and_their_backends():
    assert REGISTRIES == {
        "image_evidence": IMAGE_EVIDENCE,
        "embedder": EMBEDDERS,
        "classifier": CLASSIFIERS,
        "judge": JUDGES,
    }
    assert [s.name for s in IMAGE_EVIDENCE] == ["given", "ocr", "clip", "caption"]
    assert [s.name for s in EMBEDDERS] == ["sentence-transformers", "none"]
    assert [s.name for s in CLASSIFIERS] == ["semantic", "lexical", "file"]
    assert [s.name for s in JUDGES] == ["openai", "transformers"]
    for reg in REGISTRIES.values():
        for spec in reg:
            assert spec.kind == reg.kind and spec.description, spec.name
            assert spec.extra or not spec.requires, spec.name


def test_every_target_resolves_to_a_class_with_the_protocol():
    for reg in REGISTRIES.values():
        for spec in reg:
            mod, _, attr = spec.target.partition(":")
            cls = getattr(importlib.import_module(mod), attr)
            assert callable(getattr(cls, "from_config", None)), spec.target
            assert callable(getattr(cls, "describe_config", None)), spec.target


def test_importing_the_registry_and_describing_imports_no_heavy_module():
    code = (
        "import sys\n"
        "from vsil import VSILConfig\n"
        "from vsil.registry import REGISTRIES\n"
        "cfg = VSILConfig(judge='auto', judge_model='m', clip_model='ViT-B-32', captioner='c')\n"
        "for reg in REGISTRIES.values():\n"
        "    for spec in reg:\n"
        "        reg.describe(spec.name, cfg); spec.available()\n"
        "print(' '.join(m for m in ('torch', 'open_clip', 'transformers', 'sentence_transformers', 'httpx',"
        " 'rapidocr_onnxruntime') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""


def test_describe_names_the_configured_backend():
    cfg = VSILConfig(judge="auto", judge_model="m", embedder="some/model", clip_model="ViT-B-32")
    assert JUDGES.describe("openai", cfg) == "openai:m"
    assert JUDGES.describe("transformers", cfg) == "transformers:m"
    assert EMBEDDERS.describe("sentence-transformers", cfg) == "sentence-transformers:some/model"
    assert EMBEDDERS.describe("none", cfg).startswith("none")
    assert IMAGE_EVIDENCE.describe("given", cfg) == "given"
    assert CLASSIFIERS.describe("lexical", cfg) == "shipped"


def test_unknown_backend_and_missing_dependency(monkeypatch):
    with pytest.raises(UsageError, match="unknown judge backend 'nope'; choose from: openai, transformers"):
        JUDGES.get("nope")
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "httpx" else real(name, *a))
    spec = JUDGES.get("openai")
    assert not spec.available() and spec.missing() == ["httpx"]
    with pytest.raises(MissingDependencyError, match=r"vsil\[judge\]"):
        JUDGES.build("openai", VSILConfig(judge="always", judge_model="m"))
    assert IMAGE_EVIDENCE.get("given").available()


def test_build_the_light_backends():
    cfg = VSILConfig(embedder="none")
    given = IMAGE_EVIDENCE.build("given", cfg)
    assert given.name == "given" and given.cache_id == "given"
    choice = EMBEDDERS.build("none", cfg)
    assert choice.embedder is None and choice.warnings == [] and "lexical" in choice.description
