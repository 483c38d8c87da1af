"""The chat in the browser: brings the index up to date with the corpus (showing progress), then
serves the page on http://127.0.0.1:7860.

    python app.py [--host HOST] [--port PORT] [--corpus DIR] [--index DIR] [--generator NAME]

Host and port also come from RAG_HOST and RAG_PORT. Nothing is shared or sent anywhere: no share
link, no analytics.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rag import RagError, Settings, build_index
from rag.errors import first_line
from rag.ui import DEFAULT_HOST, DEFAULT_PORT, Library, launch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("RAG_HOST") or DEFAULT_HOST)
    parser.add_argument("--port", type=int, default=os.environ.get("RAG_PORT") or DEFAULT_PORT)
    parser.add_argument("--corpus", help="articles folder (default corpus/ or RAG_CORPUS)")
    parser.add_argument("--index", help="index folder (default index/ or RAG_INDEX)")
    parser.add_argument("--generator", help="answer generator (default extractive or RAG_GENERATOR)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env(corpus=args.corpus, index=args.index, generator=args.generator)
        print(f"Updating the index in {settings.index} from {settings.corpus}…", flush=True)
        report = build_index(settings, progress=True)
        print(f"{report.articles} articles, {report.chunks} passages ({report.added} added, "
              f"{report.updated} updated, {report.removed} removed) in {report.seconds:.1f} s",
              flush=True)
        library = Library(settings)
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"Serving the chat on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    try:
        launch(library, args.host, args.port)
    except OSError as e:
        print(f"error: cannot serve on {args.host}:{args.port} ({first_line(e)}); "
              "pass --port N (or set RAG_PORT) for a free port", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
