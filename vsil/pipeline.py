"""The scoring pipeline: records -> image evidence -> risk -> features -> classifier -> results.

``Scorer`` holds the loaded models; ``run_audit`` streams any input through it chunk by chunk.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import __version__
from .classifier import ShippedModel, load_classifier
from .config import VSILConfig
from .embed import resolve_embedder
from .errors import UsageError
from .evidence import EvidenceCache, ImageBackend, parse_policy
from .features import RENDERED_TEXT_FIELDS, PairAnalysis, analyze_pair
from .harm import HarmModel, load_harm_model
from .images import ImageError, ImageSource, read_image
from .intake import Record, iter_records
from .judge import Judge
from .result import LeakageResult
from .semantic import SemanticFeaturizer, load_sem_harm
from .summary import SummaryBuilder
from .taxonomy import Taxonomy, load_taxonomy
from .text import merge_spans, tokenize


@dataclass
class Evidence:
    """The text that stands for the image, with where it came from."""

    parts: list[tuple[str, str]]  # (field, text)
    source: str

    @property
    def caption_used(self) -> str:
        return " ".join(t for f, t in self.parts if f != "safety_reason")


class Scorer:
    """Loads the taxonomy, the harm model and the classifier once, then scores records in batches.

    ``build_judge=False`` checks the judge options and describes the judge (manifest, backends) without
    building it, so no local judge model is loaded; with a judge configured, such a scorer refuses to
    score. The Ray driver uses it to write the manifest while the actors hold the real judges."""

    def __init__(self, config: VSILConfig | None = None, *, build_judge: bool = True) -> None:
        self.config = config or VSILConfig()
        self.taxonomy: Taxonomy = load_taxonomy()
        # a classifier written by `vsil train --out DIR` is used with the harm models trained beside it
        self.harm: HarmModel = load_harm_model(_beside(self.config.classifier_path, "harm_model.npz"))
        self.warnings: list[str] = []
        self.semantic: SemanticFeaturizer | None = None
        choice = resolve_embedder(
            self.config.embedder,
            device=self.config.device,
            show_progress_bar=False,
            cache_dir=self.config.cache_dir,
        )
        self.embedder_desc = choice.description
        self.warnings += choice.warnings
        if self.config.classifier_path:
            self.model: ShippedModel = load_classifier(self.config.classifier_path)
        elif choice.embedder is not None:
            self.model = load_classifier(None, "classifier_semantic.json")
        else:
            self.model = load_classifier(None, "classifier_lexical.json")
        wants_sem = any(n.startswith("sem_") for n in self.model.feature_names)
        if wants_sem and choice.embedder is None:
            raise UsageError("this classifier needs semantic features but no embedder is available")
        if wants_sem and choice.embedder is not None:
            self.semantic = SemanticFeaturizer(choice.embedder, self.taxonomy, load_sem_harm(_beside(self.config.classifier_path, "sem_harm.json")))
        self.threshold = self.config.threshold if self.config.threshold is not None else self.model.threshold
        self.policy = parse_policy(self.config.evidence)
        self._image_backends: dict[str, ImageBackend] = {}
        self._backend_ids: dict[str, str] = {}
        self._auto: list[str] | None = None
        self.evidence_cache = EvidenceCache(self.config.cache_dir)
        self.judge: Judge | None = None
        self.judge_band: tuple[float, float] | None = None
        self.judge_desc = "none"
        if self.config.judge != "none":
            self.judge_band = _judge_band(self.config, self.model)
            if build_judge:
                self.judge = _make_judge(self.config)
                self.judge_desc = self.judge.describe()
            else:
                from .judge import describe_judge

                if not self.config.judge_model:
                    raise UsageError(f"the {self.config.judge_backend} judge needs a model (--judge-model)")
                self.judge_desc = describe_judge(self.config.judge_backend, self.config.judge_model)

    @property
    def describe_only(self) -> bool:
        """A judge is configured but was not built (``build_judge=False``)."""
        return self.config.judge != "none" and self.judge is None

    def _evidence_desc(self) -> str:
        if self.policy == ["auto"]:
            return "auto (given, else " + (", ".join(self._auto_backends()) or "none available") + ")"
        return ",".join(self.policy)

    @property
    def mode(self) -> str:
        return "semantic" if self.semantic is not None else "lexical"

    def backends(self) -> dict[str, str]:
        return {
            "image_evidence": self._evidence_desc(),
            "embedder": self.embedder_desc,
            "mode": self.mode,
            "classifier": self.model.meta.get("name", "lexical"),
            "judge": self.judge_desc,
            "judge_routing": self.config.judge if self.judge_band is None else f"{self.config.judge} band [{self.judge_band[0]:.3f}, {self.judge_band[1]:.3f})",
        }

    # -- stages ---------------------------------------------------------------------------
    def _image_backend(self, name: str) -> ImageBackend:
        """The image-evidence backend ``name``, loaded on first use."""
        if name not in self._image_backends:
            from .registry import get_backend

            c = self.config
            cls = get_backend("image_evidence", name).load()
            if name == "ocr":
                self._image_backends[name] = cls()
            elif name == "clip":
                if not c.clip_model:
                    raise UsageError("--evidence clip needs an open_clip model (--clip-model NAME [--clip-pretrained TAG|PATH])")
                self._image_backends[name] = cls(c.clip_model, c.clip_pretrained, device=c.device, thresholds=c.clip_thresholds, taxonomy=self.taxonomy)
            else:
                if not c.captioner:
                    raise UsageError("--evidence caption needs a model (--captioner NAME|PATH)")
                self._image_backends[name] = cls(c.captioner, device=c.device, prompt=c.captioner_prompt)
        return self._image_backends[name]

    def _auto_backends(self) -> list[str]:
        if self._auto is None:
            from .registry import get_backend

            c = self.config
            auto = []
            if get_backend("image_evidence", "ocr").available():
                auto.append("ocr")
            if c.clip_model and get_backend("image_evidence", "clip").available():
                auto.append("clip")
            if c.captioner and get_backend("image_evidence", "caption").available():
                auto.append("caption")
            self._auto = auto
        return self._auto

    def _plan(self, rec: Record) -> tuple[list[tuple[str, str]], list[str]] | str:
        """(given evidence parts used, image backends to run) for one record, or an error reason."""
        given = [(f, t) for f, t in (("caption", rec.caption), ("safety_reason", rec.safety_reason)) if t.strip()]
        if self.policy == ["auto"]:
            if given:
                return given, []
            if rec.image is None:
                return "no image evidence: missing caption and no image"
            backends = self._auto_backends()
            if not backends:
                return "image given but no caption, and no image-evidence backend is available (pip install 'vsil[ocr]', or pass --clip-model / --captioner)"
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

    def describe_images(self, records: list[Record]) -> list[Evidence | str]:
        """Image evidence for each record (or an error reason): the dataset's text and/or the output of
        the image backends, which run batched over the distinct images that are not in the cache."""
        plans = [self._plan(r) if not r.error else r.error for r in records]
        loaded: dict[int, str] = {}  # record index -> image sha256
        pending: dict[str, dict[str, ImageSource]] = {}  # backend -> {sha: undecoded image}
        out: list[Evidence | str] = [p if isinstance(p, str) else Evidence([], "") for p in plans]
        mp = self.config.max_image_pixels
        for i, (rec, plan) in enumerate(zip(records, plans)):
            if isinstance(plan, str) or not plan[1]:
                continue
            try:
                src = read_image(rec.image, self.config.image_root, mp)
            except ImageError as e:
                out[i] = str(e)
                continue
            loaded[i] = src.sha256
            for b in plan[1]:
                if self.evidence_cache.get(self._backend_id(b), src.sha256) is None:
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
                    texts = self._image_backend(b).describe(imgs)
                except UsageError:
                    raise
                except Exception as e:  # a backend failure fails these rows, not the run
                    failed[b] = f"{b} evidence failed: {type(e).__name__}: {e}"
                    break
                self.evidence_cache.put_many(self._backend_id(b), dict(zip(shas, texts)))
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
                text = self.evidence_cache.get(self._backend_id(b), loaded[i]) or ""
                parts.append((EVIDENCE_FIELD[b], text))
            else:
                sources = (["given"] if given else []) + backends
                out[i] = Evidence(parts, "+".join(sources))
        return out

    def _backend_id(self, name: str) -> str:
        """Cache id of a backend: its model and settings (loads the backend once to know them)."""
        if name not in self._backend_ids:
            self._backend_ids[name] = self._image_backend(name).cache_id
        return self._backend_ids[name]

    def describe_image(self, rec: Record) -> Evidence | str:
        """The image evidence of one record, or an error reason."""
        return self.describe_images([rec])[0]

    def analyze(self, rec: Record, ev: Evidence, rendered_harm: dict[str, float] | None = None) -> PairAnalysis:
        return analyze_pair(rec.query, ev.parts, self.taxonomy, self.harm, query_tokens=tokenize(rec.query), rendered_harm=rendered_harm)

    def counters(self) -> dict[str, dict[str, int]]:
        """Running counts of this scorer: judge calls (empty without a judge) and image-evidence cache."""
        return {
            "judge_stats": self.judge.stats.to_dict() if self.judge is not None else {},
            "image_evidence_cache": dict(self.evidence_cache.stats()),
        }

    def score_counted(self, records: list[Record]) -> tuple[list[LeakageResult], dict[str, dict[str, int]]]:
        """``score``, plus the counters of this call: the engines add them up across worker processes
        and Ray actors (``add_counters``) for the manifest's ``judge_stats`` and ``image_evidence_cache``."""
        before = self.counters()
        results = self.score(records)
        return results, {g: {k: v - before[g].get(k, 0) for k, v in c.items()} for g, c in self.counters().items()}

    def score(self, records: list[Record]) -> list[LeakageResult]:
        """Score one chunk of records; returns one result per record, in order."""
        if self.describe_only:
            raise UsageError("this Scorer was built with build_judge=False: it describes its judge but cannot score")
        out: list[LeakageResult | None] = [None] * len(records)
        todo: list[tuple[int, Record, Evidence, PairAnalysis]] = []
        evidence = self.describe_images(records)
        rendered: dict[str, float] = {}
        if self.semantic is not None:
            rendered = self.semantic.harm_probs([t for ev in evidence if isinstance(ev, Evidence) for f, t in ev.parts if f in RENDERED_TEXT_FIELDS])
        for i, (rec, ev) in enumerate(zip(records, evidence)):
            if isinstance(ev, str):
                out[i] = LeakageResult.failed(rec.id, ev, row=rec.row, query=rec.query, category=rec.category, source=rec.source)
                continue
            try:
                todo.append((i, rec, ev, self.analyze(rec, ev, rendered)))
            except Exception as e:  # one bad row must not stop the run
                out[i] = LeakageResult.failed(rec.id, f"feature extraction failed: {e}", row=rec.row, query=rec.query)
        if todo and self.semantic is not None:
            self.semantic.add_features([(rec.query, a.query_tokens, a) for _, rec, _, a in todo])
            self.semantic.embedder.clear_memory()
        if todo:
            X = np.stack([a.vector(self.model.feature_names) for _, _, _, a in todo])
            P = self.model.proba3(X)
            p2 = P[:, 2]
            levels = self.model.levels(P, self.threshold)
            for (i, rec, ev, a), p, lvl in zip(todo, p2, levels):
                out[i] = self._result(rec, ev, a, float(p), int(lvl))
            if self.judge is not None:
                self._apply_judge([(out[i], rec, ev) for i, rec, ev, _ in todo])
        return [r for r in out if r is not None]

    def routes_to_judge(self, p: float) -> bool:
        """Whether a row with classifier P(leak) ``p`` goes to the judge under the configured routing."""
        if self.judge is None:
            return False
        if self.config.judge == "always" or self.judge_band is None:
            return True
        return self.judge_band[0] <= p < self.judge_band[1]

    def _apply_judge(self, rows: list[tuple[LeakageResult | None, Record, Evidence]]) -> None:
        from .judge import JudgeItem

        assert self.judge is not None
        sel = [(r, rec, ev) for r, rec, ev in rows if r is not None and self.routes_to_judge(r.vsil_score)]
        if not sel:
            return
        outcomes = self.judge.judge([JudgeItem(rec.query, ev.parts) for _, rec, ev in sel])
        for (r, _, _), o in zip(sel, outcomes):
            assert r is not None
            if o.verdict is None:
                r.judge_error = o.error
                continue
            v = o.verdict
            r.vsil_level = v.level
            r.is_leak = v.level == 2
            r.decided_by = "judge"
            r.judge_rationale = v.rationale
            if v.level == 0:
                r.leaked_spans = []
            elif v.span_start >= 0:
                r.leaked_spans = [{"start": v.span_start, "end": v.span_start + len(v.leaked_span), "text": v.leaked_span}]

    def _result(self, rec: Record, ev: Evidence, a: PairAnalysis, p: float, level: int) -> LeakageResult:
        if level == 2:
            spans = merge_spans(a.leak_spans) or _fallback_spans(rec.query, self.harm)
        elif level == 1:
            spans = a.hint_spans or merge_spans(a.leak_spans)
        else:
            spans = []
        return LeakageResult(
            id=rec.id,
            vsil_score=p,
            vsil_level=level,
            is_leak=p >= self.threshold,
            leaked_spans=[{"start": s, "end": e, "text": rec.query[s:e]} for s, e in spans],
            risk_terms=[t.to_dict() for t in a.risk_terms],
            image_risk=a.image_risk,
            text_risk=a.sem_text_risk if a.sem_text_risk is not None else a.text_risk,
            overlap=a.overlap,
            caption_used=ev.caption_used,
            caption_source=ev.source,
            decided_by="classifier",
            query=rec.query,
            category=rec.category,
            source=rec.source,
            row=rec.row,
        )

    def manifest(self, data_hash: str, started: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "vsil_version": __version__,
            "config": self.config.to_dict(),
            "threshold": self.threshold,
            "partial_threshold": self.model.partial_threshold,
            "backends": self.backends(),
            "model": {k: self.model.meta.get(k) for k in ("name", "trained_at", "training_data", "seed", "features")},
            "taxonomy_version": self.taxonomy.version,
            "data_sha256": data_hash,
            "seed": self.config.seed,
            "started": utc_stamp(started),
            "seconds": round(time.time() - started, 3),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "warnings": list(self.warnings),
            "judge_stats": self.judge.stats.to_dict() if self.judge is not None else None,
            "image_evidence_cache": self.evidence_cache.stats(),
            **(extra or {}),
        }


