"""The Milvus store (``store = "milvus"``): passages, their articles and their vectors live in
Milvus, so every process that opens the same URI sees the same index.

``RAG_MILVUS_URI`` picks the database: a path ending in ``.db`` is Milvus Lite, run inside this
process (one process per file); ``http://host:19530`` is a Milvus server or cluster (with
``RAG_MILVUS_TOKEN``), which any number of processes can share (``milvus-lite server
--data-dir DIR --host 127.0.0.1 --port P`` serves a Milvus Lite folder that way). The default is
``milvus.db`` inside the index folder.

One index is three collections named after ``RAG_MILVUS_COLLECTION`` (``C``)::

    C_chunks     one row per passage: its span, text, article metadata, the article's date as
                 a YYYYMMDD number (``day``, 0 when undated), a dense vector (HNSW, cosine)
                 and a sparse BM25 vector that Milvus computes (a BM25 function) from
                 ``terms``: the passage's words as the local store's BM25 sees them
    C_articles   one row per article (long texts in several parts): metadata, content hash,
                 passage count; written after the article's passages, so an article whose row
                 holds its current hash is complete
    C_meta       the manifest (format, embedder, dimension, chunker, counts, a version bumped
                 by every write), the last corpus scan per file, and the writer's lease

Search is Milvus ``hybrid_search`` (dense + BM25, fused by its RRF ranker with the same k as
the local store) with any date filter in the requests' ``filter`` expression; the news-aware
boost and :class:`~rag.types.Hit` building are :func:`rag.retrieve.rank_hits`, as for the local
store. Milvus's ranker does not say what each retriever scored, so ``Hit.bm25`` is ``None``;
``Hit.dense`` is the cosine similarity, computed from the returned vectors.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .audit import CLI, Actor, AuditLog
from .chunk import chunk_spans
from .config import Settings
from .dates import date_range, day_of
from .embed import LazyEmbedder
from .errors import (
    IndexBusyError,
    IndexMismatchError,
    IndexNotFoundError,
    RagError,
    first_line,
)
from .index import (
    EMBED_GROUP,
    FORMAT_VERSION,
    ArticleRecord,
    IndexReport,
    bm25_tokens,
    chunker_settings,
    corpus_folder,
    diff_corpus,
    embed_backend_of,
    english_stemmer,
    manifest_mismatch,
)
from .question import Question, analyze
from .retrieve import CANDIDATES, RRF_K, Candidate, rank_hits
from .types import Chunk, Hit

log = logging.getLogger(__name__)

INSTALL = "pip install 'rag-news[scale]'"
#: Milvus keeps at most 65,535 bytes in a VARCHAR: long texts are stored in parts of this many
#: characters (4 bytes each at most in UTF-8).
TEXT_PART = 16_000
MAX_ID = 4096  # article ids and corpus paths
LEASE_S = 120.0  # a server writer's lease; renewed while it writes, so only a dead one expires
LEASE_CONFIRM_S = 0.3  # wait before reading a new lease back (a racing writer shows by then)
META_FIELDS = ("title", "url", "date", "author", "source", "path")
CHUNK_FIELDS = ("vid", "article_id", "hash", "ordinal", "start", "end", "text", "extra",
                *META_FIELDS)
ARTICLE_FIELDS = ("article_id", "part", "parts", "seq", "hash", "chunks", "text", "extra",
                  *META_FIELDS)
ARTICLE_TEXT_CACHE = 256
#: No keepalive pings on an idle connection: Milvus Lite's gRPC server (in process, or
#: `milvus-lite server`) counts pymilvus's default pings (every 10 s) as abuse and closes the
#: connection ("too_many_pings"), which a long-lived chat server would then find broken.
GRPC_OPTIONS = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": False}


# -- dates ----------------------------------------------------------------------------------------


def date_filter(since: str | None = None, until: str | None = None) -> str:
    """The Milvus filter expression for articles dated from ``since`` to ``until`` (both
    inclusive, as :func:`rag.dates.date_range` reads them), on each passage's ``day`` (its
    article's :func:`rag.dates.day_of`, :data:`rag.dates.NO_DAY` when undated, so undated
    articles are left out). "" when neither is given; a :class:`~rag.errors.QueryError` for a
    malformed date.

    >>> date_filter("2024", "2024-03")
    'day >= 738886 and day <= 738976'
    """
    found = date_range(since, until)
    return f"day >= {max(found[0], 0)} and day <= {found[1]}" if found else ""


# -- the connection -------------------------------------------------------------------------------


def milvus_uri(settings: Settings) -> str:
    """``settings.milvus_uri``, or ``milvus.db`` in the index folder."""
    return settings.milvus_uri or str(Path(settings.index) / "milvus.db")


def is_lite(uri: str) -> bool:
    return "://" not in uri


class _ToDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        log.debug("%s: %s", record.name, record.getMessage())
        return False


@contextmanager
def _to_debug(name: str) -> Iterator[None]:
    """Records of logger ``name`` go to this log at DEBUG level instead of the terminal:
    pymilvus warns at every query iterator that Milvus Lite keeps no server timestamp, and
    Milvus Lite logs a traceback when its file is open in another process (said in one line
    by :class:`Milvus`)."""
    logger = logging.getLogger(name)
    to_debug = _ToDebug()
    logger.addFilter(to_debug)
    try:
        yield
    finally:
        logger.removeFilter(to_debug)


def _quoted(values) -> str:
    """A list literal for a Milvus filter expression (JSON string escapes are Milvus's)."""
    return json.dumps(list(values), ensure_ascii=False)


def _vid(article_id: str, content_hash: str, ordinal: int) -> int:
    digest = hashlib.blake2b(f"{article_id}\0{content_hash}\0{ordinal}".encode(),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


class Milvus:
    """A connection to the Milvus database of ``settings`` and the names of the index's three
    collections. Every failure to reach it is a one-line :class:`RagError` naming the URI."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.uri = milvus_uri(settings)
        name = settings.milvus_collection
        self.chunks, self.articles, self.meta = f"{name}_chunks", f"{name}_articles", f"{name}_meta"
        self.where = f"{self.uri} (collection {name})"
        self._loaded = False
        try:
            import pymilvus
        except ImportError:
            raise RagError(f"the Milvus store needs pymilvus and milvus-lite: {INSTALL}") from None
        self._m = pymilvus
        if is_lite(self.uri):
            if not self.uri.endswith(".db"):
                raise RagError(f"RAG_MILVUS_URI {self.uri!r} is neither a Milvus Lite file "
                               "(a path ending in .db) nor a server (http://host:19530)")
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        with self.errors("connect to"), _to_debug("milvus_lite.server_manager"):
            self.client = pymilvus.MilvusClient(uri=self.uri, token=settings.milvus_token,
                                                timeout=10, grpc_options=GRPC_OPTIONS)

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Milvus and connection failures as one line naming the URI (and, for a connection,
        what to check); pymilvus's own log of the failure (a traceback) goes to the debug
        log."""
        try:
            with _to_debug("pymilvus.decorators"):
                yield
        except RagError:
            raise
        except Exception as e:  # noqa: BLE001 - pymilvus raises many kinds; all are one line
            reason = getattr(e, "message", None) or first_line(e)
            if doing != "connect to":
                raise RagError(f"cannot {doing} Milvus at {self.where}: {reason}") from None
            if is_lite(self.uri):
                hint = ("Milvus Lite allows one process per file: stop the other one, or serve "
                        "it with `milvus-lite server` and point RAG_MILVUS_URI at it")
            else:
                hint = ("check that the server is running and reachable, and RAG_MILVUS_URI "
                        "and RAG_MILVUS_TOKEN")
            raise RagError(f"cannot {doing} Milvus at {self.where}: {reason}; {hint}") from None

    # -- collections ------------------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the index's collections exist; the first time they do, they are loaded
        (a Milvus restarted, or a Milvus Lite file opened again, has them released)."""
        with self.errors("read"):
            if not self.client.has_collection(self.meta):
                return False
            if not self._loaded:
                for name in (self.chunks, self.articles, self.meta):
                    if self.client.has_collection(name):
                        self.client.load_collection(name)
                self._loaded = True
            return True

    def create(self, dim: int) -> None:
        """Create the three collections (those missing) for vectors of ``dim`` dimensions."""
        DataType, c = self._m.DataType, self.client
        with self.errors("create the collections in"):
            if not c.has_collection(self.chunks):
                s = c.create_schema(auto_id=False, enable_dynamic_field=False)
                s.add_field("vid", DataType.INT64, is_primary=True)
                s.add_field("article_id", DataType.VARCHAR, max_length=MAX_ID)
                s.add_field("hash", DataType.VARCHAR, max_length=128)
                for f in ("ordinal", "start", "end", "day"):
                    s.add_field(f, DataType.INT64)
                s.add_field("text", DataType.VARCHAR, max_length=65_535)
                # BM25's input: the passage's words as the local store's BM25 sees them
                # (rag.index.bm25_tokens: stop words out, stemmed), so that Milvus Lite (which
                # cannot stem) and a Milvus server rank alike, and like the local store
                s.add_field("terms", DataType.VARCHAR, max_length=65_535, enable_analyzer=True,
                            analyzer_params={"tokenizer": "standard", "filter": ["lowercase"]})
                self._meta_fields(s)
                s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
                s.add_field("dense", DataType.FLOAT_VECTOR, dim=dim)
                s.add_function(self._m.Function(
                    name="bm25", function_type=self._m.FunctionType.BM25,
                    input_field_names=["terms"], output_field_names=["sparse"]))
                ip = c.prepare_index_params()
                ip.add_index("dense", index_type="HNSW", metric_type="COSINE",
                             params={"M": 16, "efConstruction": 200})
                ip.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
                c.create_collection(self.chunks, schema=s, index_params=ip,
                                    consistency_level="Strong")
            if not c.has_collection(self.articles):
                s = c.create_schema(auto_id=False, enable_dynamic_field=False)
                s.add_field("key", DataType.VARCHAR, is_primary=True, max_length=MAX_ID + 16)
                s.add_field("article_id", DataType.VARCHAR, max_length=MAX_ID)
                s.add_field("hash", DataType.VARCHAR, max_length=128)
                for f in ("part", "parts", "seq", "chunks"):
                    s.add_field(f, DataType.INT64)
                s.add_field("text", DataType.VARCHAR, max_length=65_535)
                self._meta_fields(s)
                self._placeholder(c, s, self.articles)
            if not c.has_collection(self.meta):  # last: its presence says the rest exists
                s = c.create_schema(auto_id=False, enable_dynamic_field=False)
                s.add_field("key", DataType.VARCHAR, is_primary=True, max_length=MAX_ID + 16)
                s.add_field("value", DataType.VARCHAR, max_length=65_535)
                self._placeholder(c, s, self.meta)

    def _meta_fields(self, s) -> None:
        for f in META_FIELDS:
            s.add_field(f, self._m.DataType.VARCHAR, max_length=MAX_ID)
        s.add_field("extra", self._m.DataType.VARCHAR, max_length=65_535)

    def _placeholder(self, c, s, name: str) -> None:
        # Milvus wants a vector field in every collection; these rows are fetched by key.
        s.add_field("v", self._m.DataType.FLOAT_VECTOR, dim=2)
        ip = c.prepare_index_params()
        ip.add_index("v", index_type="FLAT", metric_type="L2")
        c.create_collection(name, schema=s, index_params=ip, consistency_level="Strong")

    def drop(self) -> None:
        with self.errors("drop the collections in"):
            for name in (self.meta, self.chunks, self.articles):
                if self.client.has_collection(name):
                    self.client.drop_collection(name)

    # -- rows -------------------------------------------------------------------------------

    def query(self, collection: str, filter: str, fields, limit: int | None = None) -> list[dict]:
        """Every row matching ``filter`` (all rows when it is ""), in batches."""
        with self.errors("read"):
            if limit is not None:
                return self.client.query(collection, filter=filter, output_fields=list(fields),
                                         limit=limit)
            with _to_debug("pymilvus.client.iterator.query_iterator"):
                it = self.client.query_iterator(collection, batch_size=2000, filter=filter,
                                                output_fields=list(fields))
            rows = []
            try:
                while batch := it.next():
                    rows.extend(batch)
            finally:
                it.close()
            return rows

    def get_meta(self, key: str) -> dict | None:
        rows = self.query(self.meta, f"key == {json.dumps(key, ensure_ascii=False)}",
                          ["value"], limit=1)
        return json.loads(rows[0]["value"]) if rows else None

    def put_meta(self, rows: dict[str, dict]) -> None:
        if rows:
            with self.errors("write to"):
                self.client.upsert(self.meta, [
                    {"key": k, "value": json.dumps(v, ensure_ascii=False), "v": [0.0, 0.0]}
                    for k, v in rows.items()])

    def delete_meta(self, keys) -> None:
        if keys:
            with self.errors("write to"):
                self.client.delete(self.meta, filter=f"key in {_quoted(keys)}")

    def manifest(self) -> dict | None:
        """The manifest stored with the collections; None when there is no index."""
        if not self.exists():
            return None
        return self.get_meta("manifest")


# -- the writer's lease ---------------------------------------------------------------------------


class WriterLease:
    """One writer at a time per index: a lock file beside a Milvus Lite file; for a server, a
    lease row (owner, expiry) in the meta collection, renewed while the writer works, so that
    a writer that died frees the index after :data:`LEASE_S` seconds."""

    def __init__(self, db: Milvus, wait: float = 0.0):
        self.db = db
        self.wait = wait
        self.owner = f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
        self._file = None
        self._renewed = 0.0

    def _busy(self, holder: str) -> IndexBusyError:
        return IndexBusyError(f"another `rag index` is writing to the Milvus index at "
                              f"{self.db.where} ({holder}); wait for it to finish, then run "
                              "again")

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait
        while True:
            try:
                return self._try()
            except IndexBusyError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def _try(self) -> None:
        if is_lite(self.db.uri):
            f = open(f"{self.db.uri}.lock", "a+")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise self._busy(holder) from None
            f.seek(0)
            f.truncate()
            f.write(self.owner)
            f.flush()
            self._file = f
            return
        held = self.db.get_meta("lease")
        if held and held["owner"] != self.owner and held["expires"] > time.time():
            raise self._busy(f"{held['owner']}, lease until "
                             f"{time.strftime('%H:%M:%S', time.localtime(held['expires']))}")
        self.renew(force=True)
        time.sleep(LEASE_CONFIRM_S)  # a writer that raced us has written its lease by now
        held = self.db.get_meta("lease")
        if not held or held["owner"] != self.owner:
            raise self._busy(held["owner"] if held else "a writer that just finished")

    def renew(self, force: bool = False) -> None:
        """Extend a server lease (at most every few seconds; nothing for a lock file)."""
        if self._file is not None or not (force or time.time() - self._renewed > LEASE_S / 4):
            return
        self._renewed = time.time()
        self.db.put_meta({"lease": {"owner": self.owner, "expires": time.time() + LEASE_S}})

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
            return
        held = self.db.get_meta("lease")
        if held and held["owner"] == self.owner:
            self.db.delete_meta(["lease"])

    def __enter__(self) -> WriterLease:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.release()
        except RagError as e:  # the lease expires by itself
            log.warning("could not release the writer lease: %s", e)


# -- writing --------------------------------------------------------------------------------------


@dataclass
class _Pending:
    record: ArticleRecord
    seq: int
    spans: list[tuple[int, int]]


class MilvusWriter(LazyEmbedder):
    """Brings the Milvus index of ``settings`` up to date with the corpus folder, with the
    meaning of :class:`rag.index.IndexWriter`: articles added, changed, removed and duplicated
    are found by :func:`rag.index.diff_corpus`; only what changed is embedded and written; a run
    with nothing to change writes nothing.

    Each group of articles is written passages first, article rows last (the row's hash marks
    the article done), and the manifest says while a run is under way: a run that is killed
    leaves every article searchable (in its old or its new version), and the next run finds
    and finishes what was half done. ``wait``: seconds to wait for another writer to finish
    before refusing (:class:`~rag.errors.IndexBusyError`)."""

    def __init__(self, settings: Settings, embedder=None, progress: bool = False,
                 wait: float = 0.0, actor: Actor = CLI):
        self.settings = settings
        self._embedder = embedder
        self.progress = progress
        self.wait = wait
        self.actor = actor  # who the audit trail records for this run's changes

    def update(self, rebuild: bool = False) -> IndexReport:
        t0 = time.perf_counter()
        corpus = corpus_folder(self.settings)
        db = Milvus(self.settings)
        emb = self.embedder
        # A run with nothing to do finds so without taking the lease: it writes nothing.
        report = None if rebuild or not db.exists() else self._update(db, None, corpus, emb,
                                                                       False)
        if report is None:
            db.create(emb.dim)
            with WriterLease(db, self.wait) as lease:
                report = self._update(db, lease, corpus, emb, rebuild)
                # after the manifest: the log records what the index holds
                AuditLog.of(self.settings).record(self.actor, report.changes)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def _update(self, db: Milvus, lease: WriterLease | None, corpus: Path, emb,
                rebuild: bool) -> IndexReport | None:
        """Bring the index up to date; without a ``lease``, only when that needs no write
        (None otherwise)."""
        manifest = db.manifest()
        if rebuild:
            log.info("rebuilding the Milvus index at %s from scratch", db.where)
            for name in (db.chunks, db.articles):
                with db.errors("drop the collections in"):
                    if db.client.has_collection(name):
                        db.client.drop_collection(name)
            db.delete_meta(["manifest"] + [k for k in self._file_keys(db)])
            manifest = None
        if manifest is not None and (found := manifest_mismatch(manifest, self.settings,
                                                                emb.id)):
            key, have, want = found
            raise IndexMismatchError(
                f"the Milvus index at {db.where} was built with {key} {have!r}, not {want!r}; "
                "run `rag index --rebuild --store milvus` to rebuild it with the current "
                "settings, or change the settings back")
        if lease is not None:
            db.create(emb.dim)

        rows = db.query(db.articles, "part == 0", ["article_id", "hash", "chunks"])
        indexed = {r["article_id"]: r["hash"] for r in rows}
        counts = {r["article_id"]: r["chunks"] for r in rows}
        old_files = self._files(db)
        diff = diff_corpus(corpus, old_files, indexed)
        report = diff.report()

        redo, orphans = [], []
        if manifest is None or not manifest.get("clean", False):
            # A run was killed: passages whose article row does not hold their hash were left
            # half written; their articles are redone, or removed when no longer wanted.
            pairs = {(r["article_id"], r["hash"])
                     for r in db.query(db.chunks, "", ["article_id", "hash"])}
            stale = {aid for aid, h in pairs if indexed.get(aid) != h}
            redo = [a for a in diff.order if a in stale and a not in diff.added + diff.changed]
            orphans = [a for a in stale if a not in diff.wanted]
            if redo or orphans:
                log.info("finishing a run that was stopped: %d articles to redo, %d to remove",
                         len(redo), len(orphans))
        todo = diff.changed + diff.added + redo
        files = diff.scan.files
        if manifest is not None and manifest.get("clean") and not (todo or diff.removed):
            if lease is None and _files_to_write(old_files, files):
                return None
            report.articles = len(diff.order)
            report.chunks = sum(counts[a] for a in diff.order)
            self._write_files(db, old_files, files)
            return report
        if lease is None:
            return None

        version = (manifest or {}).get("version", 0) + 1
        base = {
            "format_version": FORMAT_VERSION,
            "embedder": emb.id,
            "dimension": emb.dim,
            "chunker": chunker_settings(self.settings, emb),
            "store": "milvus",
            "corpus": str(corpus.resolve()),
            "counts": (manifest or {}).get("counts", {"articles": 0, "chunks": 0}),
        }
        db.put_meta({"manifest": {**base, "version": version, "clean": False,
                                  "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}})

        gone = diff.removed + orphans
        for i in range(0, len(gone), 500):
            self._delete(db, gone[i:i + 500])
        for aid in diff.removed:
            counts.pop(aid, None)

        seq = {aid: n for n, aid in enumerate(diff.order)}
        chunker = base["chunker"]
        bound = min(chunker["max_tokens"], chunker["token_limit"])
        group: list[_Pending] = []
        for aid in todo:
            article = diff.scan.article(aid, diff.wanted[aid][1])
            rec = ArticleRecord.from_article(article)
            spans = chunk_spans(rec.text, emb.tokenizer, bound, chunker["overlap_tokens"])
            group.append(_Pending(rec, seq[aid], list(spans)))
            if sum(len(p.spans) for p in group) >= EMBED_GROUP:
                report.embedded += self._write_group(db, emb, group, counts)
                lease.renew()
                group = []
        if group:
            report.embedded += self._write_group(db, emb, group, counts)

        report.articles = len(diff.order)
        report.chunks = sum(counts[a] for a in diff.order)
        self._write_files(db, old_files, files)
        base["counts"] = {"articles": report.articles, "chunks": report.chunks}
        db.put_meta({"manifest": {**base, "version": version + 1, "clean": True,
                                  "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}})
        return report

    def _delete(self, db: Milvus, ids: list[str]) -> None:
        with db.errors("write to"):
            db.client.delete(db.chunks, filter=f"article_id in {_quoted(ids)}")
            db.client.delete(db.articles, filter=f"article_id in {_quoted(ids)}")

    def _write_group(self, db: Milvus, emb, group: list[_Pending], counts: dict) -> int:
        """Embed and write a group of articles: their old passages out, the new ones in, then
        their article rows."""
        texts = [p.record.text[s:e] for p in group for s, e in p.spans]
        stemmer = english_stemmer()
        vectors = emb.embed(texts, progress=self.progress) if texts else np.zeros((0, emb.dim))
        vectors = np.asarray(vectors, np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1)
        chunk_rows, article_rows, n = [], [], 0
        for p in group:
            rec = p.record
            meta = {f: getattr(rec, f)[:MAX_ID] for f in META_FIELDS}
            extra = json.dumps(rec.extra, ensure_ascii=False)
            day = day_of(rec.date)
            for ordinal, (s, e) in enumerate(p.spans):
                chunk_rows.append({
                    "vid": _vid(rec.id, rec.hash, ordinal), "article_id": rec.id,
                    "hash": rec.hash, "ordinal": ordinal, "start": s, "end": e, "day": day,
                    "text": _fit(rec.text[s:e]), "extra": _fit(extra), **meta,
                    "terms": _fit(" ".join(bm25_tokens(rec.text[s:e], stemmer))),
                    "dense": vectors[n].tolist()})
                n += 1
            parts = [rec.text[i:i + TEXT_PART] for i in range(0, len(rec.text), TEXT_PART)] or [""]
            # part 0 last: its hash is what marks the article done
            for part in [*range(1, len(parts)), 0]:
                article_rows.append({
                    "key": f"{part}:{rec.id}", "article_id": rec.id, "part": part,
                    "parts": len(parts), "seq": p.seq, "hash": rec.hash,
                    "chunks": len(p.spans), "text": parts[part], "extra": _fit(extra),
                    **meta, "v": [0.0, 0.0]})
            counts[rec.id] = len(p.spans)
        # New passages in before old ones out, so the article stays searchable throughout
        # (upserts: a half-written article redone has the same passage ids).
        ids = _quoted(p.record.id for p in group)
        old_vids = [r["vid"] for r in db.query(db.chunks, f"article_id in {ids}", ["vid"])]
        old_keys = [r["key"] for r in db.query(db.articles, f"article_id in {ids}", ["key"])]
        new_vids = {r["vid"] for r in chunk_rows}
        new_keys = {r["key"] for r in article_rows}
        with db.errors("write to"):
            for i in range(0, len(chunk_rows), 1000):
                db.client.upsert(db.chunks, chunk_rows[i:i + 1000])
            stale = [v for v in old_vids if v not in new_vids]
            for i in range(0, len(stale), 1000):
                db.client.delete(db.chunks, ids=stale[i:i + 1000])
            for i in range(0, len(article_rows), 200):
                db.client.upsert(db.articles, article_rows[i:i + 200])
            stale = [k for k in old_keys if k not in new_keys]
            if stale:
                db.client.delete(db.articles, ids=stale)
        return len(texts)

    @staticmethod
    def _file_keys(db: Milvus) -> list[str]:
        return [r["key"] for r in db.query(db.meta, 'key like "file:%"', ["key"])]

    @staticmethod
    def _files(db: Milvus) -> dict:
        return {r["key"][5:]: json.loads(r["value"])
                for r in db.query(db.meta, 'key like "file:%"', ["key", "value"])}

    @staticmethod
    def _write_files(db: Milvus, old: dict, new: dict) -> None:
        """The corpus scan kept per file (so unchanged files are not parsed again); only the
        files whose entry changed are written."""
        if found := _files_to_write(old, new):
            db.put_meta(found[0])
            db.delete_meta(found[1])


def _files_to_write(old: dict, new: dict) -> tuple[dict, list] | None:
    """The per-file scan rows to write and to delete; None when there are none. A file whose
    entry does not fit a row (a JSON file of thousands of articles) is not kept: it is parsed
    again at each run."""
    def fits(rel, entry):
        return len(rel) <= MAX_ID and len(json.dumps(entry, ensure_ascii=False).encode()) < 65_000

    put = {f"file:{rel}": entry for rel, entry in new.items()
           if old.get(rel) != entry and fits(rel, entry)}
    gone = [f"file:{rel}" for rel in old
            if rel not in new or (old[rel] != new[rel] and not fits(rel, new[rel]))]
    return (put, gone) if put or gone else None


def _fit(text: str, limit: int = 65_535) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (a Milvus VARCHAR's most)."""
    data = text.encode()
    return text if len(data) <= limit else data[:limit].decode(errors="ignore")


# -- reading --------------------------------------------------------------------------------------


class MilvusIndex(LazyEmbedder):
    """The Milvus index of ``settings``, with the interface of :class:`rag.retrieve.Index`:
    ``search``, ``question``, ``reload``, ``articles``, ``article_text``, ``stats``,
    ``manifest``, ``generation`` (the manifest's version) and ``settings``."""

    def __init__(self, settings: Settings | None = None, embedder=None):
        self.settings = settings or Settings.from_env(store="milvus")
        self.db = Milvus(self.settings)
        self._embedder = embedder
        self._lock = threading.Lock()
        self._stemmer = english_stemmer()
        self.manifest: dict | None = None
        self.generation = None
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._articles: list[ArticleRecord] | None = None
        self.reload()

    def reload(self) -> bool:
        """Pick up what a writer (in any process) changed; True when something did. One small
        query when nothing changed, so callers may reload before every question."""
        manifest = self.db.manifest()
        if manifest is None:
            raise IndexNotFoundError(f"no index in Milvus at {self.db.where}; run `rag index "
                                     "--store milvus` first (or check RAG_MILVUS_URI)")
        if manifest.get("version") == self.generation:
            return False
        backend = embed_backend_of(manifest, self.settings, f"the Milvus index at {self.db.where}",
                                   "rag index --rebuild --store milvus")
        with self._lock:
            if self._embedder is not None and self._embedder.id != manifest["embedder"]:
                self._embedder = None  # queries must be embedded exactly like the passages
            self.settings = replace(self.settings, embed_backend=backend)
            self.manifest = manifest
            self.generation = manifest.get("version")
            self._texts.clear()
            self._articles = None
        return True

    def question(self, text: str, history=()) -> Question:
        """The :class:`~rag.question.Question` for ``text``, embedded with this index's
        embedder."""
        return analyze(text, history, self.embedder, self._stemmer)

    def search(self, question: str | Question, k: int | None = None, *, hybrid: bool = True,
               news: bool = True, since: str | None = None,
               until: str | None = None) -> tuple[Hit, ...]:
        """The ``k`` best passages for ``question``, best first, as
        :meth:`rag.retrieve.Index.search`; ``since``/``until`` keep articles dated in that
        range (ISO dates, inclusive), filtered inside Milvus."""
        expr = date_filter(since, until)
        if not isinstance(question, Question):
            question = self.question(question)
        k = k or self.settings.k
        qv = question.vector
        if qv is None:
            qv = self.embedder.embed_query(question.retrieval_text)
        qv = np.asarray(qv, np.float32)
        n = max(CANDIDATES, 4 * k)
        m, c = self.db._m, self.db.client
        dense_req = {"data": [qv.tolist()], "anns_field": "dense", "limit": n,
                     "param": {"metric_type": "COSINE", "params": {"ef": max(64, n)}}}
        fields = [*CHUNK_FIELDS, "dense"]
        with self.db.errors("search"):
            if hybrid and question.bm25_tokens:
                reqs = [m.AnnSearchRequest(**dense_req, expr=expr or None),
                        m.AnnSearchRequest(data=[" ".join(question.bm25_tokens)],
                                           anns_field="sparse",
                                           param={"metric_type": "BM25"}, limit=n,
                                           expr=expr or None)]
                # every passage either retriever found, as the local store boosts them all
                found = c.hybrid_search(self.db.chunks, reqs, m.RRFRanker(RRF_K), limit=2 * n,
                                        output_fields=fields)[0]
                scores = [float(r["distance"]) for r in found]
            else:
                found = c.search(self.db.chunks, data=dense_req["data"], anns_field="dense",
                                 search_params=dense_req["param"], limit=n, filter=expr,
                                 output_fields=fields)[0]
                scores = [1.0 / (RRF_K + rank) for rank in range(1, len(found) + 1)]
        candidates = []
        for row, score in zip(found, scores):
            e = row["entity"]
            v = np.asarray(e["dense"], np.float32)
            norm = float(np.linalg.norm(v))
            text = e["text"]
            if len(text) != e["end"] - e["start"]:  # cut to fit Milvus: read the article's
                text = self.article_text(e["article_id"])[e["start"]:e["end"]] or text
            chunk = Chunk(id=f"{e['article_id']}:{e['ordinal']}", article_id=e["article_id"],
                          start=e["start"], end=e["end"], text=text, ordinal=e["ordinal"])
            meta = {"id": e["article_id"], **{f: e[f] for f in META_FIELDS},
                    **json.loads(e["extra"] or "{}")}
            candidates.append(Candidate(chunk, meta, score,
                                        dense=float(v @ qv) / norm if norm else 0.0,
                                        key=e["vid"]))
        return rank_hits(question, candidates, k, news=news)

    def article_text(self, article_id: str) -> str:
        """The whole text of an indexed article ("" when there is none by that id)."""
        with self._lock:
            if article_id in self._texts:
                self._texts.move_to_end(article_id)
                return self._texts[article_id]
        rows = self.db.query(self.db.articles,
                             f"article_id == {json.dumps(article_id, ensure_ascii=False)}",
                             ["part", "parts", "hash", "text"], limit=10_000)
        text = _join_parts(rows)
        with self._lock:
            self._texts[article_id] = text
            while len(self._texts) > ARTICLE_TEXT_CACHE:
                self._texts.popitem(last=False)
        return text

    @property
    def articles(self) -> list[ArticleRecord]:
        """Every indexed article, in corpus order, with its passages' spans (read once per
        version of the index)."""
        if self._articles is None:
            spans: dict[str, list[tuple[int, int, int, int]]] = {}
            for r in self.db.query(self.db.chunks, "", ["vid", "article_id", "hash", "ordinal",
                                                         "start", "end"]):
                spans.setdefault((r["article_id"], r["hash"]), []).append(
                    (r["ordinal"], r["start"], r["end"], r["vid"]))
            parts: dict[str, list[dict]] = {}
            for r in self.db.query(self.db.articles, "", ARTICLE_FIELDS):
                parts.setdefault(r["article_id"], []).append(r)
            records = []
            for aid, rows in parts.items():
                head = next((r for r in rows if r["part"] == 0), None)
                if head is None:
                    continue
                rec = ArticleRecord(aid, head["hash"], head["path"], head["title"], head["url"],
                                    head["date"], head["author"], head["source"],
                                    json.loads(head["extra"] or "{}"), _join_parts(rows))
                rec.chunks = [(s, e, vid) for _, s, e, vid
                              in sorted(spans.get((aid, head["hash"]), []))]
                records.append((head["seq"], rec))
            self._articles = [rec for _, rec in sorted(records, key=lambda x: x[0])]
        return self._articles

    def stats(self) -> dict:
        """Articles, chunks, embedder and last update, for status displays."""
        m = self.manifest
        return {"articles": m["counts"]["articles"], "chunks": m["counts"]["chunks"],
                "embedder": m["embedder"], "store": "milvus", "updated_at": m["updated_at"]}


def _join_parts(rows: list[dict]) -> str:
    """An article's text from its rows (those of its current hash, in order)."""
    head = next((r for r in rows if r["part"] == 0), None)
    if head is None:
        return ""
    mine = sorted((r for r in rows if r["hash"] == head["hash"]), key=lambda r: r["part"])
    return "".join(r["text"] for r in mine)
