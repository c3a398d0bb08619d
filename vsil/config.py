"""One configuration dataclass, ``VSILConfig``, with a nested part per stage.

Python keyword arguments (nested parts or the flat names below), a JSON file (nested or flat) and the
CLI flags all build it; the CLI flags are generated from the field metadata here (``flag_specs``), so
every field has exactly one flag with its help text and type.

    VSILConfig(threshold=0.6, judge="auto", judge_model="gpt-4o-mini")      # flat names
    VSILConfig(classify=ClassifyConfig(threshold=0.6), judge=JudgeConfig(mode="auto", model="gpt-4o-mini"))
"""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any, get_type_hints


def _opt(
    help: str,
    *,
    flat: str | None = None,
    metavar: str | tuple[str, ...] | None = None,
    choices: tuple[str, ...] | None = None,
    nargs: int | None = None,
    alias: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Field metadata: the CLI help, the flat keyword / flag name (default ``<part>_<field>``)."""
    return {"help": help, "flat": flat, "metavar": metavar, "choices": choices, "nargs": nargs, "alias": alias}


@dataclass
class ColumnMap:
    """Which input column holds each field. The defaults are the gold format's names."""

    query: str = field(default="query", metadata=_opt("column holding the query text", flat="query_col", metavar="C"))
    caption: str = field(
        default="caption",
        metadata=_opt("column holding the caption / image description", flat="caption_col", metavar="C"),
    )
    image: str = field(
        default="image",
        metadata=_opt("column holding the image (path, bytes or PIL image)", flat="image_col", metavar="C"),
    )
    safety_reason: str = field(
        default="safety_reason",
        metadata=_opt(
            "column holding the dataset's safety reason / image risk note",
            flat="safety_reason_col",
            metavar="C",
            alias=("reason_col",),
        ),
    )
    id: str = field(default="id", metadata=_opt("column holding the row id", flat="id_col", metavar="C"))
    category: str = field(
        default="category", metadata=_opt("column holding the risk category", flat="category_col", metavar="C")
    )
    source: str = field(
        default="source", metadata=_opt("column holding the source name", flat="source_col", metavar="C")
    )

    def explicit(self) -> dict[str, str]:
        """The fields whose column differs from the default name."""
        d = ColumnMap()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(d, f.name)}


@dataclass
class EvidenceConfig:
    """Where the text that stands for the image comes from (stage ``evidence``)."""

    policy: str = field(
        default="auto",
        metadata=_opt(
            "auto (the dataset's caption, else the available image backends), given, ocr, clip, caption, "
            "or a comma-separated combination such as given,ocr",
            flat="evidence",
            metavar="SPEC",
        ),
    )
    image_root: str | None = field(
        default=None,
        metadata=_opt("folder that relative image paths are resolved against", flat="image_root", metavar="DIR"),
    )
    clip_model: str | None = field(
        default=None,
        metadata=_opt("open_clip model name for --evidence clip (e.g. ViT-B-32)", flat="clip_model", metavar="NAME"),
    )
    clip_pretrained: str | None = field(
        default=None,
        metadata=_opt(
            "open_clip pretrained tag (e.g. laion2b_s34b_b79k) or local checkpoint file",
            flat="clip_pretrained",
            metavar="TAG|PATH",
        ),
    )
    clip_thresholds: str | None = field(
        default=None,
        metadata=_opt("JSON of per-tag thresholds (from ClipTagger.calibrate)", flat="clip_thresholds", metavar="FILE"),
    )
    captioner: str | None = field(
        default=None,
        metadata=_opt(
            "transformers image-to-text model name or folder for --evidence caption",
            flat="captioner",
            metavar="NAME|PATH",
        ),
    )
    captioner_prompt: str | None = field(
        default=None,
        metadata=_opt("text prompt passed with each image to the captioner", flat="captioner_prompt", metavar="TEXT"),
    )
    max_image_bytes: int = field(
        default=256 * 1024 * 1024,
        metadata=_opt("refuse image files above N bytes before reading them", flat="max_image_bytes", metavar="N"),
    )
    max_image_pixels: int = field(
        default=64_000_000,
        metadata=_opt("refuse images above N pixels (decompression-bomb guard)", flat="max_image_pixels", metavar="N"),
    )


