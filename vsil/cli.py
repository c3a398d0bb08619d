"""The ``vsil`` command line: ``audit``, ``train``, ``backends``."""

from __future__ import annotations

import argparse
import os
import sys
import typing
from typing import Any, NoReturn

from vsil import __version__
from vsil.audit import gate_passed, write_report
from vsil.config import FLAT, VSILConfig
from vsil.errors import MissingDependencyError, UsageError
from vsil.run.store import write_summary

AUDIT_EXAMPLES = """examples:
  vsil audit examples/pairs.jsonl --out out/example
  vsil audit data.jsonl --id-col id --category-col category --out out/mydata
  vsil audit vlsbench/data.json --preset vlsbench --out out/vlsbench
  vsil audit safebench.csv --preset figstep:generic --out out/figstep_generic
  vsil audit data.csv --query-col prompt --caption-col description --max-leak-rate 0.05
  vsil audit safebench.csv --preset figstep --evidence ocr --image-root figstep_images/
  vsil audit data.parquet --evidence clip --clip-model ViT-B-32 --clip-pretrained laion2b_s34b_b79k
  vsil audit data.jsonl --judge auto --judge-model gpt-4o-mini --cache-dir .vsil_cache
  vsil audit data.jsonl --judge auto --judge-base-url http://localhost:8000/v1 --judge-model Qwen/Qwen2.5-7B-Instruct

exit status: 0 done (and gate passed), 1 leak rate above --max-leak-rate, 2 usage error or unreadable input,
  3 more rows than --max-error-rate could not be scored (or no rows), 4 internal error (VSIL_DEBUG=1 shows it)
"""

GROUPS = {
    "columns": "input columns",
    "evidence": "image evidence",
    "embed": "text embedder",
    "classify": "leak classifier",
    "judge": "LLM judge (fallback for uncertain rows)",
    "run": "run",
}


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """One flag per ``VSILConfig`` field, generated from its metadata (name, help, type, default).
    Flags default to "not given", so a ``--config`` file's values are overridden only by flags the user
    actually passed."""
    groups = {part: p.add_argument_group(title) for part, title in GROUPS.items()}
    p.add_argument(
        "--preset", default=argparse.SUPPRESS, metavar="NAME[:VARIANT]", help="benchmark adapter (see `vsil backends`)"
    )
    for ff in FLAT.values():
        g = groups[ff.part]
        names = [f"--{n.replace('_', '-')}" for n in (ff.flat, *ff.alias)]
        default = "" if ff.default is None else f" (default: {ff.default})"
        kw: dict[str, Any] = {"dest": ff.flat, "default": argparse.SUPPRESS, "help": ff.help + default}
        base = _base_type(ff.type)
        if base is bool:
            g.add_argument(*names[1:], action=argparse.BooleanOptionalAction, **kw)
            continue
        if ff.choices:
            kw["choices"] = ff.choices
        if ff.metavar is not None:
            kw["metavar"] = ff.metavar
        if ff.nargs:
            kw["nargs"] = ff.nargs
        g.add_argument(*names, type=base, **kw)


def _base_type(t: Any) -> Any:
    """The argparse type of a field annotation (``float | None`` -> float, ``tuple[float, float]`` -> float)."""
    args = [a for a in typing.get_args(t) if a is not type(None)]
    if typing.get_origin(t) is tuple:
        return args[0]
    if args:
        return _base_type(args[0])
    return t


def config_from_args(args: argparse.Namespace) -> VSILConfig:
    """The run's config: the ``--config`` file (if any), then the flags the user passed."""
    try:
        cfg = VSILConfig.from_json_file(args.config) if args.config else VSILConfig()
        for name in (*FLAT, "preset"):
            if name in vars(args):
                if name == "preset":
                    cfg.preset = args.preset
                else:
                    cfg.set_flat(name, getattr(args, name))
        cfg.validate()
    except (ValueError, TypeError) as e:
        raise UsageError(f"config: {e}") from None
    return cfg


