"""The gold files and the newsbench corpus: quotes are verbatim, kinds are well covered."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import NEWSBENCH, REPO, SEED_CORPUS

from rag.errors import RagError
from rag.gold import KINDS, load_gold
from rag.load import load_corpus
from rag.question import retrieval_query

SEED_GOLD = REPO / "eval" / "gold.jsonl"
NB_GOLD = NEWSBENCH / "gold.jsonl"


@pytest.fixture(scope="module")
def seed_articles():
    articles, skipped = load_corpus(SEED_CORPUS)
    assert skipped == []
    return articles


@pytest.fixture(scope="module")
def newsbench_articles():
    articles, skipped = load_corpus(NEWSBENCH / "corpus")
    assert skipped == []
    return {a.path: a for a in articles}


def check_well_formed(items):
    assert len({i.id for i in items}) == len(items), "ids are unique"
    for item in items:
        assert item.kind in KINDS
        assert item.question.strip()
        if item.kind == "unanswerable":
            assert not item.evidence and not item.answers, item.id
        else:
            assert item.evidence and item.answers, item.id
        if item.kind == "follow-up":
            assert item.history, item.id
            assert any(t["role"] == "user" for t in item.history)
            assert retrieval_query(item.question, item.history) != item.question


def test_seed_gold_quotes_are_verbatim(seed_articles):
    items = load_gold(SEED_GOLD)
    check_well_formed(items)
    text = "\n".join(a.text for a in seed_articles)
    missing = [(i.id, q) for i in items for q in i.evidence if q not in text]
    assert not missing


def test_seed_gold_kinds():
    items = load_gold(SEED_GOLD)
    kinds = Counter(i.kind for i in items)
    assert len(items) >= 60
    assert kinds["unanswerable"] >= 12
    assert sum(1 for i in items if i.kind == "follow-up" and i.history) >= 8
    assert kinds["paraphrase"] >= 8


def test_newsbench_gold_quotes_are_in_their_doc(newsbench_articles):
    items = load_gold(NB_GOLD)
    check_well_formed(items)
    missing = []
    for item in items:
        if not item.evidence:
            continue
        assert item.doc in newsbench_articles, f"{item.id}: no article {item.doc}"
        body = newsbench_articles[item.doc].text
        missing += [(item.id, q) for q in item.evidence if q not in body]
    assert not missing


def test_newsbench_corpus_and_gold_size(newsbench_articles):
    assert len(newsbench_articles) >= 40
    not_fictional = [p for p, a in newsbench_articles.items()
                     if dict(a.extra).get("fictional") != "true"]
    assert not not_fictional
    items = load_gold(NB_GOLD)
    assert len(items) >= 80
    assert sum(1 for i in items if i.evidence) >= 60


def test_load_gold_names_a_bad_line(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text('{"id": 1, "question": "q", "kind": "fact"}\n{"id": 2, "question": "x"}\n')
    with pytest.raises(RagError, match=r"gold.jsonl:2"):
        load_gold(path)
    path.write_text('{"id": 1, "question": "q", "kind": "trivia"}\n')
    with pytest.raises(RagError, match="unknown kind 'trivia'"):
        load_gold(path)
    with pytest.raises(RagError, match="cannot read gold file"):
        load_gold(tmp_path / "missing.jsonl")


# -- the reader's dev and held-out splits -----------------------------------------------------

READER = REPO / "eval" / "reader"
TYPES = ("person", "organization", "place", "date", "money", "number", "percent", "duration",
         "title", "work", "description")


@pytest.fixture(scope="module", params=["dev", "heldout"])
def split(request):
    articles, skipped = load_corpus(READER / request.param / "corpus")
    assert skipped == []
    by_file: dict[str, list] = {}
    for a in articles:
        by_file.setdefault(Path(a.path).name, []).append(a)
    return request.param, by_file, load_gold(READER / request.param / "gold.jsonl")


def test_reader_split_quotes_are_verbatim_in_their_files(split):
    _, by_file, items = split
    check_well_formed(items)
    missing = []
    for item in items:
        for name in item.files:
            assert name in by_file, f"{item.id}: no article in {name}"
        texts = [a.text for name in item.files for a in by_file[name]]
        missing += [(item.id, q) for q in item.evidence if not any(q in t for t in texts)]
        # the first answer is the article's own words, inside the evidence
        if item.answerable:
            assert item.answers[0] in " ".join(item.evidence), item.id
        for value in item.all_of:
            assert value in " ".join(item.evidence), item.id
    assert not missing


def test_reader_split_covers_every_type_and_kind(split):
    name, by_file, items = split
    answerable = [i for i in items if i.answerable]
    types = Counter(i.type for i in answerable)
    assert all(types[t] >= 3 for t in TYPES), types
    kinds = Counter(i.kind for i in items)
    assert kinds["terse"] >= 20 and kinds["conflict"] >= 8 and kinds["latest"] >= 8
    assert kinds["follow-up"] >= 8
    share = kinds["unanswerable"] / len(items)
    assert 0.2 <= share <= 0.3, share
    suffixes = Counter(Path(f).suffix for f in by_file)
    assert {".md", ".html", ".jsonl"} <= set(suffixes)
    assert all(dict(a.extra).get("fictional") == "true"
               for f in by_file if f.endswith(".md") for a in by_file[f])


def test_reader_splits_are_large_enough_and_apart():
    dev = load_gold(READER / "dev" / "gold.jsonl")
    heldout = load_gold(READER / "heldout" / "gold.jsonl")
    assert len(dev) + len(heldout) >= 300 and len(heldout) >= 150
    files = {s: {p.name for p in (READER / s / "corpus").rglob("*") if p.is_file()}
             for s in ("dev", "heldout")}
    articles = sum(len(load_corpus(READER / s / "corpus")[0]) for s in files)
    assert articles >= 100
    assert not files["dev"] & files["heldout"]
    assert not {i.question for i in dev} & {i.question for i in heldout}


def test_search_result_snippets_start_with_their_date():
    snippets = [a for s in ("dev", "heldout")
                for a in load_corpus(READER / s / "corpus")[0] if a.path.endswith(".jsonl")]
    assert len(snippets) >= 20
    for a in snippets:
        assert a.text.rstrip().endswith(("...", "…")), a.path
        assert a.date, f"{a.path}: the leading date is the article's date"
