"""open_clip zero-shot risk tags. Each concept of the risk taxonomy (a subcategory's main terms) is
scored against the image with a prompt ensemble, next to neutral concepts; a concept whose softmax
share passes its threshold becomes a tag, and the tags (taxonomy terms themselves) go through the
same risk extraction as a caption.

``model`` is an open_clip model name (``ViT-B-32``) with ``pretrained`` a tag (``laion2b_s34b_b79k``)
or a local checkpoint file; ``hf-hub:org/name`` also works where the hub is reachable. Per-tag
thresholds come from ``thresholds`` (a JSON file written by ``ClipTagger.calibrate``), else a
default rule: ``default_factor`` times the uniform share 1/len(concepts).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from typing import Any

from vsil.errors import MissingDependencyError, UsageError
from vsil.stages.risk.taxonomy import Taxonomy, load_taxonomy
from vsil.util.device import pick_device
from vsil.util.loading import load_model, looks_like_path

TEMPLATES = ("a photo of {}.", "an image showing {}.", "a close-up picture of {}.", "a photo that contains {}.")
NEUTRAL_CONCEPTS = (
    "an ordinary everyday scene",
    "a person",
    "a group of people",
    "food on a table",
    "a landscape",
    "a city street",
    "an animal",
    "a room interior",
    "a document with text",
    "a product on a shelf",
    "a vehicle",
    "sports",
    "a plant or flowers",
    "a computer screen",
    "toys",
    "a kitchen",
    "clothing",
    "a building",
)


def risk_concepts(tax: Taxonomy, per_subcategory: int = 6) -> list[tuple[str, str, str]]:
    """(concept text, subcategory id, category id): each subcategory's first full-weight terms."""
    return [(t, sid, cid) for cid, sid, _, terms in tax.strong_terms() for t in terms[:per_subcategory]]


class ClipTagger:
    name = "clip"

    @classmethod
    def from_config(cls, config: Any, *, taxonomy: Taxonomy | None = None, **context: Any) -> ClipTagger:
        e = config.evidence
        if not e.clip_model:
            raise UsageError(
                "--evidence clip needs an open_clip model (--clip-model NAME [--clip-pretrained TAG|PATH])"
            )
        return cls(
            e.clip_model, e.clip_pretrained, device=config.run.device, thresholds=e.clip_thresholds, taxonomy=taxonomy
        )

    @classmethod
    def weights(cls, name: str = "") -> str:
        return "none bundled: pass --clip-model NAME and --clip-pretrained TAG (downloaded) or a local checkpoint file"

    @classmethod
    def describe_config(cls, config: Any) -> str:
        e = config.evidence
        return f"clip:{e.clip_model}/{e.clip_pretrained}"

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str | None = None,
        *,
        device: str | None = None,
        batch_size: int = 32,
        thresholds: str | dict[str, float] | None = None,
        default_factor: float = 3.0,
        max_tags: int = 5,
        taxonomy: Taxonomy | None = None,
    ) -> None:
        if importlib.util.find_spec("open_clip") is None:
            raise MissingDependencyError("open_clip_torch", "clip")
        import open_clip

        self.device = pick_device(device)
        if pretrained and looks_like_path(pretrained) and not os.path.isfile(os.path.expanduser(pretrained)):
            raise UsageError(f"--clip-pretrained {pretrained}: no such checkpoint file")
        if model not in open_clip.list_models() and not model.startswith(("hf-hub:", "local-dir:")):
            raise UsageError(f"--clip-model {model!r} is not an open_clip model name (see open_clip.list_models())")
        self.model, _, self.preprocess = load_model(
            "--clip-model",
            f"{model}/{pretrained}",
            lambda: open_clip.create_model_and_transforms(model, pretrained=pretrained, device=self.device),
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.batch_size = max(1, batch_size)
        self.max_tags = max_tags
        tax = taxonomy or load_taxonomy()
        self.concepts = risk_concepts(tax)
        self.labels = [c[0] for c in self.concepts] + list(NEUTRAL_CONCEPTS)
        self.n_risk = len(self.concepts)
        if isinstance(thresholds, str):
            with open(thresholds, encoding="utf-8") as f:
                self.thresholds: dict[str, float] = {str(k): float(v) for k, v in json.load(f).items()}
        else:
            self.thresholds = dict(thresholds or {})
        self.default_threshold = default_factor / len(self.labels)
        th_hash = hashlib.sha256(json.dumps(self.thresholds, sort_keys=True).encode()).hexdigest()[:12]
        self.cache_id = (
            f"clip:{model}:{pretrained}:{len(self.labels)}:{th_hash}:{self.default_threshold:.5f}:{max_tags}"
        )
        self.text_features = self._encode_concepts()

    def _encode_concepts(self) -> Any:
        import torch

        feats = []
        with torch.inference_mode():
            for label in self.labels:
                toks = self.tokenizer([t.format(label) for t in TEMPLATES]).to(self.device)
                e = self.model.encode_text(toks)
                e = e / e.norm(dim=-1, keepdim=True)
                m = e.mean(dim=0)
                feats.append(m / m.norm())
        return torch.stack(feats)

    def scores(self, images: list[Any]) -> Any:
        """Softmax shares over all concepts (risk concepts first), one row per image."""
        import torch

        rows = []
        with torch.inference_mode():
            scale = float(self.model.logit_scale.exp().item()) if hasattr(self.model, "logit_scale") else 100.0
            for s in range(0, len(images), self.batch_size):
                x = torch.stack([self.preprocess(im) for im in images[s : s + self.batch_size]]).to(self.device)
                f = self.model.encode_image(x)
                f = f / f.norm(dim=-1, keepdim=True)
                rows.append((scale * f @ self.text_features.T).softmax(dim=-1).float().cpu())
        return torch.cat(rows).numpy()

    def tags(self, images: list[Any]) -> list[list[tuple[str, float]]]:
        out = []
        for row in self.scores(images):
            found = [
                (self.labels[j], float(row[j]))
                for j in range(self.n_risk)
                if row[j] >= self.thresholds.get(self.labels[j], self.default_threshold)
            ]
            found.sort(key=lambda t: -t[1])
            out.append(found[: self.max_tags])
        return out

    def describe(self, images: list[Any]) -> list[str]:
        return ["; ".join(f"{t} ({s:.2f})" for t, s in tags) for tags in self.tags(images)]

    def calibrate(self, images: list[Any], tag_sets: list[set[str]], path: str | None = None) -> dict[str, float]:
        """Per-tag thresholds from labelled images (``tag_sets[i]``: the concepts image i shows):
        for each concept with positives, the share that maximises F1; saved as JSON to ``path``."""
        import numpy as np

        S = self.scores(images)
        th: dict[str, float] = {}
        for j in range(self.n_risk):
            y = np.array([self.labels[j] in ts for ts in tag_sets])
            if not y.any():
                continue
            best = (-1.0, self.default_threshold)
            for t in np.unique(S[:, j]):
                pred = S[:, j] >= t
                tp = float((pred & y).sum())
                f1 = 2 * tp / (pred.sum() + y.sum())
                best = max(best, (f1, float(t)))
            th[self.labels[j]] = best[1]
        self.thresholds.update(th)
        if path:
            with open(path, "w", encoding="utf-8") as f:
                json.dump(self.thresholds, f, indent=1)
        return th
