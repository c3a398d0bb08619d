"""The ``vsil`` command line: ``audit``, ``train``, ``backends``."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .audit import gate_passed, write_report
from .config import ColumnMap, VSILConfig
from .errors import MissingDependencyError, UsageError
from .jsonio import dumps_clean

AUDIT_EXAMPLES = """examples:
  vsil audit examples/pairs.jsonl --out out/example
  vsil audit ../shared/gold/dev.jsonl --id-col id --out out/dev
  vsil audit ../shared/data/vlsbench/data.json --preset vlsbench --out out/vlsbench
  vsil audit ../shared/data/figstep_safebench/safebench.csv --preset figstep:generic --out out/figstep_generic
  vsil audit data.csv --query-col prompt --caption-col description --max-leak-rate 0.05
  vsil audit ../shared/data/figstep_safebench/safebench.csv --preset figstep --evidence ocr --image-root ../shared/data/figstep_safebench
  vsil audit data.parquet --evidence clip --clip-model ViT-B-32 --clip-pretrained laion2b_s34b_b79k --cache-dir .vsil_cache
  vsil audit data.jsonl --judge auto --judge-model gpt-4o-mini --cache-dir .vsil_cache
  vsil audit ../shared/data/figstep_safebench/safebench.csv --preset figstep --evidence ocr --image-root ../shared/data/figstep_safebench
  vsil audit data.parquet --evidence clip --clip-model ViT-B-32 --clip-pretrained laion2b_s34b_b79k --cache-dir .vsil_cache
  vsil audit data.jsonl --judge auto --judge-base-url http://localhost:8000/v1 --judge-model Qwen/Qwen2.5-7B-Instruct

