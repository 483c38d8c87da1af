"""Gold questions and the evaluation behind ``rag eval``: retrieval, answers, citations,
faithfulness, abstention and latency, overall and per kind, with a gate on minimum figures.

A gold file has one JSON object per line: ``id``, ``question``, ``answers``, ``evidence``
(verbatim quotes from an article), ``kind``, optionally ``doc`` (the file holding the evidence)
and ``history`` (earlier turns of a follow-up). A retrieved passage is a hit when it contains an
evidence quote or overlaps the quote's span in its article.

>>> answer_correct("Alibaba led a $600 million round [1].", ["600 million"])
True
>>> round(token_f1("the Series C round", "Round C"), 3)
0.8
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import tomllib

from .config import cache_dir
from .errors import RagError
from .index import bm25_tokens, english_stemmer

KINDS = ("fact", "number", "date", "who", "why/how", "multi-sentence", "paraphrase",
         "follow-up", "terse", "conflict", "latest", "unanswerable")
#: Kinds whose answer is one or more sentences: no short answer is expected of them.
SENTENCE_KINDS = ("why/how", "multi-sentence")


@dataclass(frozen=True)
class GoldItem:
    """One gold question. ``answers`` are alternatives, except that ``all_of`` (for a
    conflict) lists values that must all be given; ``docs`` names the files holding the
    evidence when there are several (``doc`` when one); ``type`` is the expected answer type
    (see :data:`rag.question.ANSWER_TYPES`)."""

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


# -- answer scoring ------------------------------------------------------------------------------

#: A sentence is faithful when at least this share of its content words occurs in the passages
#: it cites (see :func:`sentence_supported`).
FAITHFUL_SHARE = 0.7

_MARKERS = re.compile(r"\s*\[\d+(?:\s*[,;]\s*\d+)*\]")
_ARTICLES = frozenset(("a", "an", "the"))
# Dashes other than the hyphen, and slashes, separate words; other punctuation is dropped
# (SQuAD-style: "$1,000" -> "1000", "MIT’s" -> "mits").
_SEPARATORS = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212/\\")


def strip_markers(text: str) -> str:
    """The answer without its ``[n]`` citation markers."""
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
    removed); with ``all_of``, every one of those values must occur."""
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
    """SQuAD token F1 between two texts (normalised first)."""
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

    def to_json(self) -> dict:
        return asdict(self)


def score_answer(item: GoldItem, answer, spans, stemmer=None) -> ItemResult:
    """Score ``answer`` (a :class:`rag.types.Answer`) against ``item``; ``spans`` are the
    item's evidence spans (:func:`evidence_spans`)."""
    short = getattr(answer, "short_answer", None)
    r = ItemResult(item.id, item.kind, item.answerable, bool(answer.abstained),
                   total_ms=float(answer.timing().get("total_ms", 0.0)), answer=answer.text,
                   wants_short=item.wants_short, short=short.text if short else None)
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
    - ``latency_p50_ms`` / ``latency_p95_ms`` of the answers' ``total_ms``.
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
    }


def summarise_by_kind(results: list[ItemResult]) -> dict:
    """:func:`summarise` for each kind of :data:`KINDS` that has items."""
    return {kind: summarise(rs) for kind in KINDS
            if (rs := [r for r in results if r.kind == kind])}


def answer_items(pipeline, items: list[GoldItem], index=None, progress=None) -> list[ItemResult]:
    """Ask ``pipeline`` every gold question (with its history) and score the answers."""
    index = index or pipeline.index
    stemmer = _stemmer()
    results = []
    for i, item in enumerate(items):
        spans = evidence_spans(index, item) if item.answerable else []
        if item.answerable and not spans:
            raise RagError(f"gold item {item.id}: evidence not found in the index's articles; "
                           "check the quote and the corpus (--corpus DIR)")
        answer = pipeline.ask(item.question, [dict(t) for t in item.history])
        results.append(score_answer(item, answer, spans, stemmer))
        if progress:
            progress(i + 1, len(items))
    return results


# -- the gate ------------------------------------------------------------------------------------

#: The figures a thresholds file may gate; ``max_<figure>`` is an upper bound, the rest minima.
GATED = ("hit_at_1", "hit_at_5", "mrr", "accuracy", "f1", "short_em", "short_f1",
         "citation_precision", "citation_recall", "faithfulness", "abstain_rate",
         "false_abstain_rate")


