"""The ``openai:MODEL`` generator against a real HTTP server on 127.0.0.1 that streams scripted
answers (server-sent events): streaming, the options sent, every failure as one line, the
pipeline's checks and its extractive fallback, discovery, the CLI and the eval."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from dataclasses import replace

import pytest
from conftest import SEED_CORPUS
from model_server import ModelServer, Script

import rag.embed
import rag.remote
from rag import Settings, build_index
from rag.cli import main
from rag.errors import GeneratorError, RagError
from rag.generate import available_generators, load_generator
from rag.pipeline import ABSTAIN_TEXT, SYSTEM_PROMPT, UNSUPPORTED, Pipeline
from rag.remote import OpenAIGenerator, base_url, estimate_tokens, list_models
from rag.retrieve import Index

ALIBABA = "How much did the Alibaba-led group invest in SenseTime?"
CITED = "Alibaba led a group of investors that poured $600 million into SenseTime [1]."
MOON = "SenseTime is based on the Moon [1]."

SCRIPTS = {
    "cited": Script.words(CITED),
    "moon": Script.words(f"{CITED} {MOON}"),
    "abstain": Script.words(ABSTAIN_TEXT),
    "slow-first": Script.words(CITED, first_delay=3.0),
    "slow": Script.words(CITED, delay=0.25),
    "drop": Script.words("Alibaba led a group", drop=True),
    "garbage": Script.words("Alibaba led", garbage=True),
    "error-event": Script.words("Alibaba led", error_event=True),
    "not-sse": Script.words(CITED, content_type="application/json"),
    "e500": Script(status=500, message="CUDA out of memory"),
    "e429": Script(status=429, message="too many requests"),
}


@pytest.fixture(scope="module")
def server():
    with ModelServer(SCRIPTS) as s:
        yield s


def settings_for(server, **kw) -> Settings:
    kw.setdefault("llm_first_token_timeout", 1.0)
    kw.setdefault("llm_timeout", 10.0)
    return Settings(llm_url=server.url, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the generator on its own ------------------------------------------------------------------


def test_base_url_and_settings():
    assert base_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080/v1"
    assert base_url("https://gpu.example:8000/v1/") == "https://gpu.example:8000/v1"
    with pytest.raises(RagError, match="not an http"):
        base_url("127.0.0.1:11434")
    with pytest.raises(RagError, match="RAG_LLM_URL"):
        OpenAIGenerator("llama3.1", Settings()).generate("s", "u")
    with pytest.raises(RagError, match="model's name"):
        load_generator("openai:", Settings(llm_url="http://127.0.0.1:1/v1"))
    with pytest.raises(RagError, match="llm_context"):
        Settings(llm_context=300, llm_max_tokens=200).validated()
    assert "llm_key" not in repr(Settings(llm_key="sk-secret"))


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("RAG_GENERATOR", "openai:cited")
    monkeypatch.setenv("RAG_LLM_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("RAG_LLM_FIRST_TOKEN_TIMEOUT", "2.5")
    monkeypatch.setenv("RAG_LLM_MAX_TOKENS", "64")
    s = Settings.from_env()
    gen = load_generator(s.generator, s)
    assert isinstance(gen, OpenAIGenerator) and gen.name == "openai:cited"
    assert (gen.url, s.llm_first_token_timeout, gen.max_new_tokens) == (
        "http://127.0.0.1:11434/v1", 2.5, 64)


def test_streams_pieces_as_they_arrive_with_the_options(server):
    gen = OpenAIGenerator("slow", settings_for(server, llm_max_tokens=123))
    t0 = time.monotonic()
    arrivals = [(piece, time.monotonic() - t0) for piece in gen.stream("SYS", "USER")]
    assert "".join(p for p, _ in arrivals).strip() == CITED
    # the first word is there long before the last (0.25 s between words on the server)
    assert arrivals[-1][1] - arrivals[0][1] > 1.5
    sent = server.requests[-1]
    assert sent["model"] == "slow" and sent["stream"] is True
    assert sent["temperature"] == 0 and sent["max_tokens"] == 123
    assert sent["messages"] == [{"role": "system", "content": "SYS"},
                                {"role": "user", "content": "USER"}]


def test_models_are_listed(server):
    assert list_models(settings_for(server)) == sorted(SCRIPTS)
    names = available_generators("extractive", settings_for(server))
    assert {f"openai:{m}" for m in SCRIPTS} <= set(names)
    # no server set: nothing listed; a dead one: the page still starts, without its models
    assert not [n for n in available_generators(None, Settings()) if n.startswith("openai:")]
    dead = Settings(llm_url=f"http://127.0.0.1:{free_port()}/v1")
    assert not [n for n in available_generators(None, dead) if n.startswith("openai:")]


@pytest.mark.parametrize("model, message", [
    ("e500", r"failed \(HTTP 500: CUDA out of memory\)"),
    ("e429", r"busy or rate-limited \(HTTP 429"),
    ("garbage", r"malformed stream"),
    ("error-event", r"reported an error while answering \(the model crashed\)"),
    ("drop", r"stream from the model server at .* broke off"),
    ("not-sse", r"answered application/json, not an event stream"),
    ("nope", r"model 'nope' is not served at .* \(it serves: abstain, cited, .*\)"),
])
def test_failures_are_one_line(server, model, message):
    with pytest.raises(GeneratorError, match=message) as e:
        OpenAIGenerator(model, settings_for(server)).generate("s", "u")
    assert "\n" not in str(e.value) and server.url in str(e.value)


def test_a_slow_first_token_times_out(server):
    gen = OpenAIGenerator("slow-first", settings_for(server, llm_first_token_timeout=0.4))
    t0 = time.monotonic()
    with pytest.raises(GeneratorError, match=r"sent no text within 0\.4 s.*FIRST_TOKEN"):
        gen.generate("s", "u")
    assert time.monotonic() - t0 < 2.0  # not the server's 3 s


def test_the_whole_answer_times_out(server):
    gen = OpenAIGenerator("slow", settings_for(server, llm_timeout=0.8))
    pieces = []
    with pytest.raises(GeneratorError, match=r"did not finish the answer within 0\.8 s"):
        for piece in gen.stream("s", "u"):
            pieces.append(piece)
    assert 1 <= len(pieces) < len(SCRIPTS["slow"].pieces)


def test_a_wrong_or_missing_key_is_refused():
    with ModelServer({"cited": SCRIPTS["cited"]}, key="sk-right") as s:
        assert list_models(Settings(llm_url=s.url, llm_key="sk-right")) == ["cited"]
        with pytest.raises(GeneratorError, match=r"refused the key \(HTTP 401.*RAG_LLM_KEY"):
            OpenAIGenerator("cited", Settings(llm_url=s.url, llm_key="sk-wrong")).generate("s", "u")
        with pytest.raises(GeneratorError, match="HTTP 401"):
            list_models(Settings(llm_url=s.url))


def test_unreachable_server_names_the_url_and_what_to_start():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(GeneratorError, match=r"cannot reach the model server at .*ollama serve"):
        OpenAIGenerator("m", Settings(llm_url=url, llm_retries=0)).generate("s", "u")


def test_a_connection_error_is_retried_but_an_error_status_is_not(server, monkeypatch):
    monkeypatch.setattr(rag.remote, "RETRY_PAUSE", 0.6)
    port = free_port()
    late: list[ModelServer] = []
    # nothing listens at first: the first attempt is refused; the server comes up before the
    # retry
    timer = threading.Timer(0.2, lambda: late.append(
        ModelServer({"cited": SCRIPTS["cited"]}, port=port).__enter__()))
    timer.start()
    try:
        gen = OpenAIGenerator("cited", Settings(llm_url=f"http://127.0.0.1:{port}/v1",
                                                llm_retries=1))
        assert gen.generate("s", "u").strip() == CITED
        assert len(late[0].requests) == 1
    finally:
        timer.join()
        for s in late:
            s.__exit__()
    before = len(server.requests)
    with pytest.raises(GeneratorError, match="HTTP 500"):
        OpenAIGenerator("e500", settings_for(server, llm_retries=3)).generate("s", "u")
    assert len(server.requests) == before + 1


def test_leaving_the_stream_early_closes_the_connection(server):
    before = server.disconnects
    pieces = OpenAIGenerator("slow", settings_for(server)).stream("s", "u")
    next(pieces)
    pieces.close()
    deadline = time.monotonic() + 3
    while server.disconnects == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.disconnects == before + 1  # the server saw the client leave


# -- in the pipeline, on a real index ----------------------------------------------------------


@pytest.fixture(scope="module")
def seed(real_embedder, tmp_path_factory):
    corpus = tmp_path_factory.mktemp("corpus")
    shutil.copy(next(SEED_CORPUS.glob("*.txt")), corpus)
    settings = Settings(corpus=corpus, index=tmp_path_factory.mktemp("index"),
                        embed_backend="torch")
    build_index(settings, embedder=real_embedder)
    return settings


def pipeline(seed, real_embedder, server, model, **kw) -> Pipeline:
    kw = {"llm_first_token_timeout": 1.0, "llm_timeout": 10.0, **kw}
    settings = replace(seed, llm_url=server.url, **kw)
    return Pipeline(Index(settings.index, settings, embedder=real_embedder), f"openai:{model}")


def article_text(index: Index, doc_id: str) -> str:
    return next(a for a in index.articles if a.id == doc_id).text


@pytest.mark.slow
def test_a_cited_answer_is_checked_and_streamed(seed, real_embedder, server):
    p = pipeline(seed, real_embedder, server, "cited")
    pieces = list(p.stream(ALIBABA))
    *text, answer = pieces
    assert len(text) > 5  # word by word, as the server sent them
    assert answer.generator == "openai:cited" and not answer.notice and not answer.abstained
    assert "$600 million" in answer.text and [c.n for c in answer.citations] == [1]
    c = answer.citations[0]
    assert article_text(p.index, c.doc_id)[c.start:c.end] == c.quote
    prompt = server.requests[-1]["messages"]
    assert prompt[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert prompt[1]["content"].startswith("Passages:\n[1]")
    assert prompt[1]["content"].endswith(f"Question: {ALIBABA}\nAnswer:")


@pytest.mark.slow
def test_an_unsupported_sentence_is_dropped(seed, real_embedder, server):
    answer = pipeline(seed, real_embedder, server, "moon").ask(ALIBABA)
    assert answer.dropped == ("SenseTime is based on the Moon.",)
    assert "Moon" not in answer.text and "$600 million" in answer.text
    assert not answer.notice


@pytest.mark.slow
def test_the_model_abstaining_is_an_abstention(seed, real_embedder, server):
    answer = pipeline(seed, real_embedder, server, "abstain").ask(ALIBABA)
    assert answer.abstained and answer.text == ABSTAIN_TEXT and not answer.citations


@pytest.mark.slow
@pytest.mark.parametrize("model, cause", [
    ("slow-first", "sent no text within 1 s"),
    ("drop", "broke off"),
    ("e500", "HTTP 500"),
    ("nope", "is not served"),
])
def test_a_failing_server_gives_the_extractive_answer_marked(seed, real_embedder, server,
                                                             model, cause):
    answer = pipeline(seed, real_embedder, server, model).ask(ALIBABA)
    assert cause in answer.notice and answer.notice.endswith("This is the extractive answer "
                                                             "instead.")
    assert not answer.abstained and "$600 million" in answer.text
    assert answer.short_answer is not None and answer.citations
    c = answer.citations[0]
    assert article_text(Index(seed.index, seed, embedder=real_embedder), c.doc_id)[
        c.start:c.end] == c.quote


@pytest.mark.slow
def test_nothing_supported_is_marked_too(seed, real_embedder):
    with ModelServer({"wrong": Script.words("It was $9 trillion [1].")}) as s:
        answer = pipeline(seed, real_embedder, s, "wrong").ask(ALIBABA)
    assert answer.notice == UNSUPPORTED and answer.dropped == ("It was $9 trillion.",)
    assert "$600 million" in answer.text


@pytest.mark.slow
def test_passages_are_cut_to_the_context_never_the_question(seed, real_embedder, server):
    full = pipeline(seed, real_embedder, server, "cited")
    full.ask(ALIBABA)
    whole = server.requests[-1]["messages"][1]["content"]
    # 40 tokens short of what the whole prompt needs
    need = (estimate_tokens(SYSTEM_PROMPT) + estimate_tokens(whole) + 3 * rag.remote.MESSAGE_TOKENS
            + 100)
    small = pipeline(seed, real_embedder, server, "cited", llm_context=need - 40,
                     llm_max_tokens=100)
    answer = small.ask(ALIBABA)
    cut = server.requests[-1]["messages"][1]["content"]
    assert len(cut) < len(whole) and cut.endswith(f"Question: {ALIBABA}\nAnswer:")
    assert small.generator.fits(SYSTEM_PROMPT, cut)
    assert not answer.notice and "$600 million" in answer.text
    # a question that cannot fit with even one sentence: said, and the extractive answer
    tiny = pipeline(seed, real_embedder, server, "cited", llm_context=300, llm_max_tokens=40)
    before = len(server.requests)
    answer = tiny.ask(ALIBABA + " Give the exact figure that the article states for it," * 5)
    assert "do not fit the model's context" in answer.notice and "RAG_LLM_CONTEXT" in answer.notice
    assert len(server.requests) == before  # nothing was sent


# -- the CLI and the eval ----------------------------------------------------------------------


@pytest.mark.slow
def test_cli_ask_and_models(seed, real_embedder, server, capsys, monkeypatch):
    monkeypatch.setenv("RAG_EMBED_BACKEND", "torch")
    monkeypatch.setattr(rag.embed, "load_embedder", lambda *a, **k: real_embedder)
    assert main(["models", "--llm-url", server.url]) == 0
    assert capsys.readouterr().out.split() == [f"openai:{m}" for m in sorted(SCRIPTS)]
    monkeypatch.setenv("RAG_LLM_URL", server.url)
    assert main(["ask", ALIBABA, "--index", str(seed.index), "--generator", "openai:cited",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["generator"] == "openai:cited" and out["notice"] == ""
    assert "$600 million" in out["answer"] and out["citations"]
    monkeypatch.setenv("RAG_LLM_FIRST_TOKEN_TIMEOUT", "0.5")
    assert main(["ask", ALIBABA, "--index", str(seed.index), "--generator",
                 "openai:slow-first"]) == 0
    out, err = capsys.readouterr()
    assert "$600 million" in out
    assert "note: the model server at" in err and "extractive answer instead" in err
    assert main(["models", "--llm-url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot reach the model server")


@pytest.mark.slow
def test_eval_measures_a_served_model(seed, real_embedder, server, tmp_path, capsys,
                                      monkeypatch):
    monkeypatch.setenv("RAG_EMBED_BACKEND", "torch")
    monkeypatch.setattr(rag.embed, "load_embedder", lambda *a, **k: real_embedder)
    gold = tmp_path / "mine.jsonl"
    gold.write_text(json.dumps({
        "id": "m1", "question": ALIBABA, "answers": ["$600 million"],
        "evidence": ["$600 million"], "kind": "number"}) + "\n")
    none = tmp_path / "none.toml"
    none.write_text("")
    common = ["eval", "--gold", str(gold), "--corpus", str(seed.corpus), "--index",
              str(tmp_path / "index"), "--thresholds", str(none),
              "--report", str(tmp_path / "report")]
    assert main(common + ["--json", "--llm-url", server.url, "--generator", "openai:cited"]) == 0
    run = json.loads(capsys.readouterr().out)["sets"]["mine"]["generators"]["openai:cited"]
    assert run["overall"]["accuracy"] == 1.0 and run["overall"]["fallbacks"] == 0
    assert main(common + ["--json", "--llm-url", server.url, "--generator", "openai:e500"]) == 0
    out, err = capsys.readouterr()
    run = json.loads(out)["sets"]["mine"]["generators"]["openai:e500"]
    assert run["overall"]["fallbacks"] == 1 and "HTTP 500" in run["results"][0]["notice"]
    assert "1 of 1 answers are the extractive fallback" in err
    # a server that is not there fails before anything is indexed, in one line
    code = main(common + ["--llm-url", f"http://127.0.0.1:{free_port()}/v1",
                          "--generator", "openai:cited"])
    assert code == 1 and "error: cannot reach the model server" in capsys.readouterr().err
