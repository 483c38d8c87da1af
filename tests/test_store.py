"""FaissStore against numpy brute force: add, remove, search, save and load."""

from __future__ import annotations

import numpy as np
import pytest

from rag.store import IVFPQ_MIN, FaissStore

DIM = 32
KINDS = ["flat", "hnsw", "ivf", "ivfpq"]


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


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
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
    # ivfpq is exact (flat) below IVFPQ_MIN vectors: too few to train its codes
    assert store.index_kind == ("flat" if kind == "ivfpq" and n < IVFPQ_MIN else kind)
    store.save(tmp_path, "vectors-1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        FaissStore.files("vectors-1", store.index_kind))
    loaded = FaissStore.load(tmp_path, "vectors-1", DIM, store.index_kind, setting=kind)
    assert (loaded.kind, loaded.index_kind) == (kind, store.index_kind)
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


# -- auto: exact when small, IVF-PQ when large -------------------------------------------------


def clustered(rng, n, dim=DIM, clusters=64, spread=0.35) -> np.ndarray:
    """Unit vectors around ``clusters`` random centres: how text embeddings bunch by topic."""
    centres = unit(rng, clusters, dim)
    noise = spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
    v = centres[rng.integers(clusters, size=n)] + noise
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_auto_is_flat_below_the_threshold_and_ivfpq_from_it():
    rng = np.random.default_rng(21)
    store = FaissStore(DIM, "auto", auto_ivf_min=1500)
    assert store.kind == "auto" and store.index_kind == "flat"
    store.add(np.arange(1499, dtype=np.int64), unit(rng, 1499))
    assert store.index_kind == "flat"
    assert FaissStore.files("v", store.index_kind) == ["v.npz"]
    store.add(np.array([1499], np.int64), unit(rng, 1))
    assert store.index_kind == "ivfpq"
    assert store.index.nlist > 1 and store.index.ntotal == 1500
    store.add(np.arange(1500, 3000, dtype=np.int64), unit(rng, 1500))
    assert store.index_kind == "ivfpq" and store.index.ntotal == 3000
    store.remove(np.arange(2600, dtype=np.int64))  # back under the threshold: exact again
    assert store.index_kind == "flat" and len(store) == 400
    q = unit(rng, 1)[0]
    assert store.search(q, 5)[1].tolist() == brute_force(store.ids, store.vectors, q, 5)[1].tolist()


def test_auto_below_the_codes_minimum_stays_exact():
    """A threshold set under IVFPQ_MIN cannot train the codes: exact until there are enough."""
    rng = np.random.default_rng(27)
    store = FaissStore(DIM, "auto", auto_ivf_min=10)
    store.add(np.arange(IVFPQ_MIN - 1, dtype=np.int64), unit(rng, IVFPQ_MIN - 1))
    assert store.index_kind == "flat"
    store.add(np.array([IVFPQ_MIN], np.int64), unit(rng, 1))
    assert store.index_kind == "ivfpq"


def test_explicit_kinds_never_switch():
    rng = np.random.default_rng(22)
    for kind in ("flat", "hnsw", "ivf"):
        store = FaissStore(DIM, kind, auto_ivf_min=10)
        store.add(np.arange(300, dtype=np.int64), unit(rng, 300))
        assert store.index_kind == kind
    store = FaissStore(DIM, "ivfpq", auto_ivf_min=10**9)
    store.add(np.arange(IVFPQ_MIN, dtype=np.int64), unit(rng, IVFPQ_MIN))
    assert store.index_kind == "ivfpq"


def test_ivfpq_scores_are_exact_inner_products():
    store, ids, vectors, rng = make_store("ivfpq", 3000, seed=28)
    by_id = dict(zip(ids.tolist(), vectors))
    for q in unit(rng, 10):
        scores, found = store.search(q, 20)
        np.testing.assert_allclose(scores, [by_id[i] @ q for i in found.tolist()], rtol=1e-5,
                                   atol=1e-6)


def test_upgrade_rebuilds_an_index_of_another_kind_than_auto_picks_now():
    rng = np.random.default_rng(29)
    ivf = FaissStore(DIM, "ivf")
    ids, vectors = np.arange(2000, dtype=np.int64), clustered(rng, 2000)
    ivf.add(ids, vectors)
    assert ivf.index_kind == "ivf" and not ivf.upgrade()  # what it was asked for
    ivf.kind, ivf.auto_ivf_min = "auto", 1000  # as loaded from an older auto index
    assert ivf.upgrade() and ivf.index_kind == "ivfpq" and ivf.index.ntotal == 2000
    assert not ivf.upgrade()
    small = FaissStore(DIM, "auto")
    small.add(ids[:10], vectors[:10])
    assert not small.upgrade() and small.index_kind == "flat"


def test_auto_ivf_recall_at_10_against_brute_force_on_clustered_vectors():
    rng = np.random.default_rng(23)
    n = 30_000
    vectors = clustered(rng, n)
    ids = rng.choice(10**9, size=n, replace=False).astype(np.int64)
    store = FaissStore(DIM, "auto", auto_ivf_min=20_000)
    store.add(ids, vectors)
    assert store.index_kind == "ivfpq"
    queries = clustered(np.random.default_rng(24), 200)
    assert recall(store, ids, vectors, queries, k=10) >= 0.99


@pytest.mark.parametrize("n", [300, 3000])
def test_auto_save_load_round_trip(tmp_path, n):
    rng = np.random.default_rng(25)
    store = FaissStore(DIM, "auto", auto_ivf_min=1000)
    ids = np.arange(n, dtype=np.int64) * 7
    store.add(ids, clustered(rng, n))
    kind = store.index_kind
    assert kind == ("flat" if n < 1000 else "ivfpq")
    store.save(tmp_path, "vectors-3")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FaissStore.files("vectors-3", kind))
    loaded = FaissStore.load(tmp_path, "vectors-3", DIM, kind, setting="auto")
    assert (loaded.kind, loaded.index_kind) == ("auto", kind)
    for q in clustered(rng, 5):
        s1, i1 = store.search(q, 10)
        s2, i2 = loaded.search(q, 10)
        assert i1.tolist() == i2.tolist()
        np.testing.assert_allclose(s1, s2, rtol=1e-6)


