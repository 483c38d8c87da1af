"""The date filter (``since`` / ``until``): parsing, known answers over a small dated corpus,
the filter applied before the top-k cut, a property test, and the pipeline and CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from conftest import FakeEmbedder, fake_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rag.embed
from rag import build_index, open_index
from rag.cli import main
from rag.config import BUNDLED_EMBEDDER
from rag.dates import NO_DAY, date_range, day_of, parse_bound
from rag.errors import QueryError, RagError
from rag.pipeline import Pipeline
from rag.retrieve import Index

#: (file, date, text): harbour stories over four years, one undated, one with a time, one
#: that gives only its year.
STORIES = [
    ("ferry-2021.md", "2021-04-12", "The Velmora harbour ferry terminal was approved. "
     "The harbour ferry will cost 20 million euros."),
    ("ferry-2022.md", "2022-06-30", "Velmora harbour ferry terminal construction began. "
     "The harbour ferry budget rose to 31 million euros."),
    ("ferry-2023.md", "2023-01-05T09:30:00Z", "The Velmora harbour ferry terminal opened. "
     "Harbour ferry passengers numbered 4,000 on the first day."),
    ("ferry-2024.md", "2024-12-31", "Velmora harbour ferry terminal traffic doubled. "
     "The harbour ferry now carries 8,000 passengers a day."),
    ("ferry-2022-year.md", "2022", "A harbour ferry review for Velmora, published that year."),
    ("ferry-undated.md", "", "Harbour ferry timetable for Velmora, with no date at all."),
    ("orchard-2023.md", "2023-09-15", "Apple growers in Quarnholt expect a late harvest."),
]


def write_story(folder: Path, name: str, date: str, text: str) -> None:
    front = f"title: {name[:-3]}\n" + (f"date: {date}\n" if date else "")
    (folder / name).write_text(f"---\n{front}---\n\n{text}\n")


@pytest.fixture(scope="module")
def dated(tmp_path_factory) -> Index:
    root = tmp_path_factory.mktemp("dated")
    corpus = root / "corpus"
    corpus.mkdir()
    for story in STORIES:
        write_story(corpus, *story)
    emb = FakeEmbedder()
    s = fake_settings(corpus, root / "index")
    build_index(s, embedder=emb)
    return Index(s.index, s, embedder=emb)


def paths(hits) -> list[str]:
    return [h.article["path"] for h in hits]


# -- parsing --------------------------------------------------------------------------------------


def test_bounds_known_answers():
    day = lambda *a: dt.date(*a).toordinal()  # noqa: E731
    assert parse_bound("2024-03-05", end=False) == parse_bound("2024-03-05", end=True) \
        == day(2024, 3, 5)
    assert parse_bound("2024", end=False) == day(2024, 1, 1)
    assert parse_bound("2024", end=True) == day(2024, 12, 31)
    assert parse_bound("2024-02", end=True) == day(2024, 2, 29)
    assert parse_bound("2023-02", end=True) == day(2023, 2, 28)
    assert parse_bound(" 2024-3-5 ", end=False) == day(2024, 3, 5)
    assert date_range(None, None) is None
    assert date_range("2024", None) == (day(2024, 1, 1), 10**7)
    assert date_range(None, "2024-06") == (0, day(2024, 6, 30))


@pytest.mark.parametrize("bad", ["", "yesterday", "2024-13-01", "2024-02-30", "24-01-01",
                                 "2024/01/01", "2024-01-01T10:00", "01-02-2024", "0000"])
def test_malformed_dates_are_one_line_saying_the_format(bad):
    for since, until in ((bad, None), (None, bad)):
        with pytest.raises(QueryError) as raised:
            date_range(since, until)
        message = str(raised.value)
        assert "\n" not in message
        assert "YYYY-MM-DD" in message and repr(bad) in message
        assert message.startswith("since" if since is not None else "until")


def test_since_after_until_is_refused():
    with pytest.raises(QueryError, match="after until"):
        date_range("2024-05-01", "2024-04-30")
    assert date_range("2024-05-01", "2024-05-01")  # one day is fine


def test_article_days():
    assert day_of("2023-01-05T09:30:00Z") == day_of("2023-01-05") == dt.date(2023, 1, 5).toordinal()
    assert day_of("2022") == dt.date(2022, 1, 1).toordinal()
    assert day_of("2022-06") == dt.date(2022, 6, 1).toordinal()
    assert day_of("Tue, 05 Mar 2024 10:00:00 GMT") == dt.date(2024, 3, 5).toordinal()
    for nothing in ("", "soon", "2024-02-30", "n/a"):
        assert day_of(nothing) == NO_DAY


# -- known answers ----------------------------------------------------------------------------


def test_no_filter_finds_every_harbour_story(dated):
    assert set(paths(dated.search("harbour ferry Velmora", k=10))) >= {
        "ferry-2021.md", "ferry-2024.md", "ferry-undated.md"}


@pytest.mark.parametrize(("since", "until", "expected"), [
    ("2023", None, {"ferry-2023.md", "ferry-2024.md", "orchard-2023.md"}),
    (None, "2021-12-31", {"ferry-2021.md"}),
    ("2022", "2022", {"ferry-2022.md", "ferry-2022-year.md"}),
    ("2022-06-30", "2023-01-05", {"ferry-2022.md", "ferry-2023.md"}),  # inclusive, time ignored
    ("2022-07", "2022-12", set()),
    ("2024-12-31", None, {"ferry-2024.md"}),
    ("2025", None, set()),
])
def test_filter_known_answers(dated, since, until, expected):
    hits = dated.search("harbour ferry Velmora", k=10, since=since, until=until)
    assert set(paths(hits)) == expected
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))


def test_the_filter_applies_to_dense_only_and_without_the_boost(dated):
    for kw in ({"hybrid": False}, {"news": False}):
        hits = dated.search("harbour ferry passengers", k=10, since="2023-06", **kw)
        assert paths(hits) == ["ferry-2024.md", "orchard-2023.md"]


def test_malformed_filter_is_refused_before_embedding(dated):
    emb = dated.embedder
    before = emb.query_calls
    with pytest.raises(QueryError, match="YYYY-MM-DD"):
        dated.search("harbour ferry", since="last year")
    assert emb.query_calls == before


def test_the_filter_applies_before_the_top_k_cut(tmp_path):
    """Sixty close matches from 2020 fill every retriever's candidate list; the one weak
    match from 2024 is still found when the filter asks for it."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(60):
        write_story(corpus, f"old{i:02d}.md", "2020-05-01",
                    f"Harbour ferry fares in Velmora rose again, report {i}.")
    write_story(corpus, "new.md", "2024-02-02", "Quarnholt orchards and a ferry.")
    emb = FakeEmbedder()
    s = fake_settings(corpus, tmp_path / "index")
    build_index(s, embedder=emb)
    index = Index(s.index, s, embedder=emb)
    unfiltered = index.search("harbour ferry fares Velmora", k=50)
    assert "new.md" not in paths(unfiltered)
    assert paths(index.search("harbour ferry fares Velmora", k=5, since="2024")) == ["new.md"]
    assert paths(index.search("harbour ferry fares Velmora", k=5, until="2019")) == []


