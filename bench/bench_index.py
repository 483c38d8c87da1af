"""Indexing and search benchmark. Prints figures and ends with one JSON line.

    .venv/bin/python bench/bench_index.py [--chunks 50000] [--articles 1000]
    .venv/bin/python bench/bench_index.py --only-scale [--keep DIR]   # the search figures only
    .venv/bin/python bench/bench_index.py --vectors 1000000           # vectors only, no model

- build throughput (chunks/s) of ``rag index`` per embedding backend, against raw
  sentence-transformers ``encode`` (torch, batch 64) of the same chunk texts in the same run
  (``throughput_ratio``);
- re-index time after one article of ``--articles`` changed;
- search latency p50/p95 at 1k and ``--chunks`` chunks, with and without the query embedding,
  against the targets at 50k (5 ms and 1.5 ms), with the store ``auto`` picked and with an
  exact (flat) store over the same vectors in the same run; the single-query embedding time
  of each backend;
- peak RSS while indexing ``--chunks`` chunks (in a child process);
- recall@10 of the auto store and of the approximate stores (hnsw, ivf, ivfpq) against exact
  search, for real questions (the gold sets') and for noisy copies of passages; flat against ivfpq
  search time at growing sizes of the real passage vectors (where ``auto`` switches);
- ``--vectors N``: synthetic clustered 384-d vectors (no model): search p50, recall@10 and
  resident memory of exact (IndexFlatIP), IVF, IVF with 8-bit scalar quantization, and the
  ``ivfpq`` store that ``auto`` builds (its codes plus the vectors it re-scores with), each
  built in a child process of its own;
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


#: Search latency targets at 50k chunks (p50, ms): with the query embedding, and without.
TARGET_MS, TARGET_MS_NO_EMBED = 5.0, 1.5


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


def query_costs(index: Index, repeats: int = 200) -> dict:
    """p50 of what a search does before it searches: analysing the question, and embedding it
    with each backend (one query at a time)."""
    from rag.index import english_stemmer
    from rag.question import analyze

    qs = [QUESTIONS[i % len(QUESTIONS)] for i in range(repeats)]
    stemmer = english_stemmer()
    out = {"analyse_p50_ms": pct([_timed(analyze, q, (), None, stemmer) for q in qs], 50)}
    for backend in BACKENDS:
        emb = load_embedder(backend=backend)
        for q in qs[:10]:
            emb.embed_query(q)
        out[f"embed_{backend}_p50_ms"] = pct([_timed(emb.embed_query, q) for q in qs], 50)
    return out


def gold_questions() -> list[str]:
    """Every question of the shipped gold sets: real questions, to measure recall with."""
    from rag.evaluate import shipped_sets

    return sorted({item.question for s in shipped_sets() for item in load_gold(s.gold)})


def throughput(tmp: Path, n_articles: int) -> dict:
    """Build the same corpus with each backend; compare with raw ST encode of its chunks."""
    from sentence_transformers import SentenceTransformer

    from rag.config import BUNDLED_EMBEDDER
    from rag.embed import resolve_model

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


def scale_child(tmp: Path, n_chunks: int, backend: str, keep: str | None = None) -> None:
    """Run in a child process: index n_chunks one-passage articles (store ``auto``, the
    default); print RSS, latency against an exact store over the same vectors, and recall."""
    corpus = tmp / f"scale-corpus-{n_chunks}"
    write_corpus(corpus, n_chunks, (1, 2), seed=2, jsonl=True)
    emb = load_embedder(backend=backend)
    folder = Path(keep) / f"scale-{n_chunks}-{backend}" if keep \
        else tmp / f"scale-{n_chunks}-{backend}"
    settings = Settings(corpus=corpus, index=folder, embed_backend=backend)
    before = peak_rss_mb()
    report = build_index(settings, embedder=emb, progress=sys.stderr.isatty())
    peak = peak_rss_mb()
    index = Index(settings.index, settings, embedder=emb)
    auto = index.store
    result = {"chunks": report.chunks, "build_s": report.seconds,
              "peak_rss_mb": peak, "peak_rss_before_build_mb": before,
              "store": index.stats()["store"], **latency(index)}
    # the same index searched with an exact store over the same vectors (same positions)
    flat = FaissStore(auto.dim, "flat")
    flat.add(auto.ids, auto.vectors)
    index.store = flat
    result["exact"] = latency(index)
    index.store = auto
    result["targets_ms"] = {"p50": TARGET_MS, "p50_no_embed": TARGET_MS_NO_EMBED}
    result["targets_met"] = {"p50": result["p50_ms"] <= TARGET_MS,
                             "p50_no_embed": result["p50_ms_no_embed"] <= TARGET_MS_NO_EMBED}
    result["query"] = query_costs(index)
    result["recall@10"] = ann_recall(flat, emb, auto)
    result["crossover"] = crossover(flat, emb)
    print("RESULT " + json.dumps(result))


def recall_queries(flat: FaissStore, emb) -> dict[str, np.ndarray]:
    """Real questions (the gold sets', embedded) and noisy copies of stored passages."""
    rng = np.random.default_rng(0)
    real = emb.embed(gold_questions())
    noise = flat.vectors[rng.choice(len(flat), 200)] + rng.normal(0, 0.05, (200, flat.dim))
    noisy = (noise / np.linalg.norm(noise, axis=1, keepdims=True)).astype(np.float32)
    return {"questions": np.asarray(real, np.float32), "noisy_passages": noisy}


def ann_recall(flat: FaissStore, emb, auto: FaissStore) -> dict:
    queries = recall_queries(flat, emb)
    exact = {name: [flat.search(q, 10)[1] for q in qs] for name, qs in queries.items()}
    out = {"queries": {name: len(qs) for name, qs in queries.items()}}
    stores = {f"auto ({auto.index_kind})": (auto, None)}
    for kind in ("hnsw", "ivf", "ivfpq"):
        store = FaissStore(flat.dim, kind)
        t = time.perf_counter()
        store.add(flat.ids, flat.vectors)
        stores[kind] = (store, time.perf_counter() - t)
    for label, (store, build) in stores.items():
        row = {} if build is None else {"build_s": round(build, 2)}
        for name, qs in queries.items():
            got = [store.search(q, 10)[1] for q in qs]
            row[name] = round(float(np.mean([len(set(e) & set(g)) / len(e)
                                             for e, g in zip(exact[name], got)])), 4)
        times = [_timed(store.search, q, 10) for q in queries["questions"]]
        row["p50_ms"] = pct(times, 50)
        out[label] = row
    out["flat_p50_ms"] = pct([_timed(flat.search, q, 10) for q in queries["questions"]], 50)
    return out


def crossover(flat: FaissStore, emb,
              sizes=(2_000, 5_000, 10_000, 20_000, 30_000, 50_000)) -> dict:
    """Exact against ivfpq (what ``auto`` picks when large) search time (p50, 50 candidates as
    a search asks for) over the first n passage vectors, and ivfpq's recall@10: where ``auto``
    should switch."""
    qs = emb.embed(gold_questions()[:300])
    out = {}
    for n in sizes:
        if n > len(flat):
            break
        ids, vectors = flat.ids[:n], flat.vectors[:n]
        exact, ivfpq = FaissStore(flat.dim, "flat"), FaissStore(flat.dim, "ivfpq")
        exact.add(ids, vectors)
        ivfpq.add(ids, vectors)
        recall = np.mean([len(set(exact.search(q, 10)[1]) & set(ivfpq.search(q, 10)[1])) / 10
                          for q in qs])
        out[n] = {"flat_p50_ms": pct([_timed(exact.search, q, 50) for q in qs], 50),
                  "ivfpq_p50_ms": pct([_timed(ivfpq.search, q, 50) for q in qs], 50),
                  "ivfpq_recall@10": round(float(recall), 4), "nlist": ivfpq.index.nlist,
                  "nprobe": ivfpq.index.nprobe}
    return out


# -- vectors only: exact, IVF and IVF-SQ8 at a million ----------------------------------------

VECTOR_DIM = 384
VECTOR_BLOCK = 50_000


def synthetic_block(seed: int, start: int, n: int, clusters: int) -> np.ndarray:
    """Vectors ``start .. start + n`` of a fixed synthetic set: unit vectors around random
    centres (as text embeddings bunch by topic), generated block by block so that a million
    of them never sit in memory twice."""
    centres = np.random.default_rng(seed).standard_normal((clusters, VECTOR_DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    rng = np.random.default_rng((seed, start))
    v = centres[rng.integers(clusters, size=n)] + rng.normal(0, 0.06, (n, VECTOR_DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def synthetic_first(n: int, count: int) -> np.ndarray:
    """The first ``count`` vectors of the synthetic set of ``n``, in one array."""
    return np.vstack([synthetic_block(1, s, min(VECTOR_BLOCK, count - s), topics(n))
                      for s in range(0, count, VECTOR_BLOCK)])


def topics(n: int) -> int:
    """Clusters in a synthetic set of ``n`` vectors: about 500 vectors a topic."""
    return max(10, n // 500)


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def vector_truth(n: int, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact top-k positions of each query over the n vectors, block by block."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for start in range(0, n, VECTOR_BLOCK):
        block = synthetic_block(1, start, min(VECTOR_BLOCK, n - start), topics(n))
        s = queries @ block.T
        i = np.broadcast_to(np.arange(start, start + len(block)), s.shape)
        s, i = np.hstack([best_s, s]), np.hstack([best_i, i])
        top = np.argsort(-s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    return best_i


def vectors_child(kind: str, n: int, tmp: Path) -> None:
    """Run in a child process: build one index over the n synthetic vectors; print resident
    memory added by it, search p50 (one query at a time, one thread) and recall@10."""
    import faiss

    from rag.store import FAISS_THREADS, ivf_lists, ivf_probes

    queries = np.load(tmp / "queries.npy")
    truth = np.load(tmp / "truth.npy")
    faiss.omp_set_num_threads(2)  # building may use both cores; searching gets one below
    before = rss_mb()
    t = time.perf_counter()
    if kind == "ivfpq":
        # the store ``auto`` builds, searched as the index searches it: the FAISS index of codes
        # and the vectors themselves, which score the candidates exactly
        store = FaissStore(VECTOR_DIM, "ivfpq")
        store.add(np.arange(n, dtype=np.int64), synthetic_first(n, n))
        index, search = store.index, store.search
    else:
        nlist = ivf_lists(n)
        if kind == "exact":
            index = faiss.IndexFlatIP(VECTOR_DIM)
        else:
            quantizer = faiss.IndexFlatIP(VECTOR_DIM)
            if kind == "ivf":
                index = faiss.IndexIVFFlat(quantizer, VECTOR_DIM, nlist,
                                           faiss.METRIC_INNER_PRODUCT)
            else:
                index = faiss.IndexIVFScalarQuantizer(quantizer, VECTOR_DIM, nlist,
                                                      faiss.ScalarQuantizer.QT_8bit,
                                                      faiss.METRIC_INNER_PRODUCT)
            # the first vectors are as random as any: 39 a list, the least FAISS asks for
            index.train(synthetic_first(n, min(n, 39 * nlist)))
            index.nprobe = ivf_probes(nlist)
        for start in range(0, n, VECTOR_BLOCK):
            index.add(synthetic_block(1, start, min(VECTOR_BLOCK, n - start), topics(n)))

        def search(q, k):
            scores, pos = index.search(q[None], k)
            return scores[0], pos[0]
    build = time.perf_counter() - t
    after = rss_mb()
    faiss.omp_set_num_threads(FAISS_THREADS)
    for q in queries[:10]:
        search(q, 10)
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        _, pos = search(q, 10)
        times.append(time.perf_counter() - t)
        found.append(pos)
    recall = np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth)])
    row = {"search_p50_ms": pct(times, 50), "search_p95_ms": pct(times, 95),
           "recall@10": round(float(recall), 4), "rss_delta_mb": round(after - before, 1),
           "build_s": round(build, 1)}
    if kind != "exact":
        row.update(nlist=index.nlist, nprobe=index.nprobe)
    print("RESULT " + json.dumps(row))


def vectors_run(n: int, tmp: Path, n_queries: int = 200) -> dict:
    """Exact, IVF, IVF-SQ8 and ivfpq (what ``auto`` builds) over ``n`` synthetic clustered
    vectors, each in its own process."""
    qrng = np.random.default_rng(99)
    queries = synthetic_block(1, 10**9, n_queries, topics(n))  # new points, same centres
    queries = queries[qrng.permutation(n_queries)]
    np.save(tmp / "queries.npy", queries)
    t = time.perf_counter()
    np.save(tmp / "truth.npy", vector_truth(n, queries))
    out = {"vectors": n, "dim": VECTOR_DIM, "queries": n_queries,
           "truth_s": round(time.perf_counter() - t, 1)}
    for kind in ("exact", "ivf", "ivf-sq8", "ivfpq"):
        proc = subprocess.run(
            [sys.executable, __file__, "--vectors-child", kind, "--vectors", str(n),
             "--tmp", str(tmp)], stdout=subprocess.PIPE, text=True, check=True)
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        out[kind] = json.loads(line[len("RESULT "):])
        print(f"vectors {n:,} {kind}: {out[kind]}", flush=True)
    return out


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def scale(tmp: Path, n_chunks: int, backend: str, keep: str | None = None) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--scale-child", str(n_chunks), "--tmp", str(tmp),
         "--backend", backend] + (["--keep", keep] if keep else []),
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
    p.add_argument("--only-scale", action="store_true",
                   help="only the search figures at 1k and --chunks chunks")
    p.add_argument("--keep", metavar="DIR", help="keep the scale indexes in DIR (and reuse "
                   "them on the next run: only what changed is embedded)")
    p.add_argument("--vectors", type=int, metavar="N", help="only the vectors-only run: exact, "
                   "IVF and IVF-SQ8 over N synthetic clustered vectors (e.g. 1000000)")
    p.add_argument("--scale-child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--vectors-child", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.scale_child:
        scale_child(Path(args.tmp), args.scale_child, args.backend, args.keep)
        return
    if args.vectors_child:
        vectors_child(args.vectors_child, args.vectors, Path(args.tmp))
        return
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        figures = {"machine": f"{os.cpu_count()} cpus", "load_before": os.getloadavg()}
        if args.vectors:
            figures["vectors_only"] = vectors_run(args.vectors, tmp)
            figures["load_after"] = os.getloadavg()
            print(json.dumps(figures))
            return
        figures["backend_for_scale"] = args.backend
        if not args.only_scale:
            figures["quality"] = quality(tmp)
            for k, v in figures["quality"].items():
                print(f"quality {k}: {v}", flush=True)
            figures["throughput"] = throughput(tmp, args.articles)
            print(f"throughput: {figures['throughput']}", flush=True)
            figures["throughput_ratio"] = figures["throughput"][args.backend]["throughput_ratio"]
        figures["search_1k"] = scale(tmp, 1000, args.backend, args.keep)
        print(f"search at 1k chunks: {figures['search_1k']}", flush=True)
        if not args.skip_scale:
            figures[f"search_{args.chunks}"] = scale(tmp, args.chunks, args.backend, args.keep)
            print(f"search at {args.chunks} chunks: {figures[f'search_{args.chunks}']}", flush=True)
        figures["load_after"] = os.getloadavg()
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