def load_thresholds(path: str | Path | None, required: bool = False) -> dict:
    """The ``[set]`` tables of a TOML thresholds file, checked. A missing file is no
    thresholds, unless ``required``.

    Keys in ``[seed]`` are minima (``max_<figure>`` an upper bound) for the extractive generator;
    a sub-table ``[seed.<generator>]`` holds figures for another generator.
    """
    if path is None:
        return {}
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if required:
            raise RagError(f"thresholds file {path} does not exist; pass --thresholds FILE "
                           "or --no-gate") from None
        return {}
    except OSError as e:
        raise RagError(f"cannot read thresholds file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise RagError(f"{path}: not valid TOML ({e})") from None

    def check(table: dict, where: str) -> None:
        for key, value in table.items():
            if isinstance(value, dict) and where.count(".") == 0:
                check(value, f"{where}.{key}")
                continue
            figure = key.removeprefix("max_")
            if figure not in GATED:
                raise RagError(f"{path}: [{where}] {key} is not a figure that can be gated; "
                               f"use {', '.join(GATED)} (or max_<figure>)")
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RagError(f"{path}: [{where}] {key} must be a number, got {value!r}")

    for name, table in data.items():
        if not isinstance(table, dict):
            raise RagError(f"{path}: {name} must be a [table] of figures for the set {name!r}")
        check(table, name)
    return data


def thresholds_for(thresholds: dict, set_name: str, generator: str) -> dict:
    """The figures gating ``generator`` on ``set_name``: the set's top-level keys for the
    extractive generator, ``[set.<generator>]`` for another."""
    table = thresholds.get(set_name, {})
    if generator == "extractive":
        return {k: v for k, v in table.items() if not isinstance(v, dict)}
    sub = table.get(generator, {})
    return dict(sub) if isinstance(sub, dict) else {}


def gate(figures: dict, limits: dict, label: str = "") -> list[str]:
    """The missed limits, one line each ("seed: accuracy 0.41 < 0.43"); [] when all pass.

    A figure that could not be measured (``None``: no items of that sort) is not gated."""
    misses = []
    prefix = f"{label}: " if label else ""
    for key, limit in limits.items():
        upper = key.startswith("max_")
        figure = key.removeprefix("max_")
        value = figures.get(figure)
        if value is None:
            continue
        if (value > limit) if upper else (value < limit):
            misses.append(f"{prefix}{figure} {value:.4g} {'>' if upper else '<'} {limit:.4g}")
    return misses


def check_gate(metrics: dict, thresholds: dict) -> list[str]:
    """Every miss of the thresholds in an evaluation's metrics (:func:`evaluate_sets`)."""
    misses = []
    for set_name, s in metrics["sets"].items():
        for generator, g in s["generators"].items():
            limits = thresholds_for(thresholds, set_name, generator)
            if limits and "overall" in g:
                label = set_name if generator == "extractive" else f"{set_name} ({generator})"
                misses += gate(g["overall"], limits, label)
    return misses


# -- running an evaluation -----------------------------------------------------------------------

#: The repository holding the shipped gold sets (``rag`` is installed in editable mode).
ROOT = Path(__file__).resolve().parent.parent
#: (name, gold file, corpus folder) of the shipped sets, relative to :data:`ROOT`.
SHIPPED_SETS = (("seed", "eval/gold.jsonl", "corpus"),
                ("newsbench", "eval/newsbench/gold.jsonl", "eval/newsbench/corpus"),
                ("dev", "eval/reader/dev/gold.jsonl", "eval/reader/dev/corpus"),
                ("heldout", "eval/reader/heldout/gold.jsonl", "eval/reader/heldout/corpus"))
DEFAULT_THRESHOLDS = ROOT / "eval" / "thresholds.toml"
DEFAULT_REPORT_DIR = ROOT / "eval"
#: What ``--generator all`` tries, in order; a language model whose weights do not load is
#: reported as skipped.
ALL_GENERATORS = ("extractive", "smollm2", "seq2seq")


@dataclass(frozen=True)
class EvalSet:
    """A gold file, the corpus its evidence comes from, and where its index lives (``None``:
    a folder of its own under the cache)."""

    name: str
    gold: Path
    corpus: Path
    index: Path | None = None

    @property
    def index_folder(self) -> Path:
        return Path(self.index) if self.index else cache_dir() / "eval-index" / self.name


def shipped_sets(names=None) -> list[EvalSet]:
    """The shipped sets, or those called ``names`` (an unknown name is an error)."""
    known = [name for name, _, _ in SHIPPED_SETS]
    for name in names or ():
        if name not in known:
            raise RagError(f"unknown set {name!r}; choose among {', '.join(known)}, or pass "
                           "--gold FILE")
    sets = [EvalSet(name, ROOT / gold, ROOT / corpus) for name, gold, corpus in SHIPPED_SETS
            if not names or name in names]
    for s in sets:
        if not s.gold.is_file():
            raise RagError(f"the shipped gold set {s.gold} is missing; pass --gold FILE "
                           "--corpus DIR to evaluate your own")
    return sets


def generator_names(choice: str | None, default: str) -> list[str]:
    """The generators ``--generator`` names: one name, or every one for ``all``."""
    if not choice:
        return [default]
    if choice == "all":
        return list(ALL_GENERATORS)
    return [choice]


def package_versions() -> dict:
    """Installed versions of the packages the figures depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for label, dists in (("rag", ("rag-news",)), ("torch", ("torch",)),
                         ("transformers", ("transformers",)),
                         ("sentence-transformers", ("sentence-transformers",)),
                         ("faiss", ("faiss-cpu", "faiss", "faiss-gpu")),
                         ("onnxruntime", ("onnxruntime", "onnxruntime-gpu"))):
        out[label] = None
        for dist in dists:
            try:
                out[label] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return out


def _open_set(s: EvalSet, settings, embedder):
    """Build or update the set's index (embedding only what changed) and open it."""
    from .errors import IndexMismatchError
    from .index import build_index
    from .retrieve import Index

    folder = s.index_folder
    set_settings = replace(settings, corpus=Path(s.corpus), index=folder)
    try:
        report = build_index(set_settings, embedder=embedder)
    except IndexMismatchError:
        if s.index:  # the user's own folder: never rebuilt behind their back
            raise
        report = build_index(set_settings, embedder=embedder, rebuild=True)
    return Index(folder, set_settings, embedder=embedder), report


def evaluate_sets(sets: list[EvalSet], generators: list[str], settings=None, *,
                  limit: int | None = None, skip_unloadable: bool = False, embedder=None,
                  log=None) -> dict:
    """Answer every gold question of every set with every generator and score the answers.

    ``limit`` keeps the first N items of each set for language-model generators (extractive
    always answers all). With ``skip_unloadable`` a generator whose model does not load is
    reported as ``{"skipped": reason}`` instead of raising.

    Returns ``{"date", "versions", "settings", "sets": {name: {"gold", "corpus", "index",
    "items", "index_report", "generators": {name: {"items", "overall", "per_kind",
    "results", "seconds"} or {"skipped"}}}}}``.
    """
    from .cite import SUPPORT_THRESHOLD
    from .config import Settings
    from .pipeline import ABSTAIN_THRESHOLD, Pipeline

    settings = settings or Settings.from_env()
    log = log or (lambda msg: None)
    # every gold file and corpus is checked before any model loads
    gold = {}
    for s in sets:
        gold[s.name] = load_gold(s.gold)
        if not gold[s.name]:
            raise RagError(f"gold file {s.gold} holds no items; see the README's gold format")
        if not Path(s.corpus).is_dir():
            raise RagError(f"corpus folder {s.corpus} of the {s.name!r} set does not exist; "
                           "pass --corpus DIR")
    if embedder is None:
        from .embed import embedder_for

        embedder = embedder_for(settings)
    loaded: dict[str, object] = {}
    skipped: dict[str, str] = {}

    def generator(name):
        if name in skipped or name in loaded:
            return loaded.get(name)
        from .generate import load_generator

        try:
            gen = load_generator(name)
            if hasattr(gen, "warm_up"):
                log(f"loading the {name} generator")
                gen.warm_up()  # load now, so the first answer's latency is not the load
        except RagError as e:
            if not skip_unloadable:
                raise
            skipped[name] = str(e)
            log(f"{name}: skipped ({e})")
            return None
        loaded[name] = gen
        return gen

    for name in generators:  # an unknown name or missing weights fail before any indexing
        if name != "extractive":
            generator(name)
    metrics = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "versions": package_versions(),
        "settings": {
            "embedder": settings.embedder, "embed_backend": settings.embed_backend,
            "chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap,
            "store": settings.store, "k": settings.k, "generators": list(generators),
            "limit": limit, "abstain_threshold": ABSTAIN_THRESHOLD,
            "support_threshold": SUPPORT_THRESHOLD, "faithful_share": FAITHFUL_SHARE,
        },
        "sets": {},
    }
    for s in sets:
        items = gold[s.name]
        log(f"{s.name}: indexing {s.corpus} into {s.index_folder}")
        index, report = _open_set(s, settings, embedder)
        entry = {"gold": str(s.gold), "corpus": str(s.corpus), "index": str(s.index_folder),
                 "items": len(items), "index_report": report.to_json(), "generators": {}}
        metrics["sets"][s.name] = entry
        for name in generators:
            if name != "extractive" and generator(name) is None:
                entry["generators"][name] = {"skipped": skipped[name]}
                continue
            # one loaded model for every set
            pipeline = Pipeline(index, name, k=settings.k, model=loaded.get(name))
            chosen = items if name == "extractive" or not limit else items[:limit]
            if name == "extractive":
                pipeline.ask(chosen[0].question)  # warm up (embedder sessions) before timing
            t0 = time.perf_counter()

            def progress(done, total, _set=s.name, _gen=name):
                if done == total or done % 20 == 0:
                    log(f"{_set} / {_gen}: {done}/{total} answered")

            results = answer_items(pipeline, chosen, index, progress)
            entry["generators"][name] = {
                "items": len(chosen),
                "seconds": round(time.perf_counter() - t0, 2),
                "overall": summarise(results),
                "per_kind": summarise_by_kind(results),
                "results": [r.to_json() for r in results],
            }
    return metrics


