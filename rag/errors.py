"""Errors whose message is shown to the user as one line that says what to do."""

from __future__ import annotations


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


class IndexMismatchError(RagError):
    """The index was built with another embedder, chunker or format."""


class QueryError(RagError):
    """The question itself is unusable (empty, too long)."""
