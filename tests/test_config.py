"""``VSILConfig``: nested parts, flat names and aliases, validation, (de)serialisation, the model key."""

from __future__ import annotations

import json
from dataclasses import fields

import pytest

from vsil.config import (
    ALIASES,
    FLAT,
    PARTS,
    ClassifyConfig,
    ColumnMap,
    EmbedConfig,
    JudgeConfig,
    RunConfig,
    VSILConfig,
    resolve_config,
)

FLAT_KW = dict(
    threshold=0.5,
    judge="auto",
    judge_model="m",
    embedder="none",
    batch_size=64,
    query_col="prompt",
    evidence="given",
    judge_band=(0.1, 0.7),
    show_progress_bar=False,
    seed=3,
)
NESTED_KW = dict(
    classify=ClassifyConfig(threshold=0.5),
    judge=JudgeConfig(mode="auto", model="m", band=(0.1, 0.7)),
    embed=EmbedConfig(model="none"),
    run=RunConfig(batch_size=64, show_progress_bar=False, seed=3),
    columns=ColumnMap(query="prompt"),
    evidence={"policy": "given"},
)


def test_flat_and_nested_forms_are_the_same_config():
    flat, nested = VSILConfig(**FLAT_KW), VSILConfig(**NESTED_KW)
    assert flat.to_dict() == nested.to_dict()
    assert flat == nested
    assert flat.judge.mode == "auto" and flat.judge.model == "m" and flat.run.batch_size == 64
    assert flat.classify.threshold == 0.5 and flat.embed.model == "none" and flat.evidence.policy == "given"
    assert flat.columns.query == "prompt" and flat.judge.band == (0.1, 0.7)
    # dict parts, a mix of nested parts and flat names, and from_dict of either form
    mixed = VSILConfig(
        classify={"threshold": 0.5},
        judge="auto",
        judge_model="m",
        embedder="none",
        run={"batch_size": 64, "show_progress_bar": False, "seed": 3},
        query_col="prompt",
        evidence="given",
        judge_band=[0.1, 0.7],
    )
    assert mixed.to_dict() == flat.to_dict()
    assert VSILConfig.from_dict(flat.to_dict()).to_dict() == flat.to_dict()
    assert VSILConfig.from_dict(flat.to_flat()).to_dict() == flat.to_dict()
    assert VSILConfig.from_dict(FLAT_KW).to_dict() == flat.to_dict()


def test_to_dict_is_nested_json():
    d = VSILConfig().to_dict()
    assert set(d) == {*PARTS, "preset"} and d["preset"] is None
    for part, cls in PARTS.items():
        assert set(d[part]) == {f.name for f in fields(cls)}, part
    assert d["judge"]["mode"] == "none" and d["run"]["batch_size"] == 256 and d["embed"]["model"] == "auto"
    assert json.loads(json.dumps(d)) == d


def test_flat_names_cover_every_leaf_once():
    leaves = {(part, f.name) for part, cls in PARTS.items() for f in fields(cls)}
    assert {(ff.part, ff.name) for ff in FLAT.values()} == leaves and len(FLAT) == len(leaves)
    for name, ff in FLAT.items():
        assert ff.flat == name and ff.help, name
        assert ff.default == getattr(PARTS[ff.part](), ff.name), name
    cfg = VSILConfig()
    for name, ff in FLAT.items():
        assert cfg.get_flat(name) == getattr(getattr(cfg, ff.part), ff.name), name
    assert set(VSILConfig().to_flat()) == {*FLAT, "preset"}
    assert ALIASES == {"reason_col": "safety_reason_col", "progress": "show_progress_bar"}