@dataclass
class EmbedConfig:
    """The sentence-embedding backend (stage ``features``)."""

    model: str = field(
        default="auto",
        metadata=_opt(
            "auto (the bundled MiniLM if installed, else lexical), none (lexical only), or a sentence-transformers "
            "name / local path",
            flat="embedder",
            metavar="NAME",
        ),
    )


@dataclass
class ClassifyConfig:
    """The leak classifier and its operating point (stage ``classify``)."""

    threshold: float | None = field(
        default=None,
        metadata=_opt(
            "P(leak) at or above which a row is a leak (default: the model's)", flat="threshold", metavar="P"
        ),
    )
    classifier_path: str | None = field(
        default=None,
        metadata=_opt(
            "a classifier JSON (from vsil train --out DIR) instead of the shipped one",
            flat="classifier_path",
            metavar="FILE",
        ),
    )


@dataclass
class JudgeConfig:
    """The LLM judge fallback (stage ``judge``)."""

    mode: str = field(
        default="none",
        metadata=_opt(
            "none (classifier only); auto: rows whose P(leak) is in the uncertainty band; always: every row",
            flat="judge",
            choices=("none", "auto", "always"),
        ),
    )
    backend: str = field(
        default="openai",
        metadata=_opt(
            "openai (any OpenAI-compatible endpoint) or transformers (a local chat model)",
            choices=("openai", "transformers"),
        ),
    )
    model: str | None = field(
        default=None,
        metadata=_opt("model name (openai) or name / path / .gguf / smollm2 (transformers)", metavar="NAME"),
    )
    base_url: str = field(
        default="https://api.openai.com/v1", metadata=_opt("OpenAI-compatible base URL", metavar="URL")
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata=_opt("environment variable that holds the API key (never the key itself)", metavar="VAR"),
    )
    concurrency: int = field(
        default=4,
        metadata=_opt("judge requests in flight (openai) or generation batch size (transformers)", metavar="N"),
    )
    timeout: float = field(default=60.0, metadata=_opt("seconds per judge request", metavar="S"))
    max_retries: int = field(
        default=4, metadata=_opt("retries per request on timeouts, connection errors, 429 and 5xx", metavar="N")
    )
    backoff: float = field(
        default=0.5, metadata=_opt("first back-off wait in seconds (doubles on each retry, with jitter)", metavar="S")
    )
    budget: float = field(
        default=0.15,
        metadata=_opt(
            "under --judge auto, the share of each chunk's scored rows (the least certain ones) sent to the judge",
            metavar="R",
        ),
    )
    band: tuple[float, float] | None = field(
        default=None,
        metadata=_opt(
            "a fixed [LOW, HIGH) band of P(leak) sent to the judge under --judge auto, instead of the budget",
            metavar=("LOW", "HIGH"),
            nargs=2,
        ),
    )


@dataclass
class RunConfig:
    """How the run executes: chunking, progress, device, caches, seed."""

    batch_size: int = field(
        default=256,
        metadata=_opt("rows per chunk (memory grows with this, not with the dataset)", flat="batch_size", metavar="N"),
    )
    show_progress_bar: bool | None = field(
        default=None,
        metadata=_opt(
            "progress messages and bar on stderr (default: on when stderr is a terminal)",
            flat="show_progress_bar",
            alias=("progress",),
        ),
    )
    device: str | None = field(
        default=None,
        metadata=_opt(
            "torch device for model backends (default: cuda, then mps, then cpu)", flat="device", metavar="DEV"
        ),
    )
    cache_dir: str | None = field(
        default=None,
        metadata=_opt(
            "folder for on-disk caches (embeddings, image evidence, judge answers)", flat="cache_dir", metavar="DIR"
        ),
    )
    seed: int = field(
        default=0, metadata=_opt("random seed recorded in the manifest and used by the judge", flat="seed", metavar="N")
    )


PARTS: dict[str, type] = {
    "columns": ColumnMap,
    "evidence": EvidenceConfig,
    "embed": EmbedConfig,
    "classify": ClassifyConfig,
    "judge": JudgeConfig,
    "run": RunConfig,
}


