"""Table-driven robustness suite (docs/guarantees.md): bad rows, files, images, options, configs and caches
through ``vsil.cli.main`` in-process. For every case:

- rows: every input row comes back exactly once, in input order, with ``status`` ok or error and a
  non-empty ``error`` when error;
- a bad input, option or config: exit 2 and exactly one stderr line, ``vsil: error: ...``, no traceback;
- nothing raises out of ``main``.

The row cases share one lexical audit (one file holding every case's lines); each file / option / config /
cache case is an audit (or ``vsil report`` / ``vsil compare``) of its own.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import io
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLE

from vsil.cli import main

LEX = ["--embedder", "none", "--no-progress"]
HAS_ST = importlib.util.find_spec("sentence_transformers") is not None
HAS_HTTPX = importlib.util.find_spec("httpx") is not None


def call_main(argv: list[str]) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``main(argv)``; anything raised out of it fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except BaseException as e:  # the promise is that nothing escapes
            pytest.fail(f"main({argv!r}) raised {type(e).__name__}: {e}")
    return rc, out.getvalue(), err.getvalue()


def read_rows(out: Path) -> list[dict[str, Any]]:
    text = (out / "results.jsonl").read_text(encoding="utf-8")
    return [json.loads(x) for x in text.split("\n") if x.strip()]  # JSONL lines end at \n only (not at U+0085)


def check_row_invariants(res: list[dict[str, Any]], ids: list[str]) -> None:
    """One result per input row, in order, each ok or error with a reason."""
    assert [r["id"] for r in res] == ids
    assert [r["row"] for r in res] == list(range(len(ids)))
    for r in res:
        assert r["status"] in ("ok", "error"), r
        if r["status"] == "error":
            assert isinstance(r["error"], str) and r["error"].strip(), r
            assert r["vsil_score"] is None


def check_one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("vsil: error: "), err
    return lines[0]


# ============================================================ row cases (one shared audit)
CAP = "a handgun on a table"


def j(**kw: Any) -> bytes:
    """One JSONL line (JSON escapes kept: a lone surrogate is written as \\ud800)."""
    return json.dumps(kw).encode("ascii")


@dataclass
class RowCase:
    name: str
    lines: list[bytes]  # raw JSONL lines; b"" is a blank line (not a row)
    expect: list[str]  # per row: "ok", "error" or "error:<substring of the reason>"
    ids: list[str | None] | None = None  # expected ids (None: row-N from the row's position); default: all row-N
    check: Callable[[list[dict[str, Any]]], None] | None = None


def _spans(rows: list[dict[str, Any]]) -> list[str]:
    return [s["text"] for r in rows for s in r["leaked_spans"]]


def _fullwidth_span(rows: list[dict[str, Any]]) -> None:
    assert rows[0]["is_leak"] and "ｈａｎｄｇｕｎ" in _spans(rows)


def _zwsp_span(rows: list[dict[str, Any]]) -> None:
    assert rows[0]["is_leak"] and "hand\u200bgun" in _spans(rows)


def _plain_leak(rows: list[dict[str, Any]]) -> None:
    assert rows[0]["is_leak"] and "handgun" in _spans(rows)


LEAK_Q = "How do I hide this handgun from the police?"

ROW_CASES = [
    RowCase("broken_json", [b'{"id": "x", "query": oops}'], ["error:broken JSON"]),
    RowCase("truncated_json_line", [b'{"id": "t", "query": "How do I'], ["error:broken JSON"]),
    RowCase("json_list_line", [b"[1, 2, 3]"], ["error:not a JSON object"]),
    RowCase("json_string_line", [b'"just a string"'], ["error:not a JSON object"]),
    RowCase("json_number_line", [b"42"], ["error:not a JSON object"]),
    RowCase("json_null_line", [b"null"], ["error:not a JSON object"]),
    RowCase(
        "undecodable_bytes", [b'{"id": "u1", "query": "caf\xe9 \xff\xfe", "caption": "a cup"}'], ["error:undecodable"]
    ),
    RowCase("surrogate_query", [j(id="s1", query="x\ud800y", caption=CAP)], ["error:invalid text"], ["s1"]),
    RowCase("surrogate_caption", [j(id="s2", query=LEAK_Q, caption="x\ud800y")], ["error:invalid text"], ["s2"]),
    RowCase("surrogate_id", [j(id="x\ud800y", query=LEAK_Q, caption=CAP)], ["error:invalid text"], ["x\\ud800y"]),
    RowCase(
        "surrogate_category",
        [j(id="s4", query=LEAK_Q, caption=CAP, category="x\ud800y")],
        ["error:invalid text"],
        ["s4"],
    ),
    RowCase(
        "surrogate_source", [j(id="s5", query=LEAK_Q, caption=CAP, source="x\ud800y")], ["error:invalid text"], ["s5"]
    ),
    RowCase(
        "surrogate_safety_reason",
        [j(id="s6", query=LEAK_Q, caption=CAP, safety_reason="x\udfffy")],
        ["error:invalid text"],
        ["s6"],
    ),
    RowCase("nul_in_id", [j(id="a\x00b", query=LEAK_Q, caption=CAP)], ["error:invalid text"], ["a\\x00b"]),
    # image rows carry no caption, so the image is the evidence and is read
    RowCase("nul_in_image_path", [j(id="i1", query=LEAK_Q, image="a\x00b.png")], ["error:NUL"], ["i1"]),
    RowCase("dotdot_image_path", [j(id="i2", query=LEAK_Q, image="../outside.png")], ["error:outside"], ["i2"]),
    RowCase("absolute_path_outside", [j(id="i3", query=LEAK_Q, image="/etc/hostname")], ["error:outside"], ["i3"]),
    RowCase("symlink_escaping_root", [j(id="i4", query=LEAK_Q, image="link.png")], ["error:symlink"], ["i4"]),
    RowCase("url_image", [j(id="i5", query=LEAK_Q, image="https://example.com/gun.png")], ["error:URL"], ["i5"]),
    RowCase("data_url_image", [j(id="i6", query=LEAK_Q, image="data:image/png;base64,AAAA")], ["error:URL"], ["i6"]),
    RowCase("missing_image", [j(id="i7", query=LEAK_Q, image="missing.png")], ["error:image file not found"], ["i7"]),
    RowCase("truncated_png", [j(id="i8", query=LEAK_Q, image="trunc.png")], ["error:truncated"], ["i8"]),
    RowCase("zero_byte_png", [j(id="i9", query=LEAK_Q, image="zero.png")], ["error:not an image"], ["i9"]),
    RowCase("text_named_png", [j(id="i10", query=LEAK_Q, image="text.png")], ["error:not an image"], ["i10"]),
    RowCase("image_over_max_bytes", [j(id="i11", query=LEAK_Q, image="big_bytes.png")], ["error:bytes"], ["i11"]),
    RowCase("image_over_max_pixels", [j(id="i12", query=LEAK_Q, image="big_pixels.png")], ["error:pixels"], ["i12"]),
    RowCase("image_path_is_folder", [j(id="i13", query=LEAK_Q, image="folder.png")], ["error:not a file"], ["i13"]),
    RowCase("surrogate_image_path", [j(id="i14", query=LEAK_Q, image="x\ud800.png")], ["error"], ["i14"]),
    RowCase("image_is_a_number", [j(id="i15", query=LEAK_Q, image=5)], ["error"], ["i15"]),
    RowCase("image_is_a_dict_without_data", [j(id="i16", query=LEAK_Q, image={"x": 1})], ["error"], ["i16"]),
    RowCase("empty_image_path_no_caption", [j(id="i17", query=LEAK_Q, image="")], ["error:no image evidence"], ["i17"]),
    RowCase(
        "missing_ids",
        [j(query=LEAK_Q, caption=CAP), j(id=None, query=LEAK_Q, caption=CAP), j(id="", query=LEAK_Q, caption=CAP)],
        ["ok", "ok", "ok"],
        [None, None, None],
    ),
    RowCase(
        "numeric_id",
        [j(id=7, query=LEAK_Q, caption=CAP)],
        ["ok"],
        ["7"],
    ),
    RowCase(
        "query_2000_chars",
        [j(id="long", query=("how do I hide this handgun " * 80)[:2000], caption=CAP)],
        ["ok"],
        ["long"],
    ),
    RowCase("emoji_only_query", [j(id="emo", query="🔫🔫🔫💣", caption=CAP)], ["ok"], ["emo"]),
    RowCase(
        "fullwidth_query",
        [j(id="fw", query="How do I hide this ｈａｎｄｇｕｎ from the police?", caption=CAP)],
        ["ok"],
        ["fw"],
        _fullwidth_span,
    ),
    RowCase(
        "zero_width_space_query",
        [j(id="zw", query="How do I hide this hand\u200bgun from the police?", caption=CAP)],
        ["ok"],
        ["zw"],
        _zwsp_span,
    ),
    RowCase("plain_leak_control", [j(id="plain", query=LEAK_Q, caption=CAP)], ["ok"], ["plain"], _plain_leak),
    RowCase(
        "control_chars_query",
        [j(id="ctl", query="How\u0007 do\u202e I hide\u0085 this gun?", caption=CAP)],
        ["ok"],
        ["ctl"],
    ),
    RowCase("very_long_caption", [j(id="cap", query=LEAK_Q, caption="a handgun on a table. " * 5000)], ["ok"], ["cap"]),
    RowCase("number_as_query", [j(id="n1", query=12345, caption=CAP)], ["error:query is int"], ["n1"]),
    RowCase("float_as_query", [j(id="n2", query=1.5, caption=CAP)], ["error:query is float"], ["n2"]),
    RowCase("bool_as_query", [j(id="n3", query=True, caption=CAP)], ["error:query is bool"], ["n3"]),
    RowCase("list_as_query", [j(id="n4", query=["a", "b"], caption=CAP)], ["error:query is list"], ["n4"]),
    RowCase("dict_as_query", [j(id="n5", query={"a": 1}, caption=CAP)], ["error:query is dict"], ["n5"]),
    RowCase("number_as_caption", [j(id="n6", query=LEAK_Q, caption=3)], ["error:caption is int"], ["n6"]),
    RowCase("null_query", [j(id="z1", query=None, caption=CAP)], ["error:missing query"], ["z1"]),
    RowCase("no_query_key", [j(id="z2", caption=CAP)], ["error:missing query"], ["z2"]),
    RowCase("empty_query", [j(id="z3", query="", caption=CAP)], ["error"], ["z3"]),
    RowCase("whitespace_query", [j(id="z4", query="   \t ", caption=CAP)], ["error:empty query"], ["z4"]),
    RowCase(
        "null_caption_no_image",
        [j(id="z5", query=LEAK_Q, caption=None, image=None)],
        ["error:no image evidence"],
        ["z5"],
    ),
    RowCase(
        "null_category_and_source", [j(id="z6", query=LEAK_Q, caption=CAP, category=None, source=None)], ["ok"], ["z6"]
    ),
    RowCase("nan_query", [b'{"id": "z7", "query": NaN, "caption": "a gun"}'], ["error:missing query"], ["z7"]),
    RowCase(
        "latex_category", [j(id="tex", query=LEAK_Q, caption=CAP, category="$x^$", source="$\\frac{")], ["ok"], ["tex"]
    ),
    RowCase(
        "blank_lines_between_rows",
        [j(id="bl1", query=LEAK_Q, caption=CAP), b"", b"   ", j(id="bl2", query=LEAK_Q, caption=CAP)],
        ["ok", "ok"],
        ["bl1", "bl2"],
    ),
    RowCase(
        "duplicate_ids",
        [j(id="dup", query=LEAK_Q, caption=CAP), j(id="dup", query="What is this?", caption=CAP)],
        ["ok", "ok"],
        ["dup", "dup"],
    ),
]


def _png(path: Path, size: tuple[int, int], noise: bool = False) -> None:
    from PIL import Image

    if noise:
        im = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        im = Image.new("RGB", size, "white")
    im.save(path)


def make_images(root: Path) -> None:
    root.mkdir()
    _png(root / "ok.png", (24, 24))
    data = (root / "ok.png").read_bytes()
    (root / "trunc.png").write_bytes(data[: len(data) // 2])
    (root / "zero.png").write_bytes(b"")
    (root / "text.png").write_text("this is not an image\n")
    _png(root / "big_bytes.png", (64, 64), noise=True)  # ~12 KB, 4,096 pixels
    _png(root / "big_pixels.png", (300, 300))  # small file, 90,000 pixels
    (root / "folder.png").mkdir()
    _png(root.parent / "outside.png", (8, 8))
    os.symlink(root.parent / "outside.png", root / "link.png")


@dataclass
class RowAudit:
    rc: int
    err: str
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    slices: dict[str, tuple[int, int]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def row_audit(tmp_path_factory: pytest.TempPathFactory) -> RowAudit:
    tmp = tmp_path_factory.mktemp("rows")
    make_images(tmp / "imgs")
    lines: list[bytes] = []
    slices: dict[str, tuple[int, int]] = {}
    n = 0
    for case in ROW_CASES:
        k = sum(1 for x in case.lines if x.strip())
        assert k == len(case.expect), case.name
        slices[case.name] = (n, n + k)
        lines += case.lines
        n += k
    data = tmp / "rows.jsonl"
    data.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp / "out"
    rc, _, err = call_main(
        [
            *("audit", str(data), "--out", str(out), *LEX, "--image-root", str(tmp / "imgs"), "--max-error-rate", "1"),
            *("--max-image-bytes", "4096", "--max-image-pixels", "10000", "--batch-size", "16"),
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    return RowAudit(rc, err, read_rows(out), summary, slices)


def test_row_audit_returns_every_row_once_in_order(row_audit):
    assert row_audit.rc == 0 and "Traceback" not in row_audit.err
    ids: list[str] = []
    for case in ROW_CASES:
        lo, hi = row_audit.slices[case.name]
        want = case.ids if case.ids is not None else [None] * (hi - lo)
        ids += [f"row-{lo + i}" if x is None else x for i, x in enumerate(want)]
    check_row_invariants(row_audit.rows, ids)
    s = row_audit.summary
    assert s["n"] == len(ids) and s["n_error"] == sum(r["status"] == "error" for r in row_audit.rows)


@pytest.mark.parametrize("case", ROW_CASES, ids=lambda c: c.name)
def test_bad_row(case: RowCase, row_audit: RowAudit):
    lo, hi = row_audit.slices[case.name]
    got = row_audit.rows[lo:hi]
    want_ids = case.ids if case.ids is not None else [None] * (hi - lo)
    assert [r["id"] for r in got] == [f"row-{lo + i}" if x is None else x for i, x in enumerate(want_ids)]
    for r, exp in zip(got, case.expect):
        status, _, reason = exp.partition(":")
        assert r["status"] == status, (r["status"], r["error"])
        if status == "error":
            assert r["error"].strip() and reason in r["error"], r["error"]
        else:
            assert r["error"] == "" and 0.0 <= r["vsil_score"] <= 1.0
    if case.check is not None:
        case.check(got)


def test_duplicate_ids_are_a_manifest_warning(row_audit):
    warnings = row_audit.summary["manifest"]["warnings"]
    assert any("repeat an earlier id" in w and "'dup'" in w for w in warnings), warnings


def test_error_kinds_group_without_file_names(row_audit):
    """Reasons start with a stable kind, so ``summary.errors`` groups them: no kind holds a file name."""
    kinds = list(row_audit.summary["errors"])
    assert kinds
    leaky = [k for k in kinds if ".png" in k or "/" in k or "'" in k]
    assert not leaky, leaky


# ============================================================ file / option / config / cache cases
@dataclass
class Ctx:
    tmp: Path
    good: Path  # a finished lexical audit of the example dataset (copy it before damaging it)
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def audit(self, data: Path | str, *extra: str, report: bool = False) -> list[str]:
        return ["audit", str(data), "--out", str(self.out), *LEX, *([] if report else ["--no-report"]), *extra]

    def write(self, name: str, content: str | bytes) -> Path:
        p = self.tmp / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
        return p

    def copy_good(self, name: str) -> Path:
        return Path(shutil.copytree(self.good, self.tmp / name))


@dataclass
class FileCase:
    name: str
    argv: Callable[[Ctx], list[str]]
    rc: int
    err: str = ""  # a substring of the one stderr line (exit 2 and 3)
    ids: list[str] | None = None  # the result ids expected (when results.jsonl is written)
    check: Callable[[Ctx, dict[str, Any]], None] | None = None
    marks: tuple[Any, ...] = ()


GOOD = (
    j(id="g1", query=LEAK_Q, caption=CAP) + b"\n" + j(id="g2", query="What colour is the table?", caption=CAP) + b"\n"
)
EX_IDS = [json.loads(x)["id"] for x in EXAMPLE.read_text().splitlines() if x.strip()]


def _corrupt_cache(name: str) -> Callable[[Ctx], Path]:
    def make(c: Ctx) -> Path:
        cache = c.tmp / "cache"
        cache.mkdir(exist_ok=True)
        (cache / name).write_bytes(b"garbage, not SQLite \x00\xff" * 300)
        return cache

    return make


def _rebuilt(name: str) -> Callable[[Ctx, dict[str, Any]], None]:
    def check(c: Ctx, s: dict[str, Any]) -> None:
        assert (c.tmp / "cache" / f"{name}.corrupt").exists()
        warnings = " ".join(s["manifest"].get("warnings") or [])
        assert name in warnings and "corrupt" in warnings, s["manifest"].get("warnings")

    return check


def _judge_server(c: Ctx) -> str:
    from vsil.testing.judge_server import FakeJudgeServer

    srv = FakeJudgeServer().start()
    c.cleanup.append(srv.stop)
    return srv.base_url


def _corrupt_judge_cache(c: Ctx) -> list[str]:
    cache = _corrupt_cache("judge.sqlite")(c)
    url = _judge_server(c)
    return c.audit(
        EXAMPLE, "--cache-dir", str(cache), "--judge", "always", "--judge-base-url", url, "--judge-model", "x"
    )


def _locked(c: Ctx) -> list[str]:
    import fcntl

    c.out.mkdir()
    f = open(c.out / ".vsil.lock", "a+")  # held until the case's clean-up
    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    c.cleanup.append(f.close)
    return c.audit(EXAMPLE)


def _resume_other(c: Ctx) -> list[str]:
    rc, _, _ = call_main(c.audit(EXAMPLE))
    assert rc == 0
    return c.audit(EXAMPLE, "--resume", "--threshold", "0.9")


def _latex_report(c: Ctx, s: dict[str, Any]) -> None:
    html = (c.out / "report.html").read_text(encoding="utf-8")
    assert "$x^$" in html
    assert html.count('<img alt="chart"') >= 3


def _gz_lines(c: Ctx) -> bytes:
    return gzip.compress(EXAMPLE.read_bytes())


def _csv(text: str) -> Callable[[Ctx], list[str]]:
    return lambda c: c.audit(c.write("d.csv", text))


FILE_CASES = [
    # ---- files
    FileCase("empty_jsonl", lambda c: c.audit(c.write("e.jsonl", b"")), 3, "no rows", []),
    FileCase("blank_lines_only", lambda c: c.audit(c.write("e.jsonl", b"\n  \n\n")), 3, "no rows", []),
    FileCase(
        "all_rows_errors",
        lambda c: c.audit(c.write("e.jsonl", b"{oops\n[1]\n" + j(id="q", query=5, caption=CAP) + b"\n")),
        3,
        "could not be scored",
        ["row-0", "row-1", "q"],
    ),
    FileCase("gzip_named_jsonl", lambda c: c.audit(c.write("g.jsonl", _gz_lines(c))), 0, ids=EX_IDS),
    FileCase(
        "gzip_named_json",
        lambda c: c.audit(
            c.write(
                "g.json", gzip.compress(json.dumps([json.loads(x) for x in EXAMPLE.read_text().splitlines()]).encode())
            )
        ),
        0,
        ids=EX_IDS,
    ),
    FileCase("truncated_gzip", lambda c: c.audit(c.write("g.jsonl", _gz_lines(c)[:120])), 2, "compressed"),
    FileCase("not_parquet", lambda c: c.audit(c.write("d.parquet", "id,query\n1,x\n")), 2, "not a Parquet file"),
    FileCase("empty_parquet_file", lambda c: c.audit(c.write("d.parquet", b"")), 2, "Parquet"),
    FileCase("unsupported_extension", lambda c: c.audit(c.write("d.txt", GOOD)), 2, "unsupported input format"),
    FileCase("missing_input", lambda c: c.audit(c.tmp / "nope.jsonl"), 2, "not found"),
    FileCase("input_is_a_plain_folder", lambda c: c.audit(c.tmp), 2, "folder"),
    FileCase(
        "jsonl_with_utf8_bom",
        lambda c: c.audit(c.write("b.jsonl", b"\xef\xbb\xbf" + GOOD)),
        0,
        ids=["g1", "g2"],
        check=lambda c, s: None if s["n_error"] == 0 else pytest.fail(str(s["errors"])),
    ),
    FileCase(
        "jsonl_deeply_nested_line",
        lambda c: c.audit(c.write("d.jsonl", GOOD + b"[" * 100_000 + b"]" * 100_000 + b"\n" + GOOD)),
        0,
        ids=["g1", "g2", "row-2", "g1", "g2"],
    ),
    FileCase("json_deeply_nested", lambda c: c.audit(c.write("d.json", "[" * 100_000 + "]" * 100_000)), 2),
    FileCase(
        "json_list_with_non_objects",
        lambda c: c.audit(
            c.write("d.json", json.dumps([{"id": "a", "query": LEAK_Q, "caption": CAP}, 1, "x", None])),
            "--max-error-rate",
            "1",
        ),
        0,
        ids=["a", "row-1", "row-2", "row-3"],
        check=lambda c, s: None if s["n_error"] == 3 else pytest.fail(str(s)),
    ),
    FileCase("json_scalar", lambda c: c.audit(c.write("d.json", "5")), 2, "JSON"),
    FileCase("json_broken", lambda c: c.audit(c.write("d.json", '[{"id": 1,')), 2, "JSON"),
    FileCase("json_undecodable", lambda c: c.audit(c.write("d.json", b'[{"query": "\xff"}]')), 2, "UTF-8"),
    FileCase(
        "csv_short_row",
        _csv(f"id,query,caption\na,{LEAK_Q},{CAP}\nb,only two\nc,What is this?,{CAP}\n"),
        0,
        ids=["a", "row-1", "c"],
        check=lambda c, s: None if "malformed CSV row" in s["errors"] else pytest.fail(str(s["errors"])),
    ),
    FileCase(
        "csv_undecodable_cell",
        lambda c: c.audit(c.write("d.csv", f"id,query,caption\na,{LEAK_Q},{CAP}\nb,caf\xe9,x\n".encode("latin-1"))),
        0,
        ids=["a", "row-1"],
    ),
    FileCase("csv_header_only", _csv("id,query,caption\n"), 3, "no rows", []),
    FileCase(
        "tsv",
        lambda c: c.audit(c.write("d.tsv", f"id\tquery\tcaption\na\t{LEAK_Q}\t{CAP}\nb\tWhat, is this?\t{CAP}\n")),
        0,
        ids=["a", "b"],
    ),
    FileCase(
        "csv_mistyped_query_col",
        lambda c: c.audit(c.write("d.csv", f"id,prompt,caption\na,{LEAK_Q},{CAP}\n"), "--query-col", "promt"),
        2,
        "missing column 'promt'",
    ),
    FileCase(
        "jsonl_mistyped_query_col", lambda c: c.audit(c.write("d.jsonl", GOOD), "--query-col", "qeury"), 2, "qeury"
    ),
    FileCase(
        "jsonl_no_evidence_column",
        lambda c: c.audit(c.write("d.jsonl", j(id="a", query=LEAK_Q) + b"\n")),
        2,
        "no image evidence column",
    ),
    FileCase(
        "duplicate_ids",
        lambda c: c.audit(c.write("d.jsonl", GOOD + GOOD)),
        0,
        ids=["g1", "g2", "g1", "g2"],
        check=lambda c, s: None if any("repeat" in w for w in s["manifest"]["warnings"]) else pytest.fail("no warning"),
    ),
    FileCase(
        "latex_category_report",
        lambda c: c.audit(
            c.write("d.jsonl", j(id="a", query=LEAK_Q, caption=CAP, category="$x^$", source="$\\frac{") + b"\n" + GOOD),
            report=True,
        ),
        0,
        ids=["a", "g1", "g2"],
        check=_latex_report,
    ),
    # ---- options
    FileCase("out_is_a_file", lambda c: c.audit(EXAMPLE, "--out", str(c.write("f", "x"))), 2, "is a file"),
    FileCase("cache_dir_is_a_file", lambda c: c.audit(EXAMPLE, "--cache-dir", str(c.write("f", "x"))), 2, "is a file"),
    FileCase("locked_out", _locked, 2, "another vsil audit is writing"),
    FileCase("resume_with_other_options", _resume_other, 2, "--resume"),
    FileCase("unknown_preset", lambda c: c.audit(EXAMPLE, "--preset", "nope"), 2, "unknown preset"),
    FileCase("bad_int_option", lambda c: c.audit(EXAMPLE, "--batch-size", "abc"), 2, "--batch-size"),
    FileCase("bad_choice_option", lambda c: c.audit(EXAMPLE, "--judge", "maybe"), 2, "--judge"),
    FileCase("unknown_option", lambda c: c.audit(EXAMPLE, "--no-such-flag"), 2, "--no-such-flag"),
    FileCase("threshold_above_1", lambda c: c.audit(EXAMPLE, "--threshold", "1.5"), 2, "threshold"),
    FileCase("workers_0", lambda c: c.audit(EXAMPLE, "--workers", "0"), 2, "--workers"),
    FileCase("max_error_rate_5", lambda c: c.audit(EXAMPLE, "--max-error-rate", "5"), 2, "--max-error-rate"),
    FileCase("max_leak_rate_negative", lambda c: c.audit(EXAMPLE, "--max-leak-rate", "-0.1"), 2, "--max-leak-rate"),
    FileCase("judge_budget_2", lambda c: c.audit(EXAMPLE, "--judge-budget", "2"), 2, "judge_budget"),
    FileCase("judge_without_model", lambda c: c.audit(EXAMPLE, "--judge", "auto"), 2, "--judge-model"),
    FileCase("unknown_evidence", lambda c: c.audit(EXAMPLE, "--evidence", "bogus"), 2, "evidence"),
    FileCase("max_image_pixels_0", lambda c: c.audit(EXAMPLE, "--max-image-pixels", "0"), 2, "max_image_pixels"),
    FileCase(
        "classifier_path_missing",
        lambda c: c.audit(EXAMPLE, "--classifier-path", str(c.tmp / "no.json")),
        2,
        "not found",
    ),
    FileCase(
        "embedder_missing_folder",
        lambda c: c.audit(EXAMPLE, "--embedder", str(c.tmp / "no_model")),
        2,
        "--embedder",
    ),
    FileCase(
        "embedder_is_a_file", lambda c: c.audit(EXAMPLE, "--embedder", str(c.write("m.bin", "x"))), 2, "--embedder"
    ),
    FileCase(
        "transformers_judge_missing_folder",
        lambda c: c.audit(
            EXAMPLE, "--judge", "always", "--judge-backend", "transformers", "--judge-model", str(c.tmp / "no_judge")
        ),
        2,
        "--judge-model",
    ),
    # ---- config files
    FileCase(
        "config_unknown_key",
        lambda c: c.audit(EXAMPLE, "--config", str(c.write("c.json", '{"bogus": 1}'))),
        2,
        "unknown",
    ),
    FileCase(
        "config_bad_json", lambda c: c.audit(EXAMPLE, "--config", str(c.write("c.json", '{"batch_size": '))), 2, "JSON"
    ),
    FileCase(
        "config_batch_size_0",
        lambda c: c.audit(EXAMPLE, "--config", str(c.write("c.json", '{"batch_size": 0}'))),
        2,
        "batch_size",
    ),
    FileCase("config_list", lambda c: c.audit(EXAMPLE, "--config", str(c.write("c.json", "[1, 2]"))), 2, "object"),
    FileCase("config_null", lambda c: c.audit(EXAMPLE, "--config", str(c.write("c.json", "null"))), 2, "object"),
    FileCase(
        "config_reversed_judge_band",
        lambda c: c.audit(EXAMPLE, "--config", str(c.write("c.json", '{"judge_band": [0.8, 0.2]}'))),
        2,
        "judge_band",
    ),
    FileCase(
        "config_judge_timeout_0",
        lambda c: c.audit(EXAMPLE, "--config", str(c.write("c.json", '{"judge_timeout": 0}'))),
        2,
        "judge_timeout",
    ),
    FileCase(
        "config_nested_wrong_type",
        lambda c: c.audit(EXAMPLE, "--config", str(c.write("c.json", '{"run": {"batch_size": "x"}}'))),
        2,
        "batch_size",
    ),
    FileCase(
        "config_nested_unknown_key",
        lambda c: c.audit(EXAMPLE, "--config", str(c.write("c.json", '{"run": {"nope": 1}}'))),
        2,
        "nope",
    ),
    FileCase("config_missing_file", lambda c: c.audit(EXAMPLE, "--config", str(c.tmp / "none.json")), 2, "none.json"),
    FileCase(
        "config_undecodable",
        lambda c: c.audit(EXAMPLE, "--config", str(c.write("c.json", b'{"seed": "\xff"}'))),
        2,
    ),
    # ---- caches
    FileCase(
        "corrupt_image_evidence_cache",
        lambda c: c.audit(EXAMPLE, "--cache-dir", str(_corrupt_cache("image_evidence.sqlite")(c))),
        0,
        ids=EX_IDS,
        check=_rebuilt("image_evidence.sqlite"),
    ),
    FileCase(
        "corrupt_judge_cache",
        _corrupt_judge_cache,
        0,
        ids=EX_IDS,
        check=_rebuilt("judge.sqlite"),
        marks=(pytest.mark.skipif(not HAS_HTTPX, reason="needs httpx"),),
    ),
    FileCase(
        "corrupt_embeddings_cache",
        lambda c: [
            "audit",
            str(EXAMPLE),
            "--out",
            str(c.out),
            "--no-progress",
            "--no-report",
            "--cache-dir",
            str(_corrupt_cache("embeddings.sqlite")(c)),
        ],
        0,
        ids=EX_IDS,
        check=_rebuilt("embeddings.sqlite"),
        marks=(pytest.mark.semantic, pytest.mark.skipif(not HAS_ST, reason="needs sentence-transformers")),
    ),
    # ---- vsil report / vsil compare on damaged folders
    FileCase("report_missing_dir", lambda c: ["report", str(c.tmp / "nope")], 2, "no results.jsonl"),
    FileCase(
        "report_truncated_results",
        lambda c: ["report", str(_truncate(c.copy_good("t") / "results.jsonl").parent)],
        2,
        "not valid JSON",
    ),
    FileCase(
        "report_bad_summary",
        lambda c: ["report", str(_write(c.copy_good("s") / "summary.json", '{"n": 3').parent)],
        2,
        "summary.json",
    ),
    FileCase(
        "report_summary_is_a_list",
        lambda c: ["report", str(_write(c.copy_good("s") / "summary.json", "[1, 2]").parent)],
        2,
        "summary.json",
    ),
    FileCase("compare_missing_dir", lambda c: ["compare", str(c.good), str(c.tmp / "nope")], 2, "nope"),
    FileCase(
        "compare_bad_summary",
        lambda c: ["compare", str(c.good), str(_write(c.copy_good("s") / "summary.json", "{").parent)],
        2,
        "summary.json",
    ),
]


def _truncate(p: Path) -> Path:
    t = p.read_text(encoding="utf-8")
    p.write_text(t[: len(t) // 2 + 5], encoding="utf-8")
    return p


def _write(p: Path, text: str) -> Path:
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def good_audit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("good") / "audit"
    rc, _, err = call_main(["audit", str(EXAMPLE), "--out", str(out), *LEX])
    assert rc == 0, err
    return out


@pytest.mark.parametrize("case", [pytest.param(c, marks=c.marks, id=c.name) for c in FILE_CASES])
def test_bad_input(case: FileCase, tmp_path: Path, good_audit: Path):
    ctx = Ctx(tmp_path, good_audit)
    try:
        argv = case.argv(ctx)
        rc, _, err = call_main(argv)
    finally:
        for fn in ctx.cleanup:
            fn()
    assert "Traceback" not in err
    assert rc == case.rc, err
    if rc in (2, 3, 4):
        line = check_one_error_line(err)
        assert case.err in line, line
    out = ctx.out
    if case.ids is not None:
        assert argv[0] == "audit"
        check_row_invariants(read_rows(out), case.ids)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["n"] == len(case.ids)
        if case.check is not None:
            case.check(ctx, summary)
    elif case.check is not None:
        case.check(ctx, {})


def test_there_are_at_least_sixty_cases():
    assert len(ROW_CASES) + len(FILE_CASES) >= 60
