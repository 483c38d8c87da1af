"""``rag eval``: known-answer tests of every figure on hand-made answers, the gate, the command."""

from __future__ import annotations

import json

import pytest
from conftest import REPO, SEED_CORPUS

import rag.embed
import rag.evaluate
import rag.gate
import rag.gold
import rag.scoring
from rag.cli import main
from rag.errors import RagError
from rag.evaluate import SHIPPED_SETS
from rag.gate import check_gate, gate, load_thresholds, thresholds_for
from rag.gold import GoldItem, load_gold
from rag.scoring import (
    METRICS,
    answer_correct,
    best_f1,
    citation_correct,
    exact_match,
    faithful_sentences,
    normalize_answer,
    score_answer,
    sentence_supported,
    strip_markers,
    summarise,
    summarise_by_kind,
    token_f1,
)
from rag.types import Answer, Chunk, Citation, Hit, ShortAnswer

# -- hand-made answers -------------------------------------------------------------------------

S1 = "Alibaba led a group of investors that poured $600 million into SenseTime."
S2 = "The round values the company at more than $4.5 billion."
S3 = "SenseTime is working with Suning on a store of the future."
S4 = "Its chief executive is Li Xu."
ARTICLE = " ".join((S1, S2, S3, S4))


def span(sentence: str) -> tuple[int, int]:
    at = ARTICLE.index(sentence)
    return at, at + len(sentence)


A1, A2, A3 = span(S1), span(S2), span(S3)
EVIDENCE = "poured $600 million into SenseTime"
SPANS = [("doc-1", ARTICLE.find(EVIDENCE), ARTICLE.find(EVIDENCE) + len(EVIDENCE))]


def chunk(start: int, end: int, doc: str = "doc-1") -> Chunk:
    return Chunk(id=f"{doc}:{start}", article_id=doc, start=start, end=end,
                 text=ARTICLE[start:end])


def hit(start: int, end: int, rank: int, doc: str = "doc-1") -> Hit:
    return Hit(chunk=chunk(start, end, doc), article={"title": "t"}, score=1.0 / rank,
               dense=0.5, rank=rank)


def cite(n: int, start: int, end: int, doc: str = "doc-1", text: str | None = None) -> Citation:
    return Citation(n=n, doc_id=doc, title="t", url="", date="", chunk_id=f"{doc}:{start}",
                    chunk_start=start, chunk_end=end, start=start, end=end,
                    quote=ARTICLE[start:end], text=ARTICLE[start:end] if text is None else text,
                    score=0.9)


def answer(text: str, citations=(), hits=(), abstained=False, total_ms=10.0) -> Answer:
    return Answer(question="q", text=text, citations=tuple(citations), abstained=abstained,
                  timings=(("total_ms", total_ms),), hits=tuple(hits))


def item(kind="number", answers=("$600 million",), evidence=(EVIDENCE,), id="x") -> GoldItem:
    return GoldItem(id=id, question="q", answers=tuple(answers), evidence=tuple(evidence),
                    kind=kind)


UNANSWERABLE = item(kind="unanswerable", answers=(), evidence=(), id="u")


# -- normalisation, accuracy, F1 ---------------------------------------------------------------


def test_normalize_answer():
    assert normalize_answer("The “Store of the Future,” [1]") == "store of future 1"
    assert normalize_answer("  MIT’s   Intelligence\nQuest!! ") == "mits intelligence quest"
    assert normalize_answer("$1,000 — a 'deal'") == "1000 deal"
    assert normalize_answer('An "AI" ecosystem') == "ai ecosystem"
    assert normalize_answer("") == ""


def test_strip_markers():
    assert strip_markers("It rose [1]. It fell [2, 3].") == "It rose. It fell."


def test_answer_correct():
    said = "Alibaba led investors that poured $600 million into SenseTime [1]."
    assert answer_correct(said, ["600 million"])
    assert answer_correct(said, ["nothing", "$600 Million"])
    assert answer_correct("It is the “store of the future” [2].", ["the store of the future"])
    assert answer_correct("MIT’s Intelligence Quest", ["MIT's Intelligence Quest"])
    # whole words only: "5" is not found in "2015", and a marker number is not an answer
    assert not answer_correct("It was founded in 2015 [5].", ["5"])
    assert not answer_correct(said, ["$410 million"])
    assert not answer_correct(said, [])
    assert not answer_correct(said, ["the"])  # nothing left once normalised


