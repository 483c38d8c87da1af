"""The question analysis: answer types, names, focus terms with synonyms, years, follow-ups,
and that one analysis serves the whole answer."""

from __future__ import annotations

import pytest
from conftest import FakeEmbedder, fake_settings

from rag import Settings, build_index
from rag.errors import QueryError
from rag.pipeline import Pipeline
from rag.question import (
    ANSWER_TYPES,
    analyze,
    answer_type,
    counted_nouns,
    focus_terms,
    question_names,
    wants_latest,
)
from rag.retrieve import Index
from rag.textrules import question_years, year_in


@pytest.mark.parametrize(("question", "kind"), [
    # person
    ("Who won the men's race at the 2022 Marrowgate Marathon?", "person"),
    ("Who is the chief executive of Shamba Pulse?", "person"),
    ("Which judge ruled on the patent dispute?", "person"),
    ("Harbor Robotics CEO", "person"),
    ("Port Calder marathon 2023 winner", "person"),
    # organization
    ("Which firm led Harbor Robotics' Series B round?", "organization"),
    ("Who led the round?", "organization"),
    ("Jabuti acquirer", "organization"),
    ("Litoral Circular Series B lead investor", "organization"),
    ("Which venture firm led Clearmoss's Series A round?", "organization"),
    # place
    ("Where was the 2023 NorthStack Summit held?", "place"),
    ("In which city did Luma Devices hold the launch event?", "place"),
    ("Kestari third plant location", "place"),
    # date
    ("When did Tobias Renn start as chief executive?", "date"),
    ("In what year was the course record set?", "date"),
    ("On what date does the Luma 8 go on sale?", "date"),
    ("Tamsen Fire start date", "date"),
    # money
    ("How much did Harbor Robotics raise in 2021?", "money"),
    ("What was Port Calder's total city budget for 2023?", "money"),
    ("How large was the grant that funded the study?", "money"),
    ("What will a one-way trip cost once the free period ends?", "money"),
    ("How much is the Halloran Prize worth now?", "money"),
    # number
    ("How many employees did Harbour Robotics Labs have?", "number"),
    ("What is the population of Eastbrook?", "number"),
    ("Nieuwe Kade first-year visitor numbers", "number"),
    # percent
    ("By what percentage did Quillfield Energy's revenue grow in 2023?", "percent"),
    ("What share of the vote did he get?", "percent"),
    ("By how much did Port Calder raise property taxes?", "percent"),
    ("In the Nakuru trial, how much less did farmers spend on fertiliser?", "percent"),
    # duration
    ("How long is her contract?", "duration"),
    ("What prison sentence did Dorian Pell receive?", "duration"),
    ("What was Lio Marchetti's winning time?", "duration"),
    ("Okanla-Itori road completion period", "duration"),
    # title
    ("What is Lorna Pettipas's job in Harwick Bay?", "title"),
    ("What position does Brian Odhiambo hold at Shamba Pulse?", "title"),
    ("What was his role at the company he co-founded?", "title"),
    # work
    ("What is the name of the lighter picking arm Corvane launched?", "work"),
    ("What is the title of the Riverside Loop inquiry report?", "work"),
    ("Which novel won the Halloran Prize?", "work"),
    # description
    ("Why did Luma Devices raise the price of the Luma 8?", "description"),
    ("How did Quillfield Energy return to profit?", "description"),
    ("What will SenseTime use the new funding for?", "description"),
    ("What caused the delay?", "description"),
])
def test_answer_types(question, kind):
    assert kind in ANSWER_TYPES
    assert answer_type(question) == kind


@pytest.mark.parametrize(("question", "names"), [
    ("Who led Harbor Robotics' Series B round in March 2021?", ("Harbor Robotics", "Series B")),
    ("How much did the Alibaba-led group invest in SenseTime\u2019s startup?",
     ("Alibaba", "SenseTime")),
    ("What is Ana de la Vega's job?", ("Ana de la Vega",)),
    ("Who is SenseTime's co-founder and CEO?", ("SenseTime",)),
    ("Besides Alibaba, which investors took part?", ("Alibaba",)),
    ("Which Ghanaian city is the 2022 Accra champion from?", ("Accra",)),
    ("How much is the Merrindale-to-Port Wendell pipeline expected to cost?",
     ("Merrindale", "Port Wendell")),
    ("What did the Bank of England say?", ("Bank of England",)),
    ("How many people live in Port Calder and Eastbrook?", ("Port Calder", "Eastbrook")),
    ("how much did harbor robotics raise", ()),
])
def test_question_names(question, names):
    assert question_names(question) == names