def test_load_refuses_an_unknown_kind(tmp_path):
    from rag.errors import IndexDamagedError

    store, *_ = make_store("flat", 10)
    store.save(tmp_path, "vectors-1")
    for kind, setting in (("annoy", None), ("auto", None), ("flat", "annoy")):
        with pytest.raises(IndexDamagedError, match="unknown store kind"):
            FaissStore.load(tmp_path, "vectors-1", DIM, kind, setting=setting)


# -- filtered search ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf", "ivfpq", "auto"])
@pytest.mark.parametrize("share", [0.0, 0.001, 0.05, 0.5, 1.0])
def test_filtered_search_returns_only_allowed_vectors(kind, share):
    rng = np.random.default_rng(26)
    n = 12_000
    vectors = clustered(rng, n)
    ids = rng.choice(10**9, size=n, replace=False).astype(np.int64)
    store = FaissStore(DIM, kind, auto_ivf_min=5000)
    store.add(ids, vectors)
    allowed = rng.random(n) < share
    queries = clustered(rng, 30)
    got = []
    for q in queries:
        scores, found = store.search(q, 10, allowed)
        truth = brute_force(ids[allowed], vectors[allowed], q, 10)[1]
        assert len(found) == len(truth) == min(10, allowed.sum())
        assert np.isin(found, ids[allowed]).all()
        assert np.all(np.diff(scores) <= 1e-6)
        got.append(len(set(found.tolist()) & set(truth.tolist())) / len(truth) if len(truth)
                   else 1.0)
        if kind == "flat" or allowed.sum() <= 4096:  # exact
            assert found.tolist() == truth.tolist()
    if kind == "hnsw":  # a graph search is approximate anyway: the filter must not hurt it
        assert np.mean(got) >= recall(store, ids, vectors, queries) - 0.05
    else:
        assert np.mean(got) >= 0.99


# -- auto in an index folder: the manifest says which index each generation holds -------------


def write_articles(corpus, n, start=0):
    corpus.mkdir(exist_ok=True)
    for i in range(start, start + n):
        (corpus / f"a{i:03d}.txt").write_text(
            f"Story {i}\n\nThe harbour of town {i} ordered {i % 7} ferries and {i % 11} tugs.\n")