# -- the report ----------------------------------------------------------------------------------

_COLUMNS = (("hit_at_1", "hit@1"), ("hit_at_5", "hit@5"), ("mrr", "MRR"),
            ("accuracy", "accuracy"), ("f1", "F1"), ("short_em", "short EM"),
            ("short_f1", "short F1"), ("citation_precision", "cit. P"),
            ("citation_recall", "cit. R"), ("faithfulness", "faithful"),
            ("abstain_rate", "abstain (unans.)"), ("false_abstain_rate", "false abstain"),
            ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"))


def _cell(key: str, value) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if key.startswith("latency") else f"{value:.3f}"


def _row(label: str, figures: dict, counts: str) -> str:
    cells = [label, counts] + [_cell(k, figures.get(k)) for k, _ in _COLUMNS]
    return "| " + " | ".join(cells) + " |"


def _header(first: str) -> list[str]:
    heads = [first, "items (ans./unans.)"] + [h for _, h in _COLUMNS]
    return ["| " + " | ".join(heads) + " |", "|" + " --- |" * len(heads)]


def _shown(path) -> str:
    """A path as the report shows it: relative to the repository when inside it."""
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def render_report(metrics: dict, thresholds: dict | None = None,
                  thresholds_path: str | Path | None = None, misses=None) -> str:
    """The Markdown report of an evaluation (:func:`evaluate_sets`)."""
    st = metrics["settings"]
    lines = ["# Evaluation report", "",
             f"Written by `rag eval` on {metrics['date']}.", "",
             "## Versions", ""]
    lines += [f"- {k}: {v or 'not installed'}" for k, v in metrics["versions"].items()]
    lines += ["", "## Settings", "",
              f"- embedder: `{st['embedder']}` on {st['embed_backend']}; chunks of "
              f"{st['chunk_tokens']} tokens ({st['chunk_overlap']} overlap); store {st['store']}",
              f"- k (passages per question): {st['k']}",
              f"- generators: {', '.join(st['generators'])}"
              + (f" (language models: first {st['limit']} items of each set)"
                 if st.get("limit") else ""),
              f"- abstain threshold {st['abstain_threshold']}, support threshold "
              f"{st['support_threshold']}, faithful when ≥ {st['faithful_share']:.0%} of a "
              "sentence's content words are in the passages it cites"]
    if thresholds_path:
        lines.append(f"- gate thresholds: `{_shown(thresholds_path)}`")
    lines += ["", "Figures: retrieval (hit@1, hit@5, MRR over the answer's own retrieved "
              "passages), accuracy (a normalised gold answer occurs in the answer) and token F1 over "
              "answerable items; citation precision (cited passages overlapping the evidence, "
              "over answerable items' citations) and recall (answerable items with a correct "
              "citation); faithfulness over the sentences of answers that did not abstain; "
              "abstain rate over unanswerable items, false-abstain rate over answerable ones; "
              "latency of the whole answer.", ""]
    for name, s in metrics["sets"].items():
        lines += [f"## {name}", "",
                  f"Gold `{_shown(s['gold'])}` ({s['items']} items), corpus `{_shown(s['corpus'])}`.", ""]
        lines += _header("generator")
        for gen, g in s["generators"].items():
            if "skipped" in g:
                lines.append(f"| {gen} | skipped: {g['skipped']} |" + " |" * (len(_COLUMNS) + 1))
                continue
            o = g["overall"]
            lines.append(_row(gen, o, f"{o['items']} ({o['answerable']}/{o['unanswerable']})"))
        lines.append("")
        limits = thresholds_for(thresholds or {}, name, "extractive")
        if limits:
            lines += ["Gate (extractive): " + ", ".join(
                f"{k.removeprefix('max_')} {'≤' if k.startswith('max_') else '≥'} {v}"
                for k, v in limits.items()), ""]
        for gen, g in s["generators"].items():
            if "skipped" in g:
                continue
            lines += [f"### {name}, {gen}, per kind", ""]
            lines += _header("kind")
            for kind, f in g["per_kind"].items():
                lines.append(_row(kind, f, f"{f['items']} ({f['answerable']}/{f['unanswerable']})"))
            lines.append("")
    if misses is not None:
        lines += ["## Gate", ""]
        lines += [f"- missed: {m}" for m in misses] if misses else ["All gated figures pass."]
        lines.append("")
    return "\n".join(lines)


def plot_report(metrics: dict, path: str | Path) -> Path:
    """A PNG comparing generators and kinds: per set, grouped bars of hit@5 (retrieval) and of
    each generator's accuracy per kind (for unanswerable questions: the abstain rate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(metrics["sets"].items())
    fig, axes = plt.subplots(len(sets), 1, figsize=(15, 4.4 * len(sets)), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, (name, s) in zip(axes[:, 0], sets):
        ran = [(g, v) for g, v in s["generators"].items() if "overall" in v]
        if not ran:
            ax.set_title(f"{name}: nothing ran")
            ax.axis("off")
            continue
        # retrieval does not depend on the generator: take the run with the most items
        base = max(ran, key=lambda gv: gv[1]["items"])[1]
        kinds = ["all"] + [k for k in KINDS if k in base["per_kind"]]

        def fig_of(run, kind, key):
            f = run["overall"] if kind == "all" else run["per_kind"].get(kind, {})
            if kind == "unanswerable" and key == "accuracy":
                key = "abstain_rate"
            return f.get(key)

        series = [("hit@5 (retrieval)", base, "hit_at_5", "0.55")]
        series += [(f"accuracy: {g}" + (f" ({v['items']} items)" if v["items"] < s["items"]
                                         else ""), v, "accuracy", colors[i % 10])
                   for i, (g, v) in enumerate(ran)]
        width = 0.8 / len(series)
        for j, (label, run, key, color) in enumerate(series):
            xs, ys = [], []
            for x, kind in enumerate(kinds):
                value = fig_of(run, kind, key)
                if value is not None:
                    xs.append(x - 0.4 + width * (j + 0.5))
                    ys.append(value)
            bars = ax.bar(xs, ys, width, label=label, color=color)
            ax.bar_label(bars, fmt="%.2f", fontsize=6.5, padding=1, rotation=90 if
                         len(series) > 3 else 0)
        n = {k: (base["overall"] if k == "all" else base["per_kind"][k])["items"] for k in kinds}
        ax.set_xticks(range(len(kinds)),
                      [f"{k}\n(abstained)" if k == "unanswerable" else k for k in kinds])
        ax.set_xticklabels([f"{t.get_text()}\nn={n[k]}" for t, k in
                            zip(ax.get_xticklabels(), kinds)], fontsize=9)
        ax.set_ylim(0, 1.12)
        ax.set_ylabel("share")
        ax.set_title(f"{name}: retrieval hit@5 and answer accuracy per kind")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(metrics: dict, folder: str | Path, thresholds: dict | None = None,
                 thresholds_path=None, misses=None) -> tuple[Path, Path]:
    """``report.md`` and ``report.png`` in ``folder``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        md = folder / "report.md"
        md.write_text(render_report(metrics, thresholds, thresholds_path, misses),
                      encoding="utf-8")
        png = plot_report(metrics, folder / "report.png")
    except OSError as e:
        raise RagError(f"cannot write the report in {folder}: {e.strerror}; pass --report DIR") \
            from None
    return md, png
