"""A shared chat server with sign-in, on a real index built with the bundled embedding model:
its API through gradio_client, its page in a real browser (Debian's chromium through
Playwright), and app.py's start-up checks."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, SEED_ARTICLE
from test_ui_browser import ALIBABA, HARBOUR, Page, free_port

from rag import Settings, build_index
from rag.audit import AuditLog
from rag.ui import Library, launch
from rag.users import UsersFile

pytestmark = pytest.mark.slow

EDITOR, READER, OTHER = ("ana", "ana's password"), ("bo", "bo's password"), ("cy", "cy's password")


@pytest.fixture(scope="module")
def server(real_embedder, tmp_path_factory):
    corpus = tmp_path_factory.mktemp("shared-corpus")
    shutil.copy(SEED_ARTICLE, corpus)
    users = UsersFile(tmp_path_factory.mktemp("shared-users") / "users.txt")
    users.add(*EDITOR[:1], "editor", EDITOR[1])
    users.add(*READER[:1], "reader", READER[1])
    users.add(*OTHER[:1], "reader", OTHER[1])
    settings = Settings(corpus=corpus, index=tmp_path_factory.mktemp("shared-index"),
                        embed_backend="torch", users_file=str(users.path), history_turns=3)
    build_index(settings, embedder=real_embedder)
    library = Library(settings, embedder=real_embedder)
    port = free_port()
    app = launch(library, "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}", Path(corpus), settings
    app.close()


def client(url: str, auth=None):
    from gradio_client import Client

    return Client(url, auth=auth, verbose=False)


# -- the API ------------------------------------------------------------------------------------


def test_the_api_needs_a_session(server):
    import httpx
    from gradio_client.exceptions import AuthenticationError

    url, *_ = server
    with pytest.raises(AuthenticationError, match="credentials were not provided"):
        client(url)
    for name, password in ((EDITOR[0], "a wrong password"), ("nobody", EDITOR[1])):
        t0 = time.monotonic()
        r = httpx.post(url + "/login", data={"username": name, "password": password}, timeout=30)
        assert (r.status_code, r.json()) == (400, {"detail": "Incorrect credentials."})
        assert time.monotonic() - t0 >= 1.0  # slowed down
        assert not r.cookies
    r = httpx.post(url + "/login", data={"username": EDITOR[0], "password": EDITOR[1]},
                   timeout=30)
    assert r.status_code == 200 and r.cookies
    # the endpoints themselves, called without a session cookie: one JSON line, no answer
    for path, body in (("/gradio_api/call/ask", {"data": [ALIBABA, 1, "extractive"]}),
                       ("/gradio_api/call/upload", {"data": [[]]}),
                       ("/gradio_api/queue/join", {"data": [], "fn_index": 0})):
        r = httpx.post(url + path, json=body, timeout=30)
        assert r.status_code == 401, path
        assert r.json()["detail"]["error"] == "Not authenticated"


def test_a_readers_upload_call_is_refused_whatever_the_client_sends(server, tmp_path):
    from gradio_client import handle_file

    url, corpus, _ = server
    path = tmp_path / "sneaky.md"
    path.write_text(HARBOUR.replace("Velmora", "Sneakton"))
    reader = client(url, auth=READER)
    _, status, _, _ = reader.predict([handle_file(str(path))], api_name="/upload")
    # (the status is Markdown, its punctuation escaped)
    assert status.startswith("- ✗ bo is a reader") and "only editors add articles" in status
    *_, status, _, _ = reader.predict("http://127.0.0.1:9/story", api_name="/add_url")
    assert "bo is a reader" in status
    assert not (corpus / "sneaky.md").exists()
    assert all(e["file"] != "sneaky.md" for e in AuditLog(server[2].index).entries())
    # the reader still asks
    assert "$600 million" in reader.predict(ALIBABA, 3, "extractive", api_name="/ask")["answer"]


def test_the_31st_question_within_a_minute_is_refused_for_that_user_only(server):
    url, *_ = server
    asker, other = client(url, auth=OTHER), client(url, auth=EDITOR)
    answers = [asker.predict(ALIBABA, 1, "extractive", api_name="/ask") for _ in range(30)]
    assert all("$600 million" in a["answer"] for a in answers)
    refused = asker.predict(ALIBABA, 1, "extractive", api_name="/ask")
    assert refused == {"error": refused["error"]}
    assert refused["error"].startswith("slow down: 30 a minute questions per user; try again in")
    # the chat endpoint refuses too, with the same line in the chat
    _, shown, _ = asker.predict(ALIBABA, [], 1, "extractive", api_name="/chat")
    assert "slow down" in shown[-1]["content"][0]["text"]
    assert "$600 million" in other.predict(ALIBABA, 1, "extractive", api_name="/ask")["answer"]


def test_the_server_keeps_the_last_turns_of_a_chat_and_numbers_on(server):
    url, *_ = server
    chat = client(url, auth=EDITOR)
    shown: list = []
    for _ in range(4):
        _, shown, panel = chat.predict(ALIBABA, shown, 1, "extractive", api_name="/chat")
    # history_turns=3: the server's state keeps 3 turns, the sources panel too; the 4th
    # answer's links still point at its own sources
    assert len(shown) == 6
    assert 'href="#rag-src-4-1"' in shown[-1]["content"][0]["text"]
    assert panel.count('class="rag-turn"') == 3 and 'id="rag-src-4-1"' in panel
    assert 'id="rag-src-1-1"' not in panel


# -- the page -----------------------------------------------------------------------------------


def _signed_page(browser, url, user) -> Page:
    ui = Page.__new__(Page)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.wait_for_selector("input[type=password]")
    page.fill("input[type=text]", user[0])
    page.fill("input[type=password]", user[1])
    page.click("button:has-text(\"Login\")")
    page.wait_for_selector("#rag-question textarea")
    ui.page, ui.outside, ui.dialogs, ui.errors = page, [], [], []
    page.on("pageerror", lambda e: ui.errors.append(str(e)))
    return ui


def row_after(ui: Page, file: str) -> list[str]:
    """The passages, added-by and added cells of ``file``'s row in the Articles table."""
    return ui.page.locator("#rag-corpus").inner_text().split(file, 1)[1].split()[:3]


