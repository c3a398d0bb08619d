"""The types that cross stage boundaries: ``Record``, ``Evidence``, ``LeakageResult`` and ``RunStats``."""

from __future__ import annotations

import dataclasses
import hashlib
import math

import pytest

from vsil.schema import CONTRACT_FIELDS, RESULT_COLUMNS, Evidence, LeakageResult, Record, RunStats, result_from_dict


def test_result_columns_are_the_contract_plus_the_row():
    assert RESULT_COLUMNS == (*CONTRACT_FIELDS, "query", "category", "source", "row")
    assert [f.name for f in dataclasses.fields(LeakageResult)] == list(RESULT_COLUMNS)


def test_result_from_dict_reads_null_scores_as_nan_and_ignores_extra_keys():
    r = LeakageResult.failed("x", "empty query", row=3, query="", source="s")
    d = r.to_dict()
    d.update({k: None for k in ("vsil_score", "image_risk", "text_risk", "overlap")}, extra="ignored")
    back = result_from_dict(d)
    assert math.isnan(back.vsil_score) and math.isnan(back.overlap)
    assert (back.status, back.error, back.decided_by, back.row, back.source) == ("error", "empty query", "none", 3, "s")
    ok = LeakageResult("y", 0.7, 2, True, leaked_spans=[{"start": 0, "end": 1, "text": "a"}])
    assert result_from_dict(ok.to_dict()) == ok


def test_evidence_is_frozen_with_tuple_parts():
    ev = Evidence((("caption", "a gun"), ("safety_reason", "weapon"), ("ocr_text", "BANG")), "given+ocr")
    assert isinstance(ev.parts, tuple) and ev.caption_used == "a gun BANG"  # the safety reason is not a caption
    with pytest.raises(dataclasses.FrozenInstanceError):
        ev.source = "x"  # type: ignore[misc]
    assert hash(ev) == hash(Evidence(ev.parts, ev.source))


def test_record_hash_covers_its_content():
    def digest(rec: Record) -> str:
        h = hashlib.sha256()
        rec.hash_into(h)
        return h.hexdigest()

    a = Record(row=0, id="1", query="q", caption="c")
    assert digest(a) == digest(Record(row=5, id="1", query="q", caption="c", category="other"))
    for change in ({"id": "2"}, {"query": "q2"}, {"caption": "c2"}, {"safety_reason": "r"}, {"image": "x.png"}):
        assert digest(dataclasses.replace(a, **change)) != digest(a), change


def test_run_stats_add_minus_and_manifest_fields():
    total = RunStats()
    total.add(RunStats({"rows": 2, "calls": 3}, {"hits": 1, "misses": 4}))
    total.add(RunStats({"rows": 1, "cached": 1}, {"hits": 2, "misses": 0}))
    assert total.to_dict() == {
        "judge": {"rows": 3, "calls": 3, "cached": 1},
        "image_evidence_cache": {"hits": 3, "misses": 4},
    }
    before = RunStats({"rows": 1, "calls": 1, "cached": 0}, {"hits": 1, "misses": 1})
    delta = total.minus(before)
    assert delta.judge == {"rows": 2, "calls": 2, "cached": 1} and delta.image_evidence_cache == {
        "hits": 2,
        "misses": 3,
    }
    assert RunStats.from_dict(total.to_dict()) == total
    assert RunStats.from_dict({}) == RunStats()
    assert total.manifest_fields(True) == {"judge_stats": total.judge, "image_evidence_cache": {"hits": 3, "misses": 4}}
    assert total.manifest_fields(False)["judge_stats"] is None
