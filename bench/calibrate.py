"""Calibrate the support threshold of generated sentences on the gold sets; prints the figures
and the chosen value.

    .venv/bin/python bench/calibrate.py

``SUPPORT_THRESHOLD`` (rag/cite.py): the cosine similarity a generated answer sentence needs
with the passage sentence it cites. Positives: each gold answer, written as a sentence with its
question, against the sentence holding its evidence. Negatives: the same answer against the
other sentences of the retrieved passages. The threshold keeps 95% of the positives.

The reader's weights and abstention thresholds are fitted by bench/calibrate_reader.py.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag import Settings, build_index  # noqa: E402
from rag.cite import passage_sentences  # noqa: E402
from rag.gold import evidence_spans, load_gold  # noqa: E402
from rag.retrieve import Index  # noqa: E402

SETS = (("corpus", "eval/gold.jsonl"), ("eval/newsbench/corpus", "eval/newsbench/gold.jsonl"))


def main() -> None:
    positives, negatives = [], []
    with tempfile.TemporaryDirectory() as d:
        for corpus, gold in SETS:
            settings = Settings(corpus=ROOT / corpus, index=Path(d) / corpus.replace("/", "_"))
            build_index(settings)
            index = Index(settings.index, settings)
            emb = index.embedder
            for item in load_gold(ROOT / gold):
                hits = index.search(index.question(item.question, item.history), 5)
                if not item.answerable or not item.answers:
                    continue
                spans = evidence_spans(index, item)
                cands = passage_sentences(hits)
                if not cands:
                    continue
                # An answer sentence restates the question with the answer in it.
                claim = f"{item.question.rstrip('?')}: {item.answers[0]}."
                vecs = emb.embed([claim] + [c.text for c in cands])
                sims = vecs[1:] @ vecs[0]
                for c, sim in zip(cands, sims):
                    aid = hits[c.hit_index].chunk.article_id
                    holds = any(a == aid and s < c.end and c.start < e for a, s, e in spans)
                    (positives if holds else negatives).append(float(sim))
    support = float(np.percentile(positives, 5))
    neg_pass = float(np.mean(np.array(negatives) >= support))
    figures = {
        "support_threshold": round(support, 3),
        "support_positives": len(positives),
        "support_negatives_passing": round(neg_pass, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
