"""FaissStore against numpy brute force: add, remove, search, save and load."""

from __future__ import annotations

import numpy as np
import pytest

from rag.store import FaissStore

DIM = 32
KINDS = ["flat", "hnsw", "ivf"]


def unit(rng, n, dim=DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def brute_force(ids, vectors, query, k):
    if not len(ids):
        return np.zeros(0, np.float32), np.zeros(0, np.int64)
    scores = vectors @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return scores[order], ids[order]


def recall(store, ids, vectors, queries, k=10) -> float:
    got = []
    for q in queries:
        _, truth = brute_force(ids, vectors, q, k)
        _, found = store.search(q, k)
        got.append(len(set(found.tolist()) & set(truth.tolist())) / len(truth))
    return float(np.mean(got))


def make_store(kind, n, seed=0):
    rng = np.random.default_rng(seed)
    vectors = unit(rng, n)
    ids = rng.choice(10**9, size=n, replace=False).astype(np.int64)  # sparse, unordered ids
    store = FaissStore(DIM, kind)
    store.add(ids, vectors)
    return store, ids, vectors, rng


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_search_matches_brute_force(kind, n):
    store, ids, vectors, rng = make_store(kind, n)
    assert len(store) == n
    queries = unit(rng, 20)
    for k in (1, 5, 10, 2000):
        scores, found = store.search(queries[0], k)
        if kind == "flat" or k <= 10:
            assert len(found) == min(k, n)
        else:  # a graph search asked for the whole store may stop short of every vector
            assert 0.8 * min(k, n) <= len(found) <= min(k, n)
        assert len(set(found.tolist())) == len(found)
        assert found.dtype == np.int64
        assert set(found.tolist()) <= set(ids.tolist())
        assert np.all(np.diff(scores) <= 1e-6), "best first"
        if len(found):
            by_id = dict(zip(ids.tolist(), vectors))
            expected = np.array([by_id[i] @ queries[0] for i in found.tolist()])
            np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    if kind == "flat":
        for q in queries:
            want_scores, want_ids = brute_force(ids, vectors, q, 10)
            got_scores, got_ids = store.search(q, 10)
            assert got_ids.tolist() == want_ids.tolist()
            np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-6)
    elif n:
        assert recall(store, ids, vectors, queries) >= 0.9


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_recall_on_1000_random_vectors(kind):
    store, ids, vectors, rng = make_store(kind, 1000, seed=7)
    queries = unit(rng, 100)
    assert recall(store, ids, vectors, queries, k=10) >= 0.9
    # a stored vector finds itself first
    for i in rng.choice(1000, 20, replace=False):
        _, found = store.search(vectors[i], 1)
        assert found[0] == ids[i]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_remove_really_removes(kind, n):
    store, ids, vectors, rng = make_store(kind, n, seed=3)
    gone = ids[: max(1, n // 3)]
    store.remove(np.concatenate([gone, [-5, 10**12]]))  # unknown ids are ignored
    keep = ~np.isin(ids, gone)
    assert len(store) == keep.sum()
    assert not np.isin(store.ids, gone).any()
    for v in vectors[~keep][:20]:
        _, found = store.search(v, 10)
        assert not np.isin(found, gone).any()
    if keep.any():
        queries = unit(rng, 10)
        if kind == "flat":
            for q in queries:
                assert store.search(q, 5)[1].tolist() == brute_force(
                    ids[keep], vectors[keep], q, 5)[1].tolist()
        else:
            assert recall(store, ids[keep], vectors[keep], queries) >= 0.9
    else:
        assert store.search(unit(rng, 1)[0], 5)[1].size == 0
    # removing nothing, or ids that are not there, changes nothing
    before = store.ids.copy()
    store.remove(np.zeros(0, np.int64))
    store.remove(gone)
    assert store.ids.tolist() == before.tolist()


@pytest.mark.parametrize("kind", KINDS)
def test_add_after_remove_and_incremental_adds(kind):
    rng = np.random.default_rng(11)
    store = FaissStore(DIM, kind)
    all_ids, all_vecs = [], []
    for step in range(5):
        ids = np.arange(step * 300, step * 300 + 300, dtype=np.int64)
        vecs = unit(rng, 300)
        store.add(ids, vecs)
        all_ids.append(ids)
        all_vecs.append(vecs)
    ids, vecs = np.concatenate(all_ids), np.concatenate(all_vecs)
    store.remove(ids[::2])
    store.add(np.array([10_000], np.int64), vecs[:1])  # a new id for a removed vector
    keep = np.concatenate([ids[1::2], [10_000]])
    kept_vecs = np.concatenate([vecs[1::2], vecs[:1]])
    assert sorted(store.ids.tolist()) == sorted(keep.tolist())
    _, found = store.search(vecs[0], 1)
    assert found.tolist() == [10_000]
    assert recall(store, keep, kept_vecs, unit(rng, 20)) >= (1.0 if kind == "flat" else 0.9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [0, 1, 7, 1000])
def test_save_load_round_trip(tmp_path, kind, n):
    store, ids, vectors, rng = make_store(kind, n, seed=5)
    store.save(tmp_path, "vectors-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FaissStore.files("vectors-1", kind))
    loaded = FaissStore.load(tmp_path, "vectors-1", DIM, kind)
    assert len(loaded) == n
    assert loaded.ids.tolist() == store.ids.tolist()
    np.testing.assert_array_equal(loaded.vectors, store.vectors)
    for q in unit(rng, 5):
        s1, i1 = store.search(q, 10)
        s2, i2 = loaded.search(q, 10)
        assert i1.tolist() == i2.tolist()
        np.testing.assert_allclose(s1, s2, rtol=1e-6)
    # the loaded store keeps working: add and remove
    extra = unit(rng, 3)
    loaded.add(np.array([-1, -2, -3], np.int64), extra)
    assert loaded.search(extra[1], 1)[1].tolist() == [-2]
    loaded.remove(np.array([-2], np.int64))
    assert -2 not in loaded.search(extra[1], 10)[1].tolist()
    assert len(loaded) == n + 2


def test_unknown_kind():
    with pytest.raises(ValueError):
        FaissStore(DIM, "annoy")
