"""The on-disk index: vectors, chunk store, BM25 and ``manifest.json``, updated incrementally.

Layout of an index folder (``G`` is the generation, bumped by each update that changes it)::

    manifest.json         format version, embedder, dimension, chunker settings, store kind,
                          generation, and each article's content hash; written last, atomically
    vectors-G.npz         chunk vectors under int64 ids (plus vectors-G.faiss for hnsw/ivf/ivfpq;
                          the manifest's "store" says which, "store_setting" what chose it)
    articles-G.jsonl      one line per article: metadata, text and its chunks' offsets and ids
    bm25-G/               the BM25 index over the chunk texts (bm25s)

A build writes generation ``G+1`` beside ``G`` and then replaces the manifest, so a build killed
at any point leaves the previous generation loadable; old files are removed afterwards.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .audit import CLI, Actor, AuditLog
from .chunk import CHUNKER_VERSION, chunk_spans
from .config import Settings
from .embed import LazyEmbedder
from .errors import CorpusError, IndexDamagedError, IndexMismatchError, RagError, first_line
from .load import Skipped, load_file, scan
from .store import FaissStore
from .types import Article

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
EMBED_GROUP = 2048  # chunks embedded and added per step, so a huge article stays in bounded memory
_TOKEN = re.compile(r"\w+")


@dataclass
class ArticleRecord:
    """What the index keeps of an article: metadata, text, and chunks as (start, end, vector id)."""

    id: str
    hash: str
    path: str
    title: str
    url: str
    date: str
    author: str
    source: str
    extra: dict
    text: str
    chunks: list[tuple[int, int, int]] = field(default_factory=list)

    def metadata(self) -> dict[str, str]:
        meta = {"id": self.id, "title": self.title, "url": self.url, "date": self.date,
                "author": self.author, "source": self.source, "path": self.path}
        meta.update(self.extra)
        return meta

    @classmethod
    def from_article(cls, a: Article) -> ArticleRecord:
        return cls(a.id, a.hash, a.path, a.title, a.url, a.date, a.author, a.source,
                   dict(a.extra), a.text)


@dataclass
class IndexReport:
    """What one ``rag index`` run did. ``to_json`` gives the CLI's ``--json`` object."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    articles: int = 0
    chunks: int = 0
    seconds: float = 0.0
    embedded: int = 0
    duplicates: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    repaired: str = ""  # what was damaged, when the run rebuilt a damaged index
    #: each article added, updated or removed: action, file, article_id, hash (the audit trail)
    changes: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def bm25_tokens(text: str, stemmer=None) -> list[str]:
    """Lower-cased word tokens, English stop words removed, stemmed (PyStemmer)."""
    from bm25s.stopwords import STOPWORDS_EN

    words = [w for w in _TOKEN.findall(text.lower()) if w not in STOPWORDS_EN]
    return stemmer.stemWords(words) if stemmer is not None else words


def english_stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def chunker_settings(settings: Settings, embedder) -> dict:
    """The chunker's settings; chunks hold at most ``min(max_tokens, token_limit)`` tokens."""
    return {"max_tokens": settings.chunk_tokens, "overlap_tokens": settings.chunk_overlap,
            "version": CHUNKER_VERSION, "token_limit": embedder.max_tokens}


#: What a manifest of this format must hold, and of which type.
MANIFEST_KEYS = {"generation": int, "embedder": str, "dimension": int, "store": str,
                 "files": dict, "next_vector_id": int, "counts": dict, "articles": dict,
                 "updated_at": str}
GENERATION_FILES = ("vectors", "articles", "bm25")


def read_manifest(folder: Path) -> dict | None:
    """The folder's manifest (None when there is none); :class:`IndexDamagedError` when it is
    unreadable or lacks what this format needs (a manifest of another format is returned as
    it is, for the callers' compatibility checks)."""
    folder = Path(folder)
    path = folder / "manifest.json"
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise IndexDamagedError(path, f"not readable JSON: {first_line(e)}", folder) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("format_version"), int):
        raise IndexDamagedError(path, "not an index manifest", folder)
    if manifest["format_version"] != FORMAT_VERSION:
        return manifest
    for key, kind in MANIFEST_KEYS.items():
        if not isinstance(manifest.get(key), kind):
            raise IndexDamagedError(path, f"no {key!r} of type {kind.__name__}", folder)
    files = manifest["files"]
    for key in GENERATION_FILES:
        name = files.get(key)
        if not isinstance(name, str) or not re.fullmatch(rf"{key}-\d+(\.jsonl)?", name):
            raise IndexDamagedError(path, f"no valid file name for {key!r}", folder)
    return manifest


