"""Sentence-aware chunking with overlap, bounded by the embedder's own token count.

Every chunk records exact character offsets: ``article.text[chunk.start:chunk.end] ==
chunk.text``, and no chunk holds more tokens than ``max_tokens`` as the embedder's tokenizer
counts them, so the embedder never silently truncates one.

>>> from rag.chunk import chunk_text, RegexTokenizer
>>> [(c.start, c.end) for c in chunk_text("a1", "One two. Three four.", RegexTokenizer(), 3, 0)]
[(0, 8), (9, 20)]
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Protocol

from .types import Chunk

Span = tuple[int, int]

# A sentence ends at terminal punctuation (plus closing quotes or brackets) before whitespace,
# or at a line break.
_BOUNDARY = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)|\n")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs etc e.g i.e u.s u.k gen gov sen rep lt col sgt no jan feb "
    "mar apr jun jul aug sep sept oct nov dec".split()
)
_BATCH = 256
#: Bumped whenever chunk boundaries change, so existing indexes are rebuilt, not mixed.
CHUNKER_VERSION = 1


class Tokenizer(Protocol):
    """What the chunker needs of a tokenizer: each token's character span, no special tokens."""

    def spans(self, texts: Sequence[str]) -> list[list[Span]]: ...


class RegexTokenizer:
    """Words and single punctuation marks: a fast stand-in for tests and examples."""

    _token = re.compile(r"\w+|[^\w\s]")

    def spans(self, texts: Sequence[str]) -> list[list[Span]]:
        return [[m.span() for m in self._token.finditer(t)] for t in texts]


