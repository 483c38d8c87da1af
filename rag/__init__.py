"""Local question answering over a folder of news articles.

Use::

    from rag import Settings, ask, build_index, open_index

    build_index(Settings(corpus="corpus", index="index"))
    for hit in open_index("index").search("Who leads SenseTime?", k=3):
        print(hit.score, hit.article["title"], hit.chunk.text[:80])
    answer = ask("Who leads SenseTime?")
    answer.text, [(c.n, c.title, c.start, c.end) for c in answer.citations]
"""

from .config import Settings
from .errors import CorpusError, IndexMismatchError, IndexNotFoundError, QueryError, RagError
from .index import IndexReport, build_index
from .pipeline import Pipeline, ask
from .retrieve import Index, open_index
from .types import Answer, Article, Chunk, Citation, Hit
from .web import AddReport, FeedsReport, add_urls, update_feeds

__all__ = [
    "AddReport",
    "FeedsReport",
    "add_urls",
    "update_feeds",
    "Answer",
    "Article",
    "Citation",
    "Pipeline",
    "ask",
    "Chunk",
    "CorpusError",
    "Hit",
    "Index",
    "IndexMismatchError",
    "IndexNotFoundError",
    "IndexReport",
    "QueryError",
    "RagError",
    "Settings",
    "build_index",
    "open_index",
]