def embed_backend_of(manifest: dict, settings: Settings, where: str, rebuild: str) -> str:
    """The embedding backend an index's passages were embedded with (its queries must be
    embedded the same way); :class:`IndexMismatchError` when the index was built with another
    embedder or format. ``where`` names the index ("the index in DIR") and ``rebuild`` the
    command that rebuilds it."""
    model, _, backend = manifest.get("embedder", "").rpartition("#")
    if manifest.get("format_version") != FORMAT_VERSION or model != settings.embedder:
        raise IndexMismatchError(
            f"{where} was built with embedder {model!r} (format "
            f"{manifest.get('format_version')}); run `{rebuild}` to rebuild it with "
            f"{settings.embedder!r}")
    return backend


def manifest_mismatch(manifest: dict, settings: Settings,
                      embedder_id: str) -> tuple[str, object, object] | None:
    """The first of format, embedder, chunker and store where ``manifest`` differs from the
    current settings, as (key, what the index has, what the settings want); None when none."""
    want = {
        "format_version": FORMAT_VERSION,
        "embedder": embedder_id,
        "chunker": {"max_tokens": settings.chunk_tokens, "overlap_tokens": settings.chunk_overlap,
                    "version": CHUNKER_VERSION},
        "store": settings.store,
    }
    have = {k: manifest.get(k) for k in want}
    # "store" is the index a generation holds, "store_setting" what chose it (auto picks flat or
    # ivfpq by size); an index from before auto existed was built with the default, flat
    have["store"] = manifest.get("store_setting", have["store"])
    if settings.store == "auto" and "store_setting" not in manifest and have["store"] == "flat":
        have["store"] = "auto"
    have["chunker"] = {k: (manifest.get("chunker") or {}).get(k) for k in want["chunker"]}
    return next(((key, have[key], value) for key, value in want.items() if have[key] != value),
                None)


def check_compatible(manifest: dict, settings: Settings, embedder_id: str, folder: Path) -> None:
    """Refuse an index built with another format, embedder, chunker or store."""
    if found := manifest_mismatch(manifest, settings, embedder_id):
        key, have, want = found
        raise IndexMismatchError(
            f"the index in {folder} was built with {key} {have!r}, not {want!r}; "
            f"run `rag index --rebuild --index {folder}` to rebuild it with the current "
            "settings, or change the settings back"
        )


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One writer at a time per index folder (readers never wait: they read a manifest)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_records(folder: Path, manifest: dict) -> dict[str, ArticleRecord]:
    """The articles of the manifest's generation, checked against the manifest: every line an
    article, the same articles, each chunk inside its text."""
    path = folder / manifest["files"]["articles"]
    records = {}
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                d = json.loads(line)
                d["chunks"] = [tuple(c) for c in d["chunks"]]
                rec = ArticleRecord(**d)
                if not all(len(c) == 3 and 0 <= c[0] < c[1] <= len(rec.text) for c in rec.chunks):
                    raise ValueError(f"line {n} has a passage outside its article")
                records[rec.id] = rec
    except FileNotFoundError:
        raise IndexDamagedError(path, "missing", folder) from None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise IndexDamagedError(path, f"unreadable: {first_line(e)}", folder) from None
    if records.keys() != manifest["articles"].keys():
        raise IndexDamagedError(path, f"{len(records)} articles, not the "
                                f"{len(manifest['articles'])} the manifest lists", folder)
    return records


BM25_FILES = ("params.index.json", "vocab.index.json", "data.csc.index.npy",
              "indices.csc.index.npy", "indptr.csc.index.npy")