def test_set_and_get_flat_with_aliases():
    cfg = VSILConfig()
    cfg.set_flat("judge_model", "gpt")
    cfg.set_flat("reason_col", "why")
    assert cfg.judge.model == "gpt" and cfg.get_flat("judge_model") == "gpt"
    assert cfg.columns.safety_reason == "why" and cfg.get_flat("safety_reason_col") == "why"
    assert cfg.get_flat("reason_col") == "why"
    assert VSILConfig(reason_col="r").columns.safety_reason == VSILConfig(safety_reason_col="r").columns.safety_reason
    with pytest.raises(ValueError, match="unknown config key 'nope'"):
        cfg.set_flat("nope", 1)
    with pytest.raises(ValueError, match="unknown config key"):
        VSILConfig(judge_modle="typo")


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"threshold": 1.5}, "threshold must be in"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"batch_size": True}, "batch_size must be an integer"),
        ({"max_image_pixels": 0}, "max_image_pixels"),
        ({"judge_concurrency": 0}, "judge_concurrency"),
        ({"judge_max_retries": -1}, "judge_max_retries"),
        ({"seed": -1}, "seed"),
        ({"evidence": "ocr,telepathy"}, "unknown evidence"),
        ({"evidence": "auto,ocr"}, "cannot be combined"),
        ({"judge": "maybe"}, "judge must be none, auto or always"),
        ({"judge_backend": "carrier-pigeon"}, "judge_backend must be openai or transformers"),
        ({"judge_timeout": 0}, "judge_timeout must be a positive number"),
        ({"judge_backoff": -1.0}, "judge_backoff must be a non-negative number"),
        ({"judge_band": (0.8, 0.2)}, "judge_band must be"),
        ({"judge_band": ("a", "b")}, "judge_band must be"),
        ({"query_col": ""}, "query_col must be a non-empty column name"),
    ],
)
def test_validation_names_the_option(kw, message):
    with pytest.raises(ValueError, match=message):
        VSILConfig(**kw)


def test_validate_after_mutation():
    cfg = VSILConfig()
    cfg.run.batch_size = -3
    with pytest.raises(ValueError, match="batch_size"):
        cfg.validate()


def test_from_dict_refuses_unknown_keys_and_non_objects(tmp_path):
    with pytest.raises(ValueError, match="unknown config keys"):
        VSILConfig.from_dict({"threshhold": 0.5})
    with pytest.raises(ValueError, match="unknown keys in config part 'run'"):
        VSILConfig.from_dict({"run": {"batch": 3}})
    with pytest.raises(ValueError, match="must be a JSON object"):
        VSILConfig.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="classify must be"):
        VSILConfig(classify=0.5)  # type: ignore[arg-type]
    p = tmp_path / "c.json"
    p.write_text(json.dumps(VSILConfig(**FLAT_KW).to_dict()))
    assert VSILConfig.from_json_file(str(p)).to_dict() == VSILConfig(**FLAT_KW).to_dict()
    p.write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        VSILConfig.from_json_file(str(p))
    p.write_bytes(b"\xff\xfe{")
    with pytest.raises(ValueError):
        VSILConfig.from_json_file(str(p))


def test_model_key_ignores_what_does_not_load_models():
    base = VSILConfig(embedder="none")
    same = VSILConfig(embedder="none", batch_size=7, show_progress_bar=True, query_col="prompt", preset="vlsbench")
    assert base.model_key() == same.model_key()
    for kw in (
        {"threshold": 0.3},
        {"judge": "always", "judge_model": "m"},
        {"device": "cpu"},
        {"cache_dir": "/tmp/x"},
        {"seed": 1},
        {"evidence": "given"},
        {"embedder": "auto"},
    ):
        assert VSILConfig(**{"embedder": "none", **kw}).model_key() != base.model_key(), kw


def test_resolve_config():
    cfg = VSILConfig(threshold=0.2)
    assert resolve_config(cfg, {}) is cfg
    assert resolve_config(None, {"threshold": 0.2}).to_dict() == cfg.to_dict()
    assert resolve_config(None, {}).to_dict() == VSILConfig().to_dict()
    with pytest.raises(TypeError, match="not both"):
        resolve_config(cfg, {"threshold": 0.3})