def test_sign_in_page_refuses_a_wrong_password_then_takes_the_right_one(server, browser):
    url, *_ = server
    context = browser.new_context()
    page = context.new_page()
    page.goto(url, wait_until="load")
    page.wait_for_selector("input[type=password]")
    assert "Sign in to ask about the articles." in page.inner_text("body")
    assert page.locator("#rag-question").count() == 0  # nothing of the chat before sign-in
    page.fill("input[type=text]", EDITOR[0])
    page.fill("input[type=password]", "not the password")
    page.click("button:has-text(\"Login\")")
    page.wait_for_selector("text=Incorrect Credentials", timeout=30_000)
    assert page.locator("#rag-question").count() == 0
    page.fill("input[type=text]", EDITOR[0])  # the form was cleared
    page.fill("input[type=password]", EDITOR[1])
    page.click("button:has-text(\"Login\")")
    page.wait_for_selector("#rag-question textarea", timeout=60_000)
    page.wait_for_selector("#rag-user a")
    assert "Signed in as ana (editor)" in page.inner_text("#rag-user")
    context.close()


def test_a_reader_sees_no_upload_control(server, browser):
    url, *_ = server
    ui = _signed_page(browser, url, READER)
    ui.page.wait_for_selector("#rag-user a")
    assert "Signed in as bo (reader)" in ui.page.inner_text("#rag-user")
    for control in ("#rag-upload", "#rag-add-url", "#rag-add-url-button"):
        assert not ui.page.locator(control).is_visible()
    assert ui.page.locator("#rag-corpus").is_visible()
    assert "$600 million" in ui.ask(ALIBABA).inner_text()
    assert ui.errors == []


def test_an_editor_uploads_and_the_audit_line_and_the_panel_name_them(server, browser, tmp_path):
    url, corpus, settings = server
    ui = _signed_page(browser, url, EDITOR)
    ui.page.wait_for_selector("#rag-upload", state="visible")
    path = tmp_path / "velmora ferry.md"
    path.write_text(HARBOUR)
    assert "✓ added velmora ferry.md as velmora_ferry.md: 1 passage" in ui.upload(path)
    [entry] = [e for e in AuditLog(settings.index).entries() if e["file"] == "velmora_ferry.md"]
    assert (entry["user"], entry["action"], entry["via"]) == ("ana", "add", "upload")
    assert row_after(ui, "velmora_ferry.md") == ["1", "ana", entry["time"]]
    # another user's page shows who added it too
    other = _signed_page(browser, url, READER)
    other.page.wait_for_selector("#rag-corpus :text('velmora_ferry.md')")
    assert row_after(other, "velmora_ferry.md") == ["1", "ana", entry["time"]]
    assert "48 million euros" in other.ask("How much will the Velmora ferry terminal cost?") \
        .inner_text()


# -- app.py -------------------------------------------------------------------------------------


def _app(tmp_path, *args, **env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAG_", "GRADIO_"))}
    clean.update(RAG_CORPUS=str(tmp_path / "corpus"), RAG_INDEX=str(tmp_path / "index"), **env)
    return subprocess.run([sys.executable, str(REPO / "app.py"), *args], env=clean, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


def test_require_auth_refuses_a_non_local_address_without_users(tmp_path):
    run = _app(tmp_path, "--host", "0.0.0.0", "--require-auth")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "error: --require-auth: serving on 0.0.0.0 needs a users file; create one with `rag "
        "users add NAME --role editor --users FILE`, then pass --users FILE (or set "
        "RAG_USERS_FILE)"]
    assert not (tmp_path / "index").exists()


def test_a_non_local_address_without_users_warns(tmp_path):
    # no corpus: app.py stops right after the warning, with the corpus error
    run = _app(tmp_path, "--host", "0.0.0.0")
    assert run.returncode == 1
    warning, error = run.stderr.strip().splitlines()
    assert warning.startswith("warning: serving on 0.0.0.0 without sign-in: anyone who can "
                              "reach port 7860 can read the articles and add to them")
    assert error.startswith("error: corpus folder")


def test_a_malformed_users_file_stops_app_py_with_the_line(tmp_path):
    (tmp_path / "corpus").mkdir()
    shutil.copy(SEED_ARTICLE, tmp_path / "corpus")
    (tmp_path / "users.txt").write_text("ana:writer:$argon2id$x\n")
    run = _app(tmp_path, "--users", "users.txt")
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == (
        "error: users file users.txt, line 1: unknown role 'writer'; choose one of: reader, "
        "editor")
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "index").exists()  # refused before any work
