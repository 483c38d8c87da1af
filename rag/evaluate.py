"""Running ``rag eval``: the shipped gold sets, an index per set (built or brought up to
date), every question asked of every generator and scored, with the settings and package
versions the figures depend on."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from .config import cache_dir
from .errors import IndexMismatchError, RagError
from .gold import GoldItem, evidence_spans, load_gold
from .index import english_stemmer
from .scoring import FAITHFUL_SHARE, ItemResult, score_answer, summarise, summarise_by_kind

#: The repository holding the shipped gold sets (``rag`` is installed in editable mode).
ROOT = Path(__file__).resolve().parent.parent
#: (name, gold file, corpus folder) of the shipped sets, relative to :data:`ROOT`.
SHIPPED_SETS = (("seed", "eval/gold.jsonl", "corpus"),
                ("newsbench", "eval/newsbench/gold.jsonl", "eval/newsbench/corpus"),
                ("dev", "eval/reader/dev/gold.jsonl", "eval/reader/dev/corpus"),
                ("heldout", "eval/reader/heldout/gold.jsonl", "eval/reader/heldout/corpus"))
DEFAULT_THRESHOLDS = ROOT / "eval" / "thresholds.toml"
DEFAULT_REPORT_DIR = ROOT / "eval"
#: What ``--generator all`` tries, in order; a language model whose weights do not load is
#: reported as skipped.
ALL_GENERATORS = ("extractive", "smollm2", "seq2seq")


@dataclass(frozen=True)
class EvalSet:
    """A gold file, the corpus its evidence comes from, and where its index lives (``None``:
    a folder of its own under the cache)."""

    name: str
    gold: Path
    corpus: Path
    index: Path | None = None

    @property
    def index_folder(self) -> Path:
        return Path(self.index) if self.index else cache_dir() / "eval-index" / self.name


def shipped_sets(names=None) -> list[EvalSet]:
    """The shipped sets, or those called ``names`` (an unknown name is an error)."""
    known = [name for name, _, _ in SHIPPED_SETS]
    for name in names or ():
        if name not in known:
            raise RagError(f"unknown set {name!r}; choose among {', '.join(known)}, or pass "
                           "--gold FILE")
    sets = [EvalSet(name, ROOT / gold, ROOT / corpus) for name, gold, corpus in SHIPPED_SETS
            if not names or name in names]
    for s in sets:
        if not s.gold.is_file():
            raise RagError(f"the shipped gold set {s.gold} is missing; pass --gold FILE "
                           "--corpus DIR to evaluate your own")
    return sets


def generator_names(choice: str | None, default: str) -> list[str]:
    """The generators ``--generator`` names: one name, or every one for ``all``.

    >>> generator_names(None, "extractive"), generator_names("smollm2", "extractive")
    (['extractive'], ['smollm2'])
    >>> generator_names("all", "extractive")
    ['extractive', 'smollm2', 'seq2seq']
    """
    if not choice:
        return [default]
    if choice == "all":
        return list(ALL_GENERATORS)
    return [choice]


def package_versions() -> dict:
    """Installed versions of the packages the figures depend on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for label, dists in (("rag", ("rag-news",)), ("torch", ("torch",)),
                         ("transformers", ("transformers",)),
                         ("sentence-transformers", ("sentence-transformers",)),
                         ("faiss", ("faiss-cpu", "faiss", "faiss-gpu")),
                         ("onnxruntime", ("onnxruntime", "onnxruntime-gpu"))):
        out[label] = None
        for dist in dists:
            try:
                out[label] = version(dist)
                break
            except PackageNotFoundError:
                continue
    return out


def open_set(s: EvalSet, settings, embedder):
    """Build or update the set's index (embedding only what changed) and open it; returns
    the :class:`rag.retrieve.Index` and the build's :class:`rag.index.IndexReport`."""
    from .index import build_index
    from .retrieve import open_store_index

    folder = s.index_folder
    set_settings = replace(settings, corpus=Path(s.corpus), index=folder)
    if settings.store == "milvus" and settings.milvus_uri:
        # one shared Milvus database: each set in collections of its own
        name = re.sub(r"\W", "_", s.name)
        set_settings = replace(set_settings,
                               milvus_collection=f"{settings.milvus_collection}_{name}")
    try:
        report = build_index(set_settings, embedder=embedder)
    except IndexMismatchError:
        if s.index:  # the user's own folder: never rebuilt behind their back
            raise
        report = build_index(set_settings, embedder=embedder, rebuild=True)
    return open_store_index(set_settings, embedder=embedder, folder=folder), report


