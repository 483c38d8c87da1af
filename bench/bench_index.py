"""Indexing and search benchmark. Prints figures and ends with one JSON line.

    .venv/bin/python bench/bench_index.py [--chunks 50000] [--articles 1000]

- build throughput (chunks/s) of ``rag index`` per embedding backend, against raw
  sentence-transformers ``encode`` (torch, batch 64) of the same chunk texts in the same run
  (``throughput_ratio``);
- re-index time after one article of ``--articles`` changed;
- search latency p50/p95 at 1k and ``--chunks`` chunks, with and without the query embedding;
- peak RSS while indexing ``--chunks`` chunks (in a child process);
- recall@10 of the approximate stores (hnsw, ivf) against exact search;
- retrieval quality (hit@1, hit@5, MRR) of each backend on the gold sets, with the news-aware
  boost and BM25 switched off and on.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag import Settings, build_index  # noqa: E402
from rag.embed import load_embedder  # noqa: E402
from rag.gold import load_gold  # noqa: E402
from rag.retrieve import Index  # noqa: E402
from rag.scoring import retrieval_metrics  # noqa: E402
from rag.store import FaissStore  # noqa: E402

BACKENDS = ("torch", "onnx-int8")
QUESTIONS = [
    "How much did Harbor Robotics raise in its Series B?",
    "Who won the Port Calder Marathon in 2023?",
    "What did the city council approve for the budget?",
    "Which company sued its rival over patents?",
    "How many homes lost power during the storm?",
    "Who was named chief executive?",
    "When did the new tram line open?",
    "What did the researchers discover about the bacterium?",
]


def sentences() -> list[str]:
    """A pool of real news sentences from the shipped corpora, to build synthetic articles."""
    from rag.chunk import sentence_spans
    from rag.load import load_corpus

    pool = []
    for folder in (ROOT / "corpus", ROOT / "eval/newsbench/corpus"):
        for a in load_corpus(folder)[0]:
            pool += [a.text[s:e] for s, e in sentence_spans(a.text) if len(a.text[s:e]) > 30]
    return pool


def write_corpus(folder: Path, n_articles: int, sentences_per: tuple[int, int], seed: int,
                 jsonl: bool = False) -> None:
    """Synthetic articles: shuffled real sentences with fresh figures, one file each (or one
    JSONL file for very many)."""
    rng = random.Random(seed)
    pool = sentences()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_articles):
        k = rng.randint(*sentences_per)
        body = " ".join(rng.choice(pool) for _ in range(k))
        body += f" The figure reported was {rng.randint(1, 999)}.{rng.randint(0, 9)} million in {rng.randint(1990, 2026)}."
        title = f"Synthetic story {i}"
        if jsonl:
            rows.append(json.dumps({"id": i, "title": title, "text": body}))
        else:
            (folder / f"{i:05d}.md").write_text(f"---\ntitle: {title}\n---\n\n{body}\n")
    if jsonl:
        (folder / "articles.jsonl").write_text("\n".join(rows) + "\n")


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike ru_maxrss it is not inherited from
    the parent across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def pct(values, q) -> float:
    return round(float(np.percentile(np.array(values) * 1000, q)), 2)


def latency(index: Index, repeats: int = 200) -> dict:
    qs = [QUESTIONS[i % len(QUESTIONS)] for i in range(repeats)]
    for q in qs[:10]:  # warm up
        index.search(q, 5)
    full, search_only = [], []
    analysed = {q: index.question(q) for q in QUESTIONS}  # analysed and embedded once
    for q in qs:
        t = time.perf_counter()
        index.search(q, 5)
        full.append(time.perf_counter() - t)
        t = time.perf_counter()
        index.search(analysed[q], 5)
        search_only.append(time.perf_counter() - t)
    return {"p50_ms": pct(full, 50), "p95_ms": pct(full, 95),
            "p50_ms_no_embed": pct(search_only, 50), "p95_ms_no_embed": pct(search_only, 95)}


def throughput(tmp: Path, n_articles: int) -> dict:
    """Build the same corpus with each backend; compare with raw ST encode of its chunks."""
    from sentence_transformers import SentenceTransformer

    from rag.embed import resolve_model
    from rag.config import BUNDLED_EMBEDDER

    corpus = tmp / "throughput-corpus"
    write_corpus(corpus, n_articles, (3, 9), seed=1)
    out = {}
    texts = None
    for backend in BACKENDS:
        emb = load_embedder(backend=backend)
        emb.embed(["warm up"] * 8)
        settings = Settings(corpus=corpus, index=tmp / f"tp-{backend}", embed_backend=backend)
        report = build_index(settings, embedder=emb)
        out[backend] = {"chunks": report.chunks, "seconds": report.seconds,
                        "chunks_per_s": round(report.chunks / report.seconds, 1)}
        if texts is None:
            idx = Index(settings.index, settings, embedder=emb)
            texts = [idx.chunk(i).text for i in range(idx.stats()["chunks"])]
        # Re-index after one article changed.
        victim = corpus / "00007.md"
        original = victim.read_text()
        victim.write_text(original.replace("Synthetic story 7", "Synthetic story 7 (updated)"))
        t = time.perf_counter()
        r = build_index(settings, embedder=emb)
        out[backend]["reindex_one_changed_s"] = round(time.perf_counter() - t, 3)
        out[backend]["reindex_embedded_chunks"] = r.embedded
        victim.write_text(original)
    st = SentenceTransformer(resolve_model(BUNDLED_EMBEDDER), device="cpu")
    st.encode(["warm up"] * 8)
    t = time.perf_counter()
    st.encode(texts, batch_size=64, normalize_embeddings=True)
    raw = len(texts) / (time.perf_counter() - t)
    out["raw_sentence_transformers_chunks_per_s"] = round(raw, 1)
    for backend in BACKENDS:
        out[backend]["throughput_ratio"] = round(out[backend]["chunks_per_s"] / raw, 3)
    return out


def scale_child(tmp: Path, n_chunks: int, backend: str) -> None:
    """Run in a child process: index n_chunks one-passage articles; print RSS and latency."""
    corpus = tmp / f"scale-corpus-{n_chunks}"
    write_corpus(corpus, n_chunks, (1, 2), seed=2, jsonl=True)
    emb = load_embedder(backend=backend)
    settings = Settings(corpus=corpus, index=tmp / f"scale-{n_chunks}-{backend}",
                        embed_backend=backend)
    before = peak_rss_mb()
    report = build_index(settings, embedder=emb, progress=sys.stderr.isatty())
    peak = peak_rss_mb()
    index = Index(settings.index, settings, embedder=emb)
    result = {"chunks": report.chunks, "build_s": report.seconds,
              "peak_rss_mb": peak, "peak_rss_before_build_mb": before,
              **latency(index)}
    result["ann_recall@10"] = ann_recall(index.store, emb)
    print("RESULT " + json.dumps(result))


def ann_recall(flat: FaissStore, emb) -> dict:
    rng = np.random.default_rng(0)
    qs = np.vstack([emb.embed_query(q) for q in QUESTIONS])
    noise = flat.vectors[rng.choice(len(flat), 192)] + rng.normal(0, 0.05, (192, flat.dim))
    qs = np.vstack([qs, noise / np.linalg.norm(noise, axis=1, keepdims=True)]).astype(np.float32)
    out = {}
    for kind in ("hnsw", "ivf"):
        store = FaissStore(flat.dim, kind)
        t = time.perf_counter()
        store.add(flat.ids, flat.vectors)
        build = time.perf_counter() - t
        recall, times = [], []
        for q in qs:
            _, exact = flat.search(q, 10)
            t = time.perf_counter()
            _, got = store.search(q, 10)
            times.append(time.perf_counter() - t)
            recall.append(len(set(exact) & set(got)) / len(exact))
        times_flat = [_timed(flat.search, q, 10) for q in qs]
        out[kind] = {"recall": round(float(np.mean(recall)), 4), "build_s": round(build, 2),
                     "p50_ms": pct(times, 50), "flat_p50_ms": pct(times_flat, 50)}
    return out


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def scale(tmp: Path, n_chunks: int, backend: str) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--scale-child", str(n_chunks), "--tmp", str(tmp),
         "--backend", backend],
        stdout=subprocess.PIPE, text=True, check=True,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def quality(tmp: Path) -> dict:
    out = {}
    for backend in BACKENDS:
        emb = load_embedder(backend=backend)
        for name, corpus, gold in (("seed", "corpus", "eval/gold.jsonl"),
                                   ("newsbench", "eval/newsbench/corpus", "eval/newsbench/gold.jsonl")):
            settings = Settings(corpus=ROOT / corpus, index=tmp / f"q-{name}-{backend}",
                                embed_backend=backend)
            build_index(settings, embedder=emb)
            index = Index(settings.index, settings, embedder=emb)
            items = load_gold(ROOT / gold)
            out[f"{name}/{backend}"] = {
                "hybrid+news": retrieval_metrics(index, items)["all"],
                "hybrid": retrieval_metrics(index, items, news=False)["all"],
                "dense": retrieval_metrics(index, items, hybrid=False, news=False)["all"],
            }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chunks", type=int, default=50_000, help="chunks for the scale figures")
    p.add_argument("--articles", type=int, default=1000, help="articles for throughput/re-index")
    p.add_argument("--backend", default="onnx-int8", choices=BACKENDS,
                   help="backend for the scale figures")
    p.add_argument("--skip-scale", action="store_true")
    p.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.scale_child:
        scale_child(Path(args.tmp), args.scale_child, args.backend)
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        figures = {"machine": f"{os.cpu_count()} cpus", "backend_for_scale": args.backend}
        figures["quality"] = quality(tmp)
        for k, v in figures["quality"].items():
            print(f"quality {k}: {v}", flush=True)
        figures["throughput"] = throughput(tmp, args.articles)
        print(f"throughput: {figures['throughput']}", flush=True)
        figures["throughput_ratio"] = figures["throughput"][args.backend]["throughput_ratio"]
        figures["search_1k"] = scale(tmp, 1000, args.backend)
        print(f"search at 1k chunks: {figures['search_1k']}", flush=True)
        if not args.skip_scale:
            figures[f"search_{args.chunks}"] = scale(tmp, args.chunks, args.backend)
            print(f"search at {args.chunks} chunks: {figures[f'search_{args.chunks}']}", flush=True)
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
