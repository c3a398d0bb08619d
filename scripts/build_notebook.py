"""Write notebooks/audit_a_benchmark.ipynb and execute it in place (stored with outputs).

python scripts/build_notebook.py
"""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient

HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "..", "notebooks", "audit_a_benchmark.ipynb")

CELLS = [
    (
        "md",
        "# Audit a benchmark for visual safety information leakage\n\n"
        "This notebook audits VLSBench from `../shared/data` when it is there (falling back to the small "
        "example dataset of the repository, or forced with `VSIL_NOTEBOOK_EXAMPLE=1`), shows the summary "
        "and the worst leaks, then de-leaks them: mask the leaked span, re-score.",
    ),
    (
        "code",
        "import os\nfrom pathlib import Path\n\nfrom vsil import LeakageAudit, leakage_score\n\n"
        "root = Path.cwd() if (Path.cwd() / 'examples').exists() else Path.cwd().parent\n"
        "shared = root.parent / 'shared' / 'data' / 'vlsbench' / 'data.json'\n"
        "if shared.exists() and not os.environ.get('VSIL_NOTEBOOK_EXAMPLE'):\n"
        "    data, options = str(shared), {'preset': 'vlsbench'}\n"
        "else:\n"
        "    data, options = str(root / 'examples' / 'pairs.jsonl'), {}\n"
        "print('auditing', Path(data).name)",
    ),
    ("code", "audit = LeakageAudit(data, **options).run(show_progress_bar=False)\naudit"),
    (
        "code",
        "s = audit.summary\n{k: s[k] for k in ('n', 'n_error', 'leak_rate', 'ci95', 'level_counts')} "
        "| {'mode': s['manifest']['backends']['mode']}",
    ),
    (
        "md",
        "## The worst leaks\n`vsil_score` is the probability of leak; "
        "`leaked_spans` are the query words that reveal the risk.",
    ),
    ("code", "worst = audit.issues().head(8)\nworst[['id', 'vsil_score', 'query', 'leaked_spans']]"),
    (
        "md",
        "## De-leaking: mask the leaked span, re-score\nReplace each leaked span with a deictic reference "
        '("this") so the risk stays in the image, then score again.',
    ),
    (
        "code",
        "def mask(query, spans):\n    for sp in sorted(spans, key=lambda s: -s['start']):\n"
        "        query = query[: sp['start']] + 'this' + query[sp['end'] :]\n    return query\n\n"
        "rows = []\nfor _, r in worst.iterrows():\n    new_q = mask(r['query'], r['leaked_spans'])\n"
        "    after = leakage_score(new_q, caption=r['caption_used'])\n"
        "    rows.append({'id': r['id'], 'before': round(r['vsil_score'], 3), "
        "'after': round(after.vsil_score, 3), 'masked query': new_q})\n"
        "import pandas as pd\nfixed = pd.DataFrame(rows)\nfixed",
    ),
    (
        "code",
        "print(f\"mean score before {fixed['before'].mean():.2f}, after masking {fixed['after'].mean():.2f}; \"\n"
        "      f\"still leaking: {(fixed['after'] >= audit.summary['threshold']).sum()} of {len(fixed)}\")",
    ),
    ("code", "os.makedirs(root / 'out', exist_ok=True)\naudit.save_html(str(root / 'out' / 'notebook_report.html'))"),
]


def main() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src) for kind, src in CELLS
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.path.dirname(PATH)}}
    ).execute()
    nbformat.write(nb, PATH)
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