def test_token_f1():
    assert token_f1("Northgate Capital", "Northgate Capital") == 1.0
    assert token_f1("the Series C round", "Round C") == pytest.approx(0.8)
    assert token_f1("led by Northgate Capital", "Northgate Capital") == pytest.approx(2 / 3)
    assert token_f1("Aldermoor Partners", "Northgate Capital") == 0.0
    assert token_f1("", "") == 1.0 and token_f1("a", "x") == 0.0
    # the best over the gold answers, markers removed
    assert best_f1("Northgate Capital [1].", ["Ridgeline", "Northgate Capital"]) == 1.0
    assert best_f1("Anything [1]", []) == 0.0


# -- citations, retrieval, faithfulness, abstention ----------------------------------------------


def test_citation_correct_uses_the_cited_passage_span():
    assert citation_correct(cite(1, *A1), SPANS)
    assert citation_correct(cite(1, A1[1] - 10, A2[1]), SPANS)  # overlaps the quote's end
    assert not citation_correct(cite(1, *A2), SPANS)  # the next sentence
    assert not citation_correct(cite(1, *A1, doc="doc-2"), SPANS)  # another article
    assert not citation_correct(cite(1, *A1), [])


def test_citation_precision_and_recall():
    good = answer("Alibaba's group put in $600 million [1]. It values SenseTime at $4.5 billion "
                  "[2].", [cite(1, *A1), cite(2, *A2)], [hit(*A1, 1)])
    wrong = answer("The round values the company at more than $4.5 billion [1].",
                   [cite(1, *A2)], [hit(*A2, 1), hit(*A1, 2)])
    none = answer("The articles don't say.", abstained=True, hits=[hit(*A3, 1)])
    results = [score_answer(item(id="a"), good, SPANS), score_answer(item(id="b"), wrong, SPANS),
               score_answer(item(id="c"), none, SPANS)]
    assert [(r.citations, r.correct_citations) for r in results] == [(2, 1), (1, 0), (0, 0)]
    f = summarise(results)
    assert f["citations"] == 3
    assert f["citation_precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert f["citation_recall"] == pytest.approx(1 / 3, abs=1e-4)
    # retrieval from the answer's own hits: ranks 1, 2, none
    assert [r.rank for r in results] == [1, 2, None]
    assert f["hit_at_1"] == pytest.approx(1 / 3, abs=1e-4)
    assert f["hit_at_5"] == pytest.approx(2 / 3, abs=1e-4)
    assert f["mrr"] == pytest.approx((1 + 0.5) / 3, abs=1e-4)
    # accuracy: only "a" says $600 million; an abstention scores 0
    assert [r.correct for r in results] == [True, False, False]
    assert f["accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert results[2].f1 == 0.0


def test_citations_of_unanswerable_items_are_not_in_precision():
    cited = answer("SenseTime works with Suning [1].", [cite(1, *A3)], [hit(*A3, 1)])
    r = score_answer(UNANSWERABLE, cited, [])
    f = summarise([r])
    assert f["citation_precision"] is None and f["citation_recall"] is None
    assert f["accuracy"] is None and f["hit_at_1"] is None
    assert f["abstain_rate"] == 0.0 and f["false_abstain_rate"] is None
    assert f["faithfulness"] == 1.0  # the sentence is still checked against what it cites


def test_sentence_supported_share():
    passage = "Alibaba led a group of investors that poured $600 million into SenseTime."
    # 6 of its 8 content words (all but "who", "put") are in the passage: 75%
    assert sentence_supported("Alibaba led investors who put $600 million into SenseTime.",
                              [passage])
    # 2 of 5 (alibaba, sensetim; not tencent, invest, 900): 40%
    assert not sentence_supported("Alibaba and Tencent invested 900 in SenseTime.", [passage])
    # 7 of 10 content words = exactly 70%: supported
    assert sentence_supported("Alibaba led group investors poured million SenseTime red blue "
                              "green.", [passage])
    # stemmed: "pours" and "poured" are both "pour"
    assert sentence_supported("SenseTime pours.", [passage])
    assert not sentence_supported("Alibaba led the round.", [])  # cites nothing


def test_faithfulness_uses_each_sentences_own_citations():
    a = answer("Alibaba led investors who poured $600 million into SenseTime [1]. "
               "Its chief executive is Li Xu [1]. SenseTime works with Suning [2]. "
               "The company is valued at $4.5 billion.",
               [cite(1, *A1), cite(2, *A3)])
    assert faithful_sentences(a) == [True, False, True, False]
    # a marker pointing at no citation is no support
    assert faithful_sentences(answer("Alibaba led investors [7].", [cite(1, *A1)])) == [False]
    r = score_answer(item(), a, SPANS)
    assert (r.sentences, r.supported_sentences) == (4, 2)
    # abstentions are left out of faithfulness
    abstained = score_answer(item(), answer("The articles don't say.", abstained=True), SPANS)
    assert abstained.sentences == 0
    assert summarise([r, abstained])["faithfulness"] == 0.5


def test_abstention_rates_and_latency():
    yes = answer("The articles don't say.", abstained=True, total_ms=10)
    no = answer("SenseTime works with Suning [1].", [cite(1, *A3)], total_ms=30)
    results = [
        score_answer(UNANSWERABLE, yes, []), score_answer(UNANSWERABLE, yes, []),
        score_answer(UNANSWERABLE, no, []), score_answer(UNANSWERABLE, no, []),
        score_answer(item(), yes, SPANS), score_answer(item(), no, SPANS),
        score_answer(item(), no, SPANS), score_answer(item(), no, SPANS),
    ]
    f = summarise(results)
    assert (f["answerable"], f["unanswerable"]) == (4, 4)
    assert f["abstain_rate"] == 0.5
    assert f["false_abstain_rate"] == 0.25
    assert f["latency_p50_ms"] == 30.0
    assert f["latency_p95_ms"] == 30.0
    by_kind = summarise_by_kind(results)
    assert list(by_kind) == ["number", "unanswerable"]
    assert by_kind["unanswerable"]["abstain_rate"] == 0.5
    assert by_kind["number"]["false_abstain_rate"] == 0.25


def test_exact_match():
    assert exact_match("Northgate Capital", ["Northgate Capital", "Northgate"])
    assert exact_match("$45 million", ["45 million"])
    assert not exact_match("Capital", ["Northgate Capital"])
    assert not exact_match("", ["x"])


def short(text: str, start: int = 0) -> ShortAnswer:
    return ShortAnswer(text, "doc-1", start, start + len(text), 1)


def test_short_answer_figures_count_only_items_that_expect_one():
    right = Answer(question="q", text="$600 million — it poured $600 million [1].",
                   citations=(cite(1, *A1),), abstained=False, timings=(("total_ms", 1.0),),
                   short_answer=short("$600 million"))
    partly = Answer(question="q", text="600 — it poured $600 million [1].",
                    citations=(cite(1, *A1),), abstained=False, timings=(("total_ms", 1.0),),
                    short_answer=short("600 million dollars"))
    none = answer("Alibaba led a group [1].", [cite(1, *A1)])
    why = item(kind="why/how", answers=("poured $600 million",))
    results = [score_answer(item(), right, SPANS), score_answer(item(), partly, SPANS),
               score_answer(item(), none, SPANS), score_answer(why, none, SPANS)]
    f = summarise(results)
    assert f["short_items"] == 3  # the why/how item expects sentences, not a short answer
    assert f["short_em"] == round(1 / 3, 4)
    # "600 million dollars" against "$600 million": 2 of 3 words, F1 0.8; no short answer: 0
    assert f["short_f1"] == round((1.0 + 0.8 + 0.0) / 3, 4)
    assert results[0].short == "$600 million" and results[2].short is None


def test_a_conflict_is_right_only_with_every_value():
    conflict = GoldItem(id="c", question="q", answers=("$1.2 billion", "$1.34 billion"),
                        evidence=(EVIDENCE,), kind="conflict",
                        all_of=("$1.2 billion", "$1.34 billion"))
    both = answer("$1.34 billion — the articles differ: $1.34 billion (2022) [1]; $1.2 billion "
                  "(2021) [1].", [cite(1, *A1)])
    one = answer("$1.34 billion [1].", [cite(1, *A1)])
    assert score_answer(conflict, both, SPANS).correct
    assert not score_answer(conflict, one, SPANS).correct


def test_gold_items_name_their_files_and_expected_type(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"id": "1", "question": "q", "answers": ["a"], "evidence": ["e"],
                                "kind": "conflict", "type": "money", "docs": ["a.md", "b.md"],
                                "all_of": ["a", "b"]}) + "\n")
    (g,) = load_gold(path)
    assert g.files == ("a.md", "b.md") and g.type == "money" and g.all_of == ("a", "b")
    assert g.wants_short


