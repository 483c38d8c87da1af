"""Search latency of the Milvus store (Milvus Lite in this process, and optionally a
``milvus-lite server`` over gRPC) against the local store, on the same chunks, in the same run.
Prints figures and ends with one JSON line.

    .venv/bin/python bench/bench_milvus.py [--sizes 1000 10000] [--repeats 100] [--server]

For each size, synthetic one-passage articles (real news sentences, as bench_index.py makes
them) are embedded once and indexed into both stores; then the same questions are searched
(hybrid + news boost, k=5), already embedded (``no_embed``: the store's own cost) and from text.
``ratio`` is Milvus p50 / local p50. Retrieval quality (hit@1, hit@5, MRR) on the newsbench
gold set is printed for both stores too: Milvus computes BM25 itself (Milvus Lite without
stemming), so it can differ.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_index import QUESTIONS, write_corpus  # noqa: E402

from rag import Settings, build_index  # noqa: E402
from rag.embed import load_embedder  # noqa: E402
from rag.gold import load_gold  # noqa: E402
from rag.milvus import GRPC_OPTIONS  # noqa: E402
from rag.retrieve import open_store_index  # noqa: E402
from rag.scoring import retrieval_metrics  # noqa: E402


class Memo:
    """The embedder, remembering each text's vector, so the second store is fed the very same
    vectors without embedding twice."""

    def __init__(self, emb):
        self.emb, self.cache = emb, {}
        self.id, self.dim = emb.id, emb.dim
        self.max_tokens, self.tokenizer = emb.max_tokens, emb.tokenizer

    def embed(self, texts, progress=False):
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for t, v in zip(missing, self.emb.embed(missing, progress=progress)):
                self.cache[t] = v
        return np.vstack([self.cache[t] for t in texts]) if texts else np.zeros((0, self.dim))

    def embed_query(self, text):
        return self.emb.embed_query(text)


def pct(values, q) -> float:
    return round(float(np.percentile(np.array(values) * 1000, q)), 2)


def latency(index, repeats: int) -> dict:
    analysed = {q: index.question(q) for q in QUESTIONS}
    for q in QUESTIONS[:4]:
        index.search(analysed[q], 5)  # warm up
    no_embed, full = [], []
    for i in range(repeats):
        q = QUESTIONS[i % len(QUESTIONS)]
        t = time.perf_counter()
        index.search(analysed[q], 5)
        no_embed.append(time.perf_counter() - t)
    for i in range(max(8, repeats // 4)):
        q = QUESTIONS[i % len(QUESTIONS)]
        t = time.perf_counter()
        index.search(q, 5)
        full.append(time.perf_counter() - t)
    return {"p50_ms_no_embed": pct(no_embed, 50), "p95_ms_no_embed": pct(no_embed, 95),
            "p50_ms": pct(full, 50)}


def stores(tmp: Path, server: str | None, name: str) -> dict[str, Settings]:
    base = Settings(index=tmp / f"local-{name}")
    out = {"local": base,
           "milvus-lite": replace(base, store="milvus",
                                  milvus_uri=str(tmp / f"lite-{name}.db"))}
    if server:
        out["milvus-server"] = replace(base, store="milvus", milvus_uri=server,
                                       milvus_collection=f"bench_{name}")
    return out


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    from pymilvus import MilvusClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).with_name("milvus-lite")
    proc = subprocess.Popen([str(exe) if exe.exists() else "milvus-lite", "server", "--host",
                             "127.0.0.1", "--port", str(port), "--data-dir", str(tmp / "srv")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    uri = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            MilvusClient(uri=uri, timeout=2, grpc_options=GRPC_OPTIONS).list_collections()
            return proc, uri
        except Exception:  # noqa: BLE001 - not up yet
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("milvus-lite server did not start")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--backend", default="onnx-int8", choices=("onnx-int8", "torch"))
    p.add_argument("--server", action="store_true",
                   help="also a milvus-lite server process on 127.0.0.1 (gRPC)")
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    emb = Memo(load_embedder(backend=args.backend))
    figures = {"machine": f"{os.cpu_count()} cpus, shared", "backend": args.backend,
               "load_before": os.getloadavg()[0]}
    tmp = Path(tempfile.mkdtemp(prefix="bench-milvus-"))
    proc = None
    try:
        server = None
        if args.server:
            proc, server = start_server(tmp)
        for n in args.sizes:
            corpus = tmp / f"corpus-{n}"
            write_corpus(corpus, n, (1, 2), seed=2, jsonl=True)
            row = {}
            for kind, s in stores(tmp, server, str(n)).items():
                s = replace(s, corpus=corpus, embed_backend=args.backend)
                t = time.perf_counter()
                report = build_index(s, embedder=emb)
                build_s = round(time.perf_counter() - t, 2)
                index = open_store_index(s, embedder=emb)
                row[kind] = {"chunks": report.chunks, "build_s": build_s,
                             **latency(index, args.repeats)}
                print(f"{n} articles, {kind}: {row[kind]}", flush=True)
            for kind in row:
                if kind != "local":
                    row[kind]["ratio_p50_no_embed"] = round(
                        row[kind]["p50_ms_no_embed"] / row["local"]["p50_ms_no_embed"], 1)
            figures[f"search_{n}"] = row
        quality = {}
        items = load_gold(ROOT / "eval/newsbench/gold.jsonl")
        for kind, s in stores(tmp, server, "newsbench").items():
            s = replace(s, corpus=ROOT / "eval/newsbench/corpus", embed_backend=args.backend)
            build_index(s, embedder=emb)
            quality[kind] = retrieval_metrics(open_store_index(s, embedder=emb), items)["all"]
            print(f"newsbench retrieval, {kind}: {quality[kind]}", flush=True)
        figures["newsbench"] = quality
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    figures["load_after"] = os.getloadavg()[0]
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
