"""The chat page in a real browser (Debian's chromium through Playwright), on a real index built
with the bundled embedding model; and the API through gradio_client."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import SEED_ARTICLE
from model_server import ModelServer, Script
from test_pipeline import ScriptedGenerator
from web_server import NewsSite

from rag import Settings, build_index
from rag.ui import Library, launch

pytestmark = pytest.mark.slow

ALIBABA = "How much did the Alibaba-led group invest in SenseTime?"
HARBOUR = ("---\ntitle: Velmora approves ferry terminal\ndate: 2026-03-01\n"
           "url: https://news.example.org/velmora-ferry\n---\n\n"
           "The harbour authority of Velmora approved a new ferry terminal on Tuesday. "
           "The terminal will cost 48 million euros and is due to open in 2029. "
           "The mayor said the project would double passenger capacity.\n")
XSS = ('---\ntitle: "Quarnholt <img src=x onerror=\\"window.__xss=1\\"> results"\n---\n\n'
       "The Quarnholt cooperative <script>window.__xss=2</script> reported a record harvest "
       "this autumn. Quarnholt employs <img src=x onerror=\"window.__xss=3\"> 310 seasonal "
       "pickers on its orchards, see www.evil.example or https://evil.example/jobs.\n")


STREAMED = ("Alibaba led a group of investors that poured $600 million into SenseTime [1]. "
            "SenseTime is based on the Moon [1].")


class SlowGenerator(ScriptedGenerator):
    def stream(self, system, user, max_new_tokens=160):
        for piece in super().stream(system, user, max_new_tokens):
            time.sleep(0.05)
            yield piece


class BrokenGenerator(ScriptedGenerator):
    def stream(self, system, user, max_new_tokens=160):
        yield "Alibaba "
        raise RuntimeError("the model ran out of memory")


def damage_next_generation(folder: Path) -> Path:
    """A copy of the current generation as the next one, its vectors file cut short (as a
    full disk leaves it), made current by a new manifest; the damaged file's path."""
    manifest = json.loads((folder / "manifest.json").read_text())
    old, new = manifest["generation"], manifest["generation"] + 1
    for key, name in manifest["files"].items():
        renamed = name.replace(f"-{old}", f"-{new}")
        for src in folder.glob(f"{name}*"):
            dst = folder / src.name.replace(name, renamed)
            shutil.copytree(src, dst) if src.is_dir() else shutil.copy(src, dst)
        manifest["files"][key] = renamed
    manifest["generation"] = new
    damaged = folder / f"{manifest['files']['vectors']}.npz"
    damaged.write_bytes(damaged.read_bytes()[:100])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return damaged


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(real_embedder, tmp_path_factory):
    corpus = tmp_path_factory.mktemp("ui-corpus")
    shutil.copy(SEED_ARTICLE, corpus)
    # a model server on 127.0.0.1 whose model the page offers (RAG_LLM_URL)
    news = NewsSite().__enter__()  # a news site on 127.0.0.1 for "Add from URL"
    models = ModelServer({"served": Script.words(STREAMED, delay=0.1),
                          "served-broken": Script.words("Alibaba led a group", drop=True)}
                         ).__enter__()
    settings = Settings(corpus=corpus, index=tmp_path_factory.mktemp("ui-index"),
                        embed_backend="torch", llm_url=models.url)
    build_index(settings, embedder=real_embedder)
    library = Library(settings, embedder=real_embedder, allow_private=True)
    # two stand-in language models: one that streams a cited answer slowly, one that breaks
    library.add_generator("scripted", SlowGenerator(STREAMED))
    library.add_generator("broken", BrokenGenerator())
    port = free_port()
    app = launch(library, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}", Path(corpus), settings, news
    app.close()
    models.__exit__()
    news.__exit__()


