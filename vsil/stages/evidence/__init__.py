"""Stage 1, describe the image: turn each record's image into text that risk extraction can read.

Sources (registry ``IMAGE_EVIDENCE``): ``given`` (the dataset's caption / description / safety reason),
``ocr`` (rendered text, RapidOCR), ``clip`` (open_clip zero-shot risk tags) and ``caption`` (a
transformers captioner). ``EvidenceStage`` plans per record which sources to use (``--evidence``),
reads each distinct image once, decodes a few at a time (bounded memory), runs the image backends
batched over the images not yet in the cache, and keeps their output per image hash on disk, so a
second audit of the same images costs nothing.
"""

from __future__ import annotations

from typing import Any, Protocol

from vsil.errors import UsageError
from vsil.schema import Evidence, Record

IMAGE_BACKENDS = ("ocr", "clip", "caption")
POLICIES = ("auto", "given", *IMAGE_BACKENDS)
IMAGE_BATCH = 32  # images decoded and described at a time by an image-evidence backend
EVIDENCE_FIELD = {"ocr": "ocr_text", "clip": "clip_tags", "caption": "generated_caption"}
RENDERED_TEXT_FIELDS = frozenset({"ocr_text"})  # evidence that is text rendered in the image itself


class ImageBackend(Protocol):
    """Describes a batch of RGB PIL images as text (one string per image; "" when nothing found)."""

    name: str
    cache_id: str  # backend + model + settings: part of the cache key

    def describe(self, images: list[Any]) -> list[str]: ...


def parse_policy(spec: str) -> list[str]:
    """``auto`` | ``given`` | a comma-separated combination of ``given,ocr,clip,caption``."""
    parts = [p.strip().lower() for p in (spec or "auto").split(",") if p.strip()]
    if not parts:
        parts = ["auto"]
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise UsageError(
            f"unknown evidence {', '.join(bad)}; choose auto, given, ocr, clip, caption or a "
            "comma-separated combination"
        )
    if "auto" in parts and len(parts) > 1:
        raise UsageError("--evidence auto cannot be combined with other sources")
    return list(dict.fromkeys(parts))


def auto_backends(config: Any) -> list[str]:
    """The image backends ``--evidence auto`` uses when a row has no caption: OCR when installed, CLIP
    when ``clip_model`` is set, a caption when ``captioner`` is set (each only when installed)."""
    from vsil.registry import IMAGE_EVIDENCE

    e = config.evidence
    wanted = ["ocr"] + (["clip"] if e.clip_model else []) + (["caption"] if e.captioner else [])
    return [b for b in wanted if IMAGE_EVIDENCE.get(b).available()]


def describe_evidence(config: Any) -> str:
    """How the manifest names the evidence policy (loads nothing)."""
    policy = parse_policy(config.evidence.policy)
    if policy == ["auto"]:
        return "auto (given, else " + (", ".join(auto_backends(config)) or "none available") + ")"
    return ",".join(policy)


