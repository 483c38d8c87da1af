"""Scoring for ``rag eval``: whether retrieved passages hold the evidence, whether an answer
is right (normalised match, token F1, short-answer exact match), whether its citations point at
the evidence and its sentences are supported by what they cite, and the figures over many items."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass

from .errors import RagError
from .gold import KINDS, GoldItem, evidence_spans
from .index import bm25_tokens, english_stemmer

# -- retrieval -----------------------------------------------------------------------------------


def is_hit(hit, spans) -> bool:
    """Whether a retrieved passage (a :class:`rag.types.Hit`) overlaps one of the evidence
    ``spans`` (:func:`rag.gold.evidence_spans`) in its article."""
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
        hits = index.search(index.question(item.question, item.history), k, **search)
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


# -- answers --------------------------------------------------------------------------------------

#: A sentence is faithful when at least this share of its content words occurs in the passages
#: it cites (see :func:`sentence_supported`).
FAITHFUL_SHARE = 0.7

_MARKERS = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
_ARTICLES = frozenset(("a", "an", "the"))
# Dashes other than the hyphen, and slashes, separate words; other punctuation is dropped
# (SQuAD-style: "$1,000" -> "1000", "MIT’s" -> "mits").
_SEPARATORS = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212/\\")


def strip_markers(text: str) -> str:
    """The answer without its ``[n]`` citation markers.

    >>> strip_markers("It rose [1]. It fell [2, 3].")
    'It rose. It fell.'
    """
    return _MARKERS.sub("", text)


def normalize_answer(text: str) -> str:
    """Lower-cased, punctuation, quotes (curly ones too) and symbols removed, the articles
    a/an/the dropped, whitespace collapsed.

    >>> normalize_answer("The “Store of the Future,” [1]")
    'store of future 1'
    """
    out = []
    for ch in unicodedata.normalize("NFKC", text.lower()):
        if ch in _SEPARATORS or ch.isspace():
            out.append(" ")
        elif unicodedata.category(ch)[0] in "PS":
            continue
        else:
            out.append(ch)
    return " ".join(w for w in "".join(out).split() if w not in _ARTICLES)


def answer_correct(answer_text: str, golds, all_of=()) -> bool:
    """A normalised gold answer occurs, as whole words, in the normalised answer (markers
    removed); with ``all_of``, every one of those values must occur.

    >>> answer_correct("Alibaba led a $600 million round [1].", ["600 million"])
    True
    >>> answer_correct("It was founded in 2015 [5].", ["5"])  # whole words, markers dropped
    False
    """
    said = f" {normalize_answer(strip_markers(answer_text))} "
    if all_of:
        return all((g := normalize_answer(v)) and f" {g} " in said for v in all_of)
    return any((g := normalize_answer(gold)) and f" {g} " in said for gold in golds)


def exact_match(prediction: str, golds) -> bool:
    """The normalised prediction equals a normalised gold answer.

    >>> exact_match("Northgate Capital", ["Northgate Capital", "Northgate"])
    True
    >>> exact_match("$45 million", ["45 million"]), exact_match("Capital", ["Northgate Capital"])
    (True, False)
    """
    p = normalize_answer(prediction)
    return bool(p) and any(p == normalize_answer(g) for g in golds)


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between two texts (normalised first).

    >>> round(token_f1("the Series C round", "Round C"), 3)
    0.8
    """
    p, g = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)


def best_f1(answer_text: str, golds) -> float:
    """The best token F1 of the answer (markers removed) against any gold answer."""
    text = strip_markers(answer_text)
    return max((token_f1(text, g) for g in golds), default=0.0)


def citation_correct(citation, spans) -> bool:
    """The cited passage (``chunk_start..chunk_end`` of ``doc_id``) overlaps an evidence span."""
    return any(aid == citation.doc_id and s < citation.chunk_end and citation.chunk_start < e
               for aid, s, e in spans)


def sentence_supported(sentence: str, cited_texts, stemmer=None, share: float = FAITHFUL_SHARE)\
        -> bool:
    """At least ``share`` of the sentence's content words (stemmed, stop words dropped) occur
    in the union of ``cited_texts``; a sentence citing nothing is unsupported."""
    cited_texts = list(cited_texts)
    if not cited_texts:
        return False
    stemmer = stemmer or _stemmer()
    words = set(bm25_tokens(sentence, stemmer))
    if not words:
        return True  # nothing asserted ("Yes.") and it cites a passage
    known = set()
    for text in cited_texts:
        known.update(bm25_tokens(text, stemmer))
    return len(words & known) / len(words) >= share


def faithful_sentences(answer, stemmer=None) -> list[bool]:
    """For each answer sentence (:func:`rag.cite.split_answer`), whether the passages it cites
    support it (:func:`sentence_supported`). Independent of the answer path's verifier."""
    from .cite import split_answer

    by_n = {c.n: c.text for c in answer.citations}
    stemmer = stemmer or _stemmer()
    return [sentence_supported(s, [by_n[n] for n in dict.fromkeys(ns) if n in by_n], stemmer)
            for s, ns in split_answer(answer.text)]


_STEMMER = None


def _stemmer():
    global _STEMMER
    if _STEMMER is None:
        _STEMMER = english_stemmer()
    return _STEMMER


