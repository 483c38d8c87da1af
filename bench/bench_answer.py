"""Answer benchmark for each generator backend. Prints figures and ends with one JSON line.

    .venv/bin/python bench/bench_answer.py [--generators extractive,smollm2] [--llm-questions 30]
                                           [--baseline REF]

Over the gold questions of the seed corpus, eval/newsbench and the reader's dev split:
- answer latency p50/p95 and time to the first streamed piece; for extractive, also with no
  passage read yet (every passage's sentences, candidates and embeddings computed afresh);
- for extractive, the same questions answered by the extractive path of the commit ``REF``
  (default: the last commit before the reader, whose answer was the passage sentence most like
  the question), in a child process on the same machine and index, in the same run: the
  ``ratio`` of the two p50s is the figure to compare, since these machines are noisy;
- cold start (from starting a new process to its first answer; its exit is reported apart):
  the first run (empty cache: the int8 ONNX export, the GGUF conversion) and a later run;
- peak RSS of that process;
- and, for orientation, answer accuracy (a gold answer occurs in the answer) and the abstain /
  false-abstain rates (``rag eval`` is the full evaluation).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_index import peak_rss_mb  # noqa: E402  (bench/ is this script's folder)

from rag import Settings, build_index  # noqa: E402
from rag.gold import load_gold  # noqa: E402

SETS = (("seed", "corpus", "eval/gold.jsonl"),
        ("newsbench", "eval/newsbench/corpus", "eval/newsbench/gold.jsonl"),
        ("dev", "eval/reader/dev/corpus", "eval/reader/dev/gold.jsonl"))
#: The last commit whose extractive answer was the passage sentence most like the question.
BASELINE_REF = "b219795"

# Run by the child process with the baseline's ``rag`` first on sys.path: the same loop as
# :func:`run_gold` for extractive, with that version's own way to forget cached passages.
BASELINE_CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from rag import Settings
from rag.pipeline import Pipeline
from rag.retrieve import Index
out = {"latencies": [], "uncached": []}
for index, questions in json.load(open(sys.argv[2])):
    settings = Settings(index=index)
    pipeline = Pipeline(Index(settings.index, settings), "extractive")
    pipeline.ask(questions[0][0])
    for question, history in questions:
        t = time.perf_counter()
        pipeline.ask(question, history)
        out["latencies"].append((time.perf_counter() - t) * 1000)
        # the baseline commit predates Pipeline.clear_cache; its cache was a plain dict
        (getattr(pipeline, "clear_cache", None) or pipeline._sentence_cache.clear)()
        t = time.perf_counter()
        pipeline.ask(question, history)
        out["uncached"].append((time.perf_counter() - t) * 1000)
print(json.dumps(out))
"""


def pct(values, q) -> float:
    return round(float(np.percentile(values, q)), 1)


def indexes(tmp: Path) -> list[tuple[str, Path, Path]]:
    """Each set's index (built once per run) and gold file."""
    out = []
    for name, corpus, gold in SETS:
        settings = Settings(corpus=ROOT / corpus, index=tmp / f"index-{name}")
        build_index(settings)
        out.append((name, settings.index, ROOT / gold))
    return out


