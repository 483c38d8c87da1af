"""Core data: frozen dataclasses passed between the pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Article:
    """One news article: one document of the corpus.

    ``id`` is stable across edits (it derives from where the article lives: its file, and its
    position or own id inside a JSON file); ``hash`` changes whenever the text or metadata does.
    """

    id: str
    text: str
    hash: str
    path: str
    title: str = ""
    url: str = ""
    date: str = ""
    author: str = ""
    source: str = ""
    extra: tuple[tuple[str, str], ...] = ()

    def metadata(self) -> dict[str, str]:
        """Title, url, date, author, source and any extra front-matter fields."""
        meta = {
            "title": self.title,
            "url": self.url,
            "date": self.date,
            "author": self.author,
            "source": self.source,
            "path": self.path,
        }
        meta.update(self.extra)
        return meta


@dataclass(frozen=True)
class Chunk:
    """A passage of an article: ``article_text[start:end] == text``."""

    id: str
    article_id: str
    start: int
    end: int
    text: str
    ordinal: int = 0


@dataclass(frozen=True)
class Hit:
    """One retrieved passage with its article's metadata and its scores.

    ``score`` is the fused score used for ranking; ``dense`` is the cosine similarity and
    ``bm25`` the BM25 score (``None`` when that retriever did not return the passage);
    ``boost`` is what news-aware ranking added for years, figures and names of the question
    found in the passage.
    """

    chunk: Chunk
    article: dict[str, str]
    score: float
    dense: float | None = None
    bm25: float | None = None
    boost: float = 0.0
    rank: int = 0


@dataclass(frozen=True)
class Citation:
    """One source of an answer: the passage ``[n]`` points at, and the exact span (``start``,
    ``end``, into the article text) of the sentence that supports the claim."""

    n: int
    doc_id: str
    title: str
    url: str
    date: str
    chunk_id: str
    chunk_start: int
    chunk_end: int
    start: int
    end: int
    quote: str
    text: str
    score: float


@dataclass(frozen=True)
class ShortAnswer:
    """The answer in a few words (a name, a date, an amount): ``text`` is
    ``article_text[start:end]`` of article ``doc_id``, inside the sentence that citation
    ``citation`` quotes."""

    text: str
    doc_id: str
    start: int
    end: int
    citation: int


@dataclass(frozen=True)
class Answer:
    """A checked answer. ``text`` carries ``[n]`` markers numbered in order of first use;
    ``short_answer`` is the answer in a few words (None for why/how questions and when it
    abstained); ``answer_type`` is the kind of answer the question expects; ``dropped`` holds
    generated sentences that failed the support check; ``timings`` are in milliseconds
    (``retrieve_ms``, ``generate_ms``, ``total_ms``); ``notice`` says why a language model's
    answer was replaced by the extractive one (the model failed, or nothing it wrote was
    supported), and is empty otherwise."""

    question: str
    text: str
    citations: tuple[Citation, ...]
    abstained: bool
    dropped: tuple[str, ...] = ()
    generator: str = ""
    timings: tuple[tuple[str, float], ...] = ()
    hits: tuple[Hit, ...] = ()
    query: str = ""
    short_answer: ShortAnswer | None = None
    answer_type: str = ""
    notice: str = ""

    def timing(self) -> dict[str, float]:
        return dict(self.timings)
