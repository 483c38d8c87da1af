"""The ``rag`` command: ``rag index``, ``rag search``, ``rag ask``, ``rag eval``, ``rag add``,
``rag feed``, ``rag models``, ``rag users``, ``rag audit``.

User mistakes print one line (``error: ... what to do``) and exit 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from .config import EMBED_BACKENDS, STORE_KINDS, Settings
from .errors import RagError
from .logs import configure_logging

STORE_HELP = ("vector store: auto (default) is exact for small corpora and IVF for large ones; "
              "flat is always exact, hnsw/ivf/ivfpq approximate, milvus a Milvus database "
              "(RAG_MILVUS_URI: a .db file for Milvus Lite, or http://host:19530)")
STORE_OPEN_HELP = ("milvus: search the Milvus index of RAG_MILVUS_URI instead of the index "
                   "folder (default RAG_STORE)")


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
                         progress=not args.json and sys.stderr.isatty(), ray=args.ray)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
        return 0
    where = settings.index
    if settings.store == "milvus":
        from .milvus import milvus_uri

        where = f"Milvus at {milvus_uri(settings)} (collection {settings.milvus_collection})"
    print(
        f"{report.articles} articles, {report.chunks} chunks in {where} "
        f"({report.added} added, {report.updated} updated, {report.removed} removed, "
        f"{report.unchanged} unchanged; {report.embedded} chunks embedded in {report.seconds} s)"
    )
    for d in report.duplicates:
        print(f"duplicate: {d['path']} has the same content as {d['duplicate_of']}; not indexed")
    for s in report.skipped:
        print(f"skipped: {s['path']}: {s['reason']}")
    return 0


def cmd_search(args) -> int:
    from .retrieve import open_store_index

    settings = Settings.from_env(index=args.index, k=args.k, store=args.store)
    hits = open_store_index(settings).search(args.question, settings.k,
                                             since=args.since, until=args.until)
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


def read_questions(path: str) -> list[str]:
    """One question per line, or JSON lines with a "question" field."""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError as e:
        raise RagError(f"cannot read questions file {path}: {e.strerror}") from None
    questions = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                questions.append(json.loads(line)["question"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise RagError(f"{path}:{n}: expected a JSON object with a \"question\" field") \
                    from None
        else:
            questions.append(line.strip())
    return questions


def cmd_ask(args) -> int:
    from .dates import date_range
    from .pipeline import Pipeline, answer_json
    from .retrieve import open_store_index

    if (args.question is None) == (args.questions is None):
        raise RagError('give a question, or --questions FILE (not both)')
    settings = Settings.from_env(index=args.index, k=args.k, generator=args.generator,
                                 llm_url=args.llm_url, store=args.store)
    dates = {"since": args.since, "until": args.until}
    date_range(**dates)  # a malformed date is one error, before any question
    pipeline = Pipeline(open_store_index(settings), settings.generator, k=settings.k)
    if args.questions:
        # Models load once for the whole batch; a bad question is reported in its own line.
        for q in read_questions(args.questions):
            try:
                print(json.dumps(answer_json(pipeline.ask(q, **dates)), ensure_ascii=False),
                      flush=True)
            except RagError as e:
                print(json.dumps({"question": q, "error": str(e)}, ensure_ascii=False), flush=True)
        return 0
    if args.json:
        print(json.dumps(answer_json(pipeline.ask(args.question, **dates)), ensure_ascii=False))
        return 0
    answer = None
    for piece in pipeline.stream(args.question, **dates):
        if isinstance(piece, str):
            if pipeline.generator_name != "extractive":
                print(piece, end="", flush=True, file=sys.stderr)
        else:
            answer = piece
    if pipeline.generator_name != "extractive":
        print(file=sys.stderr)
    if answer.notice:
        print(f"note: {answer.notice}", file=sys.stderr)
    print(answer.text)
    for c in answer.citations:
        meta = " · ".join(x for x in (c.title, c.date, c.url) if x)
        print(f"  [{c.n}] {meta} (chars {c.start}-{c.end}): {c.quote}")
    for d in answer.dropped:
        print(f"  dropped (unsupported): {d}")
    return 0


def _print_overall(metrics: dict) -> None:
    from .scoring import METRICS

    short = {"hit_at_1": "hit@1", "hit_at_5": "hit@5", "mrr": "MRR", "accuracy": "acc",
             "f1": "F1", "short_em": "sEM", "short_f1": "sF1", "citation_precision": "citP",
             "citation_recall": "citR",
             "faithfulness": "faith", "abstain_rate": "abst", "false_abstain_rate": "fabst",
             "latency_p50_ms": "p50ms", "latency_p95_ms": "p95ms"}
    print(f"{'set':<12}{'generator':<12}{'items':>6}"
          + "".join(f"{short[m]:>7}" for m in METRICS))
    for name, s in metrics["sets"].items():
        for gen, g in s["generators"].items():
            if "skipped" in g:
                print(f"{name:<12}{gen:<12} skipped: {g['skipped']}")
                continue
            o = g["overall"]
            cells = "".join(
                f"{'-':>7}" if o[m] is None
                else f"{o[m]:>7.0f}" if m.startswith("latency") else f"{o[m]:>7.3f}"
                for m in METRICS)
            print(f"{name:<12}{gen:<12}{o['items']:>6}{cells}")


def cmd_eval(args) -> int:
    from pathlib import Path

    from .evaluate import (
        DEFAULT_REPORT_DIR,
        DEFAULT_THRESHOLDS,
        EvalSet,
        evaluate_sets,
        generator_names,
        shipped_sets,
    )
    from .gate import check_gate, load_thresholds
    from .report import write_report

    if args.limit is not None and args.limit < 1:
        raise RagError(f"--limit must be at least 1, got {args.limit}")
    if args.gold:
        gold = Path(args.gold)
        if not gold.is_file():
            raise RagError(f"gold file {gold} does not exist; pass --gold FILE")
        corpus = Path(args.corpus) if args.corpus else Settings.from_env().corpus
        sets = [EvalSet(gold.stem, gold, corpus, Path(args.index) if args.index else None)]
    else:
        if args.corpus or args.index:
            raise RagError("--corpus and --index go with --gold FILE (one set of your own); "
                           "the shipped sets use their own corpus and a cached index")
        sets = shipped_sets(args.set)
    settings = Settings.from_env(llm_url=args.llm_url, store=args.store)
    generators = generator_names(args.generator, settings.generator)
    thresholds_path = Path(args.thresholds) if args.thresholds else DEFAULT_THRESHOLDS
    # an explicit --thresholds must exist; the default may be absent (no gate then)
    thresholds = {} if args.no_gate else load_thresholds(
        thresholds_path, required=args.thresholds is not None)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    metrics = evaluate_sets(sets, generators, settings, limit=args.limit,
                            skip_unloadable=args.generator == "all", log=log)
    misses = None if args.no_gate else check_gate(metrics, thresholds)
    metrics["gate"] = {"thresholds": None if args.no_gate else str(thresholds_path),
                       "checked": not args.no_gate, "misses": misses or [],
                       "passed": not misses}
    report_dir = Path(args.report) if args.report else DEFAULT_REPORT_DIR
    md, png = write_report(metrics, report_dir, thresholds,
                           None if args.no_gate else thresholds_path, misses)
    if args.json:
        print(json.dumps(metrics, ensure_ascii=False))
    else:
        _print_overall(metrics)
        print(f"report: {md}, {png}")
    for miss in misses or []:
        print(miss, file=sys.stderr)
    if misses:
        print(f"gate: {len(misses)} figure(s) below the thresholds in {thresholds_path}",
              file=sys.stderr)
        return 1
    return 0


def _web_settings(args) -> Settings:
    return Settings.from_env(corpus=args.corpus, index=args.index,
                             fetch_timeout=getattr(args, "timeout", None))


def cmd_add(args) -> int:
    from .web import add_urls

    report = add_urls(args.urls, _web_settings(args), allow_private=args.allow_private)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print("\n".join(report.lines()))
    return 1 if report.count("refused") == len(report.results) else 0


def cmd_feed(args) -> int:
    from .web import add_feed, list_feeds, parse_every, remove_feed, update_feeds, watch_feeds

    settings = _web_settings(args)
    if args.action in ("add", "remove") and not args.url:
        raise RagError(f"give the feed's address: rag feed {args.action} URL")
    if args.action == "add":
        added = add_feed(args.url, settings)
        print(f"{'recorded' if added else 'already recorded'}: {args.url}; "
              "`rag feed update` fetches it")
    elif args.action == "remove":
        remove_feed(args.url, settings)
        print(f"removed: {args.url} (its articles stay in the corpus)")
    elif args.action == "list":
        feeds = list_feeds(settings)
        if args.json:
            print(json.dumps(feeds, ensure_ascii=False))
        for f in [] if args.json else feeds:
            seen = f"updated {f['updated']}, {f['entries']} entries" if f.get("updated") \
                else "not fetched yet"
            print(f"{f['url']}  {f.get('title') or ''}  ({seen})")
        if not feeds and not args.json:
            print("no feed is recorded; add one with `rag feed add URL`", file=sys.stderr)
    else:
        def show(report):
            if args.json:
                print(json.dumps(report.to_json(), ensure_ascii=False), flush=True)
            else:
                print("\n".join(report.lines()), flush=True)

        if args.every:
            watch_feeds(parse_every(args.every), settings, show,
                        allow_private=args.allow_private)
        else:
            show(update_feeds(settings, urls=[args.url] if args.url else None,
                              allow_private=args.allow_private))
    return 0


def cmd_models(args) -> int:
    from .remote import PREFIX, base_url, list_models

    settings = Settings.from_env(llm_url=args.llm_url)
    names = list_models(settings)
    if args.json:
        print(json.dumps({"url": base_url(settings.llm_url), "models": names}))
        return 0
    if not names:
        print(f"{base_url(settings.llm_url)} serves no model yet; load one in the server "
              "(for Ollama: `ollama pull MODEL`)", file=sys.stderr)
    for name in names:
        print(f"{PREFIX}:{name}")
    return 0


def cmd_users(args) -> int:
    from .users import ROLES, UsersFile, check_name, check_role

    path = args.users or Settings.from_env().users_file
    if not path:
        raise RagError("name the users file: pass --users FILE or set RAG_USERS_FILE")
    users = UsersFile(path)
    if args.action == "list":
        listed = list(users.users().values())
        if args.json:
            print(json.dumps([{"name": u.name, "role": u.role} for u in listed]))
        for u in [] if args.json else listed:
            print(f"{u.name}  {u.role}")
        return 0
    if not args.name:
        raise RagError(f"give the user's name: rag users {args.action} NAME")
    check_name(args.name)
    if args.action == "remove":
        users.remove(args.name)
        print(f"removed {args.name} from {path}")
        return 0
    if args.role is None:
        raise RagError(f"give the role: rag users add {args.name} --role "
                       f"{'|'.join(ROLES)}")
    check_role(args.role)
    password = _read_password(args.password_stdin)
    new = users.add(args.name, args.role, password)
    print(f"{'added' if new else 'updated'} {args.name} ({args.role}) in {path}")
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        import getpass

        if not sys.stdin.isatty():
            raise RagError("no terminal to ask for the password on; pipe it in with "
                           "--password-stdin")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != password:
            raise RagError("the passwords differ; run the command again")
    if not password:
        raise RagError("empty password; give one of at least 8 characters")
    return password


def cmd_audit(args) -> int:
    from .audit import AuditLog

    settings = Settings.from_env(corpus=args.corpus, index=args.index, store=args.store)
    log = AuditLog.of(settings)  # beside the corpus with the Milvus store
    entries = log.entries()[-args.limit:] if args.limit else log.entries()
    for e in entries:
        if args.json:
            print(json.dumps(e, ensure_ascii=False))
        else:
            print(f"{e['time']}  {e['user']}  {e['action']} ({e.get('via', '')})  {e['file']}  "
                  f"{e['article_id']}")
    if not entries and not args.json:
        print(f"no change recorded in {log.path} yet", file=sys.stderr)
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
    ix.add_argument("--store", choices=STORE_KINDS, help=STORE_HELP)
    ix.add_argument("--ray", action="store_true",
                    help="embed on Ray: a local Ray for the run, or the cluster at RAY_ADDRESS "
                    "(RAG_RAY_ACTORS, RAG_RAY_ACTOR_CPUS)")
    ix.set_defaults(func=cmd_index)

    se = sub.add_parser("search", help="show the passages retrieved for a question")
    se.add_argument("question")
    se.add_argument("--index", help="index folder (default index/, or RAG_INDEX)")
    se.add_argument("--k", type=int, help="number of passages (default 5, or RAG_K)")
    se.add_argument("--json", action="store_true", help="print JSON")
    date_options(se)
    se.add_argument("--store", choices=STORE_KINDS, help=STORE_OPEN_HELP)
    se.set_defaults(func=cmd_search)

    ak = sub.add_parser("ask", help="answer a question with checked citations")
    ak.add_argument("question", nargs="?")
    ak.add_argument("--questions", metavar="FILE",
                    help="answer every question in FILE (one per line, or JSON lines)")
    ak.add_argument("--index", help="index folder (default index/, or RAG_INDEX)")
    ak.add_argument("--k", type=int, help="number of passages (default 5, or RAG_K)")
    ak.add_argument("--generator", help="extractive (default), smollm2, seq2seq[:MODEL], "
                    "causal:MODEL, openai:MODEL (or RAG_GENERATOR)")
    ak.add_argument("--llm-url", metavar="URL", help="the model server of openai:MODEL, e.g. "
                    "http://127.0.0.1:11434/v1 (or RAG_LLM_URL)")
    ak.add_argument("--json", action="store_true", help="print JSON")
    date_options(ak)
    ak.add_argument("--store", choices=STORE_KINDS, help=STORE_OPEN_HELP)
    ak.set_defaults(func=cmd_ask)

    ev = sub.add_parser(
        "eval", help="score retrieval, answers, citations and abstention on gold questions",
        description="Evaluate on the shipped gold sets (seed, newsbench, and the reader's dev and "
        "held-out splits) or your own (--gold, "
        "--corpus); write report.md and report.png; exit 1 when a figure of eval/thresholds.toml "
        "is missed.")
    ev.add_argument("--gold", metavar="FILE", help="your own gold file (JSON lines; see README)")
    ev.add_argument("--corpus", metavar="DIR",
                    help="the articles your gold file is about (default corpus/, or RAG_CORPUS)")
    ev.add_argument("--index", metavar="DIR", help="index folder for your own set (default: "
                    "a folder of its own in the cache)")
    ev.add_argument("--set", action="append", metavar="NAME",
                    help="a shipped set only (seed, newsbench, dev, heldout); repeat for several "
                    "(default: all)")
    ev.add_argument("--generator", help="extractive, smollm2, seq2seq[:MODEL], causal:MODEL, "
                    "openai:MODEL, or all (default: RAG_GENERATOR or extractive)")
    ev.add_argument("--llm-url", metavar="URL", help="the model server of openai:MODEL "
                    "(or RAG_LLM_URL)")
    ev.add_argument("--limit", type=int, metavar="N",
                    help="first N items of each set for language-model generators "
                    "(extractive always answers all)")
    ev.add_argument("--json", action="store_true", help="print every figure as JSON")
    ev.add_argument("--store", choices=STORE_KINDS, help="vector store of the sets' indexes "
                    "(default flat, or RAG_STORE; milvus: see RAG_MILVUS_URI)")
    ev.add_argument("--no-gate", action="store_true", help="do not check the thresholds")
    ev.add_argument("--report", metavar="DIR", help="where report.md and report.png go "
                    "(default eval/)")
    ev.add_argument("--thresholds", metavar="FILE",
                    help="minimum figures per set (default eval/thresholds.toml)")
    ev.set_defaults(func=cmd_eval)

    def web_options(sp):
        sp.add_argument("--corpus", help="corpus folder (default corpus/, or RAG_CORPUS)")
        sp.add_argument("--index", help="index folder (default index/, or RAG_INDEX)")
        sp.add_argument("--timeout", type=float, metavar="S",
                        help="seconds to wait for each page (default 10, or RAG_FETCH_TIMEOUT)")
        sp.add_argument("--allow-private", action="store_true",
                        help="also fetch from local and private addresses (refused by default)")
        sp.add_argument("--json", action="store_true", help="print JSON")

    ad = sub.add_parser("add", help="fetch article pages into the corpus and index them",
                        description="Fetch each URL, extract its article (text, title, date, "
                        "author, site), save it into the corpus as Markdown and index it. One "
                        "line per URL: added, updated, already present, or refused and why.")
    ad.add_argument("urls", nargs="+", metavar="URL")
    web_options(ad)
    ad.set_defaults(func=cmd_add)

    fe = sub.add_parser("feed", help="RSS/Atom feeds: add, list, remove, update",
                        description="Record feeds (in .feeds.json in the corpus) and add their "
                        "new entries' articles; `update --every 15m` repeats until stopped.")
    fe.add_argument("action", choices=("add", "list", "remove", "update"))
    fe.add_argument("url", nargs="?", metavar="URL",
                    help="the feed (add, remove; with update: only this feed)")
    fe.add_argument("--every", metavar="INTERVAL",
                    help="with update: repeat every INTERVAL (15m, 1h, 90s) until stopped")
    web_options(fe)
    fe.set_defaults(func=cmd_feed)

    mo = sub.add_parser("models", help="list the models of your model server (RAG_LLM_URL)",
                        description="List the models an OpenAI-compatible server (Ollama, "
                        "llama-server, vLLM...) reports, as generator names for --generator.")
    mo.add_argument("--llm-url", metavar="URL", help="the server's OpenAI-compatible base, "
                    "e.g. http://127.0.0.1:11434/v1 (default RAG_LLM_URL)")
    mo.add_argument("--json", action="store_true", help="print JSON")
    mo.set_defaults(func=cmd_models)

    us = sub.add_parser("users", help="who may sign in to a shared chat server",
                        description="Manage the users file of a shared chat server (app.py "
                        "--users FILE): a reader asks, an editor also adds articles. Passwords "
                        "are stored as argon2 hashes; `add` asks for the password twice, or "
                        "reads one line from standard input with --password-stdin. A running "
                        "server sees the change at the next sign-in or action.")
    us.add_argument("action", choices=("add", "list", "remove"))
    us.add_argument("name", nargs="?", metavar="NAME")
    us.add_argument("--role", help="with add: reader or editor")
    us.add_argument("--password-stdin", action="store_true",
                    help="with add: read the password from standard input (for scripts)")
    us.add_argument("--users", metavar="FILE", help="the users file (default RAG_USERS_FILE)")
    us.add_argument("--json", action="store_true", help="with list: print JSON")
    us.set_defaults(func=cmd_users)

    au = sub.add_parser("audit", help="show who added, updated or removed which article",
                        description="Print the audit trail of the index (audit.jsonl in the "
                        "index folder): one line per article added, updated or removed, by "
                        "upload, URL, feed or `rag index`, with the user and the time.")
    au.add_argument("--index", help="index folder (default index/ or RAG_INDEX)")
    au.add_argument("--corpus", help="articles folder, where the Milvus store keeps the trail "
                    "(default corpus/ or RAG_CORPUS)")
    au.add_argument("--store", choices=STORE_KINDS, help=STORE_OPEN_HELP)
    au.add_argument("--limit", type=int, default=0, metavar="N", help="the last N changes")
    au.add_argument("--json", action="store_true", help="print JSON lines")
    au.set_defaults(func=cmd_audit)
    return p


def date_options(sp) -> None:
    """--since / --until: only articles dated within them (inclusive; undated ones left out)."""
    sp.add_argument("--since", metavar="DATE", help="only articles dated on or after DATE "
                    "(YYYY-MM-DD, YYYY-MM or YYYY)")
    sp.add_argument("--until", metavar="DATE", help="only articles dated on or before DATE "
                    "(YYYY-MM-DD, YYYY-MM or YYYY)")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(logging.INFO if args.verbose else logging.WARNING)
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