def run_gold(sets, generator: str, limit: int | None) -> dict:
    from rag.pipeline import Pipeline
    from rag.retrieve import Index

    latencies, first_piece, uncached = [], [], []
    correct = answerable = abstained_ok = unanswerable = false_abstain = 0
    for name, index, gold in sets:
        settings = Settings(index=index)
        pipeline = Pipeline(Index(settings.index, settings), generator)
        items = load_gold(gold)
        if limit:
            items = items[: limit // len(sets)]
        pipeline.ask(items[0].question)  # load models before timing
        for item in items:
            t = time.perf_counter()
            first = None
            for piece in pipeline.stream(item.question, item.history):
                if first is None:
                    first = time.perf_counter() - t
                answer = piece
            latencies.append((time.perf_counter() - t) * 1000)
            first_piece.append(first * 1000)
            if generator == "extractive":
                # Again with no passage read yet (a question about new passages).
                pipeline.clear_cache()
                t = time.perf_counter()
                pipeline.ask(item.question, item.history)
                uncached.append((time.perf_counter() - t) * 1000)
            if item.answerable:
                answerable += 1
                false_abstain += answer.abstained
                correct += any(a.lower() in answer.text.lower() for a in item.answers)
            else:
                unanswerable += 1
                abstained_ok += answer.abstained
    return {
        "questions": len(latencies),
        "p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95),
        "first_piece_p50_ms": pct(first_piece, 50), "first_piece_p95_ms": pct(first_piece, 95),
        **({"p50_ms_uncached": pct(uncached, 50), "p95_ms_uncached": pct(uncached, 95)}
           if uncached else {}),
        "accuracy": round(correct / answerable, 3),
        "abstain_rate_unanswerable": round(abstained_ok / max(1, unanswerable), 3),
        "false_abstain_rate": round(false_abstain / answerable, 3),
    }


def run_baseline(tmp: Path, sets, ref: str) -> dict:
    """The extractive path of commit ``ref`` on the same questions and indexes."""
    folder = tmp / f"baseline-{ref}"
    folder.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "rag"],
                             stdout=subprocess.PIPE, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    questions = tmp / "baseline-questions.json"
    questions.write_text(json.dumps([
        [str(index), [[item.question, [dict(t) for t in item.history]]
                      for item in load_gold(gold)]] for _, index, gold in sets]))
    proc = subprocess.run([sys.executable, "-c", BASELINE_CHILD, str(folder), str(questions)],
                          stdout=subprocess.PIPE, text=True, check=True,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"ref": ref, "questions": len(got["latencies"]),
            "p50_ms": pct(got["latencies"], 50), "p95_ms": pct(got["latencies"], 95),
            "p50_ms_uncached": pct(got["uncached"], 50),
            "p95_ms_uncached": pct(got["uncached"], 95)}


def cold_start(tmp: Path, generator: str, index: Path) -> dict:
    """A new process answering one question, with an empty then a warm cache: seconds from
    starting it to its answer (``seconds``) and to its exit (``to_exit_s``)."""
    cache = tmp / f"cold-cache-{generator}"
    out = {}
    for run in ("first_run", "later_run"):
        env = {**os.environ, "RAG_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
        started = time.time()
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--child", generator, "--index", str(index)],
            env=env, stdout=subprocess.PIPE, text=True, check=True,
        )
        wall = time.perf_counter() - t
        child = json.loads(proc.stdout.strip().splitlines()[-1])
        out[run] = {"seconds": round(child["answered_at"] - started, 2),
                    "to_exit_s": round(wall, 2), "peak_rss_mb": child["peak_rss_mb"]}
    return out


def child(generator: str, index: str) -> None:
    from rag import ask

    answer = ask("How much did the Alibaba-led group invest in SenseTime?", index=index,
                 generator=generator)
    answered_at = time.time()
    assert answer.text
    print(json.dumps({"answered_at": answered_at, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--generators", default="extractive,smollm2")
    p.add_argument("--llm-questions", type=int, default=30,
                   help="gold questions per language-model backend (they take seconds each)")
    p.add_argument("--baseline", default=BASELINE_REF,
                   help=f"commit whose extractive path is timed beside (default {BASELINE_REF})")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--index", help=argparse.SUPPRESS)
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.child:
        child(args.child, args.index)
        return
    figures = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        sets = indexes(tmp)
        for generator in args.generators.split(","):
            limit = None if generator == "extractive" else args.llm_questions
            f = run_gold(sets, generator, limit)
            print(f"{generator} (before the baseline): {json.dumps(f)}", flush=True)
            if generator == "extractive":
                base = run_baseline(tmp, sets, args.baseline)
                f["baseline"] = base
                f["ratio_p50"] = round(f["p50_ms"] / base["p50_ms"], 2)
                f["ratio_p50_uncached"] = round(f["p50_ms_uncached"] / base["p50_ms_uncached"],
                                                2)
            f["cold_start"] = cold_start(tmp, generator, sets[0][1])
            figures[generator] = f
            print(f"{generator}: {json.dumps(f)}", flush=True)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