def load_bm25(folder: Path, name: str, n_chunks: int):
    """The BM25 index saved as ``name`` over ``n_chunks`` chunks (None when no chunk has a
    word to index); :class:`IndexDamagedError` naming the damaged file."""
    import bm25s

    path = folder / name
    if not (path / BM25_FILES[0]).exists() and path.is_dir() and not any(path.iterdir()):
        return None  # saved empty: no chunk had an indexable word
    for file in BM25_FILES:
        try:
            if file.endswith(".json"):
                data = json.loads((path / file).read_bytes())
                fits = isinstance(data, dict) and (
                    data.get("num_docs") == n_chunks if file == "params.index.json"
                    else all(isinstance(v, int) for v in data.values()))
            else:
                fits = np.load(path / file, mmap_mode="r").ndim == 1
        except FileNotFoundError:
            raise IndexDamagedError(path / file, "missing", folder) from None
        except Exception as e:  # noqa: BLE001 - any failure to read it means it is damaged
            raise IndexDamagedError(path / file, f"unreadable: {type(e).__name__}",
                                    folder) from None
        if not fits:
            raise IndexDamagedError(path / file, f"not part of a BM25 index of the {n_chunks} "
                                    "passages", folder)
    try:
        bm25 = bm25s.BM25.load(str(path), show_progress=False)
        scores, vocab = bm25.scores, bm25.vocab_dict
        fits = (scores["num_docs"] == n_chunks and 0 < len(scores["indptr"]) <= len(vocab) + 1
                and len(scores["data"]) == len(scores["indices"]) == scores["indptr"][-1]
                and (not len(scores["indices"]) or 0 <= scores["indices"].min()
                     and scores["indices"].max() < n_chunks))
    except Exception as e:  # noqa: BLE001
        raise IndexDamagedError(path, f"unreadable: {first_line(e)}", folder) from None
    if not fits:
        raise IndexDamagedError(path, f"it does not index the {n_chunks} passages", folder)
    return bm25


@dataclass
class Generation:
    """One generation of an index folder, read and checked against its manifest."""

    manifest: dict
    records: dict[str, ArticleRecord]
    store: FaissStore
    bm25: object | None  # a bm25s.BM25; None when no chunk has a word to index


def open_generation(folder: Path, manifest: dict) -> Generation:
    """Read every file of the manifest's generation; :class:`IndexDamagedError` naming the
    first file that is missing, unreadable or out of step with the others."""
    folder = Path(folder)
    files = manifest["files"]
    records = read_records(folder, manifest)
    store = FaissStore.load(folder, files["vectors"], manifest["dimension"], manifest["store"],
                            setting=manifest.get("store_setting"))
    vids = [vid for rec in records.values() for *_, vid in rec.chunks]
    if len(vids) != len(store) or not np.array_equal(np.sort(store.ids), np.sort(vids)):
        raise IndexDamagedError(folder / f"{files['vectors']}.npz", f"{len(store)} vectors for "
                                f"the {len(vids)} passages of {files['articles']}", folder)
    return Generation(manifest, records, store, load_bm25(folder, files["bm25"], len(vids)))


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class CorpusScan:
    """The corpus as it is now: articles per file, re-parsing only files whose bytes changed.

    ``old_files`` is the previous scan's ``files`` (corpus path -> sha and articles) and
    ``indexed`` each indexed article's content hash: a file whose bytes and articles are
    unchanged is not parsed again."""

    def __init__(self, corpus: Path, old_files: dict, indexed: dict[str, str]):
        self.corpus = corpus
        self.files: dict[str, dict] = {}
        self.parsed: dict[str, Article] = {}
        self.skipped: list[Skipped] = []
        self.order: list[tuple[str, str, str]] = []  # (id, hash, path) in corpus order
        for path in scan(corpus):
            rel = path.relative_to(corpus).as_posix()
            try:
                sha = _file_sha(path)
            except OSError as e:
                self.skipped.append(Skipped(rel, str(e)))
                continue
            cached = old_files.get(rel)
            if cached and cached["sha"] == sha and all(
                indexed.get(a["id"]) == a["hash"]
                for a in cached["articles"]
            ):
                entries = cached["articles"]
            else:
                entries = self._parse(path, rel)
                if entries is None:
                    continue
            self.files[rel] = {"sha": sha, "articles": entries}
            self.order.extend((a["id"], a["hash"], rel) for a in entries)

    def _parse(self, path: Path, rel: str) -> list[dict] | None:
        from .load import SkipFile

        try:
            articles = load_file(path, self.corpus)
        except (SkipFile, OSError) as e:
            log.warning("skipped %s: %s", rel, e)
            self.skipped.append(Skipped(rel, str(e)))
            return None
        entries = []
        for a in articles:
            if a.id in self.parsed:
                log.warning("skipped a second article with id %s in %s", a.id, rel)
                continue
            self.parsed[a.id] = a
            entries.append({"id": a.id, "hash": a.hash})
        return entries

    def article(self, article_id: str, rel: str) -> Article:
        """The parsed article (files served from the cache are parsed now, when needed)."""
        if article_id not in self.parsed:
            self._parse(self.corpus / rel, rel)
        return self.parsed[article_id]


