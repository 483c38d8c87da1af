"""Errors whose message is shown to the user as one line that says what to do."""

from __future__ import annotations

from pathlib import Path


def first_line(e: BaseException) -> str:
    """The first line of ``e``'s message, or its type's name when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class RagError(Exception):
    """A problem the user can fix; the message says how."""


class CorpusError(RagError):
    """The corpus folder is missing, empty, or holds nothing that can be indexed."""


class IndexNotFoundError(RagError):
    """There is no usable index in the index folder."""


class IndexDamagedError(IndexNotFoundError):
    """A file of the index is missing, truncated or unreadable; ``rag index`` rebuilds it.

    ``path`` is the damaged file, ``reason`` what is wrong with it, in a few words."""

    def __init__(self, path: str | Path, reason: str | BaseException, folder: str | Path):
        self.path = Path(path)
        self.reason = first_line(reason) if isinstance(reason, BaseException) else reason
        self.folder = Path(folder)
        super().__init__(f"{self.path} is damaged ({self.reason}); run `rag index --index "
                         f"{self.folder}` to rebuild the index from the corpus")


class IndexBusyError(RagError):
    """Another writer is updating the index (a shared Milvus index refuses a second one)."""


class IndexMismatchError(RagError):
    """The index was built with another embedder, chunker or format."""


class QueryError(RagError):
    """The question itself is unusable (empty, too long)."""


class GeneratorError(RagError):
    """A language model failed while answering (a model server unreachable, an error status, a
    timeout, a broken stream); the pipeline answers with the extractive reader instead and
    says so."""
