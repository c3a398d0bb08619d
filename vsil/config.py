"""One configuration dataclass that the CLI flags, a JSON file and Python keyword arguments all build."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class ColumnMap:
    """Which input column holds each field. The defaults are the gold format's names."""

    query: str = "query"
    caption: str = "caption"
    image: str = "image"
    safety_reason: str = "safety_reason"
    id: str = "id"
    category: str = "category"
    source: str = "source"

    def explicit(self) -> dict[str, str]:
        """The fields whose column differs from the default name."""
        d = ColumnMap()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(d, f.name)}


@dataclass
class VSILConfig:
    """Everything that determines a vsil run. Echoed in every run manifest.

    Attributes
    ----------
    threshold: P(leak) at or above which a row is a leak; None uses the shipped model's threshold.
    batch_size: rows processed per chunk (memory grows with this, not with the dataset).
    show_progress_bar: None = on when stderr is a terminal.
    embedder: text-embedding backend: "auto" (bundled MiniLM if installed, else lexical), "none"
        (lexical only), or a sentence-transformers model name / local path.
    device: torch device for model backends (None = auto).
    cache_dir: folder for on-disk caches (embeddings, image evidence, judge answers).
    image_root: folder that relative image paths are resolved against.
    classifier_path: a classifier JSON to use instead of the shipped one.
    seed: random seed recorded in the manifest and used by training.
    evidence: where the image evidence comes from: "auto" (the dataset's caption / safety reason when
        the row has one, else the image backends that are available: OCR when installed, open_clip
        tags when ``clip_model`` is set, a caption when ``captioner`` is set), "given", "ocr", "clip",
        "caption", or a comma-separated combination such as "given,ocr".
    clip_model / clip_pretrained: open_clip model name and pretrained tag or local checkpoint path.
    clip_thresholds: JSON file of per-tag thresholds (from ``ClipTagger.calibrate``).
    captioner: a transformers image-to-text model name or local folder; captioner_prompt its prompt.
    max_image_pixels: images above this many pixels are refused (decompression-bomb guard).
    judge: "none" (classifier only), "auto" (ask the LLM judge when P(leak) is inside the
        uncertainty band) or "always" (judge every scored row).
    judge_backend: "openai" (any OpenAI-compatible endpoint) or "transformers" (a local chat model).
    judge_model: the judge's model name (openai) or name / path / ``.gguf`` / ``smollm2`` (transformers).
    judge_base_url: the OpenAI-compatible endpoint's base URL.
    judge_api_key_env: the environment variable that holds the API key (never the key itself).
    judge_concurrency: judge requests in flight at once (openai) or generation batch size (transformers).
    judge_timeout: seconds per judge request before it counts as a timeout and is retried.
    judge_max_retries: retries per request on timeouts, connection errors, 429 and 5xx.
    judge_backoff: first back-off wait in seconds (doubles on each retry, with jitter).
    judge_band: [low, high) of P(leak) sent to the judge under "auto"; None uses the band shipped
        with the classifier (chosen on the dev data, see the model card).
    """

    threshold: float | None = None
    batch_size: int = 256
    show_progress_bar: bool | None = None
    embedder: str = "auto"
    device: str | None = None
    cache_dir: str | None = None
    image_root: str | None = None
    classifier_path: str | None = None
    seed: int = 0
    evidence: str = "auto"
    clip_model: str | None = None
    clip_pretrained: str | None = None
    clip_thresholds: str | None = None
    captioner: str | None = None
    captioner_prompt: str | None = None
    max_image_pixels: int = 64_000_000
    judge: str = "none"
    judge_backend: str = "openai"
    judge_model: str | None = None
    judge_base_url: str = "https://api.openai.com/v1"
    judge_api_key_env: str = "OPENAI_API_KEY"
    judge_concurrency: int = 4
    judge_timeout: float = 60.0
    judge_max_retries: int = 4
    judge_backoff: float = 0.5
    judge_band: tuple[float, float] | None = None
    columns: ColumnMap = field(default_factory=ColumnMap)
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        from .evidence import parse_policy

        try:
            parse_policy(self.evidence)
        except Exception as e:
            raise ValueError(str(e)) from None
        if self.max_image_pixels < 1:
            raise ValueError("max_image_pixels must be >= 1")
        if self.judge not in ("none", "auto", "always"):
            raise ValueError(f"judge must be none, auto or always, got {self.judge!r}")
        if self.judge_concurrency < 1:
            raise ValueError(f"judge_concurrency must be >= 1, got {self.judge_concurrency}")
        if self.judge_band is not None:
            lo, hi = (float(x) for x in self.judge_band)
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"judge_band must be [low, high] with 0 <= low <= high <= 1, got {self.judge_band}")
            self.judge_band = (lo, hi)
        if isinstance(self.columns, dict):
            self.columns = ColumnMap(**self.columns)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VSILConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_json_file(cls, path: str) -> VSILConfig:
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))