exit status: 0 done (and gate passed), 1 leak rate above --max-leak-rate, 2 usage error or unreadable input
"""




# audit flags that set the VSILConfig field of the same name when given
CONFIG_FLAGS = (
    "threshold", "image_root", "preset", "embedder", "cache_dir",
    "evidence", "clip_model", "clip_pretrained", "clip_thresholds", "captioner", "captioner_prompt", "max_image_pixels",
    "judge", "judge_backend", "judge_model", "judge_base_url", "judge_api_key_env", "judge_concurrency", "judge_timeout", "judge_band",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vsil", description="Audit multimodal safety datasets for visual safety information leakage.")
    p.add_argument("--version", action="version", version=f"vsil {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    a = sub.add_parser("audit", help="score a dataset and write results.jsonl + summary.json", epilog=AUDIT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("data", help="JSONL/JSON/CSV/TSV/Parquet file, or a Hugging Face save_to_disk folder")
    a.add_argument("--preset", help="benchmark adapter NAME[:VARIANT] (see `vsil backends`)")
    for f in ("query", "caption", "image", "reason", "id", "category", "source"):
        a.add_argument(f"--{f}-col", metavar="C", help=f"column holding the {f} (default: {'safety_reason' if f == 'reason' else f})")
    a.add_argument("--image-root", metavar="DIR", help="folder that relative image paths are resolved against")
    a.add_argument("--out", metavar="DIR", default="vsil_out", help="output folder (default: vsil_out)")
    a.add_argument("--threshold", type=float, metavar="P", help="P(leak) threshold (default: the model's)")
    a.add_argument("--max-leak-rate", type=float, metavar="R", help="exit 1 when the leak rate exceeds R")
    a.add_argument("--batch-size", type=int, default=256, metavar="N", help="rows per chunk (default 256)")
    a.add_argument("--config", metavar="FILE", help="JSON file with VSILConfig fields (flags override it)")
    a.add_argument("--no-progress", action="store_true", help="no progress bar")
    a.add_argument("--no-report", action="store_true", help="do not write report.html")
    a.add_argument("--embedder", metavar="NAME", help="auto (default), none (lexical only), or a sentence-transformers name/path")
    a.add_argument("--cache-dir", metavar="DIR", help="on-disk cache folder (embeddings, image evidence, judge answers)")
    e = a.add_argument_group("engine (scale)")
    e.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default): this machine; ray: a Ray cluster (pip install 'vsil[ray]')")
    e.add_argument("--workers", type=int, default=1, metavar="N", help="local: worker processes; ray: scoring actors (default 1)")
    e.add_argument("--resume", action="store_true", help="continue a killed local run from the chunks already in OUT/parts")
    e.add_argument("--ray-address", metavar="ADDR", help="Ray cluster address (default: start a local Ray instance)")
    ev = a.add_argument_group("image evidence")
    ev.add_argument("--evidence", metavar="SPEC", help="auto (default: the dataset's caption, else the available image backends), given, ocr, clip, caption, or a combination like given,ocr")
    ev.add_argument("--clip-model", metavar="NAME", help="open_clip model name for --evidence clip (e.g. ViT-B-32)")
    ev.add_argument("--clip-pretrained", metavar="TAG|PATH", help="open_clip pretrained tag (e.g. laion2b_s34b_b79k) or local checkpoint file")
    ev.add_argument("--clip-thresholds", metavar="FILE", help="JSON of per-tag thresholds (from ClipTagger.calibrate)")
    ev.add_argument("--captioner", metavar="NAME|PATH", help="transformers image-to-text model for --evidence caption")
    ev.add_argument("--captioner-prompt", metavar="TEXT", help="text prompt passed with each image to the captioner")
    ev.add_argument("--max-image-pixels", type=int, metavar="N", help="refuse images above N pixels (default 64,000,000)")
    j = a.add_argument_group("LLM judge (fallback for uncertain rows)")
    j.add_argument("--judge", choices=("none", "auto", "always"), help="none (default); auto: only rows whose P(leak) is in the uncertainty band; always: every row")
    j.add_argument("--judge-backend", choices=("openai", "transformers"), help="openai-compatible endpoint (default) or a local transformers model")
    j.add_argument("--judge-model", metavar="NAME", help="model name (openai) or name/path/.gguf/smollm2 (transformers)")
    j.add_argument("--judge-base-url", metavar="URL", help="OpenAI-compatible base URL (default https://api.openai.com/v1)")
    j.add_argument("--judge-api-key-env", metavar="VAR", help="environment variable holding the API key (default OPENAI_API_KEY)")
    j.add_argument("--judge-concurrency", type=int, metavar="N", help="judge requests in flight (default 4)")
    j.add_argument("--judge-timeout", type=float, metavar="S", help="seconds per judge request (default 60)")
    j.add_argument("--judge-band", type=float, nargs=2, metavar=("LOW", "HIGH"), help="P(leak) band sent to the judge under --judge auto (default: the model's)")

    r = sub.add_parser("report", help="rebuild DIR/report.html from a saved audit")
    r.add_argument("dir")
    r.add_argument("--out", metavar="FILE", help="where to write the HTML (default: DIR/report.html)")

    c = sub.add_parser("compare", help="put several saved audits side by side in one report and table")
    c.add_argument("dirs", nargs="+")
    c.add_argument("--out", metavar="FILE", default="compare.html")

    t = sub.add_parser("train", help="rebuild the shipped models from the shared data and print metrics")
    t.add_argument("--shared", metavar="DIR", help="the shared folder with data/ and gold/ (default: $VSIL_SHARED or ../shared)")
    t.add_argument("--out", metavar="DIR", help="where to write the model files (default: inside the package)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", action="store_true", help="also print the metrics as JSON")

    sub.add_parser("backends", help="list presets and backends, and which are available")
    return p


def _audit(args: argparse.Namespace) -> int:
    from .summary import format_summary

    cfg = VSILConfig.from_json_file(args.config) if args.config else VSILConfig()
    cols = {f: getattr(args, f"{f}_col") for f in ("query", "caption", "image", "id", "category", "source")}
    cols["safety_reason"] = args.reason_col
    cfg.columns = ColumnMap(**{**cfg.columns.__dict__, **{k: v for k, v in cols.items() if v}})
    for k in CONFIG_FLAGS:
        if getattr(args, k) is not None:
            setattr(cfg, k, getattr(args, k))
    cfg.batch_size = args.batch_size
    if args.no_progress:
        cfg.show_progress_bar = False
    try:
        cfg.__post_init__()
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.max_leak_rate is not None and not 0 <= args.max_leak_rate <= 1:
        raise UsageError("--max-leak-rate must be in [0, 1]")
    if args.resume and args.engine == "ray":
        raise UsageError("--resume works with the local engine; the Ray engine reruns the whole dataset")
    if args.engine == "ray":
        from .integrations.ray import audit_to_dir

        summary = audit_to_dir(args.data, cfg, args.out, address=args.ray_address, concurrency=args.workers)
    else:
        from .engine import run_local
        from .pipeline import _len_or_none, _progress

        with _progress(cfg.show_progress_bar, _len_or_none(args.data)) as bar:
            summary = run_local(args.data, cfg, args.out, workers=args.workers, resume=args.resume, on_chunk=lambda _d, n: bar.update(n))
    res_path = os.path.join(args.out, "results.jsonl")
    gate = None
    if args.max_leak_rate is not None:
        gate = {"max_leak_rate": args.max_leak_rate, "passed": gate_passed(summary, args.max_leak_rate)}
    summary["gate"] = gate
    with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
        f.write(dumps_clean(summary, indent=1))
    print(format_summary(summary))
    written = [res_path, os.path.join(args.out, "summary.json")]
    if not args.no_report:
        written.append(write_report(args.out))
    print("wrote " + ", ".join(written))
    if gate is not None:
        print(f"gate: leak rate {'<=' if gate['passed'] else '>'} {args.max_leak_rate:.2%}: {'PASSED' if gate['passed'] else 'FAILED'}")
        return 0 if gate["passed"] else 1
    return 0


def _report(args: argparse.Namespace) -> int:
    if not os.path.exists(os.path.join(args.dir, "results.jsonl")):
        raise UsageError(f"{args.dir} has no results.jsonl (run `vsil audit ... --out {args.dir}` first)")
    print(f"wrote {write_report(args.dir, args.out)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .audit import compare

    for d in args.dirs:
        if not os.path.exists(os.path.join(d, "summary.json")):
            raise UsageError(f"{d} has no summary.json")
    table = compare(args.dirs, args.out)
    print(table.to_string(index=False))
    print(f"wrote {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from .corpora import default_shared_dir
    from .train import PKG_DATA, main_json, train

    shared = args.shared or default_shared_dir()
    if not os.path.isdir(os.path.join(shared, "data")):
        raise UsageError(f"shared data not found in {shared}; pass --shared DIR")
    rep = train(shared, args.out or PKG_DATA, seed=args.seed)
    if args.json:
        print(main_json(rep))
    return 0


def _backends(args: argparse.Namespace) -> int:
    from .presets import PRESETS

    print("presets:")
    for p in PRESETS.values():
        v = f" [variants: {', '.join(p.variants)}]" if len(p.variants) > 1 else ""
        print(f"  {p.name}: {p.description}{v}")
    from .registry import describe_backends

    print(describe_backends())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return {"audit": _audit, "train": _train, "backends": _backends, "report": _report, "compare": _compare}[args.command](args)
    except (UsageError, MissingDependencyError) as e:
        print(f"vsil: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        print(f"vsil: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
