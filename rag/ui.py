"""The browser chat: a Gradio page over a :class:`Pipeline`, with a sources panel, uploads and a
corpus panel.

Everything that reaches the page from an article, an answer or a user is escaped here before it
is rendered (:func:`render_answer`, :func:`render_sources`), so an article holding ``<script>``
or ``onerror=`` shows as text. Handlers never raise into Gradio: a :class:`RagError` becomes
its one-line message, anything else a short message while the traceback goes to the server log.

Use (with an index in ``index/``)::

    from rag.ui import Library, launch

    launch(Library(), "127.0.0.1", 7860)
"""

from __future__ import annotations

import html
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import gradio as gr

from .audit import Actor, AuditLog
from .config import Settings
from .corpus import safe_name, save_new
from .errors import CorpusError, RagError, first_line
from .index import IndexReport, index_writer
from .limits import Limits
from .load import SUFFIXES
from .pipeline import Pipeline
from .retrieve import open_store_index
from .types import Answer
from .users import User, UsersFile

log = logging.getLogger(__name__)

#: Who the audit trail names for changes made on a chat without sign-in.
ANONYMOUS = "anonymous"
#: A failed sign-in waits this long before it is answered, to slow down password guessing.
SIGN_IN_DELAY = 1.0

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
#: Uploads larger than this are refused with a message (RAG_MAX_UPLOAD_MB overrides it).
MAX_UPLOAD_MB = 5.0
MAX_K = 20
#: How long an upload waits for another server's update of a shared index before giving up.
WRITER_WAIT_S = 60.0
EXAMPLES = 3
CORPUS_COLUMNS = ["title", "date", "source", "file", "passages", "added by", "added"]

_MARKER = re.compile(r"\[(\d+)\]")
#: Every ASCII punctuation mark but & < > (which become HTML entities), backslash-escaped so
#: text renders as written: no emphasis, lists or headings, and no web address or e-mail
#: address turned into a live link (`https\://`, `www\.` do not match the autolink rules).
_MD_SPECIAL = re.compile(r"([!-%'-/:-;=?-@\[-`{-~])")

#: System fonts: the default theme fetches its fonts from Google, and the page must work offline.
THEME = gr.themes.Default(font=["system-ui", "Segoe UI", "Helvetica", "Arial", "sans-serif"],
                          font_mono=["ui-monospace", "Menlo", "Consolas", "monospace"])

CSS = """
.rag-abstain {border-left: 4px solid #b45309; background: #fef3c7; color: #78350f;
  padding: .4em .7em; border-radius: 4px;}
.rag-error {border-left: 4px solid #b91c1c; background: #fee2e2; color: #7f1d1d;
  padding: .4em .7em; border-radius: 4px;}
.rag-cite {font-weight: 600; text-decoration: none;}
.rag-source {border: 1px solid #d1d5db; border-radius: 6px; padding: .5em .7em; margin: .5em 0;}
.rag-source:target {outline: 3px solid #2563eb;}
.rag-source-head {font-size: .9em; margin-bottom: .3em;}
.rag-source mark {background: #fde68a; color: inherit; padding: 0 .1em;}
.rag-source mark .rag-short {background: #f59e0b; color: #1f2937; font-weight: 700;
  border-radius: 2px; padding: 0 .1em;}
.rag-answer-short {font-weight: 700;}
.rag-turn {font-weight: 600; margin-top: .8em;}
.rag-dropped {font-size: .85em; color: #6b7280;}
.rag-notice {border-left: 4px solid #b91c1c; background: #fee2e2; color: #7f1d1d;
  padding: .3em .7em; border-radius: 4px; font-size: .9em; margin-bottom: .4em;}
"""


# -- rendering ----------------------------------------------------------------------------------


def md_text(text: str) -> str:
    """``text`` made inert for the chat's Markdown renderer: Markdown and LaTeX punctuation
    backslash-escaped, then HTML escaped (``<``, ``>``, ``&`` become entities, which Markdown
    shows as written), so it shows exactly as written."""
    return html.escape(_MD_SPECIAL.sub(r"\\\1", text), quote=False)


def _anchor(turn: int, n: int) -> str:
    return f"rag-src-{turn}-{n}"


