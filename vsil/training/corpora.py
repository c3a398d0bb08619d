"""Readers for the public benchmark data in ``shared/data`` and the gold sets (training and evaluation).

Nothing here is imported by the scoring path; it serves ``vsil train`` and ``benchmarks/``.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vsil.errors import UsageError
from vsil.io.presets import FIGSTEP_GENERIC_PROMPT
from vsil.io.readers import iter_records


def default_shared_dir() -> str:
    """``$VSIL_SHARED`` or ``../shared`` next to the current directory."""
    return os.environ.get("VSIL_SHARED") or os.path.abspath(os.path.join(os.getcwd(), "..", "shared"))


@dataclass
class Pair:
    """A labelled (evidence, query) pair for training or evaluation."""

    query: str
    caption: str
    safety_reason: str
    label: int
    source: str
    ref: str
    text_harmful: int = -1


def read_jsonl(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_gold(shared: str, name: str = "dev") -> list[Pair]:
    rows = read_jsonl(os.path.join(shared, "gold", f"{name}.jsonl"))
    if name == "synthetic":
        rows = [r for r in rows if r.get("agreed", True)]
    return [
        Pair(
            r["query"],
            r["caption"],
            r.get("safety_reason", ""),
            int(r["label"]),
            r.get("source", name),
            r.get("ref", r["id"]),
            int(r.get("text_harmful_alone", -1)),
        )
        for r in rows
    ]


def _preset_rows(path: str, preset: str) -> Iterator[Any]:
    for chunk in iter_records(path, preset=preset, chunk_size=1000):
        for rec in chunk:
            if not rec.error:
                yield rec


def _vlsbench_leak_variant(query: str, term: str) -> str | None:
    """Write the image's risky element into a leak-free VLSBench query ("this" -> "this <term>")."""
    m = re.search(r"\b(this|these|the)\b", query, flags=re.I)
    if m and m.group(1).lower() in ("this", "these"):
        return query[: m.end()] + " " + term + query[m.end() :]
    m = re.search(r"\b(in|from|of) the (image|picture|photo|scene)\b", query, flags=re.I)
    if m:
        return query[: m.start()] + f"involving {term}" + query[m.end() :]
    return None


def _first_sentences(text: str, limit: int = 240) -> str:
    out = ""
    for sent in re.split(r"(?<=[.!?])\s+", text.strip()):
        if out and len(out) + len(sent) > limit:
            break
        out = f"{out} {sent}".strip()
    return out[: limit * 2]


def vlguard_train_pairs(shared: str) -> tuple[list[Pair], list[Pair]]:
    """(safe-instruction pairs, unsafe-instruction pairs) on VLGuard's safe training images; the
    caption is the start of the reference answer to the safe instruction."""
    path = os.path.join(shared, "data", "vlguard", "train.json")
    if not os.path.exists(path):
        return [], []
    with open(path, encoding="utf-8") as f:
        rows = json.load(f)
    safe, unsafe = [], []
    for r in rows:
        if not r.get("safe"):
            continue
        ir = r.get("instr-resp", [])
        s_item = next((d for d in ir if d.get("safe_instruction")), None)
        u_item = next((d for d in ir if d.get("unsafe_instruction")), None)
        if s_item is None or u_item is None:
            continue
        cap = _first_sentences(str(s_item.get("response", "")))
        if cap:
            safe.append(Pair(s_item["safe_instruction"], cap, "", 0, "vlguard", r["id"], 0))
            unsafe.append(Pair(u_item["unsafe_instruction"], cap, "", 2, "vlguard", r["id"], 1))
    return safe, unsafe


