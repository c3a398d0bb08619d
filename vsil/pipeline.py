"""The scoring pipeline: records -> image evidence -> risk + pair features -> classifier -> judge -> results.

``Pipeline(config)`` is cheap: ``describe()`` names every backend without loading a model; ``score``
loads the models on first use (or ``load()`` does it up front) and scores one chunk. Running a whole
dataset is the job of ``vsil.run.runner``.
"""

from __future__ import annotations

import platform
import sys
from typing import Any

from vsil import __version__
from vsil.config import VSILConfig
from vsil.errors import UsageError
from vsil.schema import Evidence, LeakageResult, Record, RunStats


class Pipeline:
    """The stages of one configuration. See the module docstring."""

    def __init__(self, config: VSILConfig | None = None) -> None:
        self.config = config or VSILConfig()
        self._loaded = False
        self.warnings: list[str] = []

    # -- describing (never loads a model) ------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """The static part of the run manifest: version, config, operating point, backends, model."""
        from vsil.stages.evidence import describe_evidence
        from vsil.stages.judge import router
        from vsil.stages.risk.taxonomy import load_taxonomy

        c = self.config
        if self._loaded:
            model, emb_desc, mode = self.model, self.embedder_desc, self.mode
            self.warnings = list(dict.fromkeys(self.warnings + self.cache_warnings()))
        else:
            from vsil.registry import CLASSIFIERS, EMBEDDERS
            from vsil.stages.classify import classifier_backend
            from vsil.stages.features.embed import DESC_FALLBACK, WARN_NOT_INSTALLED, embedder_backend

            emb_desc = EMBEDDERS.describe(embedder_backend(c.embed.model), c)
            has_emb = emb_desc.startswith("sentence-transformers")
            model = CLASSIFIERS.build(classifier_backend(c, has_emb), c, semantic=has_emb)
            mode = "semantic" if has_emb and _wants_semantic(model) else "lexical"
            if emb_desc == DESC_FALLBACK:
                self.warnings = [WARN_NOT_INSTALLED]
        band = router.judge_band(c)
        threshold = c.classify.threshold if c.classify.threshold is not None else model.threshold
        return {
            "vsil_version": __version__,
            "config": c.to_dict(),
            "threshold": threshold,
            "partial_threshold": model.partial_threshold,
            "backends": {
                "image_evidence": describe_evidence(c),
                "embedder": emb_desc,
                "mode": mode,
                "classifier": model.meta.get("name", "lexical"),
                "judge": router.describe_config(c),
                "judge_routing": router.describe_routing(c, band),
            },
            "model": {
                k: model.meta.get(k)
                for k in ("name", "trained_at", "training_data", "seed", "features", "harm_head", "held_out")
            },
            "taxonomy_version": load_taxonomy().version,
            "seed": c.run.seed,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "warnings": list(self.warnings),
        }

    # -- loading -------------------------------------------------------------------------
    def load(self) -> Pipeline:
        """Load every model of this configuration (idempotent)."""
        if self._loaded:
            return self
        from vsil.registry import CLASSIFIERS, EMBEDDERS
        from vsil.stages.classify import ClassifyStage, beside, classifier_backend
        from vsil.stages.evidence import EvidenceStage
        from vsil.stages.features import FeatureStage
        from vsil.stages.features.embed import DESC_FALLBACK, WARN_NOT_INSTALLED, EmbedderChoice, embedder_backend
        from vsil.stages.features.harm import load_harm_model
        from vsil.stages.features.semantic import SemanticFeaturizer, load_sem_harm
        from vsil.stages.features.text_harm import MODEL_FILE, load_text_harm
        from vsil.stages.judge import router
        from vsil.stages.risk.taxonomy import load_taxonomy

        c = self.config
        taxonomy = load_taxonomy()
        harm = load_harm_model(beside(c.classify.classifier_path, "harm_model.npz"))
        name = embedder_backend(c.embed.model)
        if c.embed.model == "auto" and not EMBEDDERS.get(name).available():  # no [semantic] extra: lexical mode
            choice = EmbedderChoice(None, DESC_FALLBACK, [WARN_NOT_INSTALLED])
        else:
            choice = EMBEDDERS.build(name, c)
        self.embedder, self.embedder_desc = choice.embedder, choice.description
        self.warnings = list(choice.warnings)
        self.model = CLASSIFIERS.build(
            classifier_backend(c, choice.embedder is not None), c, semantic=choice.embedder is not None
        )
        semantic = None
        if _wants_semantic(self.model):
            if choice.embedder is None:
                raise UsageError("this classifier needs semantic features but no embedder is available")
            custom = c.classify.classifier_path
            head: Any
            if self.model.meta.get("harm_head") == "text_harm":  # the classifier names the harm model it was trained on
                head = load_text_harm(beside(custom, MODEL_FILE))
                if head is None:
                    raise UsageError(f"this classifier needs {MODEL_FILE} beside it (vsil train --out DIR writes it)")
            else:  # classifiers trained with the older semantic head (sem_harm.json)
                head = load_sem_harm(beside(custom, "sem_harm.json"))
            hints = self.model.partial_model.hint_phrases if self.model.partial_model is not None else ()
            semantic = SemanticFeaturizer(choice.embedder, taxonomy, head, hints)
        self.mode = "semantic" if semantic is not None else "lexical"
        self.evidence = EvidenceStage(c, taxonomy=taxonomy)
        self.features = FeatureStage(taxonomy, harm, semantic)
        self.classify = ClassifyStage(self.model, c.classify.threshold, harm)
        self.judge: router.JudgeStage | None = None
        if c.judge.mode != "none":
            band = router.judge_band(c)
            boundaries = (self.classify.threshold,) + (
                (self.model.partial_threshold,) if self.model.partial_threshold is not None else ()
            )
            self.judge = router.JudgeStage(c, band, router.build_judge(c), boundaries)
        self._loaded = True
        return self

    @property
    def threshold(self) -> float:
        return self.load().classify.threshold

    # -- scoring -------------------------------------------------------------------------
    def stats(self) -> RunStats:
        """Running counters of this pipeline (judge calls, image-evidence cache)."""
        self.load()
        return RunStats(self.judge.judge.stats.to_dict() if self.judge is not None else {}, self.evidence.cache.stats())

    def score(self, records: list[Record]) -> tuple[list[LeakageResult], RunStats]:
        """Score one chunk: one result per record, in order, and the counters of this call."""
        before = self.stats()
        evidence = self.evidence.run(records)
        out: list[LeakageResult | None] = [None] * len(records)
        pairs: list[tuple[int, Record, Evidence]] = []
        for i, (rec, ev) in enumerate(zip(records, evidence)):
            if isinstance(ev, str):
                out[i] = LeakageResult.failed(
                    rec.id, ev, row=rec.row, query=rec.query, category=rec.category, source=rec.source
                )
            else:
                pairs.append((i, rec, ev))
        feats = self.features.run([(rec, ev) for _, rec, ev in pairs])
        scored: list[tuple[int, Record, Evidence, Any]] = []
        for (i, rec, ev), f in zip(pairs, feats):
            if isinstance(f, str):
                out[i] = LeakageResult.failed(
                    rec.id, f, row=rec.row, query=rec.query, category=rec.category, source=rec.source
                )
            else:
                scored.append((i, rec, ev, f))
        results = self.classify.run([(rec, ev, f) for _, rec, ev, f in scored])
        if self.judge is not None and scored:
            results = self.judge.run([(r, rec, ev) for r, (_, rec, ev, _) in zip(results, scored)])
        for (i, *_), r in zip(scored, results):
            out[i] = r
        return [r for r in out if r is not None], self.stats().minus(before)

    def cache_warnings(self) -> list[str]:
        """Warnings of the caches this pipeline opened (a corrupt file moved aside and rebuilt)."""
        caches = [self.evidence.cache]
        if self.embedder is not None and self.embedder.disk_cache is not None:
            caches.append(self.embedder.disk_cache)
        if self.judge is not None:
            caches.append(self.judge.judge.cache.store)
        return [w for c in caches for w in c.warnings]

    def routed(self) -> list[tuple[str, float]]:
        """The last chunk's rows sent to the judge: (id, distance to the decision boundary), least certain first."""
        return list(self.judge.routed_log) if self._loaded and self.judge is not None else []

    def close(self) -> None:
        """Close what this pipeline opened (the judge's HTTP client, the caches)."""
        if not self._loaded:
            return
        if self.judge is not None:
            self.judge.close()
        self.evidence.close()
        if self.embedder is not None:
            self.embedder.close()


def _wants_semantic(model: Any) -> bool:
    return any(n.startswith("sem_") for n in model.feature_names)