@pytest.mark.parametrize(("store", "stories"), [("flat", 300), ("ivf", 300), ("hnsw", 300),
                                               ("ivfpq", 1000)])
def test_the_filter_works_with_every_store(tmp_path, store, stories):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(stories):
        write_story(corpus, f"s{i:03d}.md", f"{2000 + i % 25}-03-0{1 + i % 9}",
                    f"Story {i} about harbour ferry number {i % 17} and boats {i % 5}.")
    emb = FakeEmbedder()
    s = fake_settings(corpus, tmp_path / "index", store=store)
    build_index(s, embedder=emb)
    index = Index(s.index, s, embedder=emb)
    assert index.stats()["store"] == store
    hits = index.search("harbour ferry number 3 boats", k=20, since="2010", until="2011-12")
    assert len(hits) == 20  # 2 years in 25: 24 of 300 stories, 80 of 1000
    assert all(h.article["date"][:4] in ("2010", "2011") for h in hits)


# -- property: every hit is inside the range, and as many as there can be ---------------------

DAYS = st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2025, 12, 31))


def as_bound(date: dt.date, precision: int) -> str:
    return date.isoformat()[: (4, 7, 10)[precision]]


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.one_of(st.none(), st.tuples(DAYS, st.integers(0, 2))),
       b=st.one_of(st.none(), st.tuples(DAYS, st.integers(0, 2))),
       k=st.integers(1, 12), hybrid=st.booleans())