@dataclass
class CorpusDiff:
    """What an update must do to bring an index up to date with the corpus, by article id:
    ``wanted`` maps each article to index to its (content hash, corpus path); ``order`` lists
    them in corpus order; ``duplicates`` are copies left out (``{"path", "duplicate_of"}``)."""

    scan: CorpusScan
    wanted: dict[str, tuple[str, str]]
    order: list[str]
    added: list[str]
    changed: list[str]
    removed: list[str]
    duplicates: list[dict]
    #: each removed article's (content hash, corpus path) as last indexed
    was: dict[str, tuple[str, str]] = field(default_factory=dict)

    def report(self, repaired: str = "") -> IndexReport:
        """An :class:`IndexReport` with this diff's counts (articles and chunks left to fill)
        and its changes, as the audit trail records them."""
        return IndexReport(
            added=len(self.added), updated=len(self.changed), removed=len(self.removed),
            unchanged=len(self.wanted) - len(self.added) - len(self.changed),
            duplicates=self.duplicates, skipped=[asdict(s) for s in self.scan.skipped],
            repaired=repaired, changes=self.changes())

    def changes(self) -> list[dict]:
        def change(action: str, aid: str, h: str, rel: str) -> dict:
            return {"action": action, "file": rel, "article_id": aid, "hash": h}

        return ([change("remove", a, *self.was.get(a, ("", ""))) for a in self.removed]
                + [change("update", a, *self.wanted[a]) for a in self.changed]
                + [change("add", a, *self.wanted[a]) for a in self.added])


def corpus_folder(settings: Settings) -> Path:
    """The settings' corpus folder; :class:`CorpusError` when it does not exist."""
    corpus = Path(settings.corpus)
    if not corpus.is_dir():
        raise CorpusError(f"corpus folder {corpus} does not exist; create it and put articles "
                          "in it, or pass --corpus DIR")
    return corpus


def diff_corpus(corpus: Path, old_files: dict, indexed: dict[str, str]) -> CorpusDiff:
    """Compare the corpus folder with an index holding ``indexed`` (article id -> content
    hash); ``old_files`` is the last scan's ``files`` (see :class:`CorpusScan`).
    :class:`CorpusError` when the corpus has no readable article."""
    now = CorpusScan(corpus, old_files, indexed)
    if not now.order:
        raise CorpusError(
            f"no readable article in {corpus}; add .txt, .md, .html, .json or .jsonl files"
        )
    # One copy per distinct content: an article already indexed keeps its place while it
    # still holds that content; other copies are reported as duplicates and not indexed.
    keepers = {h: aid for aid, h in indexed.items()}
    current = {(aid, h) for aid, h, _ in now.order}
    canonical: dict[str, tuple[str, str]] = {}
    for aid, h, rel in now.order:
        keeper = keepers.get(h)
        if h in canonical or (keeper not in (None, aid) and (keeper, h) in current):
            continue
        canonical[h] = (aid, rel)
    wanted = {aid: (h, rel) for h, (aid, rel) in canonical.items()}
    duplicates = [
        {"path": rel, "duplicate_of": canonical[h][1]}
        for aid, h, rel in now.order
        if wanted.get(aid, ("",))[0] != h
    ]
    return CorpusDiff(
        scan=now, wanted=wanted,
        order=[aid for aid, _, _ in now.order if aid in wanted],
        added=[aid for aid in wanted if aid not in indexed],
        changed=[aid for aid in wanted if aid in indexed and indexed[aid] != wanted[aid][0]],
        removed=[aid for aid in indexed if aid not in wanted],
        duplicates=duplicates,
        was={a["id"]: (a["hash"], rel) for rel, f in old_files.items() for a in f["articles"]
             if a["id"] in indexed and a["id"] not in wanted})


