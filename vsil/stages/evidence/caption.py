"""Captioner evidence with transformers: any image-to-text or image-text-to-text model by hub name or
local folder (BLIP, Florence-2, a small VLM), loaded with ``AutoProcessor`` +
``AutoModelForImageTextToText``, batched greedy generation. The caption goes through risk extraction.

``prompt`` is passed to the processor with each image when given (BLIP conditional captioning takes
a text prefix such as "a photography of"; chat VLMs take an instruction).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from vsil.errors import MissingDependencyError, UsageError
from vsil.util.device import pick_device
from vsil.util.loading import check_model_folder, load_model, offline


class Captioner:
    name = "caption"

    @classmethod
    def from_config(cls, config: Any, **context: Any) -> Captioner:
        e = config.evidence
        if not e.captioner:
            raise UsageError("--evidence caption needs a model (--captioner NAME|PATH)")
        return cls(e.captioner, device=config.run.device, prompt=e.captioner_prompt)

    @classmethod
    def weights(cls, name: str = "") -> str:
        return "none bundled: pass --captioner NAME (downloaded) or a local model folder"

    @classmethod
    def describe_config(cls, config: Any) -> str:
        return f"caption:{config.evidence.captioner}"

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 40,
        prompt: str | None = None,
    ) -> None:
        if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("torch") is None:
            raise MissingDependencyError("transformers", "caption")
        if not model:
            raise UsageError("the captioner needs a model name or local path (--captioner)")
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.device = pick_device(device)
        check_model_folder("--captioner", model)
        kw = {"local_files_only": True} if offline() else {}
        self.processor = load_model("--captioner", model, lambda: AutoProcessor.from_pretrained(model, **kw))
        lm: Any = load_model("--captioner", model, lambda: AutoModelForImageTextToText.from_pretrained(model, **kw))
        self.model = lm.to(self.device).eval()
        self.batch_size = max(1, batch_size)
        self.max_new_tokens = max_new_tokens
        self.prompt = prompt
        self.cache_id = f"caption:{model}:{prompt}:{max_new_tokens}"

    def describe(self, images: list[Any]) -> list[str]:
        import torch

        out: list[str] = []
        for s in range(0, len(images), self.batch_size):
            batch = images[s : s + self.batch_size]
            kw: dict[str, Any] = {"images": batch, "return_tensors": "pt"}
            if self.prompt:
                kw["text"] = [self.prompt] * len(batch)
            enc = self.processor(**kw).to(self.device)
            with torch.inference_mode():
                ids = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False)
            if (
                self.prompt
                and "input_ids" in enc
                and not self.model.config.is_encoder_decoder
                and ids.shape[1] > enc["input_ids"].shape[1]
            ):
                ids = ids[:, enc["input_ids"].shape[1] :]
            out += [str(t).strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]
        return out
