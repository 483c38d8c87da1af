"""Opt-in: a real llama.cpp server (llama-cpp-python's OpenAI-compatible server) on the bundled
SmolLM2 GGUF, answering through the ``openai:`` generator with every answer checked.

Skipped unless ``llama-cpp-python[server]`` is installed; it is not in the default install
because it compiles llama.cpp for minutes. To run it::

    .venv/bin/pip install 'llama-cpp-python[server]'
    .venv/bin/python -m pytest tests/test_llama_server.py
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from conftest import SEED_CORPUS

from rag import Settings, build_index
from rag.generate import smollm2_gguf
from rag.pipeline import UNSUPPORTED, Pipeline
from rag.remote import list_models
from rag.retrieve import Index

pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed "
                    "(opt-in: pip install 'llama-cpp-python[server]')")
pytestmark = pytest.mark.slow

ALIBABA = "How much did the Alibaba-led group invest in SenseTime?"


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()),
             "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
             "--n_ctx", "2048", "--n_threads", "2"],
            stdout=out, stderr=subprocess.STDOUT)
    settings = Settings(llm_url=f"http://127.0.0.1:{port}/v1", llm_first_token_timeout=60,
                        llm_timeout=120)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if list_models(settings):
                    break
            except Exception:  # noqa: BLE001  (not up yet)
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield settings
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_real_llama_server_answers_and_is_checked(llama_server, real_embedder,
                                                    tmp_path_factory):
    assert list_models(llama_server) == ["smollm2"]
    corpus = tmp_path_factory.mktemp("corpus")
    shutil.copy(next(SEED_CORPUS.glob("*.txt")), corpus)
    settings = replace(llama_server, corpus=corpus, index=tmp_path_factory.mktemp("index"),
                       embed_backend="torch")
    build_index(settings, embedder=real_embedder)
    index = Index(settings.index, settings, embedder=real_embedder)
    *pieces, answer = Pipeline(index, "openai:smollm2").stream(ALIBABA)
    assert pieces and answer.generator == "openai:smollm2"
    # whatever the small model wrote, what is shown is checked: a failure of the server would
    # be a notice other than "nothing supported"
    assert answer.notice in ("", UNSUPPORTED)
    assert answer.abstained or answer.citations
    for c in answer.citations:
        article = next(a for a in index.articles if a.id == c.doc_id)
        assert article.text[c.start:c.end] == c.quote