IMAGE_BATCH = 32  # images decoded and described at a time by an image-evidence backend
EVIDENCE_FIELD = {"ocr": "ocr_text", "clip": "clip_tags", "caption": "generated_caption"}


def add_counters(total: dict[str, dict[str, int]], delta: dict[str, dict[str, int]]) -> None:
    """Add one ``score_counted`` delta into a running total, in place."""
    for group, counts in delta.items():
        g = total.setdefault(group, {})
        for k, v in counts.items():
            g[k] = g.get(k, 0) + v


def run_counters(manifest: dict[str, Any], total: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The manifest fields for counters summed over a run's workers (``judge_stats`` stays null
    when the run had no judge)."""
    return {
        "judge_stats": total.get("judge_stats", {}) if manifest.get("judge_stats") is not None else None,
        "image_evidence_cache": total.get("image_evidence_cache", {"hits": 0, "misses": 0}),
    }


def utc_stamp(t: float) -> str:
    """A manifest's ``started`` time."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _beside(classifier_path: str | None, name: str) -> str | None:
    """``name`` in the folder of a custom classifier file, when it is there (else the shipped file)."""
    if not classifier_path:
        return None
    path = os.path.join(os.path.dirname(os.path.abspath(classifier_path)), name)
    return path if os.path.isfile(path) else None


