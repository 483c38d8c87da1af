"""Hybrid retrieval: dense (FAISS inner product) and BM25 (bm25s), fused by reciprocal rank
fusion, then news-aware re-ranking.

News corpora are full of same-topic stories from other years and events, so a question that
names a year, date, figure or proper name prefers passages (and articles, by their title and
date) that contain it: each such *anchor* (:func:`rag.textrules.anchors`) found adds to the
fused score.
"""

from __future__ import annotations

import heapq
import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .config import Settings
from .dates import NO_DAY, date_range, day_of
from .embed import LazyEmbedder
from .errors import IndexDamagedError, IndexNotFoundError
from .index import (
    ArticleRecord,
    Generation,
    embed_backend_of,
    english_stemmer,
    open_generation,
    read_manifest,
)
from .question import Question, analyze
from .textrules import anchor_match, compile_anchors
from .types import Chunk, Hit

log = logging.getLogger(__name__)

RRF_K = 60
CANDIDATES = 50  # per retriever, before fusion
NEWS_WEIGHT = 0.02  # a passage matching every anchor gains about one rank-1 RRF share

@dataclass(frozen=True)
class Candidate:
    """A passage a retriever found, before the news-aware boost: its fused retrieval
    score (reciprocal rank fusion), its cosine similarity to the question when known, its
    BM25 score when BM25 found it, and ``key``, the store's own id for it."""

    chunk: Chunk
    article: dict[str, str]
    fused: float
    dense: float | None = None
    bm25: float | None = None
    key: object = None


def news_boosts(question: Question, fused, order, k: int, texts) -> np.ndarray:
    """The news-aware boost of each candidate: ``NEWS_WEIGHT`` times the share of the
    question's years, figures and names found in its passage (or in its article's title and
    date). ``fused`` holds the candidates' fused scores, ``order`` their positions best fused
    first, ``texts(i)`` candidate ``i``'s (passage, "title\\ndate").

    Only candidates that could still reach the top ``k`` are matched (the others keep 0): the
    boost is at most :data:`NEWS_WEIGHT`, so once the ``k``-th best boosted score beats a
    candidate's fused score plus that, it beats every later one too. Every store boosts so."""
    boost = np.zeros(len(fused))
    found = compile_anchors(question.anchors)
    if not found:
        return boost
    best: list[float] = []  # a min-heap of the k best boosted scores so far
    for i in order:
        if len(best) == k and fused[i] + NEWS_WEIGHT < best[0]:
            break
        boost[i] = NEWS_WEIGHT * anchor_match(found, *texts(i))
        score = fused[i] + boost[i]
        if len(best) < k:
            heapq.heappush(best, score)
        elif score > best[0]:
            heapq.heapreplace(best, score)
    return boost


def rank_hits(question: Question, candidates: list[Candidate], k: int, *, news: bool = True,
              dense=None) -> tuple[Hit, ...]:
    """The ``k`` best of ``candidates`` as :class:`Hit` s, best first: each fused score plus
    the news-aware boost (:func:`news_boosts`). ``dense(candidate)`` gives the cosine
    similarity of a kept candidate that has none (only those are asked)."""
    fused = np.array([c.fused for c in candidates], float)
    order = sorted(range(len(candidates)), key=lambda i: -fused[i])

    def texts(i: int) -> tuple[str, str]:
        meta = candidates[i].article
        return candidates[i].chunk.text, f"{meta.get('title', '')}\n{meta.get('date', '')}"

    boost = news_boosts(question, fused, order, k, texts) if news else np.zeros(len(fused))
    scored = sorted(range(len(candidates)), key=lambda i: -(fused[i] + boost[i]))
    hits = []
    for rank, i in enumerate(scored[:k], 1):
        c = candidates[i]
        cosine = c.dense if c.dense is not None or dense is None else dense(c)
        hits.append(Hit(chunk=c.chunk, article=c.article, score=float(fused[i] + boost[i]),
                        dense=cosine, bm25=c.bm25, boost=float(boost[i]), rank=rank))
    return tuple(hits)