class Page:
    """One browser session on the chat, recording requests that leave the machine, dialogs
    and page errors."""

    def __init__(self, browser, url: str):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.outside: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", self._request)
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_selector("#rag-question textarea")

    def _request(self, request) -> None:
        if urlsplit(request.url).hostname not in ("127.0.0.1", "localhost", None):
            self.outside.append(request.url)

    def bots(self):
        return self.page.locator('[data-testid="bot"]')

    def ask(self, question: str):
        """Ask and return the new bot message once the answer handler has finished: a new
        message is shown (its first update) and the chat's status tracker is hidden again.
        While the answer streams, the tracker stays shown."""
        n = self.bots().count()
        self.page.fill("#rag-question textarea", question)
        self.page.press("#rag-question textarea", "Enter")
        return self.ask_done(n)

    def ask_done(self, n: int):
        """The newest bot message once there are more than ``n`` and the answer handler has
        finished."""
        self.page.wait_for_function(
            "(n) => document.querySelectorAll('[data-testid=\"bot\"]').length > n"
            " && document.querySelector('#rag-chat [data-testid=status-tracker]')"
            "      .classList.contains('hide')", arg=n, timeout=60_000)
        return self.bots().last

    def upload(self, path: Path) -> str:
        """Upload a file and return the status text once the upload handler has finished.

        While the handler runs, Gradio overlays a progress text ("processing | 0.1s") and may
        already show the new message, so this reads only the Markdown's own text and waits until
        its status tracker is hidden again."""
        return self._status("#rag-upload-status", lambda: self.page.set_input_files(
            "#rag-upload input[type=file]", str(path)))

    def add_url(self, url: str) -> str:
        """Add an article or feed through the "Add from URL" field; its status text once the
        handler has finished."""
        def submit():
            self.page.fill("#rag-add-url textarea", url)
            self.page.click("#rag-add-url-button")

        return self._status("#rag-url-status", submit)

    def _status(self, box: str, action) -> str:
        """Do ``action``, then wait until the status Markdown ``box`` shows a new ✓/✗ text and
        its handler has finished; that text."""
        text = f"{box} [data-testid=markdown]"
        before = self.page.locator(text).inner_text()
        action()
        self.page.wait_for_function(
            "([sel, before]) => {"
            " const box = document.querySelector(sel);"
            " const t = box.querySelector('[data-testid=markdown]').innerText;"
            " const busy = box.querySelector('[data-testid=markdown-wrapper].pending')"
            "   || !box.querySelector('[data-testid=status-tracker]').classList.contains('hide');"
            " return !busy && t !== before && (t.includes('✓') || t.includes('✗')); }",
            arg=[box, before], timeout=120_000)
        return self.page.locator(text).inner_text()

    def sources(self) -> str:
        return self.page.locator("#rag-sources").inner_text()


def test_cited_answer_with_highlighted_span(server, browser, tmp_path):
    url, *_ = server
    ui = Page(browser, url)
    bot = ui.ask(ALIBABA)
    assert "$600 million" in bot.inner_text()
    marker = bot.locator("a.rag-cite").first
    assert marker.inner_text() == "[1]"
    mark = ui.page.locator("#rag-sources .rag-source mark").first
    assert "$600 million" in mark.inner_text()
    assert "Alibaba led a group of investors" in mark.inner_text()
    # the source shows the span inside its surrounding passage text
    assert len(ui.page.locator("#rag-sources .rag-source").first.inner_text()) > \
        len(mark.inner_text()) + 50
    marker.click()
    target = ui.page.evaluate("location.hash")
    assert target.startswith("#rag-src-1-")
    assert ui.page.locator(f"{target} mark").count() == 1
    ui.page.screenshot(path=str(tmp_path / "chat.png"))
    assert ui.outside == [] and ui.errors == []


def test_abstention_follow_up_and_new_chat(server, browser):
    url, *_ = server
    ui = Page(browser, url)
    bot = ui.ask("What will the weather be in Lisbon tomorrow?")
    assert bot.locator(".rag-abstain").count() == 1
    assert "don't say" in bot.inner_text()
    ui.ask(ALIBABA)
    follow = ui.ask("How much did it raise in Series B funding?")
    assert "$410 million" in follow.inner_text()
    assert follow.locator(".rag-abstain").count() == 0
    ui.page.click("#rag-new-chat")
    ui.page.wait_for_function("document.querySelectorAll('[data-testid=\"bot\"]').length === 0")
    assert "Series B" not in ui.sources()


def test_sessions_do_not_share_history(server, browser):
    url, *_ = server
    first, second = Page(browser, url), Page(browser, url)
    first.ask(ALIBABA)
    assert second.bots().count() == 0
    assert "Alibaba" not in second.sources()
    assert first.bots().count() == 1


def test_uploaded_article_can_be_asked_about_at_once(server, browser, tmp_path):
    url, corpus, *_ = server
    ui = Page(browser, url)
    path = tmp_path / "velmora ferry.md"
    path.write_text(HARBOUR)
    status = ui.upload(path)
    assert "✓ added velmora ferry.md as velmora_ferry.md: 1 passage" in status
    assert (corpus / "velmora_ferry.md").read_text() == HARBOUR
    articles = len(list(corpus.iterdir()))
    assert f"{articles} articles" in ui.page.locator("#rag-corpus-summary").inner_text()
    assert "velmora_ferry.md" in ui.page.locator("#rag-corpus").inner_text()
    bot = ui.ask("How much will the Velmora ferry terminal cost?")
    assert "48 million euros" in bot.inner_text()
    sources = ui.sources()
    assert "Velmora approves ferry terminal" in sources and "2026-03-01" in sources
    assert ui.page.locator('#rag-sources a[href="https://news.example.org/velmora-ferry"]').count()
    assert "duplicate of velmora_ferry.md" in ui.upload(path)


