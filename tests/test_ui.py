"""The chat page's logic without a browser: escaping, rendering, upload names, the upload flow."""

from __future__ import annotations

import html
import json
import re

import pytest
from conftest import FakeEmbedder, fake_settings

from rag import build_index
from rag.corpus import safe_name, unique_path
from rag.errors import CorpusError, RagError
from rag.index import IndexWriter
from rag.types import Answer, Citation, ShortAnswer
from rag.ui import MAX_K, Library, md_text, render_answer, render_sources

PAYLOAD = '<img src=x onerror="alert(1)"> and <script>alert(2)</script>'
TEXT = ("The harbour authority of Velmora approved a new ferry terminal on Tuesday. "
        "It will cost 48 million euros and open in 2029. {payload} The mayor welcomed it.")


def answer_for(text: str, quote_start: int, quote_end: int, **kw) -> Answer:
    cite = Citation(n=1, doc_id="d1", title=kw.pop("title", "Ferry <b>news</b>"),
                    url=kw.pop("url", "https://example.org/a?x=1&y=2"), date="2026-03-01",
                    chunk_id="d1:0", chunk_start=10, chunk_end=10 + len(text), start=10 + quote_start,
                    end=10 + quote_end, quote=text[quote_start:quote_end], text=text, score=0.8)
    return Answer(question=kw.pop("question", "How much <i>will</i> it cost?"),
                  text=kw.pop("answer", "It will cost 48 million euros [1]."),
                  citations=(cite,), abstained=False, **kw)


# -- rendering ----------------------------------------------------------------------------------


def test_md_text_leaves_no_markup():
    out = md_text(PAYLOAD + " **bold** [x](javascript:alert(3)) $x$")
    assert "<" not in out and ">" not in out
    assert "**" not in out and "](" not in out and "$x$" not in out


def test_md_text_turns_no_address_into_a_link():
    import markdown_it  # CommonMark; the page's own autolinking is checked in the browser tests

    text = "See https://evil.example/login or www.evil.example, mail a@evil.example.\n1986. A list?"
    out = md_text(text)
    assert "https\\:" in out and "www\\." in out and "a\\@evil" in out and "1986\\." in out
    rendered = markdown_it.MarkdownIt("commonmark").render(out)
    assert "<a" not in rendered and "<ol" not in rendered
    assert html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip() == text


def test_answer_markers_link_to_their_sources_and_text_is_escaped():
    a = answer_for(TEXT.format(payload=""), 0, 10, answer=f"{PAYLOAD} costs 48 [1]. Also [7].")
    out = render_answer(a, turn=3)
    assert out.count('href="#rag-src-3-1"') == 1
    assert "\\[7\\]" in out and "#rag-src-3-7" not in out  # not a citation of this answer
    assert "<img" not in out and "<script" not in out


def test_abstention_has_its_own_look():
    a = Answer(question="q", text="The articles don't say.", citations=(), abstained=True)
    out = render_answer(a, 1)
    assert 'class="rag-abstain"' in out and "don&#x27;t" in out
    assert "rag-abstain" not in render_answer(answer_for("x y", 0, 1), 1)


def test_a_notice_shows_above_the_answer_escaped():
    import markdown_it

    a = answer_for("x y", 0, 1, notice=f"the model server at http://h/v1 failed ({PAYLOAD})\n"
                                       "This is the extractive answer instead.")
    out = render_answer(a, turn=1)
    notice, body = out.split("\n\n", 1)
    assert notice.startswith('<div class="rag-notice">') and "\n" not in notice
    assert "<img" not in notice and "<script" not in notice and html.escape(PAYLOAD) in notice
    assert body == render_answer(answer_for("x y", 0, 1), turn=1)
    # the answer below the notice is still read as Markdown: its citation is a link
    rendered = markdown_it.MarkdownIt("commonmark", {"html": True}).render(out)
    assert '<a class="rag-cite" href="#rag-src-1-1">[1]</a>' in rendered
    assert "rag-notice" not in render_answer(answer_for("x y", 0, 1), turn=1)


def test_sources_highlight_the_exact_span_and_escape_everything():
    text = TEXT.format(payload=PAYLOAD)
    start = text.index("It will cost")
    end = text.index("2029.") + len("2029.")
    out = render_sources(answer_for(text, start, end), turn=2)
    assert re.search(r"<mark>(.*?)</mark>", out).group(1) == html.escape(text[start:end])
    assert 'id="rag-src-2-1"' in out
    assert "<img" not in out and "<script" not in out and "<b>" not in out and "<i>" not in out
    assert html.escape(PAYLOAD) in out
    assert 'href="https://example.org/a?x=1&amp;y=2"' in out