class OneLineParser(argparse.ArgumentParser):
    """argparse, with a usage error reported as one line (``vsil: error: ...``) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        where = f"{self.prog.split()[-1]}: " if " " in self.prog else ""
        self.exit(2, f"vsil: error: {where}{message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="vsil", description="Audit multimodal safety datasets for visual safety information leakage."
    )
    p.add_argument("--version", action="version", version=f"vsil {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    a = sub.add_parser(
        "audit",
        help="score a dataset and write results.jsonl + summary.json",
        epilog=AUDIT_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    a.add_argument("data", help="JSONL/JSON/CSV/TSV/Parquet file, or a Hugging Face save_to_disk folder")
    a.add_argument("--out", metavar="DIR", default="vsil_out", help="output folder (default: vsil_out)")
    a.add_argument("--max-leak-rate", type=float, metavar="R", help="exit 1 when the leak rate exceeds R")
    a.add_argument(
        "--max-error-rate",
        type=float,
        default=0.5,
        metavar="R",
        help="exit 3 when more than this share of rows could not be scored (default 0.5)",
    )
    a.add_argument(
        "--config", metavar="FILE", help="JSON file with VSILConfig fields, nested or flat (flags override it)"
    )
    a.add_argument("--no-report", action="store_true", help="do not write report.html")
    e = a.add_argument_group("engine (scale)")
    e.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local (default): this machine; ray: a Ray cluster (pip install 'vsil[ray]')",
    )
    e.add_argument(
        "--workers", type=int, default=1, metavar="N", help="local: worker processes; ray: scoring actors (default 1)"
    )
    e.add_argument(
        "--resume",
        action="store_true",
        help="continue a killed run from the chunks already in OUT/parts "
        "(finished chunks whose input changed are scored again)",
    )
    e.add_argument("--ray-address", metavar="ADDR", help="Ray cluster address (default: start a local Ray instance)")
    add_config_flags(a)

    r = sub.add_parser("report", help="rebuild DIR/report.html from a saved audit")
    r.add_argument("dir")
    r.add_argument("--out", metavar="FILE", help="where to write the HTML (default: DIR/report.html)")

    c = sub.add_parser("compare", help="put several saved audits side by side in one report and table")
    c.add_argument("dirs", nargs="+")
    c.add_argument("--out", metavar="FILE", default="compare.html")

    t = sub.add_parser("train", help="rebuild the shipped models from the shared data and print metrics")
    t.add_argument(
        "--shared", metavar="DIR", help="the shared folder with data/ and gold/ (default: $VSIL_SHARED or ../shared)"
    )
    t.add_argument("--out", metavar="DIR", help="where to write the model files (default: inside the package)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    t.add_argument("--cache-dir", metavar="DIR", help="embedding cache, so a second training run skips the encoding")

    sub.add_parser("backends", help="list presets and backends, and which are available")
    return p


def _audit(args: argparse.Namespace) -> int:
    from vsil.run.executors import make_executor
    from vsil.run.runner import run
    from vsil.summary import format_summary

    cfg = config_from_args(args)
    if args.max_leak_rate is not None and not 0 <= args.max_leak_rate <= 1:
        raise UsageError("--max-leak-rate must be in [0, 1]")
    if not 0 <= args.max_error_rate <= 1:
        raise UsageError("--max-error-rate must be in [0, 1]")
    executor = make_executor(cfg, engine=args.engine, workers=args.workers, address=args.ray_address)
    summary = run(args.data, cfg, executor=executor, out_dir=args.out, resume=args.resume)
    if args.engine == "ray":
        from vsil.run.store import export_parquet

        summary["manifest"]["engine"]["parquet"] = export_parquet(args.out)
    res_path = os.path.join(args.out, "results.jsonl")
    failed = _error_share_failed(summary, args.max_error_rate)
    gate = None
    if args.max_leak_rate is not None:
        gate = {"max_leak_rate": args.max_leak_rate, "passed": gate_passed(summary, args.max_leak_rate)}
    summary["gate"] = gate
    written = [res_path, write_summary(args.out, summary)]
    print(format_summary(summary))
    if not args.no_report:
        from vsil.util.progress import enabled

        if enabled(cfg.run.show_progress_bar):
            print("vsil: writing the report", file=sys.stderr)
        from vsil.report import flagged_csv_path

        written.append(write_report(args.out))
        written.append(flagged_csv_path(written[-1]))
    print("wrote " + ", ".join(written))
    print(_closing_line(summary, written))
    if failed:
        return _fail(failed, EXIT_ERRORS)
    if gate is not None:
        print(
            f"gate: leak rate {'<=' if gate['passed'] else '>'} {args.max_leak_rate:.2%}: "
            f"{'PASSED' if gate['passed'] else 'FAILED'}"
        )
        return 0 if gate["passed"] else 1
    return 0


def _closing_line(summary: dict[str, Any], written: list[str]) -> str:
    """One line for the end of a run: rows, leak rate, errors, time, where the outputs are."""
    rate = summary.get("leak_rate")
    rate_txt = f"{rate:.1%}" if isinstance(rate, float) and rate == rate else "n/a"
    secs = (summary.get("manifest") or {}).get("seconds", 0.0)
    folder = os.path.dirname(written[0]) if written else ""
    return (
        f"done: {summary.get('n', 0):,} rows, leak rate {rate_txt}, {summary.get('n_error', 0):,} errors, "
        f"{secs:.1f} s -> {folder}/ ({', '.join(os.path.basename(w) for w in written)})"
    )


def _error_share_failed(summary: dict[str, Any], max_error_rate: float) -> str:
    """Why the run did nothing useful (exit 3), or "" when enough rows were scored."""
    n, n_err = int(summary.get("n") or 0), int(summary.get("n_error") or 0)
    if n == 0:
        return "the input has no rows"
    if n_err / n > max_error_rate:
        top = next(iter((summary.get("errors") or {}).items()), ("", 0))
        return (
            f"{n_err} of {n} rows ({n_err / n:.0%}) could not be scored, above --max-error-rate "
            f"{max_error_rate:.0%}; most common: {top[0]} (x{top[1]})"
        )
    return ""


def _report(args: argparse.Namespace) -> int:
    from vsil.report import flagged_csv_path

    if not os.path.exists(os.path.join(args.dir, "results.jsonl")):
        raise UsageError(f"{args.dir} has no results.jsonl (run `vsil audit ... --out {args.dir}` first)")
    path = write_report(args.dir, args.out)
    print(f"wrote {path}, {flagged_csv_path(path)}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from vsil.audit import compare

    for d in args.dirs:
        if not os.path.exists(os.path.join(d, "summary.json")):
            raise UsageError(f"{d} has no summary.json")
        if not os.path.exists(os.path.join(d, "results.jsonl")):
            raise UsageError(f"{d} has no results.jsonl")
    table = compare(args.dirs, args.out)
    print(table.to_string(index=False))
    print(f"wrote {args.out}")
    return 0


def _train(args: argparse.Namespace) -> int:
    from vsil.training.corpora import default_shared_dir
    from vsil.training.train import PKG_DATA, main_json, train

    shared = args.shared or default_shared_dir()
    if not os.path.isdir(os.path.join(shared, "data")):
        raise UsageError(f"shared data not found in {shared}; pass --shared DIR")
    rep = train(shared, args.out or PKG_DATA, seed=args.seed, cache_dir=args.cache_dir)
    if args.json:
        print(main_json(rep))
    return 0


def _backends(args: argparse.Namespace) -> int:
    from vsil.io.presets import PRESETS

    print("presets:")
    for p in PRESETS.values():
        v = f" [variants: {', '.join(p.variants)}]" if len(p.variants) > 1 else ""
        print(f"  {p.name}: {p.description}{v}")
    from vsil.pipeline import Pipeline
    from vsil.registry import REGISTRIES

    used = Pipeline(VSILConfig()).describe()["backends"]
    default = {
        "image_evidence": used["image_evidence"],
        "embedder": used["embedder"],
        "classifier": f"{used['classifier']} ({used['mode']} mode)",
        "judge": "none (--judge none)",
    }
    for reg in REGISTRIES.values():
        print(f"\n{reg.title}: the default run uses {default.get(reg.kind, '')}")
        for spec in reg:
            missing = spec.missing()
            mark = "installed" if not missing else f"not installed (pip install 'vsil[{spec.extra}]')"
            print(f"  {spec.name} [{mark}]: {spec.description}")
            weights = reg.weights(spec.name) if not missing else ""
            if weights:
                print(f"      weights: {weights}")
    return 0


EXIT_OK, EXIT_GATE, EXIT_USAGE, EXIT_ERRORS, EXIT_INTERNAL = 0, 1, 2, 3, 4


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (see ``EXIT_*``). Nothing raises out of it: every failure is
    one line on stderr, with secrets redacted."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse has printed its one-line usage error (or --help / --version)
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    commands = {"audit": _audit, "train": _train, "backends": _backends, "report": _report, "compare": _compare}
    try:
        return commands[args.command](args)
    except (UsageError, MissingDependencyError) as e:
        return _fail(str(e), EXIT_USAGE)
    except BrokenPipeError:
        _silence_stdout()
        return _fail("output closed early (broken pipe)", EXIT_USAGE)
    except OSError as e:  # unreadable input, read-only or full disk, permissions
        where = f": {e.filename}" if getattr(e, "filename", None) else ""
        return _fail(f"{e.strerror or e}{where}", EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as e:  # a bug: still one line, with a way to see the traceback
        if os.environ.get("VSIL_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(e).__name__}: {e} (rerun with VSIL_DEBUG=1 for the traceback)", EXIT_INTERNAL
        )


def _fail(message: str, code: int) -> int:
    from vsil.util.redact import redact

    try:
        print(f"vsil: error: {redact(message).splitlines()[0] if message else 'failed'}", file=sys.stderr)
    except (BrokenPipeError, OSError):
        pass
    return code


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
