"""A language model the user already runs: Ollama, llama.cpp's ``llama-server``, vLLM, LM Studio
or any other server with an OpenAI-compatible chat-completions API.

The generator is called ``openai:MODEL``; the server's address is the ``llm_url`` setting
(``RAG_LLM_URL``), e.g. ``http://127.0.0.1:11434/v1`` for Ollama. The official ``openai`` client
talks to it and the answer streams as the server writes it. What the model says is then checked
by the pipeline exactly as a local model's is; this module only gets the text, or one line
(:class:`rag.errors.GeneratorError`) that says what went wrong and what to do.

Use (with Ollama running and ``ollama pull llama3.1`` done)::

    from rag import Settings
    from rag.remote import OpenAIGenerator, list_models

    settings = Settings(llm_url="http://127.0.0.1:11434/v1")
    list_models(settings)                      # ['llama3.1:latest', ...]
    OpenAIGenerator("llama3.1", settings).generate("Answer briefly.", "Why is the sky blue?")
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

from .config import Settings
from .errors import GeneratorError, RagError, first_line

log = logging.getLogger(__name__)

PREFIX = "openai"
#: Where each server serves its OpenAI-compatible API by default (for the README and errors).
SERVERS = {
    "Ollama": "http://127.0.0.1:11434/v1",
    "llama.cpp llama-server": "http://127.0.0.1:8080/v1",
    "vLLM": "http://127.0.0.1:8000/v1",
}
START_HINT = ("start it (`ollama serve`, `llama-server -m MODEL.gguf --port 8080` or "
              "`vllm serve MODEL`) or set RAG_LLM_URL to where it listens")
#: Prompt size is estimated without the model's tokenizer (the server has it, we do not):
#: English news runs at about four characters per token in the common tokenizers, so three is
#: on the safe side; each chat message adds a few tokens of its own.
CHARS_PER_TOKEN = 3
MESSAGE_TOKENS = 8
#: A list of models asked for discovery waits at most this long.
LIST_TIMEOUT = 5.0
RETRY_PAUSE = 0.5  # seconds before a new connection, doubled each time


def base_url(url: str) -> str:
    """The API base for ``url``: an address with no path gets ``/v1``, where Ollama,
    llama-server and vLLM all serve the OpenAI API.

    >>> base_url("http://127.0.0.1:11434"), base_url("http://gpu-box:8000/v1/")
    ('http://127.0.0.1:11434/v1', 'http://gpu-box:8000/v1')
    """
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RagError(f"RAG_LLM_URL={url!r} is not an http(s) address; give the server's "
                       f"OpenAI-compatible base, such as {SERVERS['Ollama']} for Ollama")
    url = url.rstrip("/")
    return url if parts.path.strip("/") else url + "/v1"


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens ``text`` takes (see ``CHARS_PER_TOKEN``).

    >>> estimate_tokens(""), estimate_tokens("Who led the round?")
    (0, 6)
    """
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _openai():
    """The ``openai`` client package, or one line that says how to install it."""
    try:
        import openai
    except ImportError:
        raise RagError("the openai:MODEL generators need the openai package; run `pip install "
                       "'rag-news[llm-server]'` (or `pip install openai`)") from None
    return openai


def _client(settings: Settings, timeout: float):
    import httpx

    openai = _openai()
    url = settings.llm_url
    if not url:
        raise RagError("the openai:MODEL generators need the model server's address: set "
                       f"RAG_LLM_URL (Ollama: {SERVERS['Ollama']}, llama-server: "
                       f"{SERVERS['llama.cpp llama-server']}, vLLM: {SERVERS['vLLM']})")
    # retries are ours (connection errors only): the client's would also repeat 429s and 500s
    return openai.OpenAI(base_url=base_url(url), api_key=settings.llm_key or "none",
                         max_retries=0,
                         timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))