def test_the_short_answer_is_bold_and_marked_inside_the_highlighted_sentence():
    text = TEXT.format(payload="")
    start = text.index("It will cost")
    end = text.index("2029.") + len("2029.")
    s = text.index("48 million euros")
    short = ShortAnswer("48 million euros", "d1", 10 + s, 10 + s + len("48 million euros"), 1)
    a = answer_for(text, start, end, short_answer=short,
                   answer="48 million euros \u2014 \u201cIt will cost 48 million euros.\u201d [1]")
    out = render_answer(a, turn=1)
    assert out.startswith('<strong class="rag-answer-short">48 million euros</strong>')
    assert out.count('href="#rag-src-1-1"') == 1
    sources = render_sources(a, turn=1)
    marked = re.search(r"<mark>(.*?)</mark>", sources).group(1)
    assert marked == (html.escape(text[start:s]) + '<strong class="rag-short">48 million euros'
                      "</strong>" + html.escape(text[s + 16:end]))


def test_a_short_answer_outside_the_cited_sentence_is_not_marked():
    text = TEXT.format(payload=PAYLOAD)
    start = text.index("It will cost")
    end = text.index("2029.") + len("2029.")
    short = ShortAnswer("Velmora", "d1", 10 + text.index("Velmora"),
                        10 + text.index("Velmora") + 7, 1)
    sources = render_sources(answer_for(text, start, end, short_answer=short), turn=1)
    assert "rag-short" not in sources and html.escape(PAYLOAD) in sources


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:text/html,x", "//evil", "notaurl"])
def test_sources_link_only_http_urls(url):
    out = render_sources(answer_for("abc def", 0, 3, url=url), 1)
    assert "<a " not in out


# -- upload names -------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "expected"), [
    ("../../etc/passwd.txt", "passwd.txt"),
    ("\U00020000" * 80 + ".txt", "\U00020000" * 30 + ".txt"),  # 120 bytes of a 4-byte character
    ("．．／．．／x.txt", "x.txt"),
    ("..\\..\\windows\\evil.md", "evil.md"),
    ("My Story <2026>.HTML", "My_Story_2026.html"),
    (".hidden.json", "hidden.json"),
    ("....txt", "article.txt"),
    ("résumé.jsonl", "résumé.jsonl"),
])
def test_safe_name(given, expected):
    assert safe_name(given) == expected


@pytest.mark.parametrize("given", ["virus.exe", "noext", "archive.txt.gz", "a.pdf"])
def test_safe_name_refuses_unknown_types(given):
    with pytest.raises(CorpusError, match="cannot read this type"):
        safe_name(given)


def test_unique_path_never_overwrites(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "a-2.txt").write_text("y")
    assert unique_path(tmp_path, "a.txt").name == "a-3.txt"
    assert unique_path(tmp_path, "b.txt").name == "b.txt"


# -- the upload flow (fake embedder, real index) ------------------------------------------------


@pytest.fixture
def library(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "ferry.txt").write_text(TEXT.format(payload=""))
    settings = fake_settings(corpus, tmp_path / "index")
    emb = FakeEmbedder()
    build_index(settings, embedder=emb)
    return Library(settings, embedder=emb)


def upload(tmp_path, name: str, text: str | bytes):
    folder = tmp_path / "uploads"
    folder.mkdir(exist_ok=True)
    path = folder / f"{len(list(folder.iterdir()))}.bin"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path, name


def add(library, *files):
    return library.add_files([p for p, _ in files], [n for _, n in files])


def test_upload_is_indexed_and_answerable(library, tmp_path):
    lines = add(library, upload(tmp_path, "../bridge.md",
                                "---\ntitle: Bridge\n---\n\nThe Kestrel bridge reopened on "
                                "3 March 2024 after 14 months."))
    assert lines == ["✓ added ../bridge.md as bridge.md: 1 passage"]
    assert (library.corpus / "bridge.md").is_file()
    assert library.index.stats()["articles"] == 2
    answer = library.pipeline().ask("When did the Kestrel bridge reopen?")
    assert not answer.abstained and answer.citations[0].title == "Bridge"