def render_answer(answer: Answer, turn: int) -> str:
    """The chat message for ``answer``: its text with each ``[n]`` a link to source ``n`` of
    this ``turn`` in the sources panel; an abstention in its own style; above it, the notice
    that a language model's answer was replaced by the extractive one, and why."""
    if answer.abstained:
        return (f'<div class="rag-abstain">⚠️ <strong>Not in the articles.</strong> '
                f"{html.escape(answer.text)}</div>")
    cited = {c.n for c in answer.citations}
    parts, at = [], 0
    short = answer.short_answer
    if short and answer.text.startswith(short.text):
        # the short answer comes first: shown in bold
        parts.append(f'<strong class="rag-answer-short">{md_text(short.text)}</strong>')
        at = len(short.text)
    for m in _MARKER.finditer(answer.text, at):
        parts.append(md_text(answer.text[at:m.start()]))
        n = int(m.group(1))
        parts.append(f'<a class="rag-cite" href="#{_anchor(turn, n)}">[{n}]</a>' if n in cited
                     else md_text(m.group(0)))
        at = m.end()
    parts.append(md_text(answer.text[at:]))
    body = "".join(parts)
    if answer.dropped:
        body += (f'<div class="rag-dropped">{len(answer.dropped)} generated sentence(s) left out: '
                 "no cited passage supports them.</div>")
    if answer.notice:
        # why this is the extractive answer (the model failed): one line, then a blank line so
        # that the answer below is read as Markdown again
        notice = html.escape(" ".join(answer.notice.split()))
        body = f'<div class="rag-notice">⚠️ {notice}</div>\n\n{body}'
    return body


def render_error(message: str) -> str:
    # one line: a blank line would end the HTML block and let the rest render as Markdown
    return f'<div class="rag-error">{html.escape(" ".join(message.split()))}</div>'