def test_summarise_empty_figures_are_none():
    f = summarise([])
    assert f["items"] == 0
    assert all(f[k] is None for k in METRICS)


# -- the gate ----------------------------------------------------------------------------------


def metrics_with(overall: dict, set_name="seed", generator="extractive") -> dict:
    return {"sets": {set_name: {"generators": {generator: {"overall": overall}}}}}


def test_gate_lines():
    figures = {"accuracy": 0.41, "hit_at_1": 0.8, "false_abstain_rate": 0.12,
               "abstain_rate": None}
    assert gate(figures, {"accuracy": 0.43}, "seed") == ["seed: accuracy 0.41 < 0.43"]
    assert gate(figures, {"accuracy": 0.41, "hit_at_1": 0.78}) == []
    assert gate(figures, {"max_false_abstain_rate": 0.1}, "nb") == [
        "nb: false_abstain_rate 0.12 > 0.1"]
    assert gate(figures, {"abstain_rate": 0.5}) == []  # not measured: not gated


def test_thresholds_file_one_figure_above_fails(tmp_path):
    measured = {"hit_at_1": 0.8333, "accuracy": 0.5185, "citation_recall": 0.6667,
                "false_abstain_rate": 0.1667}
    path = tmp_path / "thresholds.toml"
    path.write_text("[seed]\nhit_at_1 = 0.81\naccuracy = 0.49\ncitation_recall = 0.64\n"
                    "max_false_abstain_rate = 0.19\n")
    assert check_gate(metrics_with(measured), load_thresholds(path)) == []
    path.write_text("[seed]\nhit_at_1 = 0.81\naccuracy = 0.53\n")
    assert check_gate(metrics_with(measured), load_thresholds(path)) == [
        "seed: accuracy 0.5185 < 0.53"]
    # a set without a section, or another generator without a sub-table, is not gated
    assert check_gate(metrics_with(measured, "mine"), load_thresholds(path)) == []
    assert check_gate(metrics_with(measured, generator="smollm2"), load_thresholds(path)) == []
    path.write_text("[seed]\naccuracy = 0.1\n[seed.smollm2]\naccuracy = 0.6\n")
    t = load_thresholds(path)
    assert thresholds_for(t, "seed", "extractive") == {"accuracy": 0.1}
    assert check_gate(metrics_with(measured, generator="smollm2"), t) == [
        "seed (smollm2): accuracy 0.5185 < 0.6"]


