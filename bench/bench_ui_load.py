"""Load on the chat server: concurrent chat sessions through the page's own `/chat` endpoint.
Prints figures and ends with one JSON line.

    .venv/bin/python bench/bench_ui_load.py [--sessions 20] [--seconds 60] [--url URL]
                                            [--servers 1 2 | --sign-in]

Without ``--url`` it starts ``app.py`` on a free port over a copy of ``corpus/`` plus
``eval/newsbench/corpus`` (45 articles), and stops it afterwards.

``--servers 1 2`` measures one server, then two, on the same corpus and the same index: a
``milvus-lite server`` process on 127.0.0.1 holds the index (the Milvus store, which several
chat servers can share), the sessions are spread over the chat servers in turn, and the answers
per second of each count are reported with their ratio to the first. A server count of 1 alone
keeps the local store. Each session is its own
gradio_client ``Client`` (its own browser session, so its own history), asking the gold
questions of both sets in a different order, follow-ups included, until the time is up.

``--sign-in`` runs twice in the same run, on a fresh server each time: without sign-in, then
with a users file of one reader per session (each session signs in as its own user, and the
default per-user limits apply), and reports both and their ratio.

Reported: answers per second, answer latency p50/p95 as each client saw it (queueing included),
and errors: a failed request, or a reply that shows an error message instead of an answer.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.gold import load_gold  # noqa: E402

GOLD = (ROOT / "eval/gold.jsonl", ROOT / "eval/newsbench/gold.jsonl")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_corpus(tmp: Path) -> Path:
    corpus = tmp / "corpus"
    if not corpus.exists():
        shutil.copytree(ROOT / "corpus", corpus)
        for f in (ROOT / "eval/newsbench/corpus").iterdir():
            shutil.copy(f, corpus)
    return corpus


def start_milvus(tmp: Path) -> tuple[subprocess.Popen, str]:
    """A ``milvus-lite server`` on a free port of 127.0.0.1: the index the chat servers share."""
    from pymilvus import MilvusClient

    from rag.milvus import GRPC_OPTIONS

    port = free_port()
    exe = Path(sys.executable).with_name("milvus-lite")
    proc = subprocess.Popen([str(exe) if exe.exists() else "milvus-lite", "server", "--host",
                             "127.0.0.1", "--port", str(port), "--data-dir", str(tmp / "milvus")],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "milvus.log", "w"))
    uri = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            MilvusClient(uri=uri, timeout=2, grpc_options=GRPC_OPTIONS).list_collections()
            return proc, uri
        except Exception:  # noqa: BLE001 - not up yet
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise SystemExit(f"milvus-lite server did not start; see {tmp / 'milvus.log'}")
            time.sleep(0.3)


def start_server(tmp: Path, milvus_uri: str | None = None, name: str = "server",
                 users: Path | None = None) -> tuple[subprocess.Popen, str]:
    corpus = make_corpus(tmp)
    port = free_port()
    env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    if milvus_uri:
        env.update(RAG_STORE="milvus", RAG_MILVUS_URI=milvus_uri)
    log = tmp / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--corpus", str(corpus),
         "--index", str(tmp / "index")] + (["--users", str(users)] if users else []),
        env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}; see {log}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("app.py did not start within 300 s")


def session(url: str, seed: int, questions: list[tuple[str, list]], stop_at: float,
            results: list, errors: list, auth: tuple[str, str] | None = None) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False, auth=auth)
    order = questions[:]
    random.Random(seed).shuffle(order)
    i = 0
    while time.time() < stop_at:
        question, history = order[i % len(order)]
        i += 1
        if history:  # a follow-up: ask its lead question first, in the same session
            question_first = history[0]["content"]
            pairs = [question_first, question]
        else:
            pairs = [question]
        shown: list = []
        for q in pairs:
            t = time.perf_counter()
            try:
                _, shown, _ = client.predict(q, shown, 5, "extractive", api_name="/chat")
                reply = shown[-1]["content"][0]["text"] if shown else ""
                if "rag-error" in reply or not reply:
                    errors.append(f"{q!r}: {reply[:200]}")
                else:
                    results.append(time.perf_counter() - t)
            except Exception as e:  # counted, reported, and the session goes on
                errors.append(f"{q!r}: {type(e).__name__}: {e}")
            if time.time() >= stop_at:
                break


def make_users(path: Path, n: int) -> list[tuple[str, str]]:
    """A users file of ``n`` readers; their names and passwords."""
    from rag.users import UsersFile

    users = UsersFile(path)
    logins = [(f"reader{i}", f"password-of-reader{i}") for i in range(n)]
    for name, password in logins:
        users.add(name, "reader", password)
    return logins


def load(urls: list[str], sessions: int, seconds: float, questions: list[tuple[str, list]],
         logins: list[tuple[str, str]] | None = None) -> dict:
    """``sessions`` concurrent sessions spread over ``urls`` in turn for ``seconds``; with
    ``logins``, session ``i`` signs in as ``logins[i]``."""
    from gradio_client import Client

    for url in urls:  # warm the models of every server
        Client(url, verbose=False, auth=logins[0] if logins else None).predict(
            questions[0][0], [], 5, "extractive", api_name="/chat")
    results: list[float] = []
    errors: list[str] = []
    stop_at = time.time() + seconds
    t0 = time.perf_counter()
    threads = [threading.Thread(target=session,
                                args=(urls[i % len(urls)], i, questions, stop_at, results,
                                      errors, logins[i] if logins else None))
               for i in range(sessions)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    lat = np.array(results) * 1000
    out = {
        "servers": len(urls),
        "sessions": sessions,
        "sign_in": bool(logins),
        "seconds": round(elapsed, 1),
        "answers": len(results),
        "answers_per_s": round(len(results) / elapsed, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p95_ms": round(float(np.percentile(lat, 95)), 1) if len(lat) else None,
        "errors": len(errors),
    }
    print(f"{out['servers']} server(s), {out['sessions']} sessions"
          f"{' signed in' if logins else ''} for {out['seconds']} s: "
          f"{out['answers']} answers, {out['answers_per_s']} answers/s, latency p50 "
          f"{out['p50_ms']} ms, p95 {out['p95_ms']} ms, errors {out['errors']}", flush=True)
    for e in errors[:10]:
        print("error:", e)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--url", help="an already running chat server")
    parser.add_argument("--servers", type=int, nargs="+", default=[1], metavar="N",
                        help="chat servers sharing one Milvus index; several counts are "
                        "measured in turn (e.g. 1 2) and compared with the first")
    parser.add_argument("--sign-in", action="store_true",
                        help="run without, then with sign-in (one user per session), and compare")
    args = parser.parse_args()
    if args.url and (args.servers != [1] or args.sign_in):
        parser.error("--servers and --sign-in start their own chat servers; leave out --url")
    if args.sign_in and args.servers != [1]:
        parser.error("--sign-in compares one server with and without sign-in; leave out "
                     "--servers")

    questions = [(item.question, list(item.history)) for g in GOLD for item in load_gold(g)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    procs: list[subprocess.Popen] = []
    runs = []
    try:
        if args.url:
            runs.append(load([args.url], args.sessions, args.seconds, questions))
        elif args.sign_in:
            for signed in (False, True):
                logins = make_users(tmp / "users.txt", args.sessions) if signed else None
                t = time.perf_counter()
                proc, url = start_server(tmp, name=f"server-{'signed' if signed else 'open'}",
                                         users=tmp / "users.txt" if signed else None)
                print(f"server up at {url} in {time.perf_counter() - t:.1f} s"
                      f"{' (sign-in)' if signed else ''}", flush=True)
                try:
                    runs.append(load([url], args.sessions, args.seconds, questions, logins))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
        else:
            milvus_uri = None
            if max(args.servers) > 1:
                proc, milvus_uri = start_milvus(tmp)
                procs.append(proc)
                print(f"milvus-lite server at {milvus_uri}", flush=True)
            urls: list[str] = []
            for n in args.servers:
                while len(urls) < n:  # one after another: the first builds the index
                    t = time.perf_counter()
                    proc, url = start_server(tmp, milvus_uri, f"server-{len(urls)}")
                    procs.append(proc)
                    urls.append(url)
                    print(f"server up at {url} in {time.perf_counter() - t:.1f} s", flush=True)
                runs.append(load(urls[:n], args.sessions, args.seconds, questions))
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)

    out = dict(runs[0], cpu_count=os.cpu_count(), load_average=os.getloadavg()[0])
    if args.sign_in:
        out["sign_in_run"] = runs[1]
        out["sign_in_ratio"] = round(runs[1]["answers_per_s"] / runs[0]["answers_per_s"], 3) \
            if runs[0]["answers_per_s"] else None
        print(f"answers/s with sign-in / without: {out['sign_in_ratio']}")
    elif len(runs) > 1:
        out["store"] = "milvus (milvus-lite server)"
        out["runs"] = runs
        base = runs[0]["answers_per_s"]
        out["ratios"] = {f"{r['servers']}_vs_{runs[0]['servers']}":
                         round(r["answers_per_s"] / base, 2) if base else None for r in runs[1:]}
        print("answers/s ratio: " + ", ".join(f"{k.replace('_vs_', ' vs ')} servers {v}"
                                               for k, v in out["ratios"].items()))
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(json.dumps(out))
    return 1 if any(r["errors"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
