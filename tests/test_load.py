"""Reading a corpus folder: formats, metadata, furniture, bad files, stable ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.errors import CorpusError
from rag.load import Skipped, iter_corpus, load_corpus, load_file
from rag.types import Article

from conftest import SEED_ARTICLE, SEED_CORPUS

BODY = (
    "Harbor Robotics, a maker of warehouse robots based in Port Calder, has raised $45 million "
    "in a Series B round led by Northgate Capital, the company said on Tuesday.\n\n"
    "The company plans to use the money to double its engineering team and to open a second "
    "factory next year, chief executive Mara Lind said in an interview."
)

HTML = """<!DOCTYPE html>
<html lang="en"><head>
<title>Harbor Robotics raises $45 million | Example News</title>
<meta property="og:title" content="Harbor Robotics raises $45 million">
<meta property="og:url" content="https://news.example.com/harbor-robotics-series-b">
<link rel="canonical" href="https://news.example.com/harbor-robotics-series-b">
<meta property="article:published_time" content="2022-03-15T09:00:00Z">
<meta name="author" content="Jane Reporter">
<meta property="og:site_name" content="Example News">
</head><body>
<nav><a href="/">Home</a> <a href="/tech">Tech</a></nav>
<article>
<h1>Harbor Robotics raises $45 million</h1>
<p>Harbor Robotics, a maker of warehouse robots based in Port Calder, has raised $45 million in
a Series B round led by Northgate Capital, the company said on Tuesday.</p>
<p>The company plans to use the money to double its engineering team and to open a second
factory next year, chief executive Mara Lind said in an interview.</p>
<p>Existing investors also took part in the round, which values the company at about
$300 million according to people familiar with the matter.</p>
</article>
<footer>Copyright 2022 Example News</footer>
</body></html>
"""


def write(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def load_one(folder: Path, name: str) -> list[Article]:
    return load_file(folder / name, folder)


# -- text and markdown ------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".txt", ".md"])
def test_front_matter_fields_and_extra(tmp_path, suffix):
    write(tmp_path, f"a{suffix}", (
        "---\n"
        "title: Harbor Robotics raises $45 million\n"
        "url: https://news.example.com/harbor\n"
        "date: 2022-03-15\n"
        "author: Jane Reporter\n"
        "source: Example News\n"
        "fictional: true\n"
        "Section: Tech\n"
        "---\n\n" + BODY + "\n"
    ))
    [a] = load_one(tmp_path, f"a{suffix}")
    assert a.title == "Harbor Robotics raises $45 million"
    assert a.url == "https://news.example.com/harbor"
    assert a.date == "2022-03-15"  # a YAML date becomes an ISO string
    assert a.author == "Jane Reporter"
    assert a.source == "Example News"
    assert dict(a.extra) == {"fictional": "true", "section": "Tech"}
    assert a.text == BODY
    assert a.path == f"a{suffix}"
    meta = a.metadata()
    assert meta["fictional"] == "true" and meta["title"] == a.title and meta["path"] == a.path


def test_first_line_title_fallback(tmp_path):
    write(tmp_path, "a.txt", "Harbor Robotics raises $45 million\n\n" + BODY)
    [a] = load_one(tmp_path, "a.txt")
    assert a.title == "Harbor Robotics raises $45 million"
    assert a.text == BODY


def test_no_title_without_a_blank_line_after_the_first_line(tmp_path):
    text = "Harbor Robotics raised money.\nIt said so on Tuesday."
    write(tmp_path, "a.txt", text)
    [a] = load_one(tmp_path, "a.txt")
    assert a.title == ""
    assert a.text == text


def test_markdown_heading_title(tmp_path):
    write(tmp_path, "a.md", "# Harbor Robotics raises $45 million\n" + BODY)
    [a] = load_one(tmp_path, "a.md")
    assert a.title == "Harbor Robotics raises $45 million"
    assert a.text == BODY
    assert not a.text.startswith("#")


def test_furniture_lines_removed(tmp_path):
    write(tmp_path, "a.txt", (
        "---\ntitle: T\n---\n"
        "Skip to main content\n\n"
        + BODY.replace("\n\n", "\n\nAdvertisement\n\n")
        + "\n\nRelated Stories\n\nShare this article\n"
    ))
    [a] = load_one(tmp_path, "a.txt")
    for furniture in ("Skip to main content", "Related Stories", "Advertisement", "Share this"):
        assert furniture not in a.text
    assert a.text == BODY
    # only whole lines are furniture: the words inside a sentence stay
    write(tmp_path, "b.txt", "---\ntitle: T\n---\nShe said to read more about related stories.")
    [b] = load_one(tmp_path, "b.txt")
    assert b.text == "She said to read more about related stories."


def test_crlf_and_bom(tmp_path):
    write(tmp_path, "a.txt", b"\xef\xbb\xbf---\r\ntitle: T\r\n---\r\nLine one.\r\nLine two.\r\n")
    [a] = load_one(tmp_path, "a.txt")
    assert a.title == "T"
    assert a.text == "Line one.\nLine two."


# -- html and json ----------------------------------------------------------------------------


def test_html_via_trafilatura(tmp_path):
    write(tmp_path, "page.html", HTML)
    [a] = load_one(tmp_path, "page.html")
    assert a.title == "Harbor Robotics raises $45 million"
    assert a.url == "https://news.example.com/harbor-robotics-series-b"
    assert a.date == "2022-03-15"
    assert "Northgate Capital" in a.text
    assert "$300 million" in a.text
    assert "<p>" not in a.text and "Copyright 2022" not in a.text
    assert not a.text.startswith(a.title)


def test_json_object(tmp_path):
    obj = {"id": "x1", "title": "T1", "url": "https://e.com/1", "date": "2021-01-02",
           "author": "A", "source": "S", "text": BODY, "tags": ["robots", "funding"]}
    write(tmp_path, "one.json", json.dumps(obj))
    [a] = load_one(tmp_path, "one.json")
    assert (a.title, a.url, a.date, a.author, a.source) == ("T1", "https://e.com/1",
                                                           "2021-01-02", "A", "S")
    assert a.text == BODY
    assert dict(a.extra) == {"tags": "robots, funding"}  # id and text are not extra fields


def test_json_list_uses_body_and_content_fields(tmp_path):
    objs = [
        {"title": "First", "text": "First article text."},
        {"title": "Second", "body": "Second article body."},
        {"title": "Third", "content": "Third article content."},
        {"title": "No text at all"},
    ]
    write(tmp_path, "many.json", json.dumps(objs))
    articles = load_one(tmp_path, "many.json")
    assert [a.title for a in articles] == ["First", "Second", "Third"]
    assert [a.text for a in articles] == ["First article text.", "Second article body.",
                                          "Third article content."]
    assert len({a.id for a in articles}) == 3
    assert all(a.path == "many.json" for a in articles)


def test_jsonl(tmp_path):
    lines = [json.dumps({"id": f"n{i}", "title": f"T{i}", "text": f"Story number {i}."})
             for i in range(3)]
    write(tmp_path, "feed.jsonl", "\n".join(lines[:2]) + "\n\n" + lines[2] + "\n")
    articles = load_one(tmp_path, "feed.jsonl")
    assert [a.title for a in articles] == ["T0", "T1", "T2"]
    assert [a.text for a in articles] == [f"Story number {i}." for i in range(3)]
    assert len({a.id for a in articles}) == 3


# -- bad files --------------------------------------------------------------------------------


def test_bad_files_skipped_with_reasons_while_the_rest_loads(tmp_path):
    write(tmp_path, "good.txt", "Good title\n\n" + BODY)
    write(tmp_path, "sub/good2.md", "# Second\nAnother article about Port Calder.")
    write(tmp_path, "empty.txt", "  \n\n")
    write(tmp_path, "binary.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    write(tmp_path, "latin1.txt", "Caf\xe9 Fran\xe7ais: une histoire.".encode("latin-1"))
    write(tmp_path, "report.pdf", b"%PDF-1.4 not really")
    write(tmp_path, "broken.json", '{"title": "oops", ')
    write(tmp_path, ".hidden/secret.txt", "Never indexed\n\nbecause the folder is hidden.")

    articles, skipped = load_corpus(tmp_path)
    assert sorted(a.title for a in articles) == ["Good title", "Second"]
    reasons = {s.path: s.reason for s in skipped}
    assert set(reasons) == {"empty.txt", "binary.txt", "latin1.txt", "report.pdf", "broken.json"}
    assert "empty" in reasons["empty.txt"]
    assert "binary" in reasons["binary.txt"]
    assert "UTF-8" in reasons["latin1.txt"]
    assert "unsupported file type .pdf" in reasons["report.pdf"]
    assert "invalid JSON" in reasons["broken.json"]

    # iter_corpus yields every (non-hidden) file, with its articles or why it was skipped
    results = {p.relative_to(tmp_path).as_posix(): r for p, r in iter_corpus(tmp_path)}
    assert len(results) == 7
    assert isinstance(results["empty.txt"], Skipped)
    assert [a.title for a in results["sub/good2.md"]] == ["Second"]


def test_missing_corpus_folder(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        load_corpus(tmp_path / "nope")


def test_empty_corpus_folder(tmp_path):
    with pytest.raises(CorpusError, match="is empty"):
        load_corpus(tmp_path)


def test_corpus_of_only_bad_files(tmp_path):
    write(tmp_path, "empty.txt", "")
    with pytest.raises(CorpusError, match="no readable article"):
        load_corpus(tmp_path)


# -- ids and hashes ---------------------------------------------------------------------------


def test_stable_id_and_changing_hash(tmp_path):
    write(tmp_path, "a.txt", "Title\n\nFirst version of the story.")
    [v1] = load_one(tmp_path, "a.txt")
    [v1_again] = load_one(tmp_path, "a.txt")
    assert v1 == v1_again
    write(tmp_path, "a.txt", "Title\n\nSecond version of the story.")
    [v2] = load_one(tmp_path, "a.txt")
    assert v2.id == v1.id
    assert v2.hash != v1.hash
    # metadata is part of the hash too
    write(tmp_path, "a.txt", "Another title\n\nSecond version of the story.")
    [v3] = load_one(tmp_path, "a.txt")
    assert v3.id == v1.id and v3.hash != v2.hash
    # the same content under another name: another id, the same hash
    write(tmp_path, "b.txt", "Another title\n\nSecond version of the story.")
    [copy] = load_one(tmp_path, "b.txt")
    assert copy.id != v3.id and copy.hash == v3.hash


def test_json_item_ids_follow_their_own_id(tmp_path):
    objs = [{"id": "a", "text": "Alpha."}, {"id": "b", "text": "Beta."}]
    write(tmp_path, "f.json", json.dumps(objs))
    first = {a.text: a.id for a in load_one(tmp_path, "f.json")}
    write(tmp_path, "f.json", json.dumps(objs[::-1]))
    second = {a.text: a.id for a in load_one(tmp_path, "f.json")}
    assert first == second


# -- the shipped seed corpus ------------------------------------------------------------------


def test_seed_article():
    assert SEED_ARTICLE.exists()
    articles, skipped = load_corpus(SEED_CORPUS)
    assert skipped == []
    [a] = [a for a in articles if a.path == SEED_ARTICLE.name]
    # the file's title has a no-break space in "High\u00a0Tech"; compare with spaces normalised
    assert " ".join(a.title.split()) == (
        "With $600M AI Investment, Could China Leapfrog the US in High Tech?"
    )
    assert "Skip to main content" not in a.text
    assert "Related Stories" not in a.text
    assert a.text.startswith("Alibaba led a group of investors that poured $600 million")