@dataclass
class ItemResult:
    """How one answer scored against its gold item."""

    id: str
    kind: str
    answerable: bool
    abstained: bool
    rank: int | None = None  # of the first retrieved passage overlapping the evidence
    correct: bool = False
    f1: float = 0.0
    citations: int = 0
    correct_citations: int = 0
    sentences: int = 0
    supported_sentences: int = 0
    total_ms: float = 0.0
    answer: str = ""
    wants_short: bool = False
    short: str | None = None
    short_em: bool = False
    short_f1: float = 0.0
    notice: str = ""  # why a language model's answer was replaced by the extractive one

    def to_json(self) -> dict:
        return asdict(self)


def score_answer(item: GoldItem, answer, spans, stemmer=None) -> ItemResult:
    """Score ``answer`` (a :class:`rag.types.Answer`) against ``item``; ``spans`` are the
    item's evidence spans (:func:`rag.gold.evidence_spans`)."""
    short = getattr(answer, "short_answer", None)
    r = ItemResult(item.id, item.kind, item.answerable, bool(answer.abstained),
                   total_ms=float(answer.timing().get("total_ms", 0.0)), answer=answer.text,
                   wants_short=item.wants_short, short=short.text if short else None,
                   notice=getattr(answer, "notice", ""))
    if item.answerable:
        r.rank = next((h.rank for h in answer.hits if is_hit(h, spans)), None)
        if not answer.abstained:
            r.correct = answer_correct(answer.text, item.answers, item.all_of)
            r.f1 = round(best_f1(answer.text, item.answers), 4)
            if item.wants_short and short:
                r.short_em = exact_match(short.text, item.answers)
                r.short_f1 = round(best_f1(short.text, item.answers), 4)
        r.citations = len(answer.citations)
        r.correct_citations = sum(citation_correct(c, spans) for c in answer.citations)
    if not answer.abstained:
        support = faithful_sentences(answer, stemmer)
        r.sentences, r.supported_sentences = len(support), sum(support)
    return r


def _ratio(num, den):
    return round(num / den, 4) if den else None


def _percentile(values, q):
    if not values:
        return None
    values = sorted(values)
    pos = (len(values) - 1) * q / 100
    lo, hi = int(pos), min(int(pos) + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (pos - lo), 1)


#: Every figure :func:`summarise` gives, in report order.
METRICS = ("hit_at_1", "hit_at_5", "mrr", "accuracy", "f1", "short_em", "short_f1",
           "citation_precision", "citation_recall", "faithfulness", "abstain_rate",
           "false_abstain_rate", "latency_p50_ms", "latency_p95_ms")


def summarise(results: list[ItemResult]) -> dict:
    """The figures over ``results`` (``None`` where a figure has no items to count):

    - retrieval over answerable items: ``hit_at_1``, ``hit_at_5``, ``mrr`` (from the answer's
      own retrieved passages);
    - answers over answerable items: ``accuracy`` and token ``f1`` (0 when it abstained);
    - short answers over answerable items that expect one (not why/how): ``short_em`` (exact
      match, normalised) and ``short_f1`` (token F1); 0 when there is no short answer;
    - ``citation_precision``: correct citations / citations of answerable items;
      ``citation_recall``: answerable items with a correct citation / answerable items;
    - ``faithfulness``: supported sentences / sentences, over answers that did not abstain;
    - ``abstain_rate`` over unanswerable items, ``false_abstain_rate`` over answerable ones;
    - ``latency_p50_ms`` / ``latency_p95_ms`` of the answers' ``total_ms``;
    - ``fallbacks``: answers that are the extractive one because the language model failed or
      wrote nothing supported (0 for the extractive generator).
    """
    ans = [r for r in results if r.answerable]
    unans = [r for r in results if not r.answerable]
    shorts = [r for r in ans if r.wants_short]
    n = len(ans)
    citations = sum(r.citations for r in ans)
    sentences = sum(r.sentences for r in results)
    return {
        "items": len(results), "answerable": n, "unanswerable": len(unans),
        "hit_at_1": _ratio(sum(r.rank == 1 for r in ans), n),
        "hit_at_5": _ratio(sum(r.rank is not None and r.rank <= 5 for r in ans), n),
        "mrr": _ratio(sum(1 / r.rank for r in ans if r.rank), n),
        "accuracy": _ratio(sum(r.correct for r in ans), n),
        "f1": _ratio(sum(r.f1 for r in ans), n),
        "short_items": len(shorts),
        "short_em": _ratio(sum(r.short_em for r in shorts), len(shorts)),
        "short_f1": _ratio(sum(r.short_f1 for r in shorts), len(shorts)),
        "citations": citations,
        "citation_precision": _ratio(sum(r.correct_citations for r in ans), citations),
        "citation_recall": _ratio(sum(r.correct_citations > 0 for r in ans), n),
        "sentences": sentences,
        "faithfulness": _ratio(sum(r.supported_sentences for r in results), sentences),
        "abstain_rate": _ratio(sum(r.abstained for r in unans), len(unans)),
        "false_abstain_rate": _ratio(sum(r.abstained for r in ans), n),
        "latency_p50_ms": _percentile([r.total_ms for r in results], 50),
        "latency_p95_ms": _percentile([r.total_ms for r in results], 95),
        "fallbacks": sum(bool(r.notice) for r in results),
    }


def summarise_by_kind(results: list[ItemResult]) -> dict:
    """:func:`summarise` for each kind of :data:`rag.gold.KINDS` that has items."""
    return {kind: summarise(rs) for kind in KINDS
            if (rs := [r for r in results if r.kind == kind])}