class EvidenceStage:
    """Records -> ``Evidence`` (or an error reason) per record. Image backends load on first use."""

    def __init__(self, config: Any, *, taxonomy: Any = None) -> None:
        from vsil.util.cache import KVCache

        self.config = config
        self.taxonomy = taxonomy
        self.policy = parse_policy(config.evidence.policy)
        self._backends: dict[str, ImageBackend] = {}
        self._auto: list[str] | None = None
        self.cache = KVCache(config.run.cache_dir, "image_evidence.sqlite")

    def describe(self) -> str:
        return describe_evidence(self.config)

    def backend(self, name: str) -> ImageBackend:
        """The image-evidence backend ``name``, built on first use."""
        if name not in self._backends:
            from vsil.registry import IMAGE_EVIDENCE

            self._backends[name] = IMAGE_EVIDENCE.build(name, self.config, taxonomy=self.taxonomy)
        return self._backends[name]

    def _auto_backends(self) -> list[str]:
        if self._auto is None:
            self._auto = auto_backends(self.config)
        return self._auto

    def plan(self, rec: Record) -> tuple[list[tuple[str, str]], list[str]] | str:
        """(given evidence parts used, image backends to run) for one record, or an error reason."""
        from vsil.stages.evidence.given import GivenText

        given = GivenText.parts(rec)
        if self.policy == ["auto"]:
            if given:
                return given, []
            if rec.image is None:
                return "no image evidence: missing caption and no image"
            backends = self._auto_backends()
            if not backends:
                return (
                    "image given but no caption, and no image-evidence backend is available "
                    "(pip install 'vsil[ocr]', or pass --clip-model / --captioner)"
                )
            return [], backends
        use_given = given if "given" in self.policy else []
        backends = [b for b in self.policy if b != "given"]
        if backends and rec.image is None:
            if use_given:
                return use_given, []
            return f"--evidence {','.join(self.policy)} needs an image, and this row has none"
        if not use_given and not backends:
            return "no caption or safety reason for --evidence given"
        return use_given, backends

    def run(self, records: list[Record]) -> list[Evidence | str]:
        """Image evidence for each record (or an error reason): the dataset's text and/or the output of
        the image backends, which run batched over the distinct images that are not in the cache."""
        from vsil.stages.evidence.images import ImageError, ImageSource, read_image

        plans = [self.plan(r) if not r.error else r.error for r in records]
        loaded: dict[int, str] = {}  # record index -> image sha256
        pending: dict[str, dict[str, ImageSource]] = {}  # backend -> {sha: undecoded image}
        out: list[Evidence | str] = [p if isinstance(p, str) else Evidence((), "") for p in plans]
        mp = self.config.evidence.max_image_pixels
        for i, (rec, plan) in enumerate(zip(records, plans)):
            if isinstance(plan, str) or not plan[1]:
                continue
            try:
                src = read_image(rec.image, self.config.evidence.image_root, mp, self.config.evidence.max_image_bytes)
            except ImageError as e:
                out[i] = str(e)
                continue
            loaded[i] = src.sha256
            for b in plan[1]:
                if self.cache.get(self.backend(b).cache_id, src.sha256) is None:
                    pending.setdefault(b, {})[src.sha256] = src
        bad: dict[str, str] = {}  # sha -> why the image cannot be decoded
        failed: dict[str, str] = {}
        for b, srcs in pending.items():
            items = list(srcs.items())
            for s0 in range(0, len(items), IMAGE_BATCH):  # decode a few images at a time: bounded memory
                shas, imgs = [], []
                for sha, src in items[s0 : s0 + IMAGE_BATCH]:
                    if sha in bad:
                        continue
                    try:
                        imgs.append(src.decode(mp))
                        shas.append(sha)
                    except ImageError as e:
                        bad[sha] = str(e)
                if not imgs:
                    continue
                try:
                    texts = self.backend(b).describe(imgs)
                except UsageError:
                    raise
                except Exception as e:  # a backend failure fails these rows, not the run
                    failed[b] = f"{b} evidence failed: {type(e).__name__}: {e}"
                    break
                self.cache.put_many(self.backend(b).cache_id, dict(zip(shas, texts)))
        for i, sha in loaded.items():
            if sha in bad:
                out[i] = bad[sha]
        for i, plan in enumerate(plans):
            if isinstance(plan, str) or isinstance(out[i], str):
                continue
            given, backends = plan
            parts = list(given)
            for b in backends:
                if b in failed:
                    out[i] = failed[b]
                    break
                text = self.cache.get(self.backend(b).cache_id, loaded[i]) or ""
                parts.append((EVIDENCE_FIELD[b], str(text)))
            else:
                sources = (["given"] if given else []) + backends
                out[i] = Evidence(tuple(parts), "+".join(sources))
        return out

    def close(self) -> None:
        self.cache.close()