def _judge_band(cfg: VSILConfig, model: ShippedModel) -> tuple[float, float] | None:
    """Under ``judge="auto"``, the uncertainty band routed to the judge (config, else the model's)."""
    if cfg.judge != "auto":
        return None
    shipped = model.meta.get("judge_band")
    band = cfg.judge_band or ((float(shipped[0]), float(shipped[1])) if shipped else None)
    if band is None:
        raise UsageError("judge='auto' needs an uncertainty band: this classifier ships none, so set judge_band=[low, high]")
    return (float(band[0]), float(band[1]))


def _make_judge(cfg: VSILConfig) -> Judge:
    """The judge of this configuration (its backend built, a local model loaded)."""
    from .judge import Judge, make_backend
    from .judge.cache import JudgeCache

    if cfg.judge_backend == "openai":
        opts: dict[str, Any] = {
            "model": cfg.judge_model or "",
            "base_url": cfg.judge_base_url,
            "api_key_env": cfg.judge_api_key_env,
            "concurrency": cfg.judge_concurrency,
            "timeout": cfg.judge_timeout,
            "max_retries": cfg.judge_max_retries,
            "backoff": cfg.judge_backoff,
            "seed": cfg.seed,
        }
    else:
        opts = {"model": cfg.judge_model or "", "device": cfg.device, "batch_size": cfg.judge_concurrency}
    return Judge(make_backend(cfg.judge_backend, opts), JudgeCache(cfg.cache_dir))


