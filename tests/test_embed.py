"""Embedders: the fake honours the protocol; the int8 ONNX export agrees with torch."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SEED_CORPUS, FakeEmbedder

from rag import build_index
from rag.config import Settings, cache_dir
from rag.errors import RagError
from rag.retrieve import Index

TEXTS = [
    "Alibaba led a group of investors that poured $600 million into SenseTime.",
    "The weather in Port Calder was fine for the marathon.",
    "Wie viel hat Alibaba investiert? \u963f\u91cc\u5df4\u5df4\u6295\u8d44\u4e86\u591a\u5c11\uff1f",
    "word " * 600,  # longer than the model takes: truncated, not an error
]


def check_embedder(e, texts=TEXTS, query_cosine=None):
    """``query_cosine``: how close a text embedded alone must be to the same text embedded in a
    batch (None: equal; int8 dynamic quantization scales activations per batch)."""
    v = e.embed(texts)
    assert v.shape == (len(texts), e.dim) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    q = e.embed_query(texts[0])
    assert q.shape == (e.dim,) and q.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(q), 1.0, rtol=1e-4)
    if query_cosine is None:
        np.testing.assert_allclose(q, v[0], atol=1e-4)
    else:
        assert float(q @ v[0]) > query_cosine
    assert e.embed([]).shape == (0, e.dim)
    assert isinstance(e.max_tokens, int) and e.max_tokens > 0
    assert isinstance(e.id, str) and "#" in e.id
    return v


def test_fake_embedder_is_deterministic():
    a, b = FakeEmbedder(), FakeEmbedder()
    va = check_embedder(a)
    np.testing.assert_array_equal(va, b.embed(TEXTS))
    assert a.calls == 2 and a.texts_embedded == len(TEXTS) and a.query_calls == 1
    same = a.embed_query("harbor robotics") @ a.embed_query("Harbor Robotics")
    other = a.embed_query("harbor robotics") @ a.embed_query("marathon runners")
    assert same == pytest.approx(1.0) and other < 0.9


@pytest.mark.slow
def test_torch_embedder(real_embedder):
    v = check_embedder(real_embedder)
    assert real_embedder.id == "bundled:all-MiniLM-L6-v2#torch" and real_embedder.dim == 384
    related = real_embedder.embed_query("How much did Alibaba invest in SenseTime?")
    assert related @ v[0] > related @ v[1] + 0.2


@pytest.mark.slow
def test_onnx_int8_agrees_with_torch_and_is_cached(real_embedder, rag_cache):
    from rag.embed import load_embedder

    onnx = load_embedder(backend="onnx-int8")
    assert onnx.id == "bundled:all-MiniLM-L6-v2#onnx-int8"
    assert (onnx.dim, onnx.max_tokens) == (real_embedder.dim, real_embedder.max_tokens)
    assert cache_dir() == rag_cache  # the session's RAG_CACHE, not the user's cache
    exports = list((rag_cache / "onnx").iterdir())
    assert len(exports) == 1 and (exports[0] / "model.onnx").exists()

    v = check_embedder(onnx, query_cosine=0.98)
    cosine = np.sum(v * real_embedder.embed(TEXTS), axis=1)
    assert cosine.min() > 0.97, cosine
    # the chunker counts tokens the same way with both backends
    assert onnx.tokenizer.spans(TEXTS) == real_embedder.tokenizer.spans(TEXTS)

    # a second load reuses the export
    mtime = (exports[0] / "model.onnx").stat().st_mtime_ns
    again = load_embedder(backend="onnx-int8")
    assert (exports[0] / "model.onnx").stat().st_mtime_ns == mtime
    assert list((rag_cache / "onnx").iterdir()) == exports
    np.testing.assert_allclose(again.embed(TEXTS), v, atol=1e-6)  # same batch, same vectors


@pytest.mark.slow
def test_queries_use_the_backend_the_index_was_built_with(real_embedder, tmp_path):
    from rag.embed import load_embedder

    onnx = load_embedder(backend="onnx-int8")  # exported once per session (RAG_CACHE)
    settings = Settings(corpus=SEED_CORPUS, index=tmp_path / "index", embed_backend="onnx-int8")
    build_index(settings, embedder=onnx)
    # opened with torch settings, with or without a torch embedder: the index says onnx-int8
    torch_settings = Settings(index=tmp_path / "index", embed_backend="torch")
    for embedder in (None, real_embedder):
        index = Index(tmp_path / "index", torch_settings, embedder=embedder)
        assert index.settings.embed_backend == "onnx-int8"
        assert index.embedder.id.endswith("#onnx-int8")
        hits = index.search("How much did the Alibaba-led group invest in SenseTime?", k=1)
        assert "$600 million" in hits[0].chunk.text


@pytest.mark.slow
def test_unknown_backend_and_missing_model(tmp_path):
    from rag.embed import load_embedder

    with pytest.raises(RagError, match="unknown embedding backend"):
        load_embedder(backend="tensorflow")
    with pytest.raises(RagError, match="unknown embedding backend"):
        Settings.from_env(embed_backend="tensorflow")
    with pytest.raises(RagError, match="cannot load embedding model"):
        load_embedder(str(tmp_path / "no-such-model"), backend="torch")


def test_model_load_error_without_a_message(monkeypatch):
    import sentence_transformers

    from rag.embed import _load_sentence_transformer

    def refuse(*args, **kwargs):
        raise OSError()

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", refuse)
    with pytest.raises(RagError, match=r"cannot load embedding model 'm' \(OSError\); give"):
        _load_sentence_transformer("m")
