"""The README's screenshot: the chat with a cited answer and its highlighted source.

    .venv/bin/python docs/screenshot.py          # writes docs/chat.png

Serves the shipped corpus (index/, brought up to date first) on a free port, asks a question and
a follow-up in headless chromium, and saves the page.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag import Settings, build_index  # noqa: E402
from rag.ui import Library, launch  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUESTIONS = ("How much did the Alibaba-led group invest in SenseTime?",
             "How much did it raise in Series B funding?")


def main() -> None:
    from playwright.sync_api import sync_playwright

    settings = Settings.from_env(corpus=ROOT / "corpus", index=ROOT / "index")
    build_index(settings)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = launch(Library(settings), "127.0.0.1", port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 760})
            page.goto(f"http://127.0.0.1:{port}", wait_until="load")
            for n, q in enumerate(QUESTIONS, 1):
                page.fill("#rag-question textarea", q)
                page.press("#rag-question textarea", "Enter")
                page.wait_for_function(
                    f"document.querySelectorAll('a.rag-cite').length >= {n}", timeout=60_000)
            page.locator("a.rag-cite").last.click()
            page.evaluate("window.scrollTo(0, 0)")
            page.screenshot(path=str(ROOT / "docs" / "chat.png"))
            browser.close()
    finally:
        app.close()


if __name__ == "__main__":
    main()