def _fallback_spans(query: str, harm: HarmModel) -> list[tuple[int, int]]:
    """The query words with the strongest harm signal, when no risk term explains a leak."""
    toks = tokenize(query)
    return harm.harm_spans(toks, min_score=0.0) if toks else []


def _progress(show: bool | None, total: int | None) -> Any:
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if show is None else (not show)
    return tqdm(total=total, unit="rows", desc="vsil", disable=disable, leave=False)


def _len_or_none(data: Any) -> int | None:
    if isinstance(data, (str, os.PathLike)):
        return None
    try:
        return len(data)
    except TypeError:
        return None


def run_audit(
    data: Any,
    config: VSILConfig | None = None,
    *,
    on_result: Callable[[LeakageResult], None] | None = None,
    scorer: Scorer | None = None,
) -> dict[str, Any]:
    """Stream ``data`` through the pipeline. Each result goes to ``on_result`` in input order.

    Returns the summary dict (computed from the rows). Memory does not grow with the input.
    """
    cfg = config or VSILConfig()
    started = time.time()
    chunks: Iterator[list[Record]] = iter_records(data, cfg.columns, cfg.preset, cfg.batch_size)
    first = next(chunks, [])  # validates the input (columns, format) before any model loads
    sc = scorer or Scorer(cfg)
    builder = SummaryBuilder()
    h = hashlib.sha256()
    with _progress(cfg.show_progress_bar, _len_or_none(data)) as bar:
        for chunk in itertools.chain([first], chunks):
            for rec in chunk:
                rec.hash_into(h)
            for r in sc.score(chunk):
                builder.add(r)
                if on_result is not None:
                    on_result(r)
            bar.update(len(chunk))
    return builder.build(sc.manifest(h.hexdigest(), started))