def server_error(e: BaseException, url: str, model: str | None = None,
                 settings: Settings | None = None) -> GeneratorError:
    """One line for anything the client raised while talking to the server at ``url``."""
    import httpx
    import openai

    if isinstance(e, GeneratorError):
        return e
    if isinstance(e, openai.APITimeoutError):
        return GeneratorError(f"the model server at {url} did not answer in time; raise "
                              "RAG_LLM_TIMEOUT or use a smaller model")
    if isinstance(e, openai.APIConnectionError):
        cause = first_line(e.__cause__) if e.__cause__ else first_line(e)
        return GeneratorError(f"cannot reach the model server at {url} ({cause}); {START_HINT}")
    if isinstance(e, openai.APIStatusError):
        status, message = e.status_code, _message(e)
        if status == 404 and model is not None and settings is not None:
            try:
                names = list_models(settings)
            except RagError:
                names = None
            if names is not None:
                served = ", ".join(names) if names else "none"
                return GeneratorError(
                    f"model {model!r} is not served at {url} (it serves: {served}); choose one "
                    f"with --generator {PREFIX}:NAME, or load it in the server (`ollama pull "
                    f"{model}`)")
        if status == 404:
            return GeneratorError(f"{url} answered HTTP 404 ({message}); RAG_LLM_URL should be "
                                  "the server's OpenAI-compatible base, such as "
                                  f"{SERVERS['Ollama']}")
        if status in (401, 403):
            return GeneratorError(f"the model server at {url} refused the key (HTTP {status}: "
                                  f"{message}); set RAG_LLM_KEY to a key it accepts")
        if status == 429:
            return GeneratorError(f"the model server at {url} is busy or rate-limited (HTTP 429: "
                                  f"{message}); try again shortly")
        if status == 400:
            return GeneratorError(f"the model server at {url} rejected the request (HTTP 400: "
                                  f"{message}); if the prompt is too long for the model, lower "
                                  "RAG_LLM_CONTEXT to the context it was started with")
        return GeneratorError(f"the model server at {url} failed (HTTP {status}: {message}); "
                              "see the server's log")
    if isinstance(e, openai.APIError):  # an error event inside the stream
        return GeneratorError(f"the model server at {url} reported an error while answering "
                              f"({first_line(e)})")
    if isinstance(e, json.JSONDecodeError):
        return GeneratorError(f"the model server at {url} sent a malformed stream (an event "
                              "that is not JSON); is RAG_LLM_URL an OpenAI-compatible API?")
    if isinstance(e, httpx.HTTPError):
        return GeneratorError(f"the connection to the model server at {url} failed "
                              f"({first_line(e)}); see the server's log")
    return GeneratorError(f"the model server at {url} failed ({type(e).__name__}: "
                          f"{first_line(e)})")