def test_articles_and_feeds_from_a_url_can_be_asked_about(server, browser):
    url, corpus, _, news = server
    ui = Page(browser, url)
    status = ui.add_url(news.url("/news/tram.html"))
    assert f"✓ {news.url('/news/tram.html')}: added as port-calder-opens-tram-line.md" in status
    status = ui.add_url(news.url("/feed.atom"))
    assert f"✓ feed recorded: {news.url('/feed.atom')}" in status
    assert f"{news.url('/feed.atom')}: 1 new, 0 updated, 0 unchanged, 0 failed" in status
    table = ui.page.locator("#rag-corpus").inner_text()
    assert "Courier Sport" in table and "2026-04-12" in table and "The Calder Courier" in table
    bot = ui.ask("Who won the Port Calder marathon?")
    assert "Joyce Wanjiru" in bot.inner_text()
    sources = ui.sources()
    assert "Wanjiru wins the marathon" in sources and "2026-04-12" in sources
    link = f'#rag-sources a[href="{news.url("/sport/marathon.html")}"]'
    assert ui.page.locator(link).count() >= 1
    # bad input is one line, and nothing is added
    assert "✗ ftp://x.example/a: refused: only http:// and https://" in ui.add_url(
        "ftp://x.example/a")
    assert ui.errors == []


def test_script_payload_does_not_run(server, browser, tmp_path):
    url, *_ = server
    ui = Page(browser, url)
    path = tmp_path / "quarnholt.md"
    path.write_text(XSS)
    assert "✓ added quarnholt.md" in ui.upload(path)
    bot = ui.ask("How many seasonal pickers does Quarnholt employ?")
    assert "310 seasonal pickers" in bot.inner_text()
    assert 'onerror="window.__xss=3"' in bot.inner_text()  # shown as text
    assert "https://evil.example/jobs" in bot.inner_text()
    assert bot.locator("a:not(.rag-cite)").count() == 0  # web addresses are not made links
    sources = ui.sources()
    assert "<script>window.__xss=2</script>" in sources
    assert '<img src=x onerror="window.__xss=1">' in sources  # the title, as text
    time.sleep(0.5)
    assert ui.page.evaluate("window.__xss") is None
    assert ui.page.locator("#rag-sources img, #rag-chat img, #rag-sources script, "
                           "#rag-corpus img, #rag-upload-status img").count() == 0
    assert ui.dialogs == [] and ui.errors == []


def test_too_large_upload_gets_a_message(server, browser, tmp_path, monkeypatch):
    url, corpus, *_ = server
    monkeypatch.setenv("RAG_MAX_UPLOAD_MB", "0.01")
    ui = Page(browser, url)
    path = tmp_path / "long.txt"
    path.write_text("The long story continues. " * 800)
    status = ui.upload(path)
    assert "over the 10 KB upload limit" in status and "RAG_MAX_UPLOAD_MB" in status
    assert not (corpus / "long.txt").exists()


def test_api_endpoint_with_gradio_client(server):
    from gradio_client import Client

    url, *_ = server
    client = Client(url, verbose=False)
    out = client.predict(ALIBABA, 3, "extractive", api_name="/ask")
    assert out["abstained"] is False and "$600 million" in out["answer"]
    c = out["citations"][0]
    assert c["quote"] in c["text"] and "$600 million" in c["quote"]
    assert c["n"] == 1 and c["title"].startswith("With $600M AI Investment")
    assert set(out["timings"]) == {"retrieve_ms", "generate_ms", "total_ms"}
    assert "empty" in client.predict("  ", 0, "", api_name="/ask")["error"]
    # the chat endpoint (session state is not part of the API): question, shown chat, k, generator
    box, shown, panel = client.predict(ALIBABA, [], 5, "extractive", api_name="/chat")
    assert box == "" and "rag-cite" in shown[-1]["content"][0]["text"]
    assert "<mark>Alibaba led a group" in panel