class IndexWriter(LazyEmbedder):
    """Brings an index folder up to date with a corpus folder."""

    def __init__(self, settings: Settings, embedder=None, progress: bool = False,
                 actor: Actor = CLI):
        """``actor``: who makes the change, and how, for the audit trail (default: ``rag
        index`` from the command line)."""
        self.settings = settings
        self._embedder = embedder
        self.progress = progress
        self.actor = actor

    def update(self, rebuild: bool = False) -> IndexReport:
        t0 = time.perf_counter()
        folder, corpus = Path(self.settings.index), corpus_folder(self.settings)
        with locked(folder):
            report = self._update(folder, corpus, rebuild)
            # after the manifest: the log records what an index holds, never a failed attempt
            AuditLog.of(self.settings).record(self.actor, report.changes)
        report.seconds = round(time.perf_counter() - t0, 3)
        return report

    def _update(self, folder: Path, corpus: Path, rebuild: bool) -> IndexReport:
        emb = self.embedder
        manifest, repaired = None, ""
        if not rebuild:
            try:
                manifest = read_manifest(folder)
                if manifest is not None:
                    check_compatible(manifest, self.settings, emb.id, folder)
                    current = open_generation(folder, manifest)
            except IndexDamagedError as e:
                # Rebuilt from the corpus as a new generation; the damaged files go with the old.
                repaired = f"{e.path} is damaged ({e.reason}); rebuilding the index from the corpus"
                log.warning("%s", repaired)
                manifest = None
        if manifest is not None:
            records, store = current.records, current.store
            store.kind = self.settings.store  # the same, or auto taking over a legacy flat
        else:
            records, store = {}, FaissStore(emb.dim, self.settings.store)
        store.auto_ivf_min = self.settings.store_ivf_min

        diff = diff_corpus(corpus, (manifest or {}).get("sources", {}),
                           {aid: r.hash for aid, r in records.items()})
        now, wanted, removed, changed, added = (diff.scan, diff.wanted, diff.removed,
                                                diff.changed, diff.added)
        report = diff.report(repaired)

        stale = [vid for aid in removed + changed for (_, _, vid) in records[aid].chunks]
        store.remove(np.array(stale, np.int64))
        for aid in removed:
            del records[aid]

        next_vid = (manifest or {}).get("next_vector_id", 0)
        chunker = chunker_settings(self.settings, emb)
        group = getattr(emb, "group_size", EMBED_GROUP)  # a Ray job per group (rag/bulk.py)
        pending: list[tuple[ArticleRecord, int, int, int]] = []

        def embed_pending():
            texts = [rec.text[s:e] for rec, s, e, _ in pending]
            vectors = emb.embed(texts, progress=self.progress)
            store.add(np.array([vid for *_, vid in pending], np.int64), vectors)
            report.embedded += len(pending)
            pending.clear()

        for aid in changed + added:
            rec = ArticleRecord.from_article(now.article(aid, wanted[aid][1]))
            bound = min(chunker["max_tokens"], chunker["token_limit"])
            for s, e in chunk_spans(rec.text, emb.tokenizer, bound, chunker["overlap_tokens"]):
                rec.chunks.append((s, e, next_vid))
                pending.append((rec, s, e, next_vid))
                next_vid += 1
                if len(pending) >= group:
                    embed_pending()
            records[aid] = rec
        if pending:
            embed_pending()

        order = diff.order
        report.articles = len(order)
        report.chunks = sum(len(records[a].chunks) for a in order)
        sources = now.files
        kind = store.index_kind
        if store.upgrade():
            log.info("vector index rebuilt as %s (was %s)", store.index_kind, kind)
        elif manifest is not None and not (added or changed or removed):
            if (sources, report.duplicates) != (manifest.get("sources"),
                                                manifest.get("duplicates")):
                manifest.update(sources=sources, duplicates=report.duplicates)
                _write_json(folder / "manifest.json", manifest)
            return report

        generation = _last_generation(folder) + 1
        files = {"vectors": f"vectors-{generation}", "articles": f"articles-{generation}.jsonl",
                 "bm25": f"bm25-{generation}"}
        store.save(folder, files["vectors"])
        with open(folder / files["articles"], "w", encoding="utf-8") as f:
            for aid in order:
                f.write(json.dumps(asdict(records[aid]), ensure_ascii=False) + "\n")
        _save_bm25(folder / files["bm25"], [records[a] for a in order])
        new_manifest = {
            "format_version": FORMAT_VERSION,
            "generation": generation,
            "embedder": emb.id,
            "dimension": emb.dim,
            "chunker": chunker,
            "store": store.index_kind,  # the index this generation holds
            "store_setting": self.settings.store,
            "files": files,
            "next_vector_id": next_vid,
            "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "corpus": str(corpus.resolve()),
            "counts": {"articles": report.articles, "chunks": report.chunks},
            "articles": {a: {"hash": records[a].hash, "path": records[a].path,
                             "title": records[a].title, "chunks": len(records[a].chunks)}
                         for a in order},
            "duplicates": report.duplicates,
            "sources": sources,
        }
        _write_json(folder / "manifest.json", new_manifest)
        _remove_other_generations(folder, generation)
        return report