def test_property_every_hit_is_within_the_range(dated, a, b, k, hybrid):
    since = as_bound(*a) if a else None
    until = as_bound(*b) if b else None
    try:
        days = date_range(since, until)
    except QueryError:
        assert since and until  # only since after until is refused
        return
    hits = dated.search("harbour ferry Velmora terminal", k=k, since=since, until=until,
                        hybrid=hybrid)
    inside = {a.path for a in dated.articles
              if days is None or days[0] <= day_of(a.date) <= days[1]}
    assert set(paths(hits)) <= inside
    if days is not None:
        assert all(h.article["date"] for h in hits)  # undated articles are left out
    # the fake embedder's vectors overlap for every story: the dense retriever alone finds
    # every chunk of the articles in range
    chunks = sum(len(a.chunks) for a in dated.articles if a.path in inside)
    assert len(hits) == min(k, chunks)


# -- pipeline, public API and CLI ---------------------------------------------------------------


@pytest.fixture
def fake_model(monkeypatch):
    fake = FakeEmbedder(name=BUNDLED_EMBEDDER, backend="torch")
    monkeypatch.setattr(rag.embed, "load_embedder", lambda *a, **k: fake)
    return fake


@pytest.fixture
def dated_folder(tmp_path, fake_model):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for story in STORIES:
        write_story(corpus, *story)
    assert main(["index", "--corpus", str(corpus), "--index", str(tmp_path / "index")]) == 0
    return tmp_path / "index"


def test_pipeline_and_open_index_take_the_filter(dated_folder):
    index = open_index(dated_folder)
    assert paths(index.search("harbour ferry passengers", k=3, until="2021")) == \
        ["ferry-2021.md"]
    pipeline = Pipeline(index)
    answer = pipeline.ask("How many passengers did the harbour ferry carry?", since="2024")
    assert answer.hits and {h.article["path"] for h in answer.hits} == {"ferry-2024.md"}
    pieces = list(pipeline.stream("How many passengers did the ferry carry?", since="2030"))
    assert pieces[-1].abstained and not pieces[-1].hits  # nothing in range: no answer
    with pytest.raises(RagError, match="YYYY-MM-DD"):
        pipeline.ask("How many passengers?", until="2024-31-12")


def test_cli_search_and_ask_filters(dated_folder, capsys):
    assert main(["search", "harbour ferry", "--index", str(dated_folder), "--k", "10",
                 "--since", "2022", "--until", "2022-12", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert {h["path"] for h in hits} == {"ferry-2022.md", "ferry-2022-year.md"}
    assert main(["ask", "How many passengers did the harbour ferry carry?", "--index",
                 str(dated_folder), "--since", "2024-01-01", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert all(c["date"].startswith("2024") for c in answer["citations"])


@pytest.mark.parametrize("argv", [["search", "ferry", "--since", "2024-1-1x"],
                                  ["ask", "ferry?", "--until", "May 2024"],
                                  ["ask", "ferry?", "--since", "2024", "--until", "2023"]])
def test_cli_bad_dates_are_one_error_line(dated_folder, capsys, argv):
    assert main([*argv, "--index", str(dated_folder)]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "YYYY-MM-DD" in lines[0] or "after until" in lines[0]
    assert captured.out == ""