def test_thresholds_file_errors(tmp_path):
    path = tmp_path / "t.toml"
    assert load_thresholds(tmp_path / "absent.toml") == {}
    with pytest.raises(RagError, match="does not exist"):
        load_thresholds(tmp_path / "absent.toml", required=True)
    path.write_text("[seed]\naccuracy = \n")
    with pytest.raises(RagError, match="not valid TOML"):
        load_thresholds(path)
    path.write_text("[seed]\naccuracyy = 0.5\n")
    with pytest.raises(RagError, match="accuracyy"):
        load_thresholds(path)
    path.write_text("[seed]\naccuracy = 'high'\n")
    with pytest.raises(RagError, match="must be a number"):
        load_thresholds(path)


def test_shipped_thresholds_cover_every_set_and_a_language_model():
    t = load_thresholds(REPO / "eval" / "thresholds.toml", required=True)
    assert set(t) == {name for name, _, _ in SHIPPED_SETS}
    for name in t:
        limits = thresholds_for(t, name, "extractive")
        # what the reader is judged by: short answers, citations and abstention
        assert {"hit_at_1", "mrr", "accuracy", "short_em", "short_f1", "citation_precision",
                "citation_recall", "abstain_rate", "max_false_abstain_rate"} <= set(limits)
        assert all(0 <= v <= 1 for v in limits.values())
        # gates that cannot fail are left out: extractive answers quote their sentences
        assert "faithfulness" not in limits
    assert "hit_at_5" not in thresholds_for(t, "seed", "extractive")  # one article, all read
    llm = thresholds_for(t, "newsbench", "smollm2")
    assert {"accuracy", "short_em", "faithfulness", "max_false_abstain_rate"} <= set(llm)


# -- the command -------------------------------------------------------------------------------