def _save_bm25(path: Path, records: list[ArticleRecord]) -> None:
    import bm25s

    stemmer = english_stemmer()
    corpus = [bm25_tokens(r.text[s:e], stemmer) for r in records for s, e, _ in r.chunks]
    retriever = bm25s.BM25()
    tmp = Path(f"{path}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if any(corpus):
        retriever.index(corpus, show_progress=False)
        retriever.save(str(tmp), show_progress=False)
    else:
        tmp.mkdir(parents=True)
    os.replace(tmp, path)


def _write_json(path: Path, data: dict) -> None:
    tmp = Path(f"{path}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _last_generation(folder: Path) -> int:
    """The highest generation named by any file in the folder, live or left by a killed run."""
    found = [int(m.group(1)) for p in folder.iterdir()
             if (m := re.match(r"^(?:vectors|articles|bm25)-(\d+)", p.name))]
    return max(found, default=0)


def _remove_other_generations(folder: Path, generation: int) -> None:
    keep = re.compile(rf"^(vectors|articles|bm25)-{generation}(\.|$)")
    for p in folder.iterdir():
        if re.match(r"^(vectors|articles|bm25)-\d+", p.name) and not keep.match(p.name):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def index_writer(settings: Settings, embedder=None, progress: bool = False, wait: float = 0.0,
                 actor: Actor = CLI):
    """The writer for the index ``settings`` name: :class:`rag.milvus.MilvusWriter` when
    ``settings.store`` is ``milvus`` (``wait``: seconds to wait for another writer before
    refusing), else :class:`IndexWriter` (which waits for the folder's lock). Both have
    ``update(rebuild=False) -> IndexReport``."""
    if settings.store == "milvus":
        from .milvus import MilvusWriter

        return MilvusWriter(settings, embedder, progress, wait=wait, actor=actor)
    return IndexWriter(settings, embedder, progress, actor)


def build_index(settings: Settings | None = None, embedder=None, rebuild: bool = False,
                progress: bool = False, actor: Actor = CLI, ray: bool = False) -> IndexReport:
    """Index ``settings.corpus`` into ``settings.index`` (or the Milvus index, with
    ``store="milvus"``), embedding only what changed;
    ``actor`` is who is recorded in the audit trail for each change. With ``ray``, the
    passages are embedded on Ray (a local Ray for the run, or ``RAY_ADDRESS``)."""
    settings = settings or Settings.from_env()
    if rebuild and (Path(settings.index) / "manifest.json").exists():
        log.info("rebuilding %s from scratch", settings.index)
    session = None
    if ray:
        from .bulk import RaySession, ray_embedder

        session = RaySession()  # started by the first passage to embed, not before
        embedder = ray_embedder(settings, embedder, session)
    try:
        return index_writer(settings, embedder, progress, actor=actor).update(rebuild=rebuild)
    except RagError:
        raise
    except OSError as e:
        raise RagError(f"cannot write the index in {settings.index}: {e}") from None
    finally:
        if session is not None:
            session.close()