def test_auto_in_an_index_folder_switches_between_generations(tmp_path, fake_embedder):
    import json

    from conftest import fake_settings

    from rag import build_index
    from rag.retrieve import Index

    corpus = tmp_path / "corpus"
    write_articles(corpus, 600)
    settings = fake_settings(corpus, tmp_path / "index", store_ivf_min=1000)
    assert settings.store == "auto"  # the default

    def manifest():
        return json.loads((settings.index / "manifest.json").read_text())

    build_index(settings, embedder=fake_embedder)
    assert (manifest()["store"], manifest()["store_setting"]) == ("flat", "auto")
    index = Index(settings.index, settings, embedder=fake_embedder)
    assert index.stats()["store"] == "flat" and index.store.index_kind == "flat"
    assert not list(settings.index.glob("*.faiss"))

    write_articles(corpus, 600, start=600)  # 1200 chunks: over the threshold
    build_index(settings, embedder=fake_embedder)
    assert (manifest()["store"], manifest()["store_setting"]) == ("ivfpq", "auto")
    assert [p.name for p in settings.index.glob("*.faiss")] == [
        f"{manifest()['files']['vectors']}.faiss"]
    assert index.reload()  # the open index picks up the generation with the other kind
    assert index.store.index_kind == "ivfpq" and index.stats()["store"] == "ivfpq"
    hits = index.search("harbour of town 857 ferries tugs", k=3)
    assert hits[0].article["path"] == "a857.txt"

    for i in range(600, 1200):  # back under the threshold
        (corpus / f"a{i:03d}.txt").unlink()
    build_index(settings, embedder=fake_embedder)
    assert manifest()["store"] == "flat"
    assert index.reload() and index.store.index_kind == "flat"
    assert not list(settings.index.glob("*.faiss"))
    assert index.search("harbour of town 7 ferries", k=1)[0].article["path"] == "a007.txt"


def test_an_index_built_with_flat_before_auto_still_opens_and_updates(tmp_path, fake_embedder):
    import json

    from conftest import fake_settings

    from rag import build_index
    from rag.errors import IndexMismatchError
    from rag.retrieve import Index

    corpus = tmp_path / "corpus"
    write_articles(corpus, 30)
    flat = fake_settings(corpus, tmp_path / "index", store="flat")
    build_index(flat, embedder=fake_embedder)
    path = flat.index / "manifest.json"
    legacy = json.loads(path.read_text())
    del legacy["store_setting"]  # as written before auto existed
    path.write_text(json.dumps(legacy))

    auto = fake_settings(corpus, tmp_path / "index", store_ivf_min=1000)
    index = Index(auto.index, auto, embedder=fake_embedder)
    assert index.store.index_kind == "flat"
    assert index.search("harbour of town 3 ferries", k=1)[0].article["path"] == "a003.txt"
    write_articles(corpus, 1000, start=30)
    fake_embedder.reset()
    report = build_index(auto, embedder=fake_embedder)  # accepted: no --rebuild
    assert report.added == 1000 and fake_embedder.texts_embedded == 1000
    assert (json.loads(path.read_text())["store"], json.loads(path.read_text())["store_setting"]) \
        == ("ivfpq", "auto")
    # an explicit other kind is still refused, and an explicit flat after auto too
    for other in ("hnsw", "flat"):
        with pytest.raises(IndexMismatchError, match="--rebuild"):
            build_index(fake_settings(corpus, tmp_path / "index", store=other),
                        embedder=fake_embedder)


def test_an_auto_index_of_an_older_kind_is_rebuilt_once_by_the_next_run(tmp_path,
                                                                          fake_embedder):
    """An index that ``auto`` built as IVF-flat (before ivfpq) is rebuilt as ivfpq by the next
    ``rag index``, with nothing embedded again; the run after that writes nothing."""
    import json

    from conftest import fake_settings

    from rag import build_index
    from rag.retrieve import Index

    corpus = tmp_path / "corpus"
    write_articles(corpus, 1100)
    build_index(fake_settings(corpus, tmp_path / "index", store="ivf"), embedder=fake_embedder)
    path = tmp_path / "index" / "manifest.json"
    older = json.loads(path.read_text())
    assert older["store"] == "ivf"
    older["store_setting"] = "auto"  # as the older auto wrote it
    path.write_text(json.dumps(older))

    auto = fake_settings(corpus, tmp_path / "index", store_ivf_min=1000)
    index = Index(auto.index, auto, embedder=fake_embedder)
    assert index.store.index_kind == "ivf"  # it opens as it is
    fake_embedder.reset()
    report = build_index(auto, embedder=fake_embedder)
    assert fake_embedder.texts_embedded == 0 and not report.changes
    now = json.loads(path.read_text())
    assert (now["store"], now["store_setting"]) == ("ivfpq", "auto")
    assert now["generation"] == older["generation"] + 1
    assert index.reload() and index.store.index_kind == "ivfpq"
    assert index.search("harbour of town 1057 ferries tugs", k=1)[0].article["path"] == "a1057.txt"
    build_index(auto, embedder=fake_embedder)
    assert json.loads(path.read_text())["generation"] == now["generation"]