def test_answer_streams_and_unsupported_sentences_are_dropped(server):
    from gradio_client import Client

    url, *_ = server
    job = Client(url, verbose=False).submit(ALIBABA, [], 5, "scripted", api_name="/chat")
    updates = [shown[-1]["content"][0]["text"] for _, shown, _ in job]
    final = job.result()[1][-1]["content"][0]["text"]
    partial = [u for u in updates if "Alibaba" in u and "rag-cite" not in u]
    assert len(partial) >= 5  # word by word, before the checked answer replaces them
    assert "$600 million" in final and "rag-cite" in final
    assert "Moon" not in final and "left out" in final


def choose_generator(ui: Page, name: str) -> None:
    ui.page.get_by_text("Settings", exact=True).click()  # the accordion
    ui.page.click("#rag-generator input")
    ui.page.get_by_role("option", name=name, exact=True).click()


def test_streamed_text_is_replaced_by_the_checked_answer(server, browser):
    url, *_ = server
    ui = Page(browser, url)
    choose_generator(ui, "scripted")  # streams word by word, then one unsupported sentence
    bot = ui.ask(ALIBABA)
    assert "$600 million into SenseTime" in bot.inner_text()
    assert bot.locator("a.rag-cite").count() == 1
    assert "Moon" not in bot.inner_text()


def test_a_model_server_model_is_offered_streams_and_is_checked(server, browser):
    url, *_ = server
    ui = Page(browser, url)
    choose_generator(ui, "openai:served")  # from the server's /v1/models
    n = ui.bots().count()
    ui.page.fill("#rag-question textarea", ALIBABA)
    ui.page.press("#rag-question textarea", "Enter")
    # the words show while the server still streams (the chat's status tracker is shown) ...
    ui.page.wait_for_function(
        "(n) => { const b = document.querySelectorAll('[data-testid=\"bot\"]');"
        "  return b.length > n && b[b.length - 1].innerText.includes('Alibaba led a group')"
        "    && !document.querySelector('#rag-chat [data-testid=status-tracker]')"
        "      .classList.contains('hide'); }", arg=n, timeout=60_000)
    # ... then the checked answer replaces them: cited, without the unsupported sentence
    bot = ui.ask_done(n)
    assert "$600 million into SenseTime" in bot.inner_text()
    assert bot.locator("a.rag-cite").count() == 1 and "Moon" not in bot.inner_text()
    assert bot.locator(".rag-notice").count() == 0
    assert ui.page.locator("#rag-sources mark").count() >= 1
    assert not ui.outside and not ui.errors


def test_a_stream_that_breaks_gives_the_extractive_answer_marked(server, browser):
    url, *_ = server
    ui = Page(browser, url)
    choose_generator(ui, "openai:served-broken")
    bot = ui.ask(ALIBABA)
    notice = bot.locator(".rag-notice")
    assert notice.count() == 1 and "broke off" in notice.inner_text()
    assert "extractive answer instead" in notice.inner_text()
    assert "$600 million" in bot.inner_text() and bot.locator("a.rag-cite").count() >= 1
    assert "Traceback" not in bot.inner_text()


def test_a_failing_model_shows_a_message_not_a_traceback(server, browser):
    url, *_ = server
    ui = Page(browser, url)
    choose_generator(ui, "broken")
    bot = ui.ask(ALIBABA)
    assert bot.locator(".rag-error").count() == 1
    assert "Something went wrong" in bot.inner_text() and "Traceback" not in bot.inner_text()
    assert "RuntimeError" in bot.inner_text()


def test_example_questions_on_an_empty_chat(server, browser):
    url, *_ = server
    ui = Page(browser, url)
    example = ui.page.get_by_text("What does the article “With $600M AI Investment")
    example.click()
    ui.page.wait_for_selector('[data-testid="bot"] a.rag-cite', timeout=60_000)
    asked = ui.page.locator('[data-testid="user"]').last.inner_text()
    assert asked.startswith("What does the article “With $600M AI Investment")
    assert ui.page.locator("#rag-sources mark").count() >= 1


def test_a_damaged_index_shows_a_message_and_recovers_after_rag_index(server, browser,
                                                                     real_embedder):
    url, _, settings, _ = server
    damaged = damage_next_generation(Path(settings.index))
    ui = Page(browser, url)
    bot = ui.ask(ALIBABA)
    assert bot.locator(".rag-error").count() == 1
    text = bot.inner_text()
    assert f"{damaged.name} is damaged" in text and "rag index" in text
    assert "Traceback" not in text and "Something went wrong" not in text

    report = build_index(settings, embedder=real_embedder)  # what `rag index` runs
    assert damaged.name in report.repaired
    bot = ui.ask(ALIBABA)
    assert bot.locator(".rag-error").count() == 0
    assert "$600 million" in bot.inner_text() and bot.locator("a.rag-cite").count() >= 1