def _safe_url(url: str) -> str:
    """``url`` when it is a plain http(s) address, else nothing (no ``javascript:`` links)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return ""
    return url.strip() if parts.scheme in ("http", "https") and parts.netloc else ""


def render_sources(answer: Answer, turn: int) -> str:
    """One block per citation of ``answer``: the article's title, date and URL, and the cited
    passage with the supporting span highlighted. All text is escaped."""
    head = f'<div class="rag-turn">{turn}. {html.escape(answer.question)}</div>'
    if not answer.citations:
        return head + "<p>No sources: the articles don't answer this.</p>"
    blocks = [head]
    short = answer.short_answer
    for c in answer.citations:
        s = max(0, c.start - c.chunk_start)
        e = min(len(c.text), c.end - c.chunk_start)
        inner = html.escape(c.text[s:e])
        if short and short.citation == c.n and short.doc_id == c.doc_id and \
                c.start <= short.start < short.end <= c.end:
            # the short answer's own words, highlighted inside the supporting sentence
            a, b = short.start - c.chunk_start, short.end - c.chunk_start
            inner = (f"{html.escape(c.text[s:a])}<strong class=\"rag-short\">"
                     f"{html.escape(c.text[a:b])}</strong>{html.escape(c.text[b:e])}")
        passage = f"{html.escape(c.text[:s])}<mark>{inner}</mark>{html.escape(c.text[e:])}"
        meta = [f"<strong>{html.escape(c.title or c.doc_id)}</strong>"]
        if c.date:
            meta.append(html.escape(c.date))
        if url := _safe_url(c.url):
            meta.append(f'<a href="{html.escape(url, quote=True)}" target="_blank" '
                        f'rel="noopener noreferrer">{html.escape(url)}</a>')
        blocks.append(
            f'<div class="rag-source" id="{_anchor(turn, c.n)}">'
            f'<div class="rag-source-head">[{c.n}] {" · ".join(meta)}</div>'
            f"<div>{passage}</div></div>"
        )
    return "".join(blocks)


# -- uploads ------------------------------------------------------------------------------------


def max_upload_bytes() -> int:
    env = os.environ.get("RAG_MAX_UPLOAD_MB", "")
    try:
        mb = float(env) if env else MAX_UPLOAD_MB
    except ValueError:
        raise RagError(f"RAG_MAX_UPLOAD_MB={env!r} is not a number; fix or unset it") from None
    return int(mb * 1024 * 1024)


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{max(1, round(n / 1024))} KB"


# -- the service behind the page ----------------------------------------------------------------


class Library:
    """The index, one pipeline per generator, and the corpus writer, shared by all sessions.

    Chat history lives in each browser session, never here. With a users file, every action
    names its user: the user must still be in the file, only an ``editor`` may add articles,
    and each user's questions and uploads are limited (:class:`rag.limits.Limits`). Without
    one (the local default) there is no sign-in, and no limit.
    """

    def __init__(self, settings: Settings | None = None, embedder=None,
                 allow_private: bool | None = None, users: UsersFile | None = None):
        """``allow_private``: whether "Add from URL" may fetch from local and private
        addresses (default: ``RAG_ALLOW_PRIVATE``; off, so that a shared server cannot be made
        to reach hosts of its own network). ``users``: who may sign in (default: the settings'
        ``users_file``, read now so that a malformed file stops the server at start)."""
        from .fetch import allow_private_from_env

        self.settings = settings or Settings.from_env()
        self.allow_private = allow_private_from_env() if allow_private is None else allow_private
        if users is None and self.settings.users_file:
            users = UsersFile(self.settings.users_file)
        self.users = users
        if users is not None:
            users.users()  # a missing or malformed file is an error at start, not at sign-in
        self.limits = Limits(self.settings)
        self.audit = AuditLog.of(self.settings)
        self.index = open_store_index(self.settings, embedder=embedder)
        self._pipelines: dict[str, Pipeline] = {}
        self._pipelines_lock = threading.Lock()
        self._generators: list[str] | None = None
        self._lock = threading.Lock()  # one corpus change at a time

    @property
    def corpus(self) -> Path:
        return Path(self.settings.corpus)

    # -- who is asking -------------------------------------------------------------------------

    async def sign_in(self, name: str, password: str) -> bool:
        """Gradio's ``auth``: whether ``password`` is ``name``'s. Hashing runs off the event
        loop, and a failure is answered after :data:`SIGN_IN_DELAY`."""
        import asyncio

        if self.users is None:
            return True
        try:
            user = await asyncio.to_thread(self.users.verify, name, password)
        except RagError as e:  # the file became unreadable: nobody signs in until it is fixed
            log.error("sign-in refused: %s", e)
            user = None
        if user is None:
            log.warning("failed sign-in for %r", name)
            await asyncio.sleep(SIGN_IN_DELAY)
            return False
        return True

    def user(self, name: str | None) -> User | None:
        """The signed-in user ``name`` (None without sign-in); :class:`RagError` when a
        users file is set and ``name`` is not (or no longer) in it."""
        if self.users is None:
            return None
        user = self.users.get(name)
        if user is None:
            raise RagError("sign in first" if not name else
                           f"user {name!r} is not in the users file any more; sign in again")
        return user

    def may_add(self, name: str | None) -> bool:
        """Whether ``name`` may add articles: anyone without sign-in, else editors."""
        try:
            user = self.user(name)
        except RagError:
            return False
        return user is None or user.may_add

    def _editor(self, name: str | None) -> str:
        """The name to record for a change by ``name``; :class:`RagError` unless they may."""
        user = self.user(name)
        if user is not None and not user.may_add:
            raise RagError(f"{user.name} is a reader: only editors add articles; ask an "
                           "editor, or an admin to run `rag users add "
                           f"{user.name} --role editor`")
        return user.name if user is not None else ANONYMOUS

    def generators(self) -> list[str]:
        """The generators that can run here (checked once), then those added with
        :meth:`add_generator`: the settings list, the API's limit."""
        with self._pipelines_lock:
            if self._generators is None:
                from .generate import available_generators

                self._generators = available_generators(self.settings.generator,
                                                        self.settings)
                self._generators += [n for n in self._pipelines if n not in self._generators]
            return list(self._generators)

    def add_generator(self, name: str, model) -> Pipeline:
        """Offer ``model`` (an object with the :class:`rag.generate.Generator` methods
        ``stream`` and ``generate``, such as a client of a model server) under ``name``; its
        answers are checked like every other generator's."""
        pipeline = Pipeline(self.index, name, k=self.settings.k, model=model)
        with self._pipelines_lock:
            self._pipelines[name] = pipeline
            if self._generators is not None and name not in self._generators:
                self._generators.append(name)
        return pipeline

    def loaded_generators(self) -> list[str]:
        """The generators whose pipeline exists (a model loading or loaded)."""
        with self._pipelines_lock:
            return list(self._pipelines)

    def pipeline(self, generator: str | None = None) -> Pipeline:
        name = generator or self.settings.generator
        if name not in self.generators():
            raise RagError(f"unknown generator {name!r}; choose one of: "
                           f"{', '.join(self.generators())}")
        with self._pipelines_lock:
            if name not in self._pipelines:
                from .generate import preload

                self._pipelines[name] = Pipeline(self.index, name, k=self.settings.k,
                                                 model=preload(name, self.settings))
            return self._pipelines[name]

    def stream(self, question: str, history: Sequence[dict] = (), k: int | None = None,
               generator: str | None = None, user: str | None = None) -> Iterator[str | Answer]:
        """As :meth:`Pipeline.stream`, with ``k`` passages (clamped to 1..MAX_K; 0 or None:
        the default) and the ``generator`` chosen among :meth:`generators`. With sign-in,
        ``user`` must be in the users file and within the question limit
        (:class:`rag.limits.LimitError` past it)."""
        if (signed_in := self.user(user)) is not None:
            self.limits.question(signed_in.name)
        pipeline = self.pipeline(generator)
        self.index.reload()  # pick up articles added by another session or `rag index`
        k = max(1, min(MAX_K, int(k))) if k else None
        return pipeline.stream(question, history, k=k)

    def add_files(self, paths: Sequence[str | Path], names: Sequence[str] | None = None,
                  user: str | None = None) -> list[str]:
        """Save uploaded files into the corpus and index them; one line per file saying what
        happened. ``names`` are the names the user gave (default: the paths' names); ``user``
        the signed-in user (an editor, within the upload limits, when sign-in is on), whom
        the audit trail records.

        A file is refused (and not kept) when it is too large, of an unknown type, unreadable,
        or when every article in it duplicates one already indexed; duplicate items of a JSON
        file that adds something new are left out and counted. The index is updated once for
        all files, and nothing already indexed is lost if that fails.
        """
        names = list(names) if names is not None else [Path(p).name for p in paths]
        if len(names) != len(paths):
            raise ValueError("give one name per uploaded file")
        try:
            editor = self._editor(user)
        except RagError as e:
            return [f"✗ {e}"]
        limit = max_upload_bytes()
        lines: list[str] = []
        saved: dict[str, str] = {}  # corpus-relative path -> the name the user gave
        with self._lock:
            self.corpus.mkdir(parents=True, exist_ok=True)
            for path, name in zip(paths, names):
                try:
                    size = Path(path).stat().st_size
                    if size > limit:
                        raise CorpusError(
                            f"{name} is {_size(size)}, over the {_size(limit)} upload limit; "
                            "split it, or start the app with a larger RAG_MAX_UPLOAD_MB"
                        )
                    if self.users is not None:
                        self.limits.upload(editor, size)
                    dest = save_new(path, self.corpus, safe_name(name))
                except (RagError, OSError) as e:
                    lines.append(f"✗ {e}" if isinstance(e, RagError) else f"✗ {name}: {e}")
                    continue
                saved[dest.relative_to(self.corpus).as_posix()] = name
            if not saved:
                return lines
            try:
                report = self._update(Actor(editor, "upload"))
            except Exception as e:
                for rel in saved:
                    (self.corpus / rel).unlink(missing_ok=True)
                log.exception("indexing uploads failed")
                return lines + [f"✗ could not index {', '.join(saved.values())}: {first_line(e)}"]
            passages = self._passages_by_path()
            duplicates: dict[str, list[str]] = {}
            for d in report.duplicates:
                if d["path"] in saved:
                    duplicates.setdefault(d["path"], []).append(
                        saved.get(d["duplicate_of"], d["duplicate_of"]))
            skipped = {x["path"]: x["reason"] for x in report.skipped if x["path"] in saved}
            refused = []
            for rel, name in saved.items():
                if rel in skipped:
                    lines.append(f"✗ {name}: not added: {skipped[rel]}")
                elif rel not in passages:
                    originals = dict.fromkeys(duplicates.get(rel, ["an indexed article"]))
                    lines.append(f"✗ {name}: duplicate of {', '.join(originals)}, not added")
                else:
                    shown = f"{name} as {rel}" if rel != name else name
                    n, left_out = passages[rel], len(duplicates.get(rel, ()))
                    extra = (f" ({left_out} duplicate item{'s' * (left_out != 1)} left out)"
                             if left_out else "")
                    lines.append(f"✓ added {shown}: {n} passage{'s' * (n != 1)}{extra}")
                    continue
                refused.append(rel)
            for rel in refused:
                (self.corpus / rel).unlink(missing_ok=True)
            if refused:
                try:
                    self._update(Actor(editor, "upload"))  # forget the refused files' entries
                except Exception:  # the accepted files are indexed already
                    log.exception("updating the index after refusing uploads failed")
            self.index.reload()
        return lines

    def add_url(self, url: str, user: str | None = None) -> list[str]:
        """The "Add from URL" field: an article page is fetched, saved into the corpus and
        indexed; a feed is recorded and its entries added. One line per outcome. ``user`` as
        for :meth:`add_files` (a URL counts as one upload)."""
        from .web import add_from_url

        url = (url or "").strip()
        try:
            editor = self._editor(user)
        except RagError as e:
            return [f"✗ {e}"]
        if not url:
            return ["✗ give the address of an article or a feed (http:// or https://)"]
        with self._lock:
            try:
                if self.users is not None:
                    self.limits.upload(editor, 0)
                lines = add_from_url(url, self.index.settings, embedder=self.index.embedder,
                                     allow_private=self.allow_private, user=editor)
            except RagError as e:
                lines = [f"✗ {url}: {e}"]
            self.index.reload()
        return lines

    def _update(self, actor: Actor) -> IndexReport:
        # the index's own settings: the embedding backend and store it was built with; a
        # shared (Milvus) index another server is writing to is waited for a while
        return index_writer(self.index.settings, embedder=self.index.embedder,
                            wait=WRITER_WAIT_S, actor=actor).update()

    def _passages_by_path(self) -> dict[str, int]:
        """Indexed passages per corpus file, as the index holds them now."""
        self.index.reload()
        counts: dict[str, int] = {}
        for a in self.index.articles:
            counts[a.path] = counts.get(a.path, 0) + len(a.chunks)
        return counts

    def corpus_summary(self) -> str:
        st = self.index.stats()
        return (f"**{st['articles']} articles · {st['chunks']} passages** · embedder "
                f"`{st['embedder']}` · store `{st['store']}` · last update {st['updated_at']}")

    def corpus_rows(self) -> list[list[str]]:
        """Title, date, source (the site), file, passage count, and who added it when (from
        the audit trail) of every indexed article, newest file last."""
        added = self.audit.latest()
        rows = []
        for a in self.index.articles:
            entry = added.get(a.id)
            if entry is not None and entry["hash"] != a.hash:
                entry = None  # the trail has not seen this content (indexed before it began)
            rows.append([a.title or "(untitled)", a.date, a.source, a.path, str(len(a.chunks)),
                         entry["user"] if entry else "", entry["time"] if entry else ""])
        return rows

    def examples(self) -> list[str]:
        """Questions offered on an empty chat: about the titles of the latest articles."""
        titled = [a.title for a in self.index.articles if a.title][-EXAMPLES:]
        return [f"What does the article “{t}” report?" for t in reversed(titled)]