def test_focus_terms_carry_synonyms_and_mark_attributes_required():
    focus = {f.word: f for f in focus_terms("Who is Quillfield's chief executive?",
                                            ["Quillfield"])}
    assert set(focus) == {"chief executive"}
    assert focus["chief executive"].required
    assert "ceo" in focus["chief executive"].variants
    assert analyze("What is the population of Eastbrook?").required == ("population",)
    assert analyze("How much revenue did Mantlepoint report?").required == ("revenue",)
    # class nouns and question words are not focus terms; verbs are, with synonyms
    led = {f.word: f for f in analyze("Which firm led the round?").focus}
    assert "firm" not in led and "spearheaded" in led["led"].variants
    assert not led["led"].required


def test_years_financial_years_and_counted_nouns():
    assert analyze("What was the budget for 2021-22?").years == ("2021-22",)
    assert question_years("Who won in 2019 and 2020/21?") == ("2020-21", "2019")
    assert year_in("2021-22", "the 2021/22 budget") and year_in("2021-22", "in 2021–2022")
    assert not year_in("2021-22", "in 2021 and 2022")
    assert counted_nouns("How many different fish species did they sample?") == \
        ("fish", "species")
    assert counted_nouns("How many spectators watched the final?") == ("spectators",)
    assert counted_nouns("What is the population?") == ()


@pytest.mark.parametrize(("question", "latest"), [
    ("Who is the CEO of Quillfield?", True),
    ("Who is the head coach of Ravensmoor Athletic now?", True),
    ("What was the latest round Vantor raised?", True),
    ("Tellmark CEO", True),
    ("Who was the CEO of Quillfield in 2021?", False),
    ("How much did Harbor Robotics raise in 2021?", False),
])
def test_questions_about_the_current_state(question, latest):
    assert wants_latest(question, answer_type(question)) is latest


def test_follow_up_leans_on_the_earlier_question():
    history = [{"role": "user", "content": "How much did Clearmoss raise in its Series A?"},
               {"role": "assistant", "content": "$12.5 million"}]
    q = analyze("Who led that round?", history)
    assert q.follow_up and q.retrieval_text.startswith("How much did Clearmoss")
    assert q.names == ("Clearmoss", "Series A")
    assert q.answer_type == "organization"
    alone = analyze("What does Suning sell to shoppers in China?", history)
    assert not alone.follow_up and alone.names == ("Suning", "China")


def test_invalid_questions_are_refused_with_one_line():
    with pytest.raises(QueryError, match="empty"):
        analyze("   ")
    with pytest.raises(QueryError, match="keep it under 2000"):
        analyze("x" * 2001)


def test_one_analysis_serves_the_whole_answer(tmp_path, monkeypatch):
    """The question is validated, analysed and embedded once per answer, and retrieval and
    the reader both use that one vector."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.md").write_text("---\ntitle: Ferry\ndate: 2024-03-01\n---\n\nThe Velmora "
                                 "ferry terminal will cost 48 million euros, the council said.")
    embedder = FakeEmbedder()
    build_index(fake_settings(corpus, tmp_path / "index"), embedder=embedder)
    index = Index(tmp_path / "index", fake_settings(corpus, tmp_path / "index"),
                  embedder=embedder)
    pipeline = Pipeline(index)
    import rag.question as question_module

    calls = {"analyze": 0, "validate": 0}
    real_analyze, real_validate = question_module.analyze, question_module.validate_question

    def counting_analyze(*a, **kw):
        calls["analyze"] += 1
        return real_analyze(*a, **kw)

    def counting_validate(*a, **kw):
        calls["validate"] += 1
        return real_validate(*a, **kw)

    monkeypatch.setattr("rag.retrieve.analyze", counting_analyze)
    monkeypatch.setattr(question_module, "validate_question", counting_validate)
    embedder.reset()
    answer = pipeline.ask("How much will the Velmora ferry terminal cost?")
    assert answer.short_answer.text == "48 million euros"
    assert calls == {"analyze": 1, "validate": 1}
    assert embedder.query_calls == 1


def test_settings_are_unchanged_by_analysis():
    assert Settings().k == 5