def answer_items(pipeline, items: list[GoldItem], index=None, progress=None) -> list[ItemResult]:
    """Ask ``pipeline`` every gold question (with its history) and score the answers."""
    index = index or pipeline.index
    stemmer = english_stemmer()  # one for every answer's faithfulness check
    results = []
    for i, item in enumerate(items):
        spans = evidence_spans(index, item) if item.answerable else []
        if item.answerable and not spans:
            raise RagError(f"gold item {item.id}: evidence not found in the index's articles; "
                           "check the quote and the corpus (--corpus DIR)")
        answer = pipeline.ask(item.question, [dict(t) for t in item.history])
        results.append(score_answer(item, answer, spans, stemmer))
        if progress:
            progress(i + 1, len(items))
    return results


def evaluate_sets(sets: list[EvalSet], generators: list[str], settings=None, *,
                  limit: int | None = None, skip_unloadable: bool = False, embedder=None,
                  log=None) -> dict:
    """Answer every gold question of every set with every generator and score the answers.

    ``limit`` keeps the first N items of each set for language-model generators (extractive
    always answers all). With ``skip_unloadable`` a generator whose model does not load is
    reported as ``{"skipped": reason}`` instead of raising.

    Returns ``{"date", "versions", "settings", "sets": {name: {"gold", "corpus", "index",
    "items", "index_report", "generators": {name: {"items", "overall", "per_kind",
    "results", "seconds"} or {"skipped"}}}}}``.
    """
    from .cite import SUPPORT_THRESHOLD
    from .config import Settings
    from .pipeline import ABSTAIN_THRESHOLD, Pipeline

    settings = settings or Settings.from_env()
    log = log or (lambda msg: None)
    # every gold file and corpus is checked before any model loads
    gold = {}
    for s in sets:
        gold[s.name] = load_gold(s.gold)
        if not gold[s.name]:
            raise RagError(f"gold file {s.gold} holds no items; see the README's gold format")
        if not Path(s.corpus).is_dir():
            raise RagError(f"corpus folder {s.corpus} of the {s.name!r} set does not exist; "
                           "pass --corpus DIR")
    if embedder is None:
        from .embed import embedder_for

        embedder = embedder_for(settings)
    loaded: dict[str, object] = {}
    skipped: dict[str, str] = {}

    def generator(name):
        if name in skipped or name in loaded:
            return loaded.get(name)
        from .generate import load_generator

        try:
            gen = load_generator(name, settings)
            if hasattr(gen, "warm_up"):
                log(f"loading the {name} generator")
                gen.warm_up()  # load now, so the first answer's latency is not the load
        except RagError as e:
            if not skip_unloadable:
                raise
            skipped[name] = str(e)
            log(f"{name}: skipped ({e})")
            return None
        loaded[name] = gen
        return gen

    for name in generators:  # an unknown name or missing weights fail before any indexing
        if name != "extractive":
            generator(name)
    metrics = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "versions": package_versions(),
        "settings": {
            "embedder": settings.embedder, "embed_backend": settings.embed_backend,
            "chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap,
            "store": settings.store, "k": settings.k, "generators": list(generators),
            "limit": limit, "abstain_threshold": ABSTAIN_THRESHOLD,
            "support_threshold": SUPPORT_THRESHOLD, "faithful_share": FAITHFUL_SHARE,
        },
        "sets": {},
    }
    for s in sets:
        items = gold[s.name]
        log(f"{s.name}: indexing {s.corpus} into {s.index_folder}")
        index, report = open_set(s, settings, embedder)
        entry = {"gold": str(s.gold), "corpus": str(s.corpus), "index": str(s.index_folder),
                 "items": len(items), "index_report": report.to_json(), "generators": {}}
        metrics["sets"][s.name] = entry
        for name in generators:
            if name != "extractive" and generator(name) is None:
                entry["generators"][name] = {"skipped": skipped[name]}
                continue
            # one loaded model for every set
            pipeline = Pipeline(index, name, k=settings.k, model=loaded.get(name))
            chosen = items if name == "extractive" or not limit else items[:limit]
            if name == "extractive":
                pipeline.ask(chosen[0].question)  # warm up (embedder sessions) before timing
            t0 = time.perf_counter()

            def progress(done, total, _set=s.name, _gen=name):
                if done == total or done % 20 == 0:
                    log(f"{_set} / {_gen}: {done}/{total} answered")

            results = answer_items(pipeline, chosen, index, progress)
            if fell := [r for r in results if r.notice]:
                log(f"{s.name} / {name}: {len(fell)} of {len(results)} answers are the "
                    f"extractive fallback; the first because: {fell[0].notice}")
            entry["generators"][name] = {
                "items": len(chosen),
                "seconds": round(time.perf_counter() - t0, 2),
                "overall": summarise(results),
                "per_kind": summarise_by_kind(results),
                "results": [r.to_json() for r in results],
            }
    return metrics