# -- the page -----------------------------------------------------------------------------------


def _message(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def _user(request: gr.Request | None) -> str | None:
    """The signed-in user of a request (None without sign-in)."""
    return getattr(request, "username", None) if request is not None else None


def build_app(library: Library):
    """The Gradio Blocks page. Per-session state: the visible chat, the plain-text history the
    pipeline reads for follow-ups, and the sources of every answer so far."""
    # No analytics, no telemetry, nothing leaves the machine (Gradio reads these when asked).
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    generators = library.generators()

    turns = library.settings.history_turns

    def chat(message, shown, history, sources, k, generator, request: gr.Request):
        question = (message or "").strip()
        if not question:
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        shown = list(shown or []) + [_message("user", md_text(question))]
        history = list(history or [])
        sources = list(sources or [])
        yield "", shown + [_message("assistant", "…")], history, sources, "".join(sources)
        answer, partial = None, ""
        try:
            for piece in library.stream(question, history, k=k, generator=generator,
                                        user=_user(request)):
                if isinstance(piece, Answer):
                    answer = piece
                else:
                    partial += piece
                    yield (gr.skip(), shown + [_message("assistant", md_text(partial))],
                           gr.skip(), gr.skip(), gr.skip())
            # numbered on, past the turns the history cap let go (the sources' anchors)
            turn = history[-1].get("turn", len(history) // 2) + 1 if history else 1
            reply, cited = render_answer(answer, turn), render_sources(answer, turn)
        except RagError as e:
            yield "", shown + [_message("assistant", render_error(str(e)))], history, sources, \
                "".join(sources)
            return
        except Exception as e:  # never a traceback in the page
            log.exception("answering %r failed", question)
            text = f"Something went wrong while answering ({type(e).__name__}); see the server log."
            yield "", shown + [_message("assistant", render_error(text))], history, sources, \
                "".join(sources)
            return
        shown.append(_message("assistant", reply))
        history += [_message("user", question),
                    {**_message("assistant", answer.text), "turn": turn}]
        sources = [cited] + sources
        # the server keeps the last `history_turns` turns of a chat (RAG_HISTORY_TURNS)
        shown, history, sources = shown[-2 * turns:], history[-2 * turns:], sources[:turns]
        yield "", shown, history, sources, "".join(sources)

    def choose_generator(name):
        # start loading the model now, not at the first question
        try:
            library.pipeline(name)
        except RagError as e:
            gr.Warning(html.escape(str(e)))

    def new_chat():
        return [], [], [], "", ""

    def pick_example(event: gr.SelectData):
        return event.value["text"]

    def upload(files, request: gr.Request):
        if not files:
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        paths = [f if isinstance(f, str) else f.name for f in files]
        try:
            lines = library.add_files(paths, user=_user(request))
        except Exception as e:
            log.exception("upload failed")
            lines = [f"✗ upload failed: {first_line(e)}"]
        status = "\n".join(f"- {md_text(line)}" for line in lines)
        return (None, status, library.corpus_summary(), library.corpus_rows())

    def add_url(url, request: gr.Request):
        try:
            lines = library.add_url(url, user=_user(request))
        except Exception as e:  # never a traceback in the page
            log.exception("adding %r failed", url)
            lines = [f"✗ adding {url} failed: {first_line(e)}"]
        status = "\n".join(f"- {md_text(line)}" for line in lines)
        return "", status, library.corpus_summary(), library.corpus_rows()

    def ask_api(question: str, k: int = 0, generator: str = "",
                request: gr.Request = None) -> dict:
        """One question, no history: the `rag ask --json` object, or {"error": message}."""
        from .pipeline import answer_json

        try:
            *_, answer = library.stream(question, (), k=k or None, generator=generator or None,
                                        user=_user(request))
            return answer_json(answer)
        except RagError as e:
            return {"error": str(e)}
        except Exception as e:
            log.exception("answering %r failed", question)
            return {"error": f"something went wrong ({type(e).__name__}); see the server log"}

    def on_load(request: gr.Request):
        # a page opened after `rag index` ran elsewhere shows the corpus as it is now; with
        # sign-in, who is signed in, and the add controls for editors only (the server
        # refuses a reader's additions whatever the page shows)
        name = _user(request)
        try:
            user = library.user(name)
        except RagError:
            user = None
        who = (f"Signed in as **{md_text(user.name)}** ({user.role}) · "
               "[Sign out](logout)" if user is not None else "")
        return (library.corpus_summary(), library.corpus_rows(), who,
                gr.update(visible=library.may_add(name)))

    with gr.Blocks(title="News Q&A", analytics_enabled=False) as app:
        with gr.Row():
            gr.Markdown("## News Q&A\nAnswers come only from the articles, and every sentence "
                        "cites the passage it came from.")
            who = gr.Markdown(elem_id="rag-user")
        history = gr.State([])
        sources = gr.State([])
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="Chat", height=480, sanitize_html=True, latex_delimiters=[],
                    feedback_options=None, elem_id="rag-chat", buttons=["copy", "copy_all"],
                    examples=[{"text": q} for q in library.examples()] or None,
                    placeholder="Ask a question about the articles.",
                )
                with gr.Row():
                    box = gr.Textbox(placeholder="Ask about the articles…", show_label=False,
                                     scale=5, elem_id="rag-question", submit_btn=True,
                                     max_length=2000)
                    clear = gr.Button("New chat", scale=1, elem_id="rag-new-chat")
            with gr.Column(scale=2):
                gr.Markdown("### Sources")
                panel = gr.HTML("<p>Cited passages appear here.</p>", elem_id="rag-sources")
        with gr.Accordion("Settings", open=False):
            k = gr.Slider(1, MAX_K, value=library.settings.k, step=1, label="Passages (k)",
                          elem_id="rag-k")
            generator = gr.Dropdown(generators, value=library.settings.generator,
                                    label="Generator", elem_id="rag-generator")
        with gr.Accordion("Articles", open=True):
            summary = gr.Markdown(library.corpus_summary(), elem_id="rag-corpus-summary")
            # hidden until the page knows who is signed in (shown at once without sign-in)
            with gr.Column(visible=library.users is None, elem_id="rag-add") as adding:
                files = gr.File(label=f"Add articles ({', '.join(SUFFIXES)}; up to "
                                f"{_size(max_upload_bytes())} each)", file_count="multiple",
                                file_types=list(SUFFIXES), elem_id="rag-upload")
                status = gr.Markdown(elem_id="rag-upload-status")
                with gr.Row():
                    url_box = gr.Textbox(label="Add from URL (an article page, or an RSS/Atom "
                                         "feed)", placeholder="https://…", scale=5,
                                         elem_id="rag-add-url")
                    url_button = gr.Button("Add", scale=1, elem_id="rag-add-url-button")
                url_status = gr.Markdown(elem_id="rag-url-status")
            table = gr.Dataframe(library.corpus_rows(), headers=CORPUS_COLUMNS,
                                 datatype=["str"] * len(CORPUS_COLUMNS), interactive=False,
                                 elem_id="rag-corpus")

        outputs = [box, chatbot, history, sources, panel]
        # One answer at a time across all sessions and the API: the models use every core.
        ask_inputs = [box, chatbot, history, sources, k, generator]
        box.submit(chat, ask_inputs, outputs, api_name="chat", concurrency_id="answer")
        chatbot.example_select(pick_example, None, box).then(
            chat, ask_inputs, outputs, api_visibility="private", concurrency_id="answer")
        clear.click(new_chat, None, outputs, api_visibility="private")
        generator.change(choose_generator, generator, None, api_visibility="private")
        chatbot.clear(new_chat, None, outputs, api_visibility="private")
        files.upload(upload, files, [files, status, summary, table], api_name="upload")
        url_outputs = [url_box, url_status, summary, table]
        url_button.click(add_url, url_box, url_outputs, api_name="add_url")
        url_box.submit(add_url, url_box, url_outputs, api_visibility="private")
        app.load(on_load, None, [summary, table, who, adding], api_visibility="private")
        gr.api(ask_api, api_name="ask", concurrency_id="answer")
    return app


def launch(library: Library, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, **kwargs):
    """Serve the page on ``host:port``: no share link, no analytics, uploads capped; with a
    users file, the page and its API only after Gradio's sign-in."""
    app = build_app(library)
    app.queue(default_concurrency_limit=1)
    if library.users is not None:
        kwargs.setdefault("auth", library.sign_in)
        kwargs.setdefault("auth_message", "Sign in to ask about the articles.")
    app.launch(server_name=host, server_port=port, share=False, show_error=False,
               max_file_size=4 * max_upload_bytes(), css=CSS, theme=THEME, footer_links=[],
               **kwargs)
    return app