def test_html_and_jsonl_uploads(library, tmp_path):
    page = ("<html><head><title>Tram line opens</title></head><body><nav>Home | News</nav>"
            "<article><h1>Tram line opens</h1><p>The new tram line in Lund opened on Monday "
            "after four years of construction work, the city said.</p><p>It links the station "
            "with the university hospital and the science park in twelve minutes.</p></article>"
            "</body></html>")
    lines = '{"title": "Bridge", "text": "The Kestrel bridge reopened."}\n' \
            '{"title": "Port", "text": "The port of Velmora handled a record 2 million tonnes."}\n'
    out = add(library, upload(tmp_path, "tram.html", page), upload(tmp_path, "wire.jsonl", lines))
    assert out == ["✓ added tram.html: 1 passage", "✓ added wire.jsonl: 2 passages"]
    titles = {row[0] for row in library.corpus_rows()}
    assert {"Tram line opens", "Bridge", "Port"} <= titles
    assert library.pipeline().ask("When did the tram line in Lund open?").citations[0].title \
        == "Tram line opens"


def test_same_name_does_not_overwrite(library, tmp_path):
    lines = add(library, upload(tmp_path, "ferry.txt", "A different story about trams in Lund."))
    assert lines == ["✓ added ferry.txt as ferry-2.txt: 1 passage"]
    assert (library.corpus / "ferry.txt").read_text() == TEXT.format(payload="")
    assert library.index.stats()["articles"] == 2


def test_duplicate_is_reported_and_not_kept(library, tmp_path):
    before = library.index.stats()
    lines = add(library, upload(tmp_path, "copy.txt", TEXT.format(payload="")))
    assert lines == ["✗ copy.txt: duplicate of ferry.txt, not added"]
    assert not (library.corpus / "copy.txt").exists()
    after = library.index.stats()
    assert (after["articles"], after["chunks"]) == (before["articles"], before["chunks"])


def test_add_from_url_refuses_local_addresses_by_default(library, monkeypatch):
    from web_server import NewsSite

    with NewsSite() as site:
        (line,) = library.add_url(site.url("/news/ferry.html"))
        assert line.startswith(f"✗ {site.url('/news/ferry.html')}: refused: ")
        assert "local or private address" in line and site.requests == []
        assert library.add_url("  ") == ["✗ give the address of an article or a feed "
                                         "(http:// or https://)"]
        # RAG_ALLOW_PRIVATE=1 lets a local deployment fetch from its own network
        monkeypatch.setenv("RAG_ALLOW_PRIVATE", "1")
        allowed = Library(library.settings, embedder=library.index.embedder)
        (line,) = allowed.add_url(site.url("/news/ferry.html"))
        assert line.startswith("✓ ") and "added as velmora-approves-ferry-terminal.md" in line
        row = next(r for r in allowed.corpus_rows() if r[3].startswith("velmora"))
        assert row[:3] == ["Velmora approves ferry terminal", "2026-03-01", "The Calder Courier"]


def test_duplicates_within_one_upload(library, tmp_path):
    lines = add(library, upload(tmp_path, "one.txt", "Trams return to Lund."),
                upload(tmp_path, "two.txt", "Trams return to Lund."))
    assert lines == ["✓ added one.txt: 1 passage", "✗ two.txt: duplicate of one.txt, not added"]


