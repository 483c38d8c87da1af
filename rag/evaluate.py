"""Gold questions and retrieval metrics (hit@1, hit@5, MRR), overall and per kind.

A gold file has one JSON object per line: ``id``, ``question``, ``answers``, ``evidence``
(verbatim quotes from an article), ``kind``, optionally ``doc`` (the file holding the evidence)
and ``history`` (earlier turns of a follow-up). A retrieved passage is a hit when it contains an
evidence quote or overlaps the quote's span in its article.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .errors import RagError

KINDS = ("fact", "number", "date", "who", "why/how", "multi-sentence", "paraphrase",
         "follow-up", "unanswerable")


@dataclass(frozen=True)
class GoldItem:
    id: str
    question: str
    answers: tuple[str, ...]
    evidence: tuple[str, ...]
    kind: str
    doc: str | None = None
    history: tuple[dict, ...] = ()

    @property
    def answerable(self) -> bool:
        return bool(self.evidence)


def load_gold(path: str | Path) -> list[GoldItem]:
    """Read and check a gold file; a bad line is an error that names it."""
    items = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise RagError(f"cannot read gold file {path}: {e.strerror}; pass --gold FILE") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            item = GoldItem(
                id=str(d["id"]), question=d["question"], answers=tuple(d.get("answers", ())),
                evidence=tuple(d.get("evidence", ())), kind=d["kind"], doc=d.get("doc"),
                history=tuple(d.get("history", ())),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise RagError(f"{path}:{n}: not a gold item ({e}); see the README's gold format") \
                from None
        if item.kind not in KINDS:
            raise RagError(f"{path}:{n}: unknown kind {item.kind!r}; use one of {', '.join(KINDS)}")
        items.append(item)
    return items


def retrieval_query(question: str, history=()) -> str:
    """The text to retrieve with: a follow-up question carries the user's previous question,
    so "Who led that round?" still finds the round."""
    previous = [t["content"] for t in history if t.get("role") == "user"]
    return f"{previous[-1]} {question}" if previous else question


def evidence_spans(index, item: GoldItem) -> list[tuple[str, int, int]]:
    """(article id, start, end) of each evidence quote, in the article named by ``doc`` or in
    any article."""
    spans = []
    for quote in item.evidence:
        for rec in index.articles:
            if item.doc and Path(rec.path).name != item.doc:
                continue
            at = rec.text.find(quote)
            while at >= 0:
                spans.append((rec.id, at, at + len(quote)))
                at = rec.text.find(quote, at + 1)
    return spans


def is_hit(hit, spans) -> bool:
    c = hit.chunk
    return any(aid == c.article_id and s < c.end and c.start < e for aid, s, e in spans)


def retrieval_metrics(index, gold: list[GoldItem], k: int = 5, **search) -> dict:
    """hit@1, hit@k and MRR over the answerable items, overall and per kind.

    ``search`` is passed to :meth:`rag.retrieve.Index.search` (``hybrid=``, ``news=``).
    """
    per_kind = defaultdict(list)
    for item in gold:
        if not item.answerable:
            continue
        spans = evidence_spans(index, item)
        if not spans:
            raise RagError(f"gold item {item.id}: evidence not found in the index's articles")
        hits = index.search(retrieval_query(item.question, item.history), k, **search)
        rank = next((h.rank for h in hits if is_hit(h, spans)), None)
        per_kind[item.kind].append(rank)
        per_kind["all"].append(rank)

    def summary(ranks):
        n = len(ranks)
        return {
            "n": n,
            "hit@1": round(sum(r == 1 for r in ranks) / n, 4),
            f"hit@{k}": round(sum(r is not None for r in ranks) / n, 4),
            "mrr": round(sum(1 / r for r in ranks if r) / n, 4),
        }

    return {kind: summary(ranks) for kind, ranks in per_kind.items()}
