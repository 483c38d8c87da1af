"""Gold questions for ``rag eval``: reading and checking a gold file, and finding where each
item's evidence quotes lie in an index's articles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .errors import RagError

KINDS = ("fact", "number", "date", "who", "why/how", "multi-sentence", "paraphrase",
         "follow-up", "terse", "conflict", "latest", "unanswerable")
#: Kinds whose answer is one or more sentences: no short answer is expected of them.
SENTENCE_KINDS = ("why/how", "multi-sentence")


@dataclass(frozen=True)
class GoldItem:
    """One gold question. ``answers`` are alternatives, except that ``all_of`` (for a
    conflict) lists values that must all be given; ``docs`` names the files holding the
    evidence when there are several (``doc`` when one); ``type`` is the expected answer type
    (see :data:`rag.question.ANSWER_TYPES`).

    >>> item = GoldItem(id="1", question="Who leads SenseTime?", answers=("Li Xu",),
    ...                 evidence=("Its chief executive is Li Xu",), kind="who")
    >>> item.answerable, item.wants_short
    (True, True)
    """

    id: str
    question: str
    answers: tuple[str, ...]
    evidence: tuple[str, ...]
    kind: str
    doc: str | None = None
    history: tuple[dict, ...] = ()
    type: str | None = None
    docs: tuple[str, ...] = ()
    all_of: tuple[str, ...] = ()

    @property
    def answerable(self) -> bool:
        return bool(self.evidence)

    @property
    def wants_short(self) -> bool:
        """Whether a short answer is expected: an answerable item that asks for a name, a
        date, an amount (not why/how, not several facts at once)."""
        return (self.answerable and self.kind not in SENTENCE_KINDS
                and self.type != "description")

    @property
    def files(self) -> tuple[str, ...]:
        return self.docs or ((self.doc,) if self.doc else ())


def load_gold(path: str | Path) -> list[GoldItem]:
    """Read and check a gold file; a bad line is an error that names it.

    A gold file has one JSON object per line: ``id``, ``question``, ``answers``, ``evidence``
    (verbatim quotes from an article), ``kind`` (one of :data:`KINDS`), optionally ``doc``
    (the file holding the evidence) and ``history`` (earlier turns of a follow-up).
    """
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
                history=tuple(d.get("history", ())), type=d.get("type"),
                docs=tuple(d.get("docs", ())), all_of=tuple(d.get("all_of", ())),
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise RagError(f"{path}:{n}: not a gold item ({e}); see the README's gold format") \
                from None
        if item.kind not in KINDS:
            raise RagError(f"{path}:{n}: unknown kind {item.kind!r}; use one of {', '.join(KINDS)}")
        items.append(item)
    return items


def evidence_spans(index, item: GoldItem) -> list[tuple[str, int, int]]:
    """(article id, start, end) of each evidence quote, in the articles of the files the item
    names (``doc``/``docs``) or in any article."""
    spans = []
    files = item.files
    for quote in item.evidence:
        for rec in index.articles:
            if files and Path(rec.path).name not in files:
                continue
            at = rec.text.find(quote)
            while at >= 0:
                spans.append((rec.id, at, at + len(quote)))
                at = rec.text.find(quote, at + 1)
    return spans
