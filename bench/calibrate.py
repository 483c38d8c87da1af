"""Calibrate the answer thresholds on the gold sets; prints the figures and the chosen values.

    .venv/bin/python bench/calibrate.py

- ``SUPPORT_THRESHOLD`` (rag/cite.py): the cosine similarity an answer sentence needs with the
  passage sentence it cites. Positives: each gold answer, written as a sentence with its
  question, against the
  sentence holding its evidence. Negatives: the same answer against the other sentences of the
  retrieved passages. The threshold keeps 95% of the positives.
- ``ABSTAIN_THRESHOLD`` (rag/pipeline.py): the best passage's similarity below which the
  pipeline abstains. The highest value whose false-abstain rate on answerable questions stays
  at or under 10%; its missed-abstain rate on the unanswerable questions is printed.
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
from rag.evaluate import evidence_spans, load_gold  # noqa: E402
from rag.pipeline import Pipeline, retrieval_query  # noqa: E402
from rag.retrieve import Index  # noqa: E402

SETS = (("corpus", "eval/gold.jsonl"), ("eval/newsbench/corpus", "eval/newsbench/gold.jsonl"))
MAX_FALSE_ABSTAIN = 0.10


def main() -> None:
    positives, negatives, relevance = [], [], []
    with tempfile.TemporaryDirectory() as d:
        for corpus, gold in SETS:
            settings = Settings(corpus=ROOT / corpus, index=Path(d) / corpus.replace("/", "_"))
            build_index(settings)
            index = Index(settings.index, settings)
            pipeline = Pipeline(index, "extractive")
            emb = index.embedder
            for item in load_gold(ROOT / gold):
                query = retrieval_query(item.question, item.history)
                hits = index.search(query, 5)
                relevance.append((item.answerable, pipeline.relevance(query, hits)))
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
    answerable = np.array([r for a, r in relevance if a])
    unanswerable = np.array([r for a, r in relevance if not a])
    best = max(t for t in np.unique(answerable)
               if np.mean(answerable < t) <= MAX_FALSE_ABSTAIN)
    figures = {
        "support_threshold": round(support, 3),
        "support_positives": len(positives),
        "support_negatives_passing": round(neg_pass, 3),
        "abstain_threshold": round(float(best), 3),
        "false_abstain_rate": round(float(np.mean(answerable < best)), 3),
        "missed_abstain_rate": round(float(np.mean(unanswerable >= best)), 3),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
