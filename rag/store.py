"""Vector stores: add, remove, search, save, load. FAISS is the embedded default.

``flat`` is exact inner-product search. ``hnsw`` and ``ivf`` are approximate, for large
corpora; ``bench/bench_index.py`` measures their recall against ``flat``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import IndexDamagedError, first_line

#: Searches run one query at a time; FAISS's own OpenMP pool would only compete with the
#: embedder's threads on a small machine (a pool still spinning after a search slows the next
#: query encode: p50 10 -> 15 ms at 20k vectors), so FAISS gets one thread.
FAISS_THREADS = 1
#: IVF probes at least this many lists (all of them in a small store): probing nlist // 16
#: alone meant 1 of 25 lists at 1,000 vectors, recall@10 about 0.2.
IVF_MIN_NPROBE = 32


class VectorStore(Protocol):
    """Unit vectors under int64 ids, searched by inner product."""

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray) -> None: ...

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and ids of the ``k`` nearest vectors (fewer if the store holds fewer)."""
        ...

    def save(self, folder: Path, name: str) -> None: ...

    def __len__(self) -> int: ...


def _nprobe(nlist: int) -> int:
    return max(1, min(nlist, max(IVF_MIN_NPROBE, nlist // 16)))


def _faiss():
    import faiss

    faiss.omp_set_num_threads(FAISS_THREADS)
    return faiss


class FaissStore:
    """Ids and vectors kept as arrays (the record), with a FAISS index over them for search.

    ``flat`` rebuilds its index from the arrays on load and on removal (a copy). HNSW cannot
    delete in place, so removal rebuilds its graph; IVF retrains its coarse quantizer when the
    store has grown fourfold since training, or on removal.
    """

    def __init__(self, dim: int, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 96):
        if kind not in ("flat", "hnsw", "ivf"):
            raise ValueError(f"unknown store kind {kind!r}")
        self.dim = dim
        self.kind = kind
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.ids = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, dim), np.float32)
        self.index = None
        self._trained_on = 0

    def __len__(self) -> int:
        return len(self.ids)

    def _build(self) -> None:
        faiss = _faiss()
        n = len(self.ids)
        if self.kind == "flat":
            index = faiss.IndexFlatIP(self.dim)
        elif self.kind == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = self.ef_search
        else:
            nlist = max(1, int(4 * np.sqrt(n)))
            nlist = min(nlist, max(1, n // 39))  # FAISS wants ~39 training points a list
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist,
                                       faiss.METRIC_INNER_PRODUCT)
            if n:
                index.train(self.vectors)
            index.nprobe = _nprobe(nlist)
            self._trained_on = n
        if n:
            index.add(self.vectors)
        self.index = index

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not len(ids):
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        self.ids = np.concatenate([self.ids, np.asarray(ids, np.int64)])
        self.vectors = np.concatenate([self.vectors, vectors])
        if self.index is None or (self.kind == "ivf" and len(self) > 4 * self._trained_on):
            self._build()
        else:
            self.index.add(vectors)

    def remove(self, ids: np.ndarray) -> None:
        keep = ~np.isin(self.ids, np.asarray(ids, np.int64))
        if keep.all():
            return
        self.ids = self.ids[keep]
        self.vectors = np.ascontiguousarray(self.vectors[keep])
        self._build()

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not len(self):
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if self.index is None:
            self._build()
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        scores, pos = self.index.search(q, min(k, len(self)))
        keep = pos[0] >= 0
        return scores[0][keep], self.ids[pos[0][keep]]

    def save(self, folder: Path, name: str) -> None:
        """Write ``name.npz`` (and ``name.faiss`` for the approximate kinds)."""
        tmp = folder / f"{name}.npz.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, ids=self.ids, vectors=self.vectors)
        os.replace(tmp, folder / f"{name}.npz")
        if self.kind != "flat":
            faiss = _faiss()
            if self.index is None:
                self._build()
            faiss.write_index(self.index, str(folder / f"{name}.faiss.tmp"))
            os.replace(folder / f"{name}.faiss.tmp", folder / f"{name}.faiss")

    @classmethod
    def load(cls, folder: Path, name: str, dim: int, kind: str) -> FaissStore:
        """The store saved as ``name``; :class:`IndexDamagedError` naming the file when one is
        missing, unreadable, or holds arrays of the wrong type or shape."""
        store = cls(dim, kind)
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
            if store.index.d != dim or store.index.ntotal != len(ids):
                raise IndexDamagedError(path, f"{store.index.ntotal} vectors of dimension "
                                        f"{store.index.d}, not {len(ids)} of {dim}", folder)
            if kind == "hnsw":
                store.index.hnsw.efSearch = store.ef_search
            else:
                store._trained_on = len(store)
                store.index.nprobe = _nprobe(store.index.nlist)
        return store

    @staticmethod
    def files(name: str, kind: str) -> list[str]:
        return [f"{name}.npz"] + ([f"{name}.faiss"] if kind != "flat" else [])
