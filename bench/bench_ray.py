"""Bulk embedding on Ray against the single-process path, in the same run. Ends with one JSON line.

    .venv/bin/python bench/bench_ray.py [--passages 5000] [--backend onnx-int8]

Passages are made of real news sentences from the shipped corpora (corpus/, eval/newsbench,
eval/reader), shuffled into passages of about 120-200 tokens, like the chunks ``rag index``
embeds. The same passages are embedded

- single-process: the embedder ``rag index`` uses, on every core, in the writer's groups;
- through :class:`rag.bulk.RayEmbedder` on a local Ray with every core, with 1 actor (all cores
  to it) and with one actor per core.

Ray's start-up is timed apart; each Ray time includes its job's actor start and model loads,
as a ``rag index --ray`` run pays them. Figures: passages/s, the ratio to single-process, the
smallest cosine between a passage's Ray and single-process vectors, and the single-process
passages per CPU-second (what one uncontended core does; docs/scale-out.md sizes workers by
it). The machine's load average is printed with them: on a shared machine the figures move
with it.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.bulk import RayEmbedder, RaySession  # noqa: E402
from rag.chunk import sentence_spans  # noqa: E402
from rag.config import BUNDLED_EMBEDDER  # noqa: E402
from rag.embed import cpu_threads, load_embedder  # noqa: E402
from rag.index import EMBED_GROUP  # noqa: E402
from rag.load import load_corpus  # noqa: E402

CORPORA = ("corpus", "eval/newsbench/corpus", "eval/reader/dev/corpus",
           "eval/reader/heldout/corpus")


def news_passages(n: int, seed: int = 0) -> list[str]:
    """``n`` passages of 600-1000 characters made of shuffled real news sentences."""
    pool = []
    for folder in CORPORA:
        for a in load_corpus(ROOT / folder)[0]:
            pool += [a.text[s:e] for s, e in sentence_spans(a.text) if len(a.text[s:e]) > 30]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        target, parts = rng.randint(600, 1000), []
        while sum(map(len, parts)) < target:
            parts.append(rng.choice(pool))
        out.append(" ".join(parts))
    return out


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def single_process(emb, texts: list[str]) -> tuple[np.ndarray, float, float]:
    """As ``rag index`` embeds: one ``embed`` call per writer group. Returns the vectors, the
    wall seconds and the CPU seconds this process used (all its threads)."""
    t, cpu = time.perf_counter(), time.process_time()
    vectors = np.concatenate([emb.embed(texts[s:s + EMBED_GROUP])
                              for s in range(0, len(texts), EMBED_GROUP)])
    return vectors, time.perf_counter() - t, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passages", type=int, default=5000)
    ap.add_argument("--backend", default="onnx-int8", choices=("onnx-int8", "torch"))
    args = ap.parse_args()

    cores = cpu_threads()
    texts = news_passages(args.passages)
    local = load_embedder(BUNDLED_EMBEDDER, args.backend)
    local.embed(["warm up"] * 8)
    print(f"{len(texts)} passages, mean {np.mean([len(t) for t in texts]):.0f} chars; "
          f"backend {args.backend}; {cores} cores ({cpu_model()})")
    print(f"load average before: {load()} (a machine shared with other work)")

    want, secs, cpu = single_process(local, texts)
    results = {"single_process": {"seconds": round(secs, 2), "cpu_seconds": round(cpu, 2),
                                  "passages_per_s": round(len(texts) / secs, 1),
                                  "passages_per_cpu_s": round(len(texts) / cpu, 1)}}
    print(f"single-process ({cores} threads): {len(texts) / secs:7.1f} passages/s "
          f"({secs:.1f} s; {len(texts) / cpu:.1f} passages per CPU-second, the rate of one "
          f"core it had to itself); load {load()}")

    session = RaySession(num_cpus=cores)
    t = time.perf_counter()
    session.start()
    results["ray_start_s"] = round(time.perf_counter() - t, 2)
    print(f"local Ray started in {results['ray_start_s']} s")
    try:
        for actors in sorted({1, cores}):
            cpus = cores // actors
            factory = partial(load_embedder, BUNDLED_EMBEDDER, args.backend, threads=cpus)
            emb = RayEmbedder(local, factory, session, actors=actors, actor_cpus=cpus)
            t = time.perf_counter()
            got = emb.embed(texts)
            secs = time.perf_counter() - t
            cos = float((got * want).sum(1).min())
            rate = len(texts) / secs
            single = results["single_process"]["passages_per_s"]
            results[f"ray_{actors}_actors"] = {
                "cpus_per_actor": cpus, "seconds": round(secs, 2),
                "passages_per_s": round(rate, 1), "ratio_to_single": round(rate / single, 3),
                "min_cosine_to_single": round(cos, 6)}
            print(f"Ray, {actors} actor(s) x {cpus} CPU: {rate:7.1f} passages/s ({secs:.1f} s, "
                  f"{rate / single:.2f}x single-process; min cosine {cos:.6f}); load {load()}")
    finally:
        session.close()
    print(f"load average after: {load()}")
    results.update(passages=len(texts), backend=args.backend, cores=cores,
                   cpu=cpu_model(), load_after=load())
    print(json.dumps(results))


if __name__ == "__main__":
    main()