@dataclass(frozen=True)
class FlatField:
    """One leaf of the config under its flat name (keyword argument, JSON key and ``--flag``)."""

    flat: str
    part: str
    name: str
    type: Any
    default: Any
    help: str
    metavar: Any
    choices: tuple[str, ...] | None
    nargs: int | None
    alias: tuple[str, ...]


def _flat_fields() -> dict[str, FlatField]:
    out: dict[str, FlatField] = {}
    for part, cls in PARTS.items():
        hints = get_type_hints(cls)
        for f in fields(cls):
            m = f.metadata
            flat = m.get("flat") or f"{part}_{f.name}"
            default = f.default if f.default is not MISSING else None
            out[flat] = FlatField(
                flat,
                part,
                f.name,
                hints[f.name],
                default,
                m.get("help", ""),
                m.get("metavar"),
                m.get("choices"),
                m.get("nargs"),
                tuple(m.get("alias", ())),
            )
    return out


FLAT: dict[str, FlatField] = _flat_fields()
ALIASES: dict[str, str] = {a: ff.flat for ff in FLAT.values() for a in ff.alias}


@dataclass(init=False)
class VSILConfig:
    """Everything that determines a vsil run; echoed in every run manifest.

    Parts: ``columns`` (ColumnMap), ``evidence`` (EvidenceConfig), ``embed`` (EmbedConfig), ``classify``
    (ClassifyConfig), ``judge`` (JudgeConfig), ``run`` (RunConfig), and ``preset`` (a benchmark adapter
    ``NAME[:VARIANT]``). Every leaf also has a flat keyword name (``threshold``, ``embedder``,
    ``judge_model``, ``query_col``, ...; see ``FLAT``), which is also its CLI flag.
    ``vsil_score`` is the probability of leak: higher = more leakage.
    """

    columns: ColumnMap
    evidence: EvidenceConfig
    embed: EmbedConfig
    classify: ClassifyConfig
    judge: JudgeConfig
    run: RunConfig
    preset: str | None

    def __init__(
        self,
        *,
        columns: ColumnMap | dict[str, Any] | None = None,
        evidence: EvidenceConfig | dict[str, Any] | str | None = None,
        embed: EmbedConfig | dict[str, Any] | None = None,
        classify: ClassifyConfig | dict[str, Any] | None = None,
        judge: JudgeConfig | dict[str, Any] | str | None = None,
        run: RunConfig | dict[str, Any] | None = None,
        preset: str | None = None,
        **flat: Any,
    ) -> None:
        given = {
            "columns": columns,
            "evidence": evidence,
            "embed": embed,
            "classify": classify,
            "judge": judge,
            "run": run,
        }
        # the two part names that are also flat names: a string means the flat value
        if isinstance(evidence, str):
            flat["evidence"], given["evidence"] = evidence, None
        if isinstance(judge, str):
            flat["judge"], given["judge"] = judge, None
        for part, cls in PARTS.items():
            v = given[part]
            if v is None:
                v = cls()
            elif isinstance(v, dict):
                v = _part_from_dict(part, v)
            elif not isinstance(v, cls):
                raise TypeError(f"{part} must be a {cls.__name__} or a dict, got {type(v).__name__}")
            object.__setattr__(self, part, v)
        self.preset = preset
        for k, v in flat.items():
            self.set_flat(k, v)
        self.validate()

    # -- flat names ----------------------------------------------------------------------
    def set_flat(self, name: str, value: Any) -> None:
        """Set a leaf by its flat name (``threshold``, ``judge_model``, ``reason_col``, ...)."""
        ff = FLAT.get(ALIASES.get(name, name))
        if ff is None:
            raise ValueError(f"unknown config key {name!r}; known: {', '.join(sorted(FLAT))}")
        setattr(getattr(self, ff.part), ff.name, value)

    def get_flat(self, name: str) -> Any:
        ff = FLAT[ALIASES.get(name, name)]
        return getattr(getattr(self, ff.part), ff.name)

    def validate(self) -> None:
        """Check every value; raises ``ValueError`` with a message that names the option."""
        c, j, r, e = self.classify, self.judge, self.run, self.evidence
        if c.threshold is not None and not 0.0 <= float(c.threshold) <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {c.threshold}")
        _check_int("batch_size", r.batch_size, 1)
        _check_int("max_image_pixels", e.max_image_pixels, 1)
        _check_int("max_image_bytes", e.max_image_bytes, 1)
        _check_int("judge_concurrency", j.concurrency, 1)
        _check_int("judge_max_retries", j.max_retries, 0)
        _check_int("seed", r.seed, 0)
        from vsil.stages.evidence import parse_policy

        try:
            parse_policy(e.policy)
        except Exception as ex:
            raise ValueError(str(ex)) from None
        if j.mode not in ("none", "auto", "always"):
            raise ValueError(f"judge must be none, auto or always, got {j.mode!r}")
        if j.backend not in ("openai", "transformers"):
            raise ValueError(f"judge_backend must be openai or transformers, got {j.backend!r}")
        for name in ("timeout", "backoff"):
            v = getattr(j, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (name == "timeout" and v == 0):
                raise ValueError(
                    f"judge_{name} must be a {'positive' if name == 'timeout' else 'non-negative'} number, got {v!r}"
                )
        if isinstance(j.budget, bool) or not isinstance(j.budget, (int, float)) or not 0 < j.budget <= 1:
            raise ValueError(f"judge_budget must be a share in (0, 1], got {j.budget!r}")
        if j.band is not None:
            try:
                lo, hi = (float(x) for x in j.band)
            except (TypeError, ValueError):
                raise ValueError(f"judge_band must be [low, high], got {j.band!r}") from None
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"judge_band must be [low, high] with 0 <= low <= high <= 1, got {j.band}")
            j.band = (lo, hi)
        for f in fields(self.columns):
            if not isinstance(getattr(self.columns, f.name), str) or not getattr(self.columns, f.name):
                raise ValueError(f"{f.name}_col must be a non-empty column name")

    # -- (de)serialisation ----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The nested form (what manifests echo and ``from_dict`` reads back)."""
        return {**{p: asdict(getattr(self, p)) for p in PARTS}, "preset": self.preset}

    def to_flat(self) -> dict[str, Any]:
        return {**{name: self.get_flat(name) for name in FLAT}, "preset": self.preset}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> VSILConfig:
        """Build from a nested dict (``to_dict``), a flat one, or a mix; unknown keys are refused."""
        if not isinstance(d, dict):
            raise ValueError(f"a config must be a JSON object, got {type(d).__name__}")
        parts: dict[str, Any] = {k: v for k, v in d.items() if k in PARTS and (isinstance(v, dict) or is_dataclass(v))}
        rest = {k: v for k, v in d.items() if k not in parts}
        unknown = sorted(k for k in rest if k != "preset" and ALIASES.get(k, k) not in FLAT)
        if unknown:
            raise ValueError(f"unknown config keys: {unknown}")
        return cls(**parts, **rest)

    @classmethod
    def from_json_file(cls, path: str) -> VSILConfig:
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
        except UnicodeDecodeError:
            raise ValueError(f"{path} is not a UTF-8 JSON file") from None
        return cls.from_dict(d)

    def model_key(self) -> str:
        """What determines the loaded models (not progress bars, columns, batch size or preset)."""
        d = self.to_dict()
        for k in ("columns", "preset"):
            d.pop(k)
        d["run"] = {"device": self.run.device, "cache_dir": self.run.cache_dir, "seed": self.run.seed}
        return json.dumps(d, sort_keys=True)


def _part_from_dict(part: str, d: dict[str, Any]) -> Any:
    cls = PARTS[part]
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown keys in config part {part!r}: {unknown}")
    return cls(**d)


def _check_int(name: str, v: Any, low: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")


def resolve_config(config: VSILConfig | None, options: dict[str, Any]) -> VSILConfig:
    """The config of a public call: ``config=`` or keyword options (flat names), not both."""
    if config is not None and options:
        raise TypeError("pass either config= or keyword options, not both")
    return config if config is not None else VSILConfig(**options)
