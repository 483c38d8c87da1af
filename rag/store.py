"""Vector stores: add, remove, search, save, load. FAISS is the embedded default.

``flat`` is exact inner-product search. ``hnsw``, ``ivf`` and ``ivfpq`` are approximate, for
large corpora. ``auto`` (the default) is ``flat`` below :data:`rag.config.AUTO_IVF_MIN` vectors
and ``ivfpq`` from there on, tuned for recall@10 of at least 0.99 against exact search;
``bench/bench_index.py`` measures the crossover, the recall and the latency.

``ivfpq`` finds candidates in IVF lists of 4-bit product-quantized codes, which FAISS scans
with SIMD lookup tables (its "fast scan"), then scores them exactly against the stored
vectors: the ranking and scores a search returns are exact inner products, over a candidate
set a few times larger than asked for.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .config import AUTO_IVF_MIN
from .errors import IndexDamagedError, first_line

#: Searches run one query at a time; FAISS's own OpenMP pool would only compete with the
#: embedder's threads on a small machine (a pool still spinning after a search slows the next
#: query encode: p50 10 -> 15 ms at 20k vectors), so FAISS gets one thread.
FAISS_THREADS = 1
#: What the ``store`` setting may name.
KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq")
#: IVF lists: about ``IVF_LISTS_PER_ROOT * sqrt(n)`` of them (at least ~39 training points a
#: list, as FAISS wants), probing ``IVF_PROBE_SHARE`` of them and at least ``IVF_MIN_NPROBE``
#: (all of them in a small store: probing nlist // 16 alone meant 1 of 25 lists at 1,000
#: vectors, recall@10 about 0.2). Chosen on 50,000 real passage vectors and the 784 gold-set
#: questions: 894 lists probed 128 at a time gave recall@10 0.995 against exact search in
#: 1.2 ms (exact: 10.3 ms, machine shared); probing 96 gave 0.989, and 447 lists needed 96
#: probes (1.5 ms) for 0.997.
IVF_LISTS_PER_ROOT = 4.0
IVF_PROBE_SHARE = 1 / 7
IVF_MIN_NPROBE = 32
#: ``ivfpq``: about ``IVFPQ_LISTS_PER_ROOT * sqrt(n)`` lists, probing ``IVFPQ_PROBE_SHARE`` of
#: them (at least ``IVF_MIN_NPROBE``), with two dimensions per 4-bit code; a search takes
#: ``IVFPQ_RERANK`` times the vectors asked for (at least ``IVFPQ_RERANK_MIN``) from the codes
#: and re-scores them exactly. The codes hold each vector's offset from its list's centre:
#: coding the vectors themselves lost near neighbours inside tight clusters (recall@10 0.88
#: on the clustered vectors of tests/test_store.py, 0.9995 with offsets). Chosen on 20,000
#: and 50,000 real passage vectors and the 784 gold-set questions: at 50k, recall@10 0.998
#: against exact search in 0.3 to 0.4 ms (IVF-flat with 894 lists: 0.995 in 1.0 ms; probing
#: a fifth of the lists: 0.996; at 20k a fifth gave 0.991, a quarter 0.996). Below
#: ``IVFPQ_MIN`` vectors the codes cannot be trained well (16 centroids per pair of
#: dimensions), and the store is exact.
IVFPQ_LISTS_PER_ROOT = 2.0
IVFPQ_PROBE_SHARE = 1 / 4
IVFPQ_RERANK = 4
IVFPQ_RERANK_MIN = 200
IVFPQ_MIN = 1000
IVF_KINDS = ("ivf", "ivfpq")
#: A filtered search scores the allowed vectors one by one when there are at most this many
#: (exact, and cheaper than a FAISS pass that skips the others).
FILTER_EXACT_MAX = 4096


class VectorStore(Protocol):
    """Unit vectors under int64 ids, searched by inner product."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids of the ``k`` nearest vectors (fewer if the store holds fewer);
        ``allowed``, a boolean mask over the store's ids, limits the search to those."""
        ...

    def save(self, folder: Path, name: str) -> None: ...

    def __len__(self) -> int: ...


