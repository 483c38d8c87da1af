"""Hybrid retrieval: dense (FAISS inner product) and BM25 (bm25s), fused by reciprocal rank
fusion, then news-aware re-ranking.

News corpora are full of same-topic stories from other years and events, so a question that
names a year, date, figure or proper name prefers passages (and articles, by their title and
date) that contain it: each such *anchor* found adds to the fused score.

>>> anchors("How much did Harbor Robotics raise in March 2021?")
(('asks', 'number', 1.0), ('year', '2021', 2.0), ('month', 'march', 1.0), ('name', 'Harbor', 1.0), ('name', 'Robotics', 1.0))
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np

from .config import Settings
from .errors import IndexMismatchError, IndexNotFoundError, QueryError
from .index import FORMAT_VERSION, ArticleRecord, bm25_tokens, english_stemmer, read_manifest
from .store import FaissStore
from .types import Chunk, Hit

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
RRF_K = 60
CANDIDATES = 50  # per retriever, before fusion
NEWS_WEIGHT = 0.02  # a passage matching every anchor gains about one rank-1 RRF share

_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")
_NUMBER = re.compile(r"(?<![\w.])\$?(\d+(?:[.,]\d+)*)")
_MONTHS = ("january february march april may june july august september october november "
           "december").split()
_MONTH = re.compile(r"\b(" + "|".join(_MONTHS) + r")\b", re.IGNORECASE)
_NAME = re.compile(r"\b[A-Z][\w'\u2019&]*\w|\b[A-Z]\b")
# The kind of answer a question asks for, and what a passage holding it must contain.
_ASKS_NUMBER = re.compile(r"^\s*(how (much|many|large|big|long|far|fast)|what (is|was|were) the "
                          r"(amount|sum|size|value|price|cost|number|total|figure|share))\b", re.I)
_ASKS_DATE = re.compile(r"^\s*(when\b|(in )?what (year|month|day|date)\b|on what (day|date))", re.I)
_DATE_WORDS = re.compile(r"\b(1[89]\d\d|20\d\d|" + "|".join(_MONTHS) + r"|monday|tuesday|"
                         r"wednesday|thursday|friday|saturday|sunday|yesterday|today|last "
                         r"(week|month|year|spring|summer|fall|autumn|winter))\b", re.I)
_NOT_NAMES = frozenset(
    "a an the what who whom whose when where why how which did does do is are was were will "
    "would can could should has have had in on at of for to from by with and or but if i it its "
    "this that these those there their they he she his her we our you your me my tell give list "
    "name according after before during since about as".split()
)
_WEIGHTS = {"year": 2.0, "number": 1.5, "month": 1.0, "name": 1.0, "asks": 1.0}


def anchors(question: str) -> tuple[tuple[str, str, float], ...]:
    """Years, figures, months and proper names a question names, and the kind of answer it
    asks for (a figure, a date): (kind, value, weight)."""
    found: dict[tuple[str, str], float] = {}
    if _ASKS_NUMBER.search(question):
        found[("asks", "number")] = _WEIGHTS["asks"]
    elif _ASKS_DATE.search(question):
        found[("asks", "date")] = _WEIGHTS["asks"]
    years = set(_YEAR.findall(question))
    for y in _YEAR.findall(question):
        found[("year", y)] = _WEIGHTS["year"]
    for m in _NUMBER.finditer(question):
        value = _number(m.group(1))
        if value not in years:
            found[("number", value)] = _WEIGHTS["number"]
    for m in _MONTH.finditer(question):
        found[("month", m.group(1).lower())] = _WEIGHTS["month"]
    for m in _NAME.finditer(question):
        word = m.group()
        if word.lower() in _NOT_NAMES or word.lower() in _MONTHS:
            continue
        found[("name", word)] = _WEIGHTS["name"]
    return tuple((kind, value, w) for (kind, value), w in found.items())


def _number(text: str) -> str:
    text = text.replace(",", "")
    return text.rstrip("0").rstrip(".") if "." in text else text


def anchor_match(anchor_list, passage: str, about: str = "") -> float:
    """The weighted share (0..1) of a question's anchors found in a passage.

    Years, figures, months and names also count when found in ``about`` (the article's title
    and date); the kind of answer asked for must be in the passage itself. ``anchor_list`` is
    what :func:`anchors` returns, or :func:`compile_anchors` of it (faster when reused).
    """
    if not anchor_list:
        return 0.0
    if not isinstance(anchor_list, _Compiled):
        anchor_list = compile_anchors(anchor_list)
    text = f"{about}\n{passage}"
    numbers = None
    got = 0.0
    for kind, value, w, pattern in anchor_list.items:
        if kind == "asks":
            hit = pattern.search(passage) is not None
        elif kind == "number":
            if numbers is None:
                numbers = {_number(n) for n in _NUMBER.findall(text)}
            hit = value in numbers
        else:
            hit = pattern.search(text) is not None
        got += w if hit else 0.0
    return got / anchor_list.total


class _Compiled:
    def __init__(self, items):
        self.items = items
        self.total = sum(w for _, _, w, _ in items)

    def __bool__(self):
        return bool(self.items)


def compile_anchors(anchor_list) -> _Compiled:
    """Anchors with their matching patterns compiled once, for scoring many passages."""
    items = []
    for kind, value, w in anchor_list:
        if kind == "asks":
            pattern = _NUMBER if value == "number" else _DATE_WORDS
        else:
            pattern = re.compile(rf"\b{re.escape(value)}\b", re.IGNORECASE)
        items.append((kind, value, w, pattern))
    return _Compiled(tuple(items))


class Index:
    """An opened index that answers ``search(question, k)`` with ranked :class:`Hit` s.

    >>> idx = Index("index")                                     # doctest: +SKIP
    >>> idx.search("How much did Alibaba invest in SenseTime?", k=3)[0].chunk.text  # doctest: +SKIP
    'Alibaba led a group of investors that poured $600 million into SenseTime, ...'
    """

    def __init__(self, folder: str | Path | None = None, settings: Settings | None = None,
                 embedder=None):
        self.settings = settings or Settings.from_env()
        self.folder = Path(folder) if folder is not None else Path(self.settings.index)
        self._embedder = embedder
        self._lock = threading.Lock()
        self.generation = None
        self._manifest_seen: tuple[int, int, int] | None = None
        self.reload()

    @property
    def embedder(self):
        if self._embedder is None:
            from .embed import embedder_for

            self._embedder = embedder_for(self.settings)
        return self._embedder

    def reload(self) -> bool:
        """Pick up a newer generation written by ``rag index``; True when something changed.

        Cheap when nothing was written: the manifest (which lists every article) is parsed
        only when its file changed, so callers may reload before every question."""
        try:
            st = (self.folder / "manifest.json").stat()
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            seen = None
        if seen is not None and seen == self._manifest_seen:
            return False
        manifest = read_manifest(self.folder)
        if manifest is None:
            raise IndexNotFoundError(
                f"no index in {self.folder}; run `rag index` first (or pass --index DIR)"
            )
        if manifest.get("generation") == self.generation:
            self._manifest_seen = seen
            return False
        model, _, backend = manifest.get("embedder", "").rpartition("#")
        if manifest.get("format_version") != FORMAT_VERSION or model != self.settings.embedder:
            raise IndexMismatchError(
                f"the index in {self.folder} was built with embedder {model!r} (format "
                f"{manifest.get('format_version')}); run `rag index --rebuild` to rebuild it "
                f"with {self.settings.embedder!r}"
            )
        # Queries are embedded the way the passages were, and searched with the index's store.
        settings = replace(self.settings, embed_backend=backend, store=manifest["store"])
        try:
            self._load(manifest, settings)
        except FileNotFoundError:
            # A writer replaced the generation while we read it; the new manifest is complete.
            return self.reload()
        self._manifest_seen = seen
        return True

    def _load(self, manifest: dict, settings: Settings) -> None:
        from .index import import_bm25s, read_records

        bm25s = import_bm25s()
        files = manifest["files"]
        records = read_records(self.folder, manifest)
        store = FaissStore.load(self.folder, files["vectors"], manifest["dimension"],
                                manifest["store"])
        bm25_dir = self.folder / files["bm25"]
        bm25 = bm25s.BM25.load(str(bm25_dir)) if (bm25_dir / "params.index.json").exists() else None
        articles = list(records.values())
        chunk_article = []
        chunk_span = []
        chunk_vid = []
        for ai, rec in enumerate(articles):
            for ordinal, (s, e, vid) in enumerate(rec.chunks):
                chunk_article.append((ai, ordinal))
                chunk_span.append((s, e))
                chunk_vid.append(vid)
        with self._lock:
            if self._embedder is not None and self._embedder.id != manifest["embedder"]:
                self._embedder = None  # queries must be embedded exactly like the passages
            self.settings = settings
            self.manifest = manifest
            self.articles: list[ArticleRecord] = articles
            self.store = store
            self.bm25 = bm25
            self._chunk_article = chunk_article
            self._chunk_span = chunk_span
            self._vids = np.array(chunk_vid, np.int64)
            self._row_of_vid = {int(v): i for i, v in enumerate(chunk_vid)}
            self._store_pos = {int(v): i for i, v in enumerate(store.ids)}
            self._stemmer = english_stemmer()
            self.generation = manifest.get("generation")

    # -- search ---------------------------------------------------------------------------

    def chunk(self, row: int) -> Chunk:
        ai, ordinal = self._chunk_article[row]
        rec = self.articles[ai]
        s, e = self._chunk_span[row]
        return Chunk(id=f"{rec.id}:{ordinal}", article_id=rec.id, start=s, end=e,
                     text=rec.text[s:e], ordinal=ordinal)

    def search(self, question: str, k: int | None = None, *, hybrid: bool = True,
               news: bool = True) -> tuple[Hit, ...]:
        """The ``k`` best passages for ``question``, best first.

        ``hybrid=False`` uses the dense retriever alone; ``news=False`` turns off the
        news-aware boost (both for measuring what they add).
        """
        question = validate_question(question)
        k = k or self.settings.k
        qv = self.embedder.embed_query(question)
        return self.search_vector(question, qv, k, hybrid=hybrid, news=news)

    def search_vector(self, question: str, qv: np.ndarray, k: int, *, hybrid: bool = True,
                      news: bool = True) -> tuple[Hit, ...]:
        """As :meth:`search`, with the question already embedded."""
        with self._lock:
            n = max(CANDIDATES, 4 * k)
            fused: dict[int, float] = {}
            dense_scores, dense_ids = self.store.search(qv, n)
            for rank, vid in enumerate(dense_ids, 1):
                fused[int(vid)] = 1.0 / (RRF_K + rank)
            bm25_score: dict[int, float] = {}
            if hybrid and self.bm25 is not None:
                tokens = bm25_tokens(question, self._stemmer)
                if tokens:
                    n_docs = len(self._vids)
                    docs, scores = self.bm25.retrieve([tokens], k=min(n, n_docs),
                                                      show_progress=False, n_threads=0)
                    rank = 0
                    for doc, score in zip(docs[0], scores[0]):
                        if score <= 0:
                            break
                        rank += 1
                        vid = int(self._vids[doc])
                        bm25_score[vid] = float(score)
                        fused[vid] = fused.get(vid, 0.0) + 1.0 / (RRF_K + rank)
            boost: dict[int, float] = {}
            found = compile_anchors(anchors(question)) if news else ()
            if found:
                for vid in fused:
                    row = self._row_of_vid[vid]
                    rec = self.articles[self._chunk_article[row][0]]
                    s, e = self._chunk_span[row]
                    match = anchor_match(found, rec.text[s:e], f"{rec.title}\n{rec.date}")
                    boost[vid] = NEWS_WEIGHT * match
                    fused[vid] += boost[vid]
            best = sorted(fused, key=lambda v: -fused[v])[:k]
            hits = []
            for rank, vid in enumerate(best, 1):
                row = self._row_of_vid[vid]
                chunk = self.chunk(row)
                rec = self.articles[self._chunk_article[row][0]]
                dense = float(self.store.vectors[self._store_pos[vid]] @ qv)
                hits.append(Hit(chunk=chunk, article=rec.metadata(), score=fused[vid],
                                dense=dense, bm25=bm25_score.get(vid), boost=boost.get(vid, 0.0),
                                rank=rank))
            return tuple(hits)

    def stats(self) -> dict:
        """Articles, chunks, embedder and last update, for status displays."""
        m = self.manifest
        return {"articles": m["counts"]["articles"], "chunks": m["counts"]["chunks"],
                "embedder": m["embedder"], "store": m["store"], "updated_at": m["updated_at"]}


def validate_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise QueryError("the question is empty; type a question about the articles")
    if len(question) > MAX_QUESTION_CHARS:
        raise QueryError(
            f"the question is {len(question)} characters long; keep it under "
            f"{MAX_QUESTION_CHARS}"
        )
    return question.strip()


def open_index(folder: str | Path | None = None, **settings) -> Index:
    """Open the index in ``folder`` (default ``index/`` or ``RAG_INDEX``) for searching.

    >>> from rag import open_index                              # doctest: +SKIP
    >>> hits = open_index("index").search("Who leads SenseTime?", k=3)  # doctest: +SKIP
    """
    return Index(folder, Settings.from_env(**settings))


