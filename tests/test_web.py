"""News from the web: `rag add URL`, feeds, and every kind of bad input, against a real HTTP
server on 127.0.0.1 (tests/web_server.py) and a real FAISS index."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import replace

import pytest
import yaml
from conftest import SEED_ARTICLE, FakeEmbedder, fake_settings
from web_server import LIBRARY, NewsSite, article_page, rfc822

import rag
import rag.embed
from rag.cli import main
from rag.errors import RagError
from rag.fetch import USER_AGENT, Fetcher, FetchError
from rag.index import IndexWriter, read_manifest
from rag.load import parse_text
from rag.web import add_feed, add_urls, list_feeds, remove_feed, update_feeds, watch_feeds


@pytest.fixture
def site():
    with NewsSite() as s:
        yield s


@pytest.fixture
def settings(tmp_path, fake_embedder):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SEED_ARTICLE, corpus)
    s = fake_settings(corpus, tmp_path / "index")
    IndexWriter(s, embedder=fake_embedder).update()
    return s


def front(settings, rel: str) -> tuple[str, dict]:
    return parse_text((settings.corpus / rel).read_text(encoding="utf-8"), ".md")


def indexed(settings) -> dict[str, dict]:
    return {a["path"]: a for a in read_manifest(settings.index)["articles"].values()}


def add(site, settings, embedder, *paths, **kw):
    kw.setdefault("allow_private", True)
    return add_urls([site.url(p) for p in paths], settings, embedder=embedder, **kw)


# -- articles -----------------------------------------------------------------------------------


def test_an_article_is_saved_with_its_metadata_and_indexed(site, settings, fake_embedder):
    report = add(site, settings, fake_embedder, "/news/ferry.html")
    (r,) = report.results
    assert r.action == "added" and r.path == "velmora-approves-ferry-terminal.md"
    assert r.line() == (f"✓ {site.url('/news/ferry.html')}: added as "
                        "velmora-approves-ferry-terminal.md “Velmora approves ferry terminal”")
    text, meta = front(settings, r.path)
    assert text.startswith("The harbour authority of Velmora approved a new ferry terminal")
    assert "Copyright" not in text and "Home" not in text  # page furniture left out
    assert meta["title"] == "Velmora approves ferry terminal"
    assert str(meta["date"]) == "2026-03-01" and meta["author"] == "Lena Brandt"
    assert meta["source"] == "The Calder Courier"
    assert meta["url"] == meta["source_url"] == site.url("/news/ferry.html")
    assert meta["fetched"]
    assert r.path in indexed(settings) and report.index.added == 1
    # the project names itself, and robots.txt was read first
    assert site.gets("/news/ferry.html")[0]["User-Agent"] == USER_AGENT
    assert [p for m, p, _ in site.requests][:2] == ["/robots.txt", "/news/ferry.html"]


def test_the_same_page_is_not_added_twice_and_a_changed_one_updates(site, settings,
                                                                   fake_embedder):
    add(site, settings, fake_embedder, "/news/ferry.html")
    again = add(site, settings, fake_embedder, "/news/ferry.html")
    assert [r.action for r in again.results] == ["present"] and again.index is None
    # another address of the same page (a redirect to it) is the same article
    moved = add(site, settings, fake_embedder, "/moved")
    assert moved.results[0].action == "present"
    # the page changes: its file is updated in place, and the index with it
    from web_server import FERRY

    site.set_page("/news/ferry.html", article_page(
        "Velmora approves ferry terminal", FERRY[:2] + ["The opening is now planned for 2030."],
        date="2026-03-01", site="The Calder Courier", canonical="/news/ferry.html"))
    changed = add(site, settings, fake_embedder, "/news/ferry.html")
    (r,) = changed.results
    assert r.action == "updated" and r.path == "velmora-approves-ferry-terminal.md"
    assert "2030" in front(settings, r.path)[0]
    assert changed.index.updated == 1 and len(list(settings.corpus.glob("*.md"))) == 1


def test_the_same_text_at_another_address_is_present(site, settings, fake_embedder):
    add(site, settings, fake_embedder, "/news/tram.html")
    kind, body = site.pages["/news/tram.html"]
    site.set_page("/copy/tram.html", body, kind)
    (r,) = add(site, settings, fake_embedder, "/copy/tram.html").results
    assert r.action == "present" and r.path == "port-calder-opens-tram-line.md"


def test_a_page_without_metadata_is_named_from_its_address(site, settings, fake_embedder):
    (r,) = add(site, settings, fake_embedder, "/plain.html").results
    assert r.action == "added" and r.path.startswith("127-0-0-1-")
    assert r.path.endswith("plain-html.md")
    text, meta = front(settings, r.path)
    assert text.startswith("The Port Calder city library") and meta["source"]


@pytest.mark.parametrize("path, reason", [
    ("/loop-a", "redirect loop"),
    ("/big.html", "over the 5 MB limit"),
    ("/report.pdf", "the content type is application/pdf, not a web page"),
    ("/missing.html", "HTTP 404"),
    ("/empty.html", "no article text found on the page"),
    ("/private/memo.html", "robots.txt disallows"),
    ("/feed.rss", "it is a feed; add it with `rag feed add URL`"),
])
def test_bad_pages_are_refused_in_one_line(site, settings, fake_embedder, path, reason):
    before = indexed(settings)
    (r,) = add(site, settings, fake_embedder, path).results
    assert r.action == "refused" and reason in r.reason and "\n" not in r.line()
    assert indexed(settings) == before and not list(settings.corpus.glob("*.md"))


def test_a_slow_page_times_out(site, settings, fake_embedder):
    t0 = time.monotonic()
    (r,) = add(site, replace(settings, fetch_timeout=0.5), fake_embedder, "/slow.html").results
    assert r.action == "refused" and "no answer within 0.5 s" in r.reason
    assert time.monotonic() - t0 < 2.5


def test_addresses_that_cannot_be_fetched(settings, fake_embedder):
    report = add_urls(["ftp://files.example/a", "http://no-such-host.invalid/story",
                       "http://127.0.0.1:9/x", "http://10.0.0.8/news", "http://[::1]/a",
                       "http://169.254.169.254/latest/meta-data"], settings,
                      embedder=fake_embedder)
    reasons = [r.reason for r in report.results]
    assert "only http:// and https://" in reasons[0]
    assert "does not resolve" in reasons[1]
    for reason in reasons[2:]:  # refused by default, before any request
        assert "local or private address" in reason and "--allow-private" in reason
    assert all(r.action == "refused" for r in report.results) and report.index is None


def test_a_private_address_is_refused_by_default_and_fetched_when_allowed(site, settings,
                                                                         fake_embedder):
    (r,) = add(site, settings, fake_embedder, "/news/ferry.html", allow_private=False).results
    assert r.action == "refused" and "127.0.0.1 is a local or private address" in r.reason
    assert site.requests == []  # not even robots.txt
    (r,) = add(site, settings, fake_embedder, "/news/ferry.html", allow_private=True).results
    assert r.action == "added"


def test_a_redirect_to_a_private_address_is_refused(site):
    site_url = site.url("/moved")
    with Fetcher(allow_private=False) as f:
        with pytest.raises(FetchError, match="local or private"):
            f.get(site_url)


def test_nothing_indexed_is_lost_when_indexing_fails(site, settings):
    before = indexed(settings)
    broken = FakeEmbedder(fail_after=0)
    with pytest.raises(RuntimeError, match="crashed on purpose"):
        add(site, settings, broken, "/news/ferry.html")
    assert not list(settings.corpus.glob("*.md"))  # the new file is gone again
    assert indexed(settings) == before


# -- feeds --------------------------------------------------------------------------------------


def test_feeds_are_recorded_listed_and_removed(site, settings):
    assert add_feed(site.url("/feed.rss"), settings) is True
    assert add_feed(site.url("/feed.rss"), settings) is False
    add_feed(site.url("/feed.atom"), settings)
    assert [f["url"] for f in list_feeds(settings)] == [site.url("/feed.rss"),
                                                       site.url("/feed.atom")]
    remove_feed(site.url("/feed.atom"), settings)
    assert [f["url"] for f in list_feeds(settings)] == [site.url("/feed.rss")]
    with pytest.raises(RagError, match="not a recorded feed"):
        remove_feed(site.url("/nope.xml"), settings)
    with pytest.raises(RagError, match="http:// or https://"):
        add_feed("file:///etc/passwd", settings)
    (settings.corpus / ".feeds.json").write_text("{not json")
    with pytest.raises(RagError, match=r"\.feeds\.json is not readable JSON"):
        list_feeds(settings)


def test_feed_updates_add_new_entries_then_cost_one_request(site, settings, fake_embedder):
    add_feed(site.url("/feed.rss"), settings)
    add_feed(site.url("/feed.atom"), settings)
    first = update_feeds(settings, embedder=fake_embedder, allow_private=True)
    assert first.lines()[:2] == [
        f"{site.url('/feed.rss')}: 2 new, 0 updated, 0 unchanged, 0 failed",
        f"{site.url('/feed.atom')}: 1 new, 0 updated, 0 unchanged, 0 failed"]
    _, meta = front(settings, "wanjiru-wins-the-marathon.md")
    assert str(meta["date"]) == "2026-04-12" and meta["feed"] == site.url("/feed.atom")
    assert {"velmora-approves-ferry-terminal.md", "port-calder-opens-tram-line.md",
            "wanjiru-wins-the-marathon.md"} <= set(indexed(settings))
    # nothing changed: one conditional request per feed, answered 304
    n = len(site.requests)
    second = update_feeds(settings, embedder=fake_embedder, allow_private=True)
    assert [p for _, p, _ in site.requests[n:]] == ["/feed.rss", "/feed.atom"]
    assert site.gets("/feed.rss")[-1]["If-None-Match"] == site.rss.etag()
    assert second.feeds[0].line() == (f"{site.url('/feed.rss')}: 0 new, 0 updated, "
                                      "2 unchanged, 0 failed (not modified)")
    assert second.index is None
    # the feed changes: a new entry, and an entry whose page was revised (a new date)
    site.set_page("/news/library.html", article_page("Library stays open late", LIBRARY,
                                                     date="2026-03-09"))
    site.rss.entries.append(("Library stays open late", "/news/library.html",
                             rfc822(2026, 3, 9), "Open until midnight."))
    from web_server import TRAM

    site.set_page("/news/tram.html", article_page("Port Calder opens tram line",
                                                  TRAM + ["Fares are free for the first month."],
                                                  date="2026-03-02"))
    title, path, _, summary = site.rss.entries[1]
    site.rss.entries[1] = (title, path, rfc822(2026, 3, 3), summary)
    site.atom.entries.append(("Library stays open late", "/news/library.html",
                              rfc822(2026, 3, 9), "Open until midnight."))
    third = update_feeds(settings, embedder=fake_embedder, allow_private=True)
    assert third.lines() == [
        f"{site.url('/feed.rss')}: 1 new, 1 updated, 1 unchanged, 0 failed",
        # the Atom feed changed too; its new entry is the article the RSS feed just brought
        f"{site.url('/feed.atom')}: 0 new, 0 updated, 2 unchanged, 0 failed"]
    assert "free for the first month" in front(settings, "port-calder-opens-tram-line.md")[0]
    assert len(site.gets("/news/library.html")) == 1  # fetched once, for the first feed
    # only the feed asked for
    fourth = update_feeds(settings, urls=[site.url("/feed.atom")], embedder=fake_embedder,
                          allow_private=True)
    assert [f.url for f in fourth.feeds] == [site.url("/feed.atom")]


def test_entry_failures_and_fallback_to_the_entry_text(site, settings, fake_embedder):
    site.rss.entries = [
        ("No link here", "", rfc822(2026, 3, 4), "An entry without a link."),
        ("Gone", "/news/gone.html", rfc822(2026, 3, 5),
         "The Velmora council voted on Thursday to rename the old harbour square after the "
         "poet Anneke Vos, who lived on the square for forty years and wrote about its fish "
         "market, its ferries and its winter storms in six collections of verse."),
    ]
    add_feed(site.url("/feed.rss"), settings)
    report = update_feeds(settings, embedder=fake_embedder, allow_private=True)
    assert report.lines() == [
        f"{site.url('/feed.rss')}: 1 new, 0 updated, 0 unchanged, 1 failed",
        "  ✗ “No link here”: the entry has no link"]
    text, meta = front(settings, "gone.md")
    assert text.startswith("The Velmora council voted") and str(meta["date"]) == "2026-03-05"
    assert meta["url"] == site.url("/news/gone.html")


def test_a_malformed_feed_is_one_line(site, settings, fake_embedder):
    add_feed(site.url("/bad-feed.xml"), settings)
    add_feed(site.url("/missing.xml"), settings)
    report = update_feeds(settings, embedder=fake_embedder, allow_private=True)
    assert report.lines()[0].startswith(f"✗ {site.url('/bad-feed.xml')}: not a readable RSS or "
                                        "Atom feed (")
    assert report.lines()[1] == (f"✗ {site.url('/missing.xml')}: the server answered HTTP 404 "
                                 "(Not Found)")
    with pytest.raises(RagError, match="no feed is recorded"):
        update_feeds(replace(settings, corpus=settings.corpus / "empty"))


def test_watch_feeds_repeats(site, settings, fake_embedder, monkeypatch):
    add_feed(site.url("/feed.rss"), settings)
    seen = []
    monkeypatch.setattr(rag.web, "update_feeds",
                        lambda s, allow_private: update_feeds(s, embedder=fake_embedder,
                                                              allow_private=allow_private))
    watch_feeds(0.05, settings, seen.append, allow_private=True, rounds=2)
    assert [r.feeds[0].new for r in seen] == [2, 0] and seen[1].feeds[0].not_modified


# -- the CLI and Python --------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_add_and_feed(site, tmp_path, real_embedder, monkeypatch, capsys):
    monkeypatch.setattr(rag.embed, "load_embedder", lambda *a, **k: real_embedder)
    monkeypatch.setenv("RAG_EMBED_BACKEND", "torch")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SEED_ARTICLE, corpus)
    common = ["--corpus", str(corpus), "--index", str(tmp_path / "index")]
    assert main(["add", site.url("/news/ferry.html"), *common]) == 1  # nothing added
    assert "local or private address" in capsys.readouterr().out  # 127.0.0.1, by default
    assert main(["add", site.url("/news/ferry.html"), site.url("/loop-a"), "--allow-private",
                 *common]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("✓ ") and "added as velmora" in out[0]
    assert out[1].startswith("✗ ") and "redirect loop" in out[1]
    assert main(["feed", "add", site.url("/feed.rss"), *common]) == 0
    assert main(["feed", "list", *common]) == 0
    assert site.url("/feed.rss") in capsys.readouterr().out
    assert main(["feed", "update", "--allow-private", "--json", *common]) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["feeds"][0]["new"] == 1 and out["feeds"][0]["unchanged"] == 1  # ferry: present
    assert main(["feed", "update", "--every", "soon", *common]) == 1
    assert "not an interval" in capsys.readouterr().err
    assert main(["feed", "remove", site.url("/feed.rss"), *common]) == 0
    assert main(["feed", "remove", *common]) == 1
    assert "give the feed's address" in capsys.readouterr().err


def test_python_api_returns_reports(site, settings, fake_embedder):
    report = rag.add_urls([site.url("/news/tram.html")], settings, embedder=fake_embedder,
                          allow_private=True)
    assert isinstance(report, rag.AddReport) and report.count("added") == 1
    assert json.loads(json.dumps(report.to_json()))["results"][0]["action"] == "added"
    add_feed(site.url("/feed.rss"), settings)
    feeds = rag.update_feeds(settings, embedder=fake_embedder, allow_private=True)
    assert isinstance(feeds, rag.FeedsReport) and feeds.feeds[0].new == 1
    assert yaml.safe_load(json.dumps(feeds.to_json()))["feeds"][0]["unchanged"] == 1


# -- with the real model: a question about an article from a feed ----------------------------------


@pytest.mark.slow
def test_an_article_from_a_feed_is_answered_with_its_source_and_date(site, tmp_path,
                                                                    real_embedder):
    from rag import Settings
    from rag.pipeline import Pipeline
    from rag.retrieve import Index

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SEED_ARTICLE, corpus)
    settings = Settings(corpus=corpus, index=tmp_path / "index", embed_backend="torch")
    add_feed(site.url("/feed.atom"), settings)
    update_feeds(settings, embedder=real_embedder, allow_private=True)
    answer = Pipeline(Index(settings.index, settings, embedder=real_embedder), "extractive").ask(
        "Who won the Port Calder marathon?")
    assert answer.short_answer.text == "Joyce Wanjiru"
    c = answer.citations[0]
    assert c.url == site.url("/sport/marathon.html") and c.date == "2026-04-12"
    assert c.title == "Wanjiru wins the marathon"


def test_articles_from_urls_and_feeds_are_in_the_audit_trail_with_their_user(site, settings,
                                                                            fake_embedder):
    from rag.audit import AuditLog

    add(site, settings, fake_embedder, "/news/ferry.html", user="ana")
    add_feed(site.url("/feed.atom"), settings)
    update_feeds(settings, embedder=fake_embedder, allow_private=True)
    entries = [(e["user"], e["via"], e["action"], e["file"])
               for e in AuditLog(settings.index).entries()]
    assert entries == [("cli", "index", "add", "000_76eeeabc1e9aee23.txt"),
                       ("ana", "url", "add", "velmora-approves-ferry-terminal.md"),
                       ("cli", "feed", "add", "wanjiru-wins-the-marathon.md")]