def ivf_lists(n: int, per_root: float = IVF_LISTS_PER_ROOT) -> int:
    """The number of IVF lists for ``n`` vectors."""
    nlist = max(1, int(per_root * math.sqrt(n)))
    return min(nlist, max(1, n // 39))  # FAISS wants ~39 training points a list


def ivf_probes(nlist: int, share: float = IVF_PROBE_SHARE) -> int:
    """How many of ``nlist`` IVF lists a search visits."""
    return max(1, min(nlist, max(IVF_MIN_NPROBE, math.ceil(nlist * share))))


def pq_subquantizers(dim: int) -> int:
    """Sub-vectors of an ``ivfpq`` code: pairs of dimensions (single ones when ``dim`` is
    odd), each coded in 4 bits."""
    return dim // 2 if dim % 2 == 0 else dim


def _faiss():
    import faiss

    faiss.omp_set_num_threads(FAISS_THREADS)
    return faiss


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest ``scores``, highest first (ties: lower position first)."""
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        return part[np.lexsort((part, -scores[part]))]
    return np.lexsort((np.arange(len(scores)), -scores))


class FaissStore:
    """Ids and vectors kept as arrays (the record), with a FAISS index over them for search.

    ``kind`` is what was asked for; :attr:`index_kind` what the FAISS index is (``auto``
    picks ``flat`` or ``ivfpq`` by size whenever the index is built, and ``ivfpq`` is
    ``flat`` below :data:`IVFPQ_MIN` vectors). ``flat`` rebuilds its
    index from the arrays on load and on removal (a copy). HNSW cannot delete in place, so
    removal rebuilds its graph; IVF (``ivf`` and ``ivfpq``) retrains (and picks its number of
    lists again) when the store has doubled since training or halved on removal (other
    removals refill the same lists); ``auto`` also rebuilds when it crosses ``auto_ivf_min``.
    """

    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 96,
                 auto_ivf_min: int = AUTO_IVF_MIN):
        if kind not in KINDS:
            raise ValueError(f"unknown store kind {kind!r}")
        self.dim = dim
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.auto_ivf_min = auto_ivf_min
        self.ids = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, dim), np.float32)
        self.index = None
        self.index_kind = self._kind_for(0)
        self._trained_on = 0

    def __len__(self) -> int:
        return len(self.ids)

    def _kind_for(self, n: int) -> str:
        kind = self.kind
        if kind == "auto":
            kind = "ivfpq" if n >= self.auto_ivf_min else "flat"
        return "flat" if kind == "ivfpq" and n < IVFPQ_MIN else kind

    def _build(self) -> None:
        faiss = _faiss()
        n = len(self.ids)
        kind = self._kind_for(n)
        if kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.ef_search
        elif kind == "ivfpq":
            nlist = ivf_lists(n, IVFPQ_LISTS_PER_ROOT)
            index = faiss.IndexIVFPQFastScan(faiss.IndexFlatIP(self.dim), self.dim, nlist,
                                             pq_subquantizers(self.dim), 4,
                                             faiss.METRIC_INNER_PRODUCT)
            index.by_residual = True  # codes of the offset from the list's centre
            index.train(self.vectors)  # n >= IVFPQ_MIN here
            index.nprobe = ivf_probes(nlist, IVFPQ_PROBE_SHARE)
            self._trained_on = n
        else:
            nlist = ivf_lists(n)
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            if n:
                index.train(self.vectors)
            index.nprobe = ivf_probes(nlist)
            self._trained_on = n
        if n:
            index.add(self.vectors)
        self.index, self.index_kind = index, kind

    def _needs_build(self) -> bool:
        if self.index is None or self._kind_for(len(self)) != self.index_kind:
            return True
        return self.index_kind in IVF_KINDS and len(self) > 2 * self._trained_on

    def upgrade(self) -> bool:
        """Rebuild the FAISS index when it is not of the kind the store picks for its size
        now (an ``auto`` index written by an older version); True when it did."""
        if self._kind_for(len(self)) == self.index_kind:
            return False
        self._build()
        return True

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self.ids = np.concatenate([self.ids, np.asarray(ids, np.int64)])
        self.vectors = np.concatenate([self.vectors, vectors])
        if self._needs_build():
            self._build()
        else:
            self.index.add(vectors)

    def remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self.ids, np.asarray(ids, np.int64))
        if keep.all():
            return
        self.ids = self.ids[keep]
        self.vectors = np.ascontiguousarray(self.vectors[keep])
        if (self.index is not None and self.index_kind in IVF_KINDS
                and self.index_kind == self._kind_for(len(self))
                and 2 * len(self) >= self._trained_on and len(self)):
            # the same lists still fit: refill them rather than train again (seconds at 50k)
            self.index.reset()
            self.index.add(self.vectors)
        else:
            self._build()

    def search(self, query: np.ndarray, k: int,
               allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids of the ``k`` nearest vectors, best first. ``allowed`` (a boolean
        mask over :attr:`ids`) limits the search to those vectors before the ``k`` best are
        taken; a filter that leaves few is searched exactly."""
        if not len(self):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if self.index is None:
            self._build()
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if allowed is None:
            return self._search(q, min(k, len(self)))
        allowed = np.asarray(allowed, bool)
        count = int(allowed.sum())
        want = min(k, count)
        if not want:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if count > FILTER_EXACT_MAX:
            faiss = _faiss()
            bits = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
            if self.index_kind in IVF_KINDS:
                # as many allowed vectors visited as an unfiltered search visits in all
                nprobe = math.ceil(self.index.nprobe * len(self) / count)
                params = faiss.SearchParametersIVF(sel=selector,
                                                   nprobe=min(self.index.nlist, nprobe))
            elif self.index_kind == "hnsw":
                params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(
                    self.ef_search, want, math.ceil(self.ef_search * len(self) / count)))
            else:
                params = faiss.SearchParameters(sel=selector)
            scores, ids = self._search(q, want, params)
            if len(ids) == want:
                return scores, ids
        # few allowed (or an approximate search that found too few of them): exact
        rows = np.flatnonzero(allowed)
        scores = self.vectors[rows] @ q[0]
        best = top_k(scores, want)
        return scores[best], self.ids[rows[best]]

    def _search(self, q: np.ndarray, k: int, params=None) -> tuple[np.ndarray, np.ndarray]:
        """The FAISS search of one query (``ivfpq``: its candidates scored exactly)."""
        if self.index_kind != "ivfpq":
            scores, pos = self.index.search(q, k, params=params)
            pos = pos[0][pos[0] >= 0]
            return scores[0][: len(pos)], self.ids[pos]
        _, pos = self.index.search(q, min(len(self), max(IVFPQ_RERANK * k, IVFPQ_RERANK_MIN)),
                                   params=params)
        pos = pos[0][pos[0] >= 0]
        scores = self.vectors[pos] @ q[0]
        best = top_k(scores, k)
        return scores[best], self.ids[pos[best]]

    def save(self, folder: Path, name: str) -> None:
        """Write ``name.npz`` (and ``name.faiss`` when the index is approximate)."""
        tmp = folder / f"{name}.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, ids=self.ids, vectors=self.vectors)
        os.replace(tmp, folder / f"{name}.npz")
        if self.index_kind != "flat":
            faiss = _faiss()
            if self.index is None:
                self._build()
            faiss.write_index(self.index, str(folder / f"{name}.faiss.tmp"))
            os.replace(folder / f"{name}.faiss.tmp", folder / f"{name}.faiss")

    @classmethod
    def load(cls, folder: Path, name: str, dim: int, kind: str,
             setting: str | None = None) -> FaissStore:
        """The store saved as ``name`` with an index of ``kind`` (``flat``, ``hnsw``, ``ivf``
        or ``ivfpq``: what :attr:`index_kind` was); ``setting`` is the kind it keeps building
        with (default ``kind``; ``auto`` for an index that ``auto`` chose).
        :class:`IndexDamagedError` naming the file when one is missing, unreadable, or holds
        arrays of the wrong type or shape."""
        if kind not in KINDS or kind == "auto" or (setting or kind) not in KINDS:
            raise IndexDamagedError(folder / "manifest.json",
                                    f"unknown store kind {setting or kind!r}", folder)
        store = cls(dim, setting or kind)
        path = folder / f"{name}.npz"
        try:
            with np.load(path) as data:
                ids, vectors = data["ids"], data["vectors"]
        except FileNotFoundError:
            raise IndexDamagedError(path, "missing", folder) from None
        except Exception as e:  # noqa: BLE001 - any failure to read it means it is damaged
            raise IndexDamagedError(path, f"not a readable NumPy archive: {type(e).__name__}",
                                    folder) from None
        if ids.dtype != np.int64 or ids.ndim != 1 or len(np.unique(ids)) != len(ids):
            raise IndexDamagedError(path, "its ids are not distinct 64-bit integers", folder)
        if vectors.dtype != np.float32 or vectors.shape != (len(ids), dim):
            raise IndexDamagedError(path, f"vectors of shape {vectors.shape}, not "
                                    f"({len(ids)}, {dim})", folder)
        store.ids, store.vectors = ids, vectors
        store.index_kind = kind
        if kind != "flat":
            faiss = _faiss()
            path = folder / f"{name}.faiss"
            if not path.exists():
                raise IndexDamagedError(path, "missing", folder)
            try:
                store.index = faiss.read_index(str(path))
            except Exception as e:  # noqa: BLE001
                raise IndexDamagedError(path, f"not a readable FAISS index: {first_line(e)}",
                                        folder) from None
            expected = {"hnsw": faiss.IndexHNSW, "ivf": faiss.IndexIVFFlat,
                        "ivfpq": faiss.IndexIVFPQFastScan}[kind]
            if not isinstance(store.index, expected):
                raise IndexDamagedError(path, f"not a FAISS {kind} index", folder)
            if store.index.d != dim or store.index.ntotal != len(ids):
                raise IndexDamagedError(path, f"{store.index.ntotal} vectors of dimension "
                                        f"{store.index.d}, not {len(ids)} of {dim}", folder)
            if kind == "hnsw":
                store.index.hnsw.efSearch = store.ef_search
            else:
                store._trained_on = len(store)
                store.index.nprobe = ivf_probes(store.index.nlist, IVFPQ_PROBE_SHARE
                                                if kind == "ivfpq" else IVF_PROBE_SHARE)
        return store

    @staticmethod
    def files(name: str, kind: str) -> list[str]:
        """The files :meth:`save` writes for an index of ``kind`` (an :attr:`index_kind`)."""
        return [f"{name}.npz"] + ([f"{name}.faiss"] if kind != "flat" else [])