def _message(e) -> str:
    """The server's own words from an error status, in one short line."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = inner.get("message") if isinstance(inner, dict) else inner
        if isinstance(text, str) and text.strip():
            return first_line(RuntimeError(text))[:200]
    return first_line(e)[:200]


def list_models(settings: Settings) -> list[str]:
    """The model ids the server at ``settings.llm_url`` reports (``GET /v1/models``)."""
    url = base_url(settings.llm_url) if settings.llm_url else ""
    client = _client(settings, LIST_TIMEOUT)
    try:
        return sorted(m.id for m in client.models.list())
    except Exception as e:  # noqa: BLE001  (every failure becomes one line)
        if type(e).__name__ == "NotFoundError":
            raise GeneratorError(f"{url} has no model list (HTTP 404 on /models); RAG_LLM_URL "
                                 f"should be the server's OpenAI-compatible base, such as "
                                 f"{SERVERS['Ollama']}") from None
        raise server_error(e, url) from None
    finally:
        client.close()


class OpenAIGenerator:
    """``model`` on the OpenAI-compatible server of ``settings`` (``llm_url``, ``llm_key``,
    the two timeouts, ``llm_max_tokens``, ``llm_temperature``, ``llm_context``,
    ``llm_retries``). Greedy (temperature 0) unless ``llm_temperature`` says otherwise."""

    def __init__(self, model: str, settings: Settings):
        if not model:
            raise RagError(f"give the model's name: --generator {PREFIX}:MODEL (`rag models` "
                           "lists those the server has)")
        _openai()  # installed, or one line now rather than at the first question
        self.model = model
        self.name = f"{PREFIX}:{model}"
        self.settings = settings
        self.url = base_url(settings.llm_url) if settings.llm_url else ""
        self.max_new_tokens = settings.llm_max_tokens
        self.context_tokens = settings.llm_context
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                self._client = _client(self.settings, self.settings.llm_timeout)
            return self._client

    def warm_up(self) -> None:
        """Check that the server answers, and say when it does not list the model (llama-server
        answers to any name, so that is only a warning)."""
        names = list_models(self.settings)
        if self.model not in names:
            log.warning("%s does not list model %r (it lists: %s); asking for it anyway",
                        self.url, self.model, ", ".join(names) or "none")

    def fits(self, system: str, user: str) -> bool:
        """Whether the two messages and the longest answer fit the model's context."""
        used = estimate_tokens(system) + estimate_tokens(user) + 3 * MESSAGE_TOKENS
        return used + self.max_new_tokens <= self.context_tokens

    def _open(self, system: str, user: str, max_tokens: int):
        """The chat-completions stream; a new connection after a connection error, never once
        the server has answered."""
        openai = _openai()

        pause = RETRY_PAUSE
        for attempt in range(self.settings.llm_retries + 1):
            try:
                return self.client.chat.completions.create(
                    model=self.model, stream=True, max_tokens=max_tokens,
                    temperature=self.settings.llm_temperature,
                    messages=[{"role": "system", "content": system},
                              {"role": "user", "content": user}])
            except openai.APIConnectionError as e:
                if isinstance(e, openai.APITimeoutError) or attempt == self.settings.llm_retries:
                    raise
                log.info("%s: %s; connecting again in %.1f s", self.url, first_line(e), pause)
                time.sleep(pause)
                pause *= 2

    def stream(self, system: str, user: str, max_new_tokens: int | None = None) -> Iterator[str]:
        """Yield the answer's text as the server streams it.

        Raises :class:`GeneratorError` when no text came within ``llm_first_token_timeout``
        seconds, or the answer did not end within ``llm_timeout``, or the server failed. Leaving
        the loop early closes the connection, which stops the server's generation."""
        import httpx

        openai = _openai()
        events: queue.Queue = queue.Queue()
        state = {"stream": None, "done": False}

        def work():
            try:
                stream = self._open(system, user, max_new_tokens or self.max_new_tokens)
                state["stream"] = stream
                if state["done"]:
                    return
                kind = stream.response.headers.get("content-type", "")
                if "text/event-stream" not in kind:
                    raise GeneratorError(
                        f"the model server at {self.url} answered {kind or 'without a type'}, "
                        "not an event stream; is RAG_LLM_URL an OpenAI-compatible API?")
                try:
                    for chunk in stream:
                        if state["done"]:
                            return
                        events.put(("text", _text(chunk, self.url)))
                except (openai.APIConnectionError, httpx.HTTPError) as e:
                    if state["done"]:
                        return
                    cause = first_line(e.__cause__) if e.__cause__ else first_line(e)
                    raise GeneratorError(f"the stream from the model server at {self.url} "
                                         f"broke off ({cause}); see the server's log") from None
                events.put(("end", None))
            except BaseException as e:  # noqa: BLE001  (raised in the reader's thread)
                events.put(("error", e))
            finally:
                if state["stream"] is not None:
                    state["stream"].close()

        threading.Thread(target=work, name=f"generate-{self.name}", daemon=True).start()
        start = time.monotonic()
        first = start + self.settings.llm_first_token_timeout
        last = start + self.settings.llm_timeout
        written = False
        try:
            while True:
                deadline = last if written else min(first, last)
                try:
                    kind, value = events.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise self._timeout(written) from None
                if kind == "end":
                    return
                if kind == "error":
                    raise server_error(value, self.url, self.model, self.settings) from None
                if value:
                    written = True
                    yield value
        finally:
            state["done"] = True
            if state["stream"] is not None:
                state["stream"].close()  # the server stops generating when the client leaves

    def _timeout(self, written: bool) -> GeneratorError:
        s = self.settings
        if written:
            return GeneratorError(f"the model server at {self.url} did not finish the answer "
                                  f"within {s.llm_timeout:g} s; raise RAG_LLM_TIMEOUT, lower "
                                  "RAG_LLM_MAX_TOKENS or use a smaller model")
        return GeneratorError(f"the model server at {self.url} sent no text within "
                              f"{s.llm_first_token_timeout:g} s; raise "
                              "RAG_LLM_FIRST_TOKEN_TIMEOUT (a server may load the model first) "
                              "or use a smaller model")

    def generate(self, system: str, user: str, max_new_tokens: int | None = None) -> str:
        """The whole answer; the text the pieces of :meth:`stream` join to."""
        return "".join(self.stream(system, user, max_new_tokens))

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _text(chunk, url: str) -> str:
    """The answer text of one streamed chunk ("" for a chunk that carries none, such as the
    role or the usage)."""
    try:
        choices = chunk.choices
        if not choices:
            return ""
        delta = choices[0].delta
        content = getattr(delta, "content", None) if delta is not None else None
    except (AttributeError, IndexError, KeyError, TypeError):
        raise GeneratorError(f"the model server at {url} sent a malformed stream (a chunk "
                             "without choices); is RAG_LLM_URL an OpenAI-compatible API?") from None
    if content is not None and not isinstance(content, str):
        raise GeneratorError(f"the model server at {url} sent a malformed stream (content "
                             f"of type {type(content).__name__})")
    return content or ""


def remote_generators(settings: Settings) -> list[str]:
    """``openai:ID`` for each model the configured server lists; none when no server is set or
    it cannot be reached (that is logged: the chat still starts)."""
    if not settings.llm_url:
        return []
    try:
        return [f"{PREFIX}:{m}" for m in list_models(settings)]
    except RagError as e:
        log.warning("not offering the model server's models: %s", e)
        return []
