"""Local question answering over a folder of news articles.

>>> from rag import build_index, open_index, Settings          # doctest: +SKIP
>>> build_index(Settings(corpus="corpus", index="index"))       # doctest: +SKIP
>>> for hit in open_index("index").search("Who leads SenseTime?", k=3):  # doctest: +SKIP
...     print(hit.score, hit.article["title"], hit.chunk.text[:80])
>>> from rag import ask                                          # doctest: +SKIP
>>> answer = ask("Who leads SenseTime?")                         # doctest: +SKIP
>>> answer.text, [(c.n, c.title, c.start, c.end) for c in answer.citations]  # doctest: +SKIP
"""

from .config import Settings
from .errors import CorpusError, IndexMismatchError, IndexNotFoundError, QueryError, RagError
from .index import IndexReport, build_index
from .pipeline import Pipeline, ask
from .retrieve import Index, open_index
from .types import Answer, Article, Chunk, Citation, Hit

__all__ = [
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
