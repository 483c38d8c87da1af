"""The chat in the browser: brings the index up to date with the corpus (showing progress), then
serves the page on http://127.0.0.1:7860.

    python app.py [--host HOST] [--port PORT] [--corpus DIR] [--index DIR] [--generator NAME]
                  [--store milvus] [--allow-private] [--users FILE] [--require-auth]

The host is --host, else RAG_HOST, else GRADIO_SERVER_NAME, else 127.0.0.1; the port is --port,
else RAG_PORT, else GRADIO_SERVER_PORT, else 7860. Nothing is shared or sent anywhere: no share
link, no analytics.

With a users file (``--users FILE`` or RAG_USERS_FILE, made with ``rag users add``), the page
and its API need a sign-in. Served on another address than this machine's own without one, the
app warns at start; with ``--require-auth`` it refuses to start instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from rag import RagError, Settings, build_index
from rag.config import STORE_KINDS
from rag.errors import first_line
from rag.logs import configure_logging
from rag.ui import DEFAULT_HOST, DEFAULT_PORT, Library, launch
from rag.users import UsersFile

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


def address(host: str | None, port: int | None, environ=os.environ) -> tuple[str, int]:
    """Where to serve: ``--host``/``--port``, else RAG_HOST/RAG_PORT, else Gradio's
    GRADIO_SERVER_NAME/GRADIO_SERVER_PORT, else 127.0.0.1:7860 (empty variables count as unset)."""
    def first(*names: str) -> tuple[str, str] | None:
        return next(((n, environ[n]) for n in names if environ.get(n, "").strip()), None)

    if not host:
        found = first("RAG_HOST", "GRADIO_SERVER_NAME")
        host = found[1].strip() if found else DEFAULT_HOST
    if port is None:
        found = first("RAG_PORT", "GRADIO_SERVER_PORT")
        try:
            port = port_number(found[1].strip()) if found else DEFAULT_PORT
        except argparse.ArgumentTypeError as e:
            raise RagError(f"{found[0]}: {e}; set it to a free port such as 7860, or pass "
                           "--port N") from None
    return host, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", help="address to serve on (default RAG_HOST, "
                        "GRADIO_SERVER_NAME, or 127.0.0.1)")
    parser.add_argument("--port", type=port_number, help="port to serve on (default RAG_PORT, "
                        "GRADIO_SERVER_PORT, or 7860)")
    parser.add_argument("--corpus", help="articles folder (default corpus/ or RAG_CORPUS)")
    parser.add_argument("--index", help="index folder (default index/ or RAG_INDEX)")
    parser.add_argument("--generator",
                        help="answer generator (default extractive or RAG_GENERATOR)")
    parser.add_argument("--store", choices=STORE_KINDS,
                        help="vector store of a new index (default auto or RAG_STORE); milvus: "
                        "the Milvus database of RAG_MILVUS_URI, which several servers can share")
    parser.add_argument("--allow-private", action="store_true", default=None,
                        help="let Add from URL fetch from local and private addresses "
                        "(default RAG_ALLOW_PRIVATE, off)")
    parser.add_argument("--users", metavar="FILE", help="users file: sign-in required, with "
                        "roles (default RAG_USERS_FILE; make one with `rag users add`)")
    parser.add_argument("--require-auth", action="store_true",
                        help="refuse to start without a users file on a non-local address")
    args = parser.parse_args(argv)
    configure_logging(logging.WARNING, "%(levelname)s %(name)s: %(message)s")
    try:
        host, port = address(args.host, args.port)
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        settings = Settings.from_env(corpus=args.corpus, index=args.index, generator=args.generator,
                                     users_file=args.users, store=args.store)
        # a missing or malformed users file stops the start, before any indexing
        users = UsersFile(settings.users_file) if settings.users_file else None
        if users is not None:
            users.users()
        if users is None and host not in LOCAL_HOSTS:
            if args.require_auth:
                raise RagError(f"--require-auth: serving on {host} needs a users file; create "
                               "one with `rag users add NAME --role editor --users FILE`, then "
                               "pass --users FILE (or set RAG_USERS_FILE)")
            print(f"warning: serving on {host} without sign-in: anyone who can reach port "
                  f"{port} can read the articles and add to them; pass --users FILE (see "
                  "`rag users add`), or --require-auth to refuse this", file=sys.stderr,
                  flush=True)
        where = settings.index
        if settings.store == "milvus":
            from rag.milvus import milvus_uri

            where = f"Milvus at {milvus_uri(settings)}"
        print(f"Updating the index in {where} from {settings.corpus}…", flush=True)
        report = build_index(settings, progress=True)
        print(f"{report.articles} articles, {report.chunks} passages ({report.added} added, "
              f"{report.updated} updated, {report.removed} removed) in {report.seconds:.1f} s",
              flush=True)
        library = Library(settings, allow_private=args.allow_private, users=users)
    except RagError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    signed = f", sign-in with {settings.users_file}" if settings.users_file else ""
    print(f"Serving the chat on http://{host}:{port}{signed} (Ctrl-C to stop)", flush=True)
    try:
        launch(library, host, port, quiet=True)  # the address is printed above
    except OSError as e:
        print(f"error: cannot serve on {host}:{port} ({first_line(e)}); "
              "pass --port N (or set RAG_PORT) for a free port", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