class Index(LazyEmbedder):
    """An opened index that answers ``search(question, k)`` with ranked :class:`Hit` s.

    Use (with an index in ``index/``)::

        idx = Index("index")
        idx.search("How much did Alibaba invest in SenseTime?", k=3)[0].chunk.text
        # 'Alibaba led a group of investors that poured $600 million into SenseTime, ...'
    """

    def __init__(self, folder: str | Path | None = None, settings: Settings | None = None,
                 embedder=None):
        self.settings = settings or Settings.from_env()
        self.folder = Path(folder) if folder is not None else Path(self.settings.index)
        self._embedder = embedder
        self._lock = threading.Lock()
        self.generation = None
        self._manifest_seen: tuple[int, int, int] | None = None
        self._stemmer = english_stemmer()
        self.reload()

    def _manifest_stat(self) -> tuple[int, int, int] | None:
        try:
            st = (self.folder / "manifest.json").stat()
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def reload(self) -> bool:
        """Pick up a newer generation written by ``rag index``; True when something changed.

        Cheap when nothing was written: the manifest (which lists every article) is parsed
        only when its file changed, so callers may reload before every question. A damaged
        file raises :class:`~rag.errors.IndexDamagedError` (the generation read before stays
        in use by searches until a reload succeeds)."""
        seen = self._manifest_stat()
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
        backend = embed_backend_of(manifest, self.settings, f"the index in {self.folder}",
                                   "rag index --rebuild")
        # Queries are embedded the way the passages were, and searched with the index's store.
        settings = replace(self.settings, embed_backend=backend,
                           store=manifest.get("store_setting", manifest["store"]))
        try:
            generation = open_generation(self.folder, manifest)
        except IndexDamagedError:
            if self._manifest_stat() != seen:
                # A writer replaced the generation while we read it; the new manifest is complete.
                return self.reload()
            raise
        self._load(generation, settings)
        self._manifest_seen = seen
        return True

    def _load(self, generation: Generation, settings: Settings) -> None:
        manifest, records, store = generation.manifest, generation.records, generation.store
        articles = list(records.values())
        chunk_article = []
        chunk_span = []
        chunk_vid = []
        for ai, rec in enumerate(articles):
            for ordinal, (s, e, vid) in enumerate(rec.chunks):
                chunk_article.append((ai, ordinal))
                chunk_span.append((s, e))
                chunk_vid.append(vid)
        # Rows (chunks in article order) and store positions as arrays, so that a search maps
        # and filters its candidates with a few array operations.
        vids = np.array(chunk_vid, np.int64)
        rows_by_vid = np.argsort(vids, kind="stable")
        vids_sorted = vids[rows_by_vid]
        row_of_pos = rows_by_vid[np.searchsorted(vids_sorted, store.ids)]
        pos_of_row = np.empty(len(vids), np.int64)
        pos_of_row[row_of_pos] = np.arange(len(row_of_pos))
        row_article = np.array([ai for ai, _ in chunk_article], np.int64)
        article_day = np.array([day_of(rec.date) for rec in articles] or [NO_DAY], np.int64)
        with self._lock:
            if self._embedder is not None and self._embedder.id != manifest["embedder"]:
                self._embedder = None  # queries must be embedded exactly like the passages
            self.settings = settings
            self.manifest = manifest
            self.articles: list[ArticleRecord] = articles
            self.store = store
            self.bm25 = generation.bm25
            self._chunk_article = chunk_article
            self._chunk_span = chunk_span
            self._vids_sorted, self._rows_by_vid = vids_sorted, rows_by_vid
            self._row_of_pos, self._pos_of_row = row_of_pos, pos_of_row
            self._row_article = row_article
            self._row_day = article_day[row_article]  # the article's day number, per row
            self._by_id = {rec.id: rec for rec in articles}
            self.generation = manifest.get("generation")

    # -- search ---------------------------------------------------------------------------

    def chunk(self, row: int) -> Chunk:
        ai, ordinal = self._chunk_article[row]
        rec = self.articles[ai]
        s, e = self._chunk_span[row]
        return Chunk(id=f"{rec.id}:{ordinal}", article_id=rec.id, start=s, end=e,
                     text=rec.text[s:e], ordinal=ordinal)

    def question(self, text: str, history=()) -> Question:
        """The :class:`~rag.question.Question` for ``text``, analysed once and embedded with
        this index's embedder (the same way its passages were)."""
        return analyze(text, history, self.embedder, self._stemmer)

    def search(self, question: str | Question, k: int | None = None, *, hybrid: bool = True,
               news: bool = True, since: str | None = None,
               until: str | None = None) -> tuple[Hit, ...]:
        """The ``k`` best passages for ``question`` (a text, or a :class:`Question` already
        analysed), best first.

        ``since`` / ``until`` keep passages of articles dated within them, both inclusive
        (``YYYY-MM-DD``; a bare ``YYYY`` or ``YYYY-MM`` covers the whole year or month);
        articles without a date are left out when either is given. The filter applies to
        every candidate before the ``k`` best are chosen. ``hybrid=False`` uses the dense
        retriever alone; ``news=False`` turns off the news-aware boost (both for measuring
        what they add).
        """
        days = date_range(since, until)  # a malformed date fails before any work
        if not isinstance(question, Question):
            question = self.question(question)
        k = k or self.settings.k
        with self._lock:
            qv = question.vector
            if qv is None:
                qv = self.embedder.embed_query(question.retrieval_text)
            n = max(CANDIDATES, 4 * k)
            row_ok = None
            if days is not None:
                row_ok = (self._row_day >= days[0]) & (self._row_day <= days[1])
                if not row_ok.any():
                    return ()
            # Each retriever ranks its n best rows; the fused order is by RRF score, ties in
            # the order the rows were first seen (dense ranks, then BM25 ranks).
            dense_rows = self._dense_rows(qv, n, row_ok)
            bm25_rows, bm25_scores = self._bm25_rows(question, n, row_ok) if hybrid \
                else (np.zeros(0, np.int64), np.zeros(0, np.float32))
            seen = np.concatenate([dense_rows, bm25_rows])
            shares = np.concatenate([1.0 / (RRF_K + np.arange(1, len(dense_rows) + 1)),
                                     1.0 / (RRF_K + np.arange(1, len(bm25_rows) + 1))])
            rows, first, where = np.unique(seen, return_index=True, return_inverse=True)
            fused = np.zeros(len(rows))
            np.add.at(fused, where, shares)
            order = np.lexsort((first, -fused))
            boost = self._boosts(question, rows, fused, order, k) if news \
                else np.zeros(len(rows))
            fused = fused + boost
            best = np.lexsort((first, -fused))[:k]
            bm25_of = dict(zip(bm25_rows.tolist(), bm25_scores.tolist()))
            hits = []
            for rank, i in enumerate(best.tolist(), 1):
                row = int(rows[i])
                rec = self.articles[self._row_article[row]]
                hits.append(Hit(chunk=self.chunk(row), article=rec.metadata(),
                                score=float(fused[i]), dense=self._dense_score(row, qv),
                                bm25=bm25_of.get(row), boost=float(boost[i]), rank=rank))
            return tuple(hits)

    def _dense_rows(self, qv: np.ndarray, n: int, row_ok: np.ndarray | None) -> np.ndarray:
        """The rows of the ``n`` passages nearest to the query vector, best first."""
        allowed = None if row_ok is None else row_ok[self._row_of_pos]
        _, ids = self.store.search(qv, n, allowed)
        return self._rows_by_vid[np.searchsorted(self._vids_sorted, ids)]

    def _bm25_rows(self, question: Question, n: int,
                   row_ok: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The rows and scores of the (up to) ``n`` best BM25 passages with a score above 0,
        best first (equal scores: the earlier row first). What ``bm25s.BM25.retrieve``
        selects, without its per-call overhead, and choosing among the passages that share a
        query word only: a partition of all 50k scores took most of a search."""
        if self.bm25 is None or not question.bm25_tokens:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = self.bm25.get_scores(list(question.bm25_tokens))
        if row_ok is not None:
            scores = np.where(row_ok, scores, 0).astype(scores.dtype, copy=False)
        rows = np.flatnonzero(scores > 0)
        if len(rows) > n:
            rows = rows[np.argpartition(-scores[rows], n - 1)[:n]]
        rows = rows[np.lexsort((rows, -scores[rows]))]
        return rows.astype(np.int64), scores[rows]

    def _boosts(self, question: Question, rows: np.ndarray, fused: np.ndarray,
                order: np.ndarray, k: int) -> np.ndarray:
        """:func:`news_boosts` of the fused candidate ``rows`` (``order``: best fused first)."""
        def texts(i: int) -> tuple[str, str]:
            row = int(rows[i])
            rec = self.articles[self._row_article[row]]
            s, e = self._chunk_span[row]
            return rec.text[s:e], f"{rec.title}\n{rec.date}"

        return news_boosts(question, fused, order.tolist(), k, texts)

    def _dense_score(self, row: int, qv: np.ndarray) -> float:
        return float(self.store.vectors[self._pos_of_row[row]] @ qv)

    def article_text(self, article_id: str) -> str:
        """The whole text of an indexed article ("" when there is none by that id)."""
        rec = self._by_id.get(article_id)
        return rec.text if rec is not None else ""

    def stats(self) -> dict:
        """Articles, chunks, embedder and last update, for status displays."""
        m = self.manifest
        return {"articles": m["counts"]["articles"], "chunks": m["counts"]["chunks"],
                "embedder": m["embedder"], "store": m["store"], "updated_at": m["updated_at"]}


def open_store_index(settings: Settings, embedder=None, folder: str | Path | None = None):
    """The index ``settings`` name, opened for searching: the Milvus index
    (:class:`rag.milvus.MilvusIndex`) when ``settings.store`` is ``milvus``, else the index
    folder (``folder``, default ``settings.index``). Both answer the same calls."""
    if settings.store == "milvus":
        from .milvus import MilvusIndex

        return MilvusIndex(settings, embedder=embedder)
    return Index(folder if folder is not None else settings.index, settings, embedder=embedder)


def open_index(folder: str | Path | None = None, **settings) -> Index:
    """Open the index in ``folder`` (default ``index/`` or ``RAG_INDEX``; with
    ``store="milvus"``, the Milvus index of ``RAG_MILVUS_URI``) for searching.

    Use::

        from rag import open_index

        hits = open_index("index").search("Who leads SenseTime?", k=3)
    """
    return open_store_index(Settings.from_env(**settings), folder=folder)


