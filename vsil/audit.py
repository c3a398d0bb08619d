"""``LeakageAudit``: audit a dataset, inspect the leaking rows, save a report, gate a release.

audit = LeakageAudit("data.jsonl", query_col="prompt").run()
audit.summary["leak_rate"]; audit.issues().head(); audit.save_html("report.html")
assert audit.passed(max_leak_rate=0.05)
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from vsil.config import VSILConfig, resolve_config
from vsil.run.store import iter_results, read_summary, write_results, write_summary
from vsil.schema import RESULT_COLUMNS, Summary
from vsil.util.jsonio import dumps_clean

if TYPE_CHECKING:
    import pandas as pd


def gate_passed(summary: dict[str, Any], max_leak_rate: float) -> bool:
    """The release gate: at least one row scored and leak rate <= ``max_leak_rate``."""
    rate = summary.get("leak_rate")
    return bool(summary.get("n_scored")) and rate is not None and rate == rate and rate <= max_leak_rate


def write_report(out_dir: str, path: str | None = None, title: str | None = None, data: Any = None) -> str:
    """(Re)build ``report.html`` (and ``report_flagged.csv`` beside it: every level-2 and level-1 row)
    from the saved results of an audit folder; returns the HTML's path.

    The title names the dataset (the preset, else the input file's stem; the folder's name when the
    manifest records neither) unless ``title`` is given. ``data``: the input, to find the images of the
    listed rows for thumbnails when the manifest does not record it.
    """
    from vsil.report import save_report

    return save_report(
        path or os.path.join(out_dir, "report.html"),
        read_summary(out_dir),
        iter_results(out_dir),
        title=title,
        data=data,
        fallback_name=os.path.basename(os.path.abspath(out_dir)),
    )


def compare(dirs: list[str], out_path: str | None = None, names: list[str] | None = None) -> pd.DataFrame:
    """Put several saved audits side by side: a table (returned) and, with ``out_path``, an HTML report
    that adds the leak rate per category and the rows whose call changed against the first audit.

    The table has one row per audit; ``flips_vs_first`` / ``common_vs_first`` count the rows (by id,
    scored in both) whose ``is_leak`` or ``vsil_level`` differs from the first audit's (None for the first).
    """
    import pandas as pd

    from vsil.report import compare_rows, render_comparison

    labels = names or [os.path.basename(os.path.abspath(d)) for d in dirs]
    audits = [(n, read_summary(d)) for n, d in zip(labels, dirs)]
    flips = compare_rows([(n, iter_results(d)) for n, d in zip(labels, dirs)]) if len(dirs) > 1 else []
    by_name = {f["audit"]: f for f in flips}
    if out_path:
        with open(out_path, "w", encoding="utf-8") as f:
            f.write(render_comparison(audits, flips=flips))
    return pd.DataFrame(
        [
            {
                "audit": n,
                "n": s.get("n"),
                "n_error": s.get("n_error"),
                "leak_rate": s.get("leak_rate"),
                "ci95_low": (s.get("ci95") or [None, None])[0],
                "ci95_high": (s.get("ci95") or [None, None])[1],
                **{f"level_{i}": (s.get("level_counts") or {}).get(str(i), 0) for i in range(3)},
                "common_vs_first": by_name[n]["common"] if k and n in by_name else None,
                "flips_vs_first": by_name[n]["flipped"] if k and n in by_name else None,
            }
            for k, (n, s) in enumerate(audits)
        ]
    )


class LeakageAudit:
    """Audit a dataset for visual safety information leakage.

    ``vsil_score`` in the results is the probability of leak: higher = more leakage.

    Parameters
    ----------
    data: a path (JSONL/JSON/CSV/Parquet/HF folder), DataFrame, list of dicts or ``datasets.Dataset``.
    config: a ``VSILConfig``; or keyword options: ``VSILConfig`` fields (``threshold``, ``embedder``,
        ``preset``, ...) and column names as ``query_col=``, ``caption_col=``, ``id_col=``, ...
    """

    def __init__(self, data: Any = None, *, config: VSILConfig | None = None, **options: Any) -> None:
        self.data = data
        self.config = resolve_config(config, dict(options))
        self._results: pd.DataFrame | None = None
        self._summary: Summary | None = None

    def run(self, *, show_progress_bar: bool | None = None) -> LeakageAudit:
        """Score every row (streamed in chunks). Returns ``self``."""
        from vsil.api import score_dataset

        if self.data is None:
            raise ValueError("this audit was loaded from disk; there is no data to run on")
        if show_progress_bar is not None:
            self.config.run.show_progress_bar = show_progress_bar
        df = score_dataset(self.data, config=self.config)
        self._summary = Summary(df.attrs.pop("summary"))
        self._results = df
        return self

    def _need(self) -> tuple[pd.DataFrame, Summary]:
        if self._results is None or self._summary is None:
            raise RuntimeError("call .run() first (or LeakageAudit.load(dir))")
        return self._results, self._summary

    def results(self) -> pd.DataFrame:
        """One row per input row, in input order, with the output-contract columns."""
        return self._need()[0]

    @property
    def summary(self) -> Summary:
        """n, leak rate with its 95% interval, level counts, per-category/source rates, errors, manifest
        (a dict; ``audit.summary()`` still works and returns the same dict)."""
        return self._need()[1]

    def issues(self, min_level: int = 2) -> pd.DataFrame:
        """The scored rows with ``vsil_level >= min_level``, most confident leaks first."""
        df = self.results()
        sel = df[(df["status"] == "ok") & (df["vsil_level"] >= min_level)]
        return sel.sort_values("vsil_score", ascending=False, kind="stable")

    def passed(self, max_leak_rate: float = 0.05) -> bool:
        """True when the leak rate is at most ``max_leak_rate`` (same rule as ``vsil audit --max-leak-rate``)."""
        return gate_passed(self.summary, max_leak_rate)

    def to_json(self) -> str:
        """The summary and every result row as one JSON document."""
        df, s = self._need()
        return dumps_clean({"summary": s, "results": df.to_dict("records")})

    def save(self, out_dir: str, *, html: bool = True) -> str:
        """Write ``results.jsonl``, ``summary.json`` (and ``report.html``) to ``out_dir``."""
        df, s = self._need()
        os.makedirs(out_dir, exist_ok=True)
        write_results(out_dir, df.to_dict("records"))
        write_summary(out_dir, s)
        if html:
            write_report(out_dir)
        return out_dir

    @classmethod
    def load(cls, out_dir: str) -> LeakageAudit:
        """Load a saved audit (from ``save`` or ``vsil audit --out``)."""
        import pandas as pd

        s = read_summary(out_dir)
        cfg = s.get("manifest", {}).get("config")
        a = cls(None, config=VSILConfig.from_dict(cfg) if cfg else VSILConfig())
        a._summary = Summary(s)
        a._results = pd.DataFrame(list(iter_results(out_dir)), columns=list(RESULT_COLUMNS))
        return a

    def save_html(self, path: str, title: str = "vsil leakage audit") -> str:
        """Write the self-contained HTML report to ``path``."""
        from vsil.report import save_report

        df, s = self._need()
        return save_report(path, s, ({str(k): v for k, v in r.items()} for r in df.to_dict("records")), title=title)

    def _repr_html_(self) -> str:
        if self._summary is None:
            return "<p>LeakageAudit (not run yet)</p>"
        import html as h

        s = self._summary
        lo, hi = s.get("ci95") or [0, 0]
        rate = s.get("leak_rate")
        rate_txt = f"{rate:.1%}" if rate is not None and rate == rate else "n/a"
        lv = s.get("level_counts", {})
        return (
            f"<div><b>vsil LeakageAudit</b>: {s.get('n')} rows, {s.get('n_error')} errors; "
            f"leak rate <b>{h.escape(rate_txt)}</b> "
            f"(95% CI {lo:.1%}-{hi:.1%}); levels 0/1/2 = {lv.get('0', 0)}/{lv.get('1', 0)}/{lv.get('2', 0)}; "
            f"mode {h.escape(str(s.get('manifest', {}).get('backends', {}).get('mode', '')))}</div>"
        )

    def __repr__(self) -> str:
        if self._summary is None:
            return "LeakageAudit(not run)"
        return f"LeakageAudit(n={self._summary.get('n')}, leak_rate={self._summary.get('leak_rate')})"