class HFTokenizer:
    """Adapter for a Hugging Face fast tokenizer (``return_offsets_mapping``)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def spans(self, texts: Sequence[str]) -> list[list[Span]]:
        if not texts:
            return []
        enc = self.tokenizer(
            list(texts),
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_attention_mask=False,
            return_token_type_ids=False,
            verbose=False,
        )
        return [[tuple(o) for o in offs] for offs in enc["offset_mapping"]]


def sentence_spans(text: str) -> Iterator[Span]:
    """Spans of sentences (and lines), trimmed of surrounding whitespace."""
    start = 0
    for m in _BOUNDARY.finditer(text):
        end = m.start() if m.group() == "\n" else m.end()
        if m.group() != "\n" and _is_abbreviation(text, m.start()):
            continue
        yield from _trimmed(text, start, end)
        start = end
    yield from _trimmed(text, start, len(text))


def _is_abbreviation(text: str, dot: int) -> bool:
    if text[dot] != ".":
        return False
    word_start = dot
    while word_start > 0 and (text[word_start - 1].isalpha() or text[word_start - 1] == "."):
        word_start -= 1
    word = text[word_start:dot].lower()
    return word in _ABBREVIATIONS or (len(word) == 1 and text[word_start].isupper())


def _trimmed(text: str, start: int, end: int) -> Iterator[Span]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        yield start, end


def _split_chars(text: str, span: Span, max_chars: int) -> Iterator[Span]:
    """Cut a very long span at whitespace into pieces of at most ``max_chars`` characters, so
    the tokenizer never sees megabytes at once."""
    start, end = span
    while end - start > max_chars:
        cut = text.rfind(" ", start + max_chars // 2, start + max_chars)
        cut = cut if cut > start else start + max_chars
        yield from _trimmed(text, start, cut)
        start = cut
    yield from _trimmed(text, start, end)


def _split_tokens(text: str, span: Span, offsets: list[Span], max_tokens: int) -> list[Span]:
    """Cut a span whose tokens (``offsets``, relative to the span) exceed ``max_tokens`` into
    windows of at most ``max_tokens`` tokens, preferring cuts before a whitespace. A window
    reaches up to the next window's first token, so characters that belong to no token (a
    combining accent a tokenizer strips) stay inside a chunk."""
    base, stop = span
    pieces = []
    i = 0
    while i < len(offsets):
        j = min(i + max_tokens, len(offsets))
        if j < len(offsets):
            # Back off to a token that starts a word, if one lies in the second half.
            for k in range(j, i + max_tokens // 2, -1):
                s = base + offsets[k][0]
                if s > 0 and text[s - 1].isspace():
                    j = k
                    break
        start = base + offsets[i][0] if i else base
        end = base + offsets[j][0] if j < len(offsets) else stop
        pieces.extend(_trimmed(text, start, end))
        i = j
    return pieces


def _units(text: str, tokenizer: Tokenizer, max_tokens: int) -> list[tuple[int, int, int]]:
    """Sentences, cut further where one exceeds ``max_tokens``: (start, end, n_tokens)."""
    max_chars = max_tokens * 8
    units: list[tuple[int, int, int]] = []
    pending: list[Span] = []

    def flush():
        for span, offs in zip(pending, tokenizer.spans([text[a:b] for a, b in pending])):
            if len(offs) <= max_tokens:
                if offs:
                    units.append((*span, len(offs)))
                continue
            for piece in _split_tokens(text, span, offs, max_tokens):
                units.append((*piece, _count(tokenizer, text[piece[0] : piece[1]])))
        pending.clear()

    for sentence in sentence_spans(text):
        for piece in _split_chars(text, sentence, max_chars):
            pending.append(piece)
            if len(pending) >= _BATCH:
                flush()
    flush()
    return units


def _count(tokenizer: Tokenizer, text: str) -> int:
    return len(tokenizer.spans([text])[0])


def _pack(units: list[tuple[int, int, int]], max_tokens: int, overlap: int) -> list[Span]:
    """Greedily pack consecutive units up to ``max_tokens``; each chunk after the first starts
    with trailing whole units of the one before, until they reach ``overlap`` tokens (so one
    long sentence still overlaps) but never more than half a chunk."""
    spans = []
    i = 0
    while i < len(units):
        j, total = i, 0
        while j < len(units) and total + units[j][2] <= max_tokens:
            total += units[j][2]
            j += 1
        j = max(j, i + 1)
        spans.append((units[i][0], units[j - 1][1]))
        if j == len(units):
            break
        k, carried = j, 0
        while k - 1 > i and carried < overlap and carried + units[k - 1][2] <= max_tokens // 2:
            k -= 1
            carried += units[k][2]
        i = k
    return spans


def chunk_spans(text: str, tokenizer: Tokenizer, max_tokens: int, overlap: int) -> list[Span]:
    """Character spans of the chunks of ``text``; each holds at most ``max_tokens`` tokens."""
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    spans = _pack(_units(text, tokenizer, max_tokens), max_tokens, overlap)
    # Joining units can change how a tokenizer splits the seams; check the real counts and cut
    # again any chunk that went over, so the bound holds for every tokenizer.
    result: dict[Span, None] = {}
    todo = spans
    for _ in range(8):
        over: list[Span] = []
        for b in range(0, len(todo), _BATCH):
            batch = todo[b : b + _BATCH]
            for span, offs in zip(batch, tokenizer.spans([text[s:e] for s, e in batch])):
                if len(offs) <= max_tokens:
                    result[span] = None
                else:
                    over.extend(_split_tokens(text, span, offs, max_tokens))
        if not over:
            return sorted(result)
        todo = over
    raise RuntimeError("could not cut the text into chunks within the token limit")


def chunk_text(
    article_id: str, text: str, tokenizer: Tokenizer, max_tokens: int, overlap: int
) -> list[Chunk]:
    """Chunks of one article's text, with ids ``{article_id}:{ordinal}``."""
    return [
        Chunk(id=f"{article_id}:{n}", article_id=article_id, start=s, end=e, text=text[s:e], ordinal=n)
        for n, (s, e) in enumerate(chunk_spans(text, tokenizer, max_tokens, overlap))
    ]