def test_too_large_and_bad_files_are_refused(library, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_MAX_UPLOAD_MB", "0.001")  # about 1 KB
    lines = add(library, upload(tmp_path, "big.txt", "word " * 400),
                upload(tmp_path, "x.exe", "MZ"),
                upload(tmp_path, "empty.txt", ""),
                upload(tmp_path, "ok.txt", "Trams return to Lund."))
    assert lines[0].startswith("✗ big.txt is 2 KB, over the 1 KB upload limit")
    assert "RAG_MAX_UPLOAD_MB" in lines[0]
    assert lines[1].startswith("✗ x.exe: cannot read this type of file")
    assert lines[2].startswith("✗ empty.txt: not added:")
    assert lines[3] == "✓ added ok.txt: 1 passage"
    assert sorted(p.name for p in library.corpus.iterdir()) == ["ferry.txt", "ok.txt"]


def test_failed_indexing_keeps_the_index_and_removes_the_upload(library, tmp_path):
    library.index.embedder.fail_after = 0
    lines = add(library, upload(tmp_path, "new.txt", "Trams return to Lund."))
    assert lines[0].startswith("✗ could not index new.txt: fake embedder crashed")
    assert not (library.corpus / "new.txt").exists()
    library.index.embedder.fail_after = None
    assert library.index.stats()["articles"] == 1
    assert library.pipeline().ask("How much will the ferry terminal cost?").citations


@pytest.mark.parametrize(("k", "asked"), [(1, 1), (2.7, 2), (-3, 1), (0, None), (None, None),
                                          (99, MAX_K)])
def test_k_is_clamped(library, monkeypatch, k, asked):
    seen = []
    stream = library.pipeline().stream
    monkeypatch.setattr(library.pipeline(), "stream",
                        lambda q, history=(), k=None: seen.append(k) or stream(q, history, k=k))
    answer = list(library.stream("ferry terminal cost", k=k))[-1]
    assert seen == [asked]  # 0/None: the pipeline's default
    # the reader reads at least READ_HITS passages (here the corpus has one)
    assert len(answer.hits) == 1


def test_only_available_generators_run(library):
    assert library.generators()[0] == "extractive"
    with pytest.raises(RagError, match="unknown generator 'causal:some/model'"):
        library.stream("ferry", generator="causal:some/model")
    assert "causal:some/model" not in library.generators()
    assert library.loaded_generators() == []


def test_jsonl_with_a_duplicate_item_keeps_its_new_items(library, tmp_path):
    port = {"title": "Port", "text": "The port of Velmora handled a record 2 million tonnes."}
    feed = "".join(json.dumps(item) + "\n"
                   for item in (port, {"text": TEXT.format(payload="")}, port))
    lines = add(library, upload(tmp_path, "feed.jsonl", feed))
    assert lines == ["✓ added feed.jsonl: 1 passage (2 duplicate items left out)"]
    assert (library.corpus / "feed.jsonl").exists()
    assert library.index.stats()["articles"] == 2


def test_a_failed_copy_leaves_nothing_behind(library, tmp_path, monkeypatch):
    def broken(src, dst):
        dst.write(b"half an artic")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("rag.corpus.shutil.copyfileobj", broken)
    lines = add(library, upload(tmp_path, "new.txt", "Trams return to Lund."))
    assert lines == ["✗ new.txt: [Errno 28] No space left on device"]
    assert sorted(p.name for p in library.corpus.iterdir()) == ["ferry.txt"]


def test_names_never_go_through_a_link(library, tmp_path):
    (library.corpus / "story.txt").symlink_to(tmp_path / "outside.txt")  # a broken link
    lines = add(library, upload(tmp_path, "story.txt", "Trams return to Lund."))
    assert lines == ["✓ added story.txt as story-2.txt: 1 passage"]
    assert not (tmp_path / "outside.txt").exists()


def test_a_failing_clean_up_update_keeps_what_was_added(library, tmp_path, monkeypatch):
    calls = []
    update = IndexWriter.update

    def second_fails(writer, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk went away")
        return update(writer, *args, **kwargs)

    monkeypatch.setattr(IndexWriter, "update", second_fails)
    lines = add(library, upload(tmp_path, "new.txt", "Trams return to Lund."),
                upload(tmp_path, "copy.txt", TEXT.format(payload="")))
    assert lines == ["✓ added new.txt: 1 passage", "✗ copy.txt: duplicate of ferry.txt, not added"]
    assert len(calls) == 2 and library.index.stats()["articles"] == 2


class EchoModel:
    """A stand-in language model with a fixed reply: one sentence the passage supports, one not."""

    def stream(self, system, user, max_new_tokens=160):
        yield "It will cost 48 million euros [1]. It is made of cheese [1]."

    def generate(self, system, user, max_new_tokens=160):
        return "".join(self.stream(system, user, max_new_tokens))


def test_an_added_generator_is_offered_and_checked(library):
    library.add_generator("echo", EchoModel())
    assert library.generators()[0] == "extractive" and library.generators()[-1] == "echo"
    answer = list(library.stream("How much will the ferry terminal cost?", generator="echo"))[-1]
    assert "48 million euros" in answer.text and "cheese" not in answer.text
    assert answer.dropped and answer.citations[0].n == 1


def test_examples_name_the_articles(library, tmp_path):
    add(library, upload(tmp_path, "b.md", "---\ntitle: Bridge reopens\n---\n\nThe bridge reopened."))
    assert library.examples() == ["What does the article “Bridge reopens” report?"]
