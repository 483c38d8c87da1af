"""The gold files and the newsbench corpus: quotes are verbatim, kinds are well covered."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import NEWSBENCH, REPO, SEED_CORPUS

from rag.errors import RagError
from rag.evaluate import KINDS, load_gold
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