def test_eval_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "question": "q"}\n')
    assert main(["eval", "--gold", str(bad), "--corpus", str(SEED_CORPUS)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "bad.jsonl:1" in err[0]

    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps({"id": "1", "question": "q", "answers": [], "evidence": [],
                                "kind": "unanswerable"}) + "\n")
    assert main(["eval", "--gold", str(good), "--corpus", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0] and "does not exist" in err[0]

    assert main(["eval", "--gold", str(tmp_path / "absent.jsonl")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", "--index", str(tmp_path)]) == 1
    assert "--gold" in capsys.readouterr().err
    assert main(["eval", "--gold", str(good), "--limit", "0"]) == 1
    assert "--limit" in capsys.readouterr().err


SMALL_GOLD = [
    {"id": "s1", "question": "How much did the Alibaba-led group invest in SenseTime?",
     "answers": ["$600 million", "600 million"],
     "evidence": ["Alibaba led a group of investors that poured $600 million into SenseTime"],
     "kind": "number"},
    {"id": "s2", "question": "Which retailer is SenseTime working with on the store of the "
     "future?", "answers": ["Suning"],
     "evidence": ["It’s working with China’s largest consumer electronics retailer Suning"],
     "kind": "fact"},
    {"id": "s3", "question": "Who is its CEO?", "answers": ["Li Xu"],
     "evidence": ["Li Xu"], "kind": "follow-up",
     "history": [{"role": "user", "content": "Which company did Alibaba invest in?"}]},
    {"id": "s4", "question": "What was the population of Lisbon in 1755?", "answers": [],
     "evidence": [], "kind": "unanswerable"},
]


@pytest.mark.slow
def test_eval_command_end_to_end(tmp_path, capsys, monkeypatch, real_embedder):
    """``rag eval`` on 4 questions over the seed corpus with the real bundled model (on torch,
    already loaded: no ONNX export), writing the report, the JSON, and the gate's exit code."""
    monkeypatch.setenv("RAG_EMBED_BACKEND", "torch")
    monkeypatch.setattr(rag.embed, "load_embedder", lambda *a, **k: real_embedder)
    gold = tmp_path / "mini.jsonl"
    gold.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in SMALL_GOLD))
    none = tmp_path / "none.toml"
    none.write_text("")
    common = ["eval", "--gold", str(gold), "--corpus", str(SEED_CORPUS),
              "--index", str(tmp_path / "index"), "--thresholds", str(none)]

    report = tmp_path / "report"
    assert main(common + ["--report", str(report), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    run = metrics["sets"]["mini"]["generators"]["extractive"]
    assert run["items"] == 4 and len(run["results"]) == 4
    overall = run["overall"]
    assert set(METRICS) <= set(overall)
    assert (overall["answerable"], overall["unanswerable"]) == (3, 1)
    assert overall["hit_at_5"] == 1.0  # one short article: the evidence is always retrieved
    assert set(run["per_kind"]) == {"number", "fact", "follow-up", "unanswerable"}
    assert metrics["gate"] == {"thresholds": str(none), "checked": True, "misses": [],
                               "passed": True}
    assert set(metrics["versions"]) >= {"rag", "torch", "transformers", "sentence-transformers",
                                        "faiss", "onnxruntime"}
    md = (report / "report.md").read_text()
    assert "## mini" in md and "| extractive |" in md and "per kind" in md
    assert "bundled:all-MiniLM-L6-v2" in md and "torch" in md
    png = (report / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000

    # a section named after the set that cannot be met: exit 1, one line per miss
    impossible = tmp_path / "impossible.toml"
    impossible.write_text("[mini]\naccuracy = 1.01\nmax_false_abstain_rate = -0.01\n")
    code = main(common[:-1] + [str(impossible), "--report", str(tmp_path / "r2")])
    out, err = capsys.readouterr()
    assert code == 1
    assert "mini: accuracy " in err and "< 1.01" in err
    assert "mini: false_abstain_rate " in err and "> -0.01" in err
    assert "extractive" in out and (tmp_path / "r2" / "report.md").exists()
    assert "missed: mini: accuracy" in (tmp_path / "r2" / "report.md").read_text()
    # --no-gate: the same run passes
    assert main(common[:-1] + [str(impossible), "--no-gate", "--report",
                               str(tmp_path / "r3")]) == 0
    capsys.readouterr()