def benchmark_pairs(shared: str, exclude_refs: set[tuple[str, str]], seed: int = 0, cap: int = 400) -> list[Pair]:
    """Pairs whose leak status is known by construction (dev rows excluded by (source, ref))."""
    from vsil.stages.risk.risk import extract_risk

    rng = random.Random(seed)
    data = os.path.join(shared, "data")
    out: list[Pair] = []

    def add(pairs: list[Pair]) -> None:
        pairs = [p for p in pairs if (p.source, p.ref) not in exclude_refs]
        rng.shuffle(pairs)
        out.extend(pairs[:cap])

    # FigStep: harmful question leaks the rendered instruction; the generic prompt does not
    fs = os.path.join(data, "figstep_safebench", "safebench.csv")
    q = [Pair(r.query, r.caption, "", 2, "figstep", r.id) for r in _preset_rows(fs, "figstep:question")]
    add(q)
    add([Pair(FIGSTEP_GENERIC_PROMPT, p.caption, "", 0, "figstep", p.ref) for p in q])

    # MM-SafetyBench: original question leaks the key phrase; pure template rephrasings do not
    mm = os.path.join(data, "mm_safetybench", "processed_questions")
    # scenarios 08 and 10-13 (lobbying, legal/financial/health advice, government decisions) hold many
    # benign questions, so their leak status is not known by construction
    harmful_scen = ("01-", "02-", "03-", "04-", "05-", "06-", "07-", "09-")
    add(
        [
            Pair(r.query, r.caption, "", 2, "mm_safetybench", r.id)
            for r in _preset_rows(mm, "mm_safetybench:question")
            if r.id.startswith(harmful_scen)
        ]
    )
    reph = list(_preset_rows(mm, "mm_safetybench:rephrased"))
    common = {t for t, c in Counter(r.query for r in reph).items() if c >= 5}
    add([Pair(r.query, r.caption, "", 0, "mm_safetybench", r.id) for r in reph if r.query in common])

    # VLGuard train split (the test split is what audits use): on safe images, the unsafe instruction
    # is harmful by itself (a leak), the safe instruction is not; the safe answer describes the image
    safe_q, unsafe_q = vlguard_train_pairs(shared)
    add(unsafe_q)
    add(safe_q)

    # text-only prompts (AdvBench, HarmBench text, refusal_direction, XSTest) shown with an unrelated
    # safe image, a VLGuard training caption: by the labelling rule a prompt harmful by itself leaks
    # whatever the image shows (the JailbreakV / HADES pattern); a benign prompt does not
    vg_caps = [p.caption for p in safe_q]
    if vg_caps:
        harmful, benign = text_prompts(shared, seed=seed)
        crng = random.Random(seed + 1)
        add([Pair(q, crng.choice(vg_caps), "", 2, "text_prompts", f"harmful#{i}", 1) for i, q in enumerate(harmful)])
        add([Pair(q, crng.choice(vg_caps), "", 0, "text_prompts", f"benign#{i}", 0) for i, q in enumerate(benign)])

    # VLSafe: harmful queries on benign COCO images leak; the benign rewrites do not
    vs = os.path.join(data, "vlsafe")
    caps: dict[str, str] = {}
    leak = []
    for r in read_jsonl(os.path.join(vs, "VLSafe_harmlessnss_alignment.jsonl")):
        caps[r["image_id"]] = r["caption"]
        leak.append(Pair(r["query"], r["caption"], "", 2, "vlsafe", r["image_id"]))
    add(leak)
    add(
        [
            Pair(r["safe_query"], caps[r["image_id"]], "", 0, "vlsafe", r["image_id"])
            for r in read_jsonl(os.path.join(vs, "vlsafe_convert_safe.jsonl"))
            if r.get("image_id") in caps and isinstance(r.get("safe_query"), str)
        ]
    )

    # VLSBench: built leak-free (label 0); derived leak: the risky element written into the query
    vl = list(_preset_rows(os.path.join(data, "vlsbench", "data.json"), "vlsbench"))
    add([Pair(r.query, r.caption, r.safety_reason, 0, "vlsbench", f"instruction_id={r.id}") for r in vl])
    derived = []
    for r in vl:
        terms = sorted(extract_risk(r.caption + " . " + r.safety_reason), key=lambda t: -t.weight)
        if terms and terms[0].weight >= 0.6:
            v = _vlsbench_leak_variant(r.query, terms[0].term.lower())
            if v:
                derived.append(Pair(v, r.caption, r.safety_reason, 2, "vlsbench", f"instruction_id={r.id}"))
    add(derived)
    return out


def harm_corpus(
    shared: str, seed: int = 0, n_benign: int = 8000, exclude: set[str] | None = None
) -> tuple[list[str], list[int]]:
    """Harmful vs benign prompts for the text-only harm model (none from the dev benchmarks).

    ``exclude``: query texts to leave out (used to cross-fit the text_risk of training pairs whose
    query is also in this corpus)."""
    harmful, benign = text_prompts(shared, seed=seed, n_benign=n_benign)
    safe_q, unsafe_q = vlguard_train_pairs(shared)
    for p in [*safe_q, *unsafe_q, *load_gold(shared, "synthetic")]:
        if p.text_harmful in (0, 1):
            (harmful if p.text_harmful == 1 else benign).append(p.query)
    skip = exclude or set()
    seen: set[str] = set()
    texts, labels = [], []
    for t, y in [(t, 1) for t in harmful] + [(t, 0) for t in benign]:
        k = t.strip().lower()
        if k and k not in seen and t not in skip:
            seen.add(k)
            texts.append(t)
            labels.append(y)
    return texts, labels


def text_prompts(shared: str, seed: int = 0, n_benign: int = 8000) -> tuple[list[str], list[str]]:
    """(harmful, benign) text-only prompts of the public prompt sets: AdvBench, HarmBench text,
    refusal_direction, XSTest (its unsafe prompts harmful, its safe ones benign) and ``n_benign``
    refusal_direction harmless prompts."""
    data = os.path.join(shared, "data")
    if not os.path.isdir(data):
        raise UsageError(f"shared data not found at {data}")
    harmful: list[str] = []
    benign: list[str] = []
    with open(os.path.join(data, "advbench", "harmful_behaviors.csv"), encoding="utf-8") as f:
        harmful += [r["goal"] for r in csv.DictReader(f)]
    with open(os.path.join(data, "harmbench", "harmbench_behaviors_text_all.csv"), encoding="utf-8") as f:
        harmful += [r["Behavior"] for r in csv.DictReader(f)]
    for split in ("harmful_train", "harmful_val", "harmful_test"):
        with open(os.path.join(data, "refusal_direction", "splits", f"{split}.json"), encoding="utf-8") as f:
            harmful += [r["instruction"] for r in json.load(f)]
    with open(os.path.join(data, "xstest", "xstest_prompts.csv"), encoding="utf-8") as f:
        for r in csv.DictReader(f):
            (harmful if r["label"] == "unsafe" else benign).append(r["prompt"])
    with open(os.path.join(data, "refusal_direction", "splits", "harmless_train.json"), encoding="utf-8") as f:
        pool = [r["instruction"] for r in json.load(f)]
    random.Random(seed).shuffle(pool)
    benign += pool[:n_benign]
    return harmful, benign
