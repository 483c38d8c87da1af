"""Local question answering over a folder of news articles.

>>> from rag import build_index, open_index, Settings          # doctest: +SKIP
>>> build_index(Settings(corpus="corpus", index="index"))       # doctest: +SKIP
>>> for hit in open_index("index").search("Who leads SenseTime?", k=3):  # doctest: +SKIP
...     print(hit.score, hit.article["title"], hit.chunk.text[:80])
"""

from .config import Settings
from .errors import CorpusError, IndexMismatchError, IndexNotFoundError, QueryError, RagError
from .index import IndexReport, build_index
from .retrieve import Index, open_index
from .types import Article, Chunk, Hit

__all__ = [
    "Article",
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
