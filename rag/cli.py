"""The ``rag`` command: ``rag index``, ``rag search``.

User mistakes print one line (``error: ... what to do``) and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .config import EMBED_BACKENDS, STORE_KINDS, Settings
from .errors import RagError


def hit_json(hit) -> dict:
    return {
        "rank": hit.rank,
        "score": round(hit.score, 6),
        "dense": None if hit.dense is None else round(hit.dense, 6),
        "bm25": None if hit.bm25 is None else round(hit.bm25, 6),
        "boost": round(hit.boost, 6),
        "chunk_id": hit.chunk.id,
        "doc_id": hit.chunk.article_id,
        "start": hit.chunk.start,
        "end": hit.chunk.end,
        "title": hit.article.get("title", ""),
        "url": hit.article.get("url", ""),
        "date": hit.article.get("date", ""),
        "path": hit.article.get("path", ""),
        "text": hit.chunk.text,
    }


def cmd_index(args) -> int:
    from .index import build_index

    settings = Settings.from_env(corpus=args.corpus, index=args.index,
                                 embed_backend=args.embed_backend, store=args.store)
    report = build_index(settings, rebuild=args.rebuild,
                         progress=not args.json and sys.stderr.isatty())
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
        return 0
    print(
        f"{report.articles} articles, {report.chunks} chunks in {settings.index} "
        f"({report.added} added, {report.updated} updated, {report.removed} removed, "
        f"{report.unchanged} unchanged; {report.embedded} chunks embedded in {report.seconds} s)"
    )
    for d in report.duplicates:
        print(f"duplicate: {d['path']} has the same content as {d['duplicate_of']}; not indexed")
    for s in report.skipped:
        print(f"skipped: {s['path']}: {s['reason']}")
    return 0


def cmd_search(args) -> int:
    from .retrieve import Index

    settings = Settings.from_env(index=args.index, k=args.k)
    hits = Index(settings.index, settings).search(args.question, settings.k)
    if args.json:
        print(json.dumps([hit_json(h) for h in hits], ensure_ascii=False))
        return 0
    if not hits:
        print("no passages found")
    for h in hits:
        meta = " · ".join(x for x in (h.article.get("date"), h.article.get("url")) if x)
        print(f"{h.rank}. [{h.score:.4f}] {h.article.get('title') or h.article.get('path')}"
              + (f" ({meta})" if meta else ""))
        text = " ".join(h.chunk.text.split())
        print(f"   {text[:400]}{'…' if len(text) > 400 else ''}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rag", description="Question answering over a folder of news articles."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True)

    ix = sub.add_parser("index", help="build or update the index from the corpus folder")
    ix.add_argument("--corpus", help="articles folder (default corpus/, or RAG_CORPUS)")
    ix.add_argument("--index", help="index folder (default index/, or RAG_INDEX)")
    ix.add_argument("--json", action="store_true", help="print a JSON report")
    ix.add_argument("--rebuild", action="store_true", help="re-embed everything from scratch")
    ix.add_argument("--embed-backend", choices=EMBED_BACKENDS,
                    help="embedding backend (default onnx-int8, or RAG_EMBED_BACKEND)")
    ix.add_argument("--store", choices=STORE_KINDS,
                    help="vector store: flat is exact (default), hnsw/ivf approximate")
    ix.set_defaults(func=cmd_index)

    se = sub.add_parser("search", help="show the passages retrieved for a question")
    se.add_argument("question")
    se.add_argument("--index", help="index folder (default index/, or RAG_INDEX)")
    se.add_argument("--k", type=int, help="number of passages (default 5, or RAG_K)")
    se.add_argument("--json", action="store_true", help="print JSON")
    se.set_defaults(func=cmd_search)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
    )
    try:
        return args.func(args)
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
