"""News from the web: article pages and RSS/Atom feeds, saved into the corpus and indexed.

An article page is fetched (:mod:`rag.fetch`), its text and metadata extracted with trafilatura,
and saved as a Markdown file with front matter: title, date, author, source (the site), the
canonical ``url``, the ``source_url`` that was asked for, and the ``fetched`` time. The same page
fetched again is recognised by its canonical URL (or the URL asked for) and by its text: it is
not added twice, and a page whose text changed updates its file. The index is then brought up to
date once for the whole run.

Feeds are recorded in ``.feeds.json`` in the corpus folder (a hidden file: never read as an
article), with the validators of their last fetch, so an unchanged feed costs one conditional
request. An update adds each new entry's page, with the entry's link and date, or the entry's
own content when the page cannot be fetched.

Use::

    from rag import Settings
    from rag.web import add_feed, add_urls, update_feeds

    settings = Settings(corpus="corpus", index="index")
    print("\\n".join(add_urls(["https://example.org/news/story"], settings).lines()))
    add_feed("https://example.org/feed.xml", settings)
    print("\\n".join(update_feeds(settings).lines()))
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .audit import Actor
from .config import Settings
from .corpus import replace_text, safe_name, write_new
from .errors import RagError, first_line
from .fetch import FEED_TYPES, HTML_TYPES, Fetcher, FetchError, Page
from .index import IndexReport, index_writer
from .load import SkipFile, parse_html, parse_text

log = logging.getLogger(__name__)

FEEDS_FILE = ".feeds.json"
MAX_SLUG = 80
#: Fewer words than this is not an article (a page of links and menus extracts to a few words).
MIN_WORDS = 20


# -- reports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UrlResult:
    """What happened to one URL: ``added``, ``updated`` (its text changed), ``present`` (the
    same page or the same text is in the corpus already) or ``refused`` (``reason`` says why).
    ``path`` is the article's file in the corpus."""

    url: str
    action: str
    path: str = ""
    title: str = ""
    reason: str = ""

    def line(self) -> str:
        if self.action == "refused":
            return f"✗ {self.url}: refused: {self.reason}"
        name = f" “{self.title}”" if self.title else ""
        if self.action == "present":
            return f"= {self.url}: already present as {self.path}{name}"
        return f"✓ {self.url}: {self.action} as {self.path}{name}"


@dataclass(frozen=True)
class AddReport:
    """The result of each URL, in order, and what the index update did (None when nothing
    changed)."""

    results: tuple[UrlResult, ...]
    index: IndexReport | None = None

    def lines(self) -> list[str]:
        return [r.line() for r in self.results]

    def count(self, action: str) -> int:
        return sum(r.action == action for r in self.results)

    def to_json(self) -> dict:
        return {"results": [r.__dict__ for r in self.results],
                "index": self.index.to_json() if self.index else None}


@dataclass(frozen=True)
class FeedResult:
    """One feed's update: how many entries were new, updated, unchanged or failed (one line
    each in ``failures``); ``error`` when the feed itself could not be read."""

    url: str
    title: str = ""
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    not_modified: bool = False
    error: str = ""
    failures: tuple[str, ...] = ()

    def line(self) -> str:
        if self.error:
            return f"✗ {self.url}: {self.error}"
        note = " (not modified)" if self.not_modified else ""
        return (f"{self.url}: {self.new} new, {self.updated} updated, {self.unchanged} "
                f"unchanged, {self.failed} failed{note}")


@dataclass(frozen=True)
class FeedsReport:
    feeds: tuple[FeedResult, ...]
    index: IndexReport | None = None

    def lines(self) -> list[str]:
        out = []
        for f in self.feeds:
            out.append(f.line())
            out += [f"  ✗ {x}" for x in f.failures]
        return out

    def to_json(self) -> dict:
        return {"feeds": [{**f.__dict__, "failures": list(f.failures)} for f in self.feeds],
                "index": self.index.to_json() if self.index else None}


# -- what the corpus holds from the web ----------------------------------------------------------


def normal_url(url: str) -> str:
    """``url`` without its fragment, with the scheme and host in lower case.

    >>> normal_url("HTTPS://News.Example.org/a/b?x=1#top")
    'https://news.example.org/a/b?x=1'
    """
    parts = urlsplit(url.strip())
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path or "/",
                       parts.query, ""))


def text_hash(text: str) -> str:
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()


@dataclass
class Known:
    """An article of the corpus that came from the web."""

    path: Path
    hash: str
    meta: dict


def article_file(text: str, meta: dict) -> str:
    """A Markdown article with YAML front matter (empty fields left out)."""
    import yaml

    head = yaml.safe_dump({k: v for k, v in meta.items() if v not in (None, "")},
                          allow_unicode=True, sort_keys=False, width=1000).strip()
    return f"---\n{head}\n---\n\n{text.strip()}\n"


def slug(title: str, url: str) -> str:
    """A file name stem from the title (or the URL's host and path).

    >>> slug("Harbor Robotics raises $45 million!", "https://x.example/a")
    'harbor-robotics-raises-45-million'
    >>> slug("", "https://news.example.org/2024/03/ferry-terminal.html")
    'news-example-org-2024-03-ferry-terminal-html'
    """
    words = title or (urlsplit(url).netloc + urlsplit(url).path)
    s = re.sub(r"[\W_]+", "-", words.lower()).strip("-")
    return s[:MAX_SLUG].rstrip("-") or "article"


def _iso_date(value) -> str:
    """An entry's time (a ``time.struct_time`` from feedparser) as YYYY-MM-DD."""
    if not value:
        return ""
    try:
        return dt.date(value.tm_year, value.tm_mon, value.tm_mday).isoformat()
    except (AttributeError, ValueError):
        return ""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


class Clipper:
    """Saves pages into the corpus for one run; remembers what it wrote so that the run can be
    indexed once, or undone if indexing fails."""

    def __init__(self, settings: Settings, fetcher: Fetcher):
        self.settings = settings
        self.fetcher = fetcher
        self.corpus = Path(settings.corpus)
        self.corpus.mkdir(parents=True, exist_ok=True)
        self.by_url: dict[str, Known] = {}
        self.by_hash: dict[str, Known] = {}
        for path in sorted(self.corpus.rglob("*.md")):
            if any(part.startswith(".") for part in path.relative_to(self.corpus).parts):
                continue
            try:
                text, meta = parse_text(path.read_text(encoding="utf-8"), ".md")
            except (OSError, UnicodeDecodeError, SkipFile):
                continue
            if meta.get("fetched"):  # written by this module
                self._remember(Known(path, text_hash(text), meta))
        self.new: list[Path] = []
        self.previous: dict[Path, str] = {}  # updated files' earlier text
        self.seen: set[str] = set()  # addresses fetched in this run

    def rel(self, path: Path) -> str:
        return path.relative_to(self.corpus).as_posix()

    def _remember(self, known: Known) -> None:
        for key in ("url", "source_url", "feed_link"):
            if known.meta.get(key):
                self.by_url[normal_url(str(known.meta[key]))] = known
        self.by_hash[known.hash] = known

    def known(self, url: str) -> Known | None:
        return self.by_url.get(normal_url(url))

    def clip(self, url: str, page: Page | None = None, entry: dict | None = None) -> UrlResult:
        """Fetch (unless ``page`` is given), extract and save the article at ``url``.
        ``entry``: what a feed says of it (``title``, ``date``, ``source``, ``feed``,
        ``feed_link``, ``feed_entry`` and ``content``, its own text to fall back on)."""
        entry = entry or {}
        self.seen.add(normal_url(url))
        try:
            if page is None:
                page = self.fetcher.get(url, accept=None)
            if page.content_type in FEED_TYPES:
                return UrlResult(url, "refused", reason="it is a feed; add it with `rag feed add "
                                 "URL` (or the chat's Add from URL)")
            if page.content_type not in HTML_TYPES:
                kind = page.content_type or "not given"
                raise FetchError(url, f"the content type is {kind}, not a web page (text/html)")
            text, meta = parse_html(page.text(), page.url)
            if len(text.split()) < MIN_WORDS:
                raise SkipFile("too little text")
        except (FetchError, SkipFile) as e:
            reason = e.reason if isinstance(e, FetchError) else "no article text found on the page"
            if not entry.get("content"):
                return UrlResult(url, "refused", reason=reason)
            log.info("%s: %s; using the feed entry's own text", url, reason)
            text, meta = entry["content"], {}
        final = page.url if page is not None else url
        front = {
            "title": entry.get("title") or meta.get("title") or "",
            "date": entry.get("date") or meta.get("date") or "",
            "author": meta.get("author") or "",
            "source": meta.get("source") or entry.get("source") or urlsplit(final).netloc,
            "url": meta.get("url") or final,
            "source_url": url,
            "fetched": _now(),
            "feed": entry.get("feed", ""),
            "feed_link": entry.get("feed_link", ""),
            "feed_entry": entry.get("feed_entry", ""),
        }
        return self.save(url, text, front)

    def save(self, url: str, text: str, front: dict) -> UrlResult:
        h = text_hash(text)
        title = front["title"]
        known = self.known(front["url"]) or self.known(url)
        if known is not None:
            if known.hash == h:
                return UrlResult(url, "present", self.rel(known.path), title)
            self.previous.setdefault(known.path, known.path.read_text(encoding="utf-8"))
            replace_text(known.path, article_file(text, front))
            self._remember(Known(known.path, h, front))
            return UrlResult(url, "updated", self.rel(known.path), title)
        if h in self.by_hash:
            return UrlResult(url, "present", self.rel(self.by_hash[h].path), title)
        path = write_new(self.corpus, safe_name(slug(title, front["url"]) + ".md"),
                         article_file(text, front))
        self.new.append(path)
        self._remember(Known(path, h, front))
        return UrlResult(url, "added", self.rel(path), title)

    def changed(self) -> bool:
        return bool(self.new or self.previous)

    def undo(self) -> None:
        for path in self.new:
            path.unlink(missing_ok=True)
        for path, text in self.previous.items():
            replace_text(path, text)

    def index(self, embedder=None, actor: Actor = Actor(via="url")
              ) -> tuple[IndexReport | None, dict[str, str]]:
        """Index what this run wrote: the report, and the new files that duplicate an article
        already indexed (removed again; file -> the article they duplicate). If indexing
        fails, every file is put back as it was and the error raised."""
        if not self.changed():
            return None, {}
        writer = index_writer(self.settings, embedder=embedder, actor=actor)
        try:
            report = writer.update()
        except Exception:
            self.undo()
            raise
        new = {self.rel(p) for p in self.new}
        duplicates = {d["path"]: d["duplicate_of"] for d in report.duplicates if d["path"] in new}
        if duplicates:
            for rel in duplicates:
                (self.corpus / rel).unlink(missing_ok=True)
            report = writer.update()
        return report, duplicates


def _settled(results: list[UrlResult], duplicates: dict[str, str]) -> list[UrlResult]:
    """New files that turned out to duplicate an indexed article become ``present``."""
    return [UrlResult(r.url, "present", duplicates[r.path], r.title)
            if r.action == "added" and r.path in duplicates else r for r in results]


def _fetcher(settings: Settings, allow_private: bool) -> Fetcher:
    return Fetcher(timeout=settings.fetch_timeout, max_mb=settings.fetch_max_mb,
                   allow_private=allow_private)


def add_urls(urls, settings: Settings | None = None, *, embedder=None,
             allow_private: bool = False, user: str = "cli") -> AddReport:
    """Fetch each article page, save it into the corpus and index it; one result per URL.
    Nothing already indexed is lost: if indexing fails, the corpus is put back as it was.
    ``user`` is who the audit trail records."""
    settings = settings or Settings.from_env()
    with _fetcher(settings, allow_private) as fetcher:
        clipper = Clipper(settings, fetcher)
        results = [clipper.clip(url.strip()) for url in urls]
    report, duplicates = clipper.index(embedder, Actor(user, "url"))
    return AddReport(tuple(_settled(results, duplicates)), report)


# -- feeds -------------------------------------------------------------------------------------


def _feeds_path(settings: Settings) -> Path:
    return Path(settings.corpus) / FEEDS_FILE


def list_feeds(settings: Settings | None = None) -> list[dict]:
    """The recorded feeds: ``url``, ``title``, ``added``, ``updated``, ``entries``, and the
    validators of the last fetch."""
    settings = settings or Settings.from_env()
    path = _feeds_path(settings)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise RagError(f"{path} is not readable JSON ({first_line(e)}); fix it, or delete it "
                       "and add the feeds again") from None
    feeds = data.get("feeds") if isinstance(data, dict) else None
    if not isinstance(feeds, list) or not all(isinstance(f, dict) and f.get("url") for f in feeds):
        raise RagError(f"{path} is not a feeds file (a \"feeds\" list of objects with a url); "
                       "fix it, or delete it and add the feeds again")
    return feeds


def _save_feeds(settings: Settings, feeds: list[dict]) -> None:
    path = _feeds_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({"feeds": feeds}, indent=2, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def _check_feed_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RagError(f"{url}: a feed is an http:// or https:// address")
    return url


def add_feed(url: str, settings: Settings | None = None) -> bool:
    """Record the feed at ``url``; False when it was recorded already."""
    settings = settings or Settings.from_env()
    url = _check_feed_url(url)
    feeds = list_feeds(settings)
    if any(normal_url(f["url"]) == normal_url(url) for f in feeds):
        return False
    feeds.append({"url": url, "title": "", "added": _now(), "updated": "", "entries": 0,
                  "etag": "", "last_modified": ""})
    _save_feeds(settings, feeds)
    return True


def remove_feed(url: str, settings: Settings | None = None) -> None:
    """Forget the feed at ``url`` (the articles it brought stay in the corpus)."""
    settings = settings or Settings.from_env()
    feeds = list_feeds(settings)
    kept = [f for f in feeds if normal_url(f["url"]) != normal_url(url)]
    if len(kept) == len(feeds):
        known = ", ".join(f["url"] for f in feeds) or "none"
        raise RagError(f"{url} is not a recorded feed (recorded: {known}); see `rag feed list`")
    _save_feeds(settings, kept)


def _entry_text(entry) -> str:
    """The entry's own text (its content, else its summary), as plain text."""
    raw = ""
    for c in entry.get("content") or ():
        raw = c.get("value") or raw
    raw = raw or entry.get("summary") or ""
    if not raw.strip():
        return ""
    if "<" not in raw:
        return raw.strip()
    import lxml.html

    try:
        return " ".join(lxml.html.fromstring(raw).text_content().split())
    except Exception:  # noqa: BLE001  (markup lxml cannot read: show nothing rather than tags)
        return ""


def _update_feed(feed: dict, clipper: Clipper) -> tuple[FeedResult, list[str]]:
    """The feed's result, and the files its new entries were saved as."""
    import feedparser

    url = feed["url"]
    try:
        page = clipper.fetcher.get(url, accept=None, etag=feed.get("etag", ""),
                                   last_modified=feed.get("last_modified", ""))
    except FetchError as e:
        return FeedResult(url, feed.get("title", ""), error=e.reason), []
    if page.not_modified:
        return FeedResult(url, feed.get("title", ""), unchanged=feed.get("entries", 0),
                          not_modified=True), []
    parsed = feedparser.parse(page.body, response_headers={
        "content-type": page.content_type + (f"; charset={page.charset}" if page.charset else ""),
        "content-location": page.url})
    if not parsed.entries and (parsed.get("bozo") or not parsed.get("version")):
        why = first_line(parsed.bozo_exception) if parsed.get("bozo") else "no feed elements"
        return FeedResult(url, feed.get("title", ""),
                          error=f"not a readable RSS or Atom feed ({why})"), []
    title = parsed.feed.get("title", "") or feed.get("title", "")
    counts = {"added": 0, "updated": 0, "present": 0, "refused": 0}
    failures, added = [], []
    for n, entry in enumerate(parsed.entries, 1):
        link = (entry.get("link") or "").strip()
        name = entry.get("title") or f"entry {n}"
        if not link:
            counts["refused"] += 1
            failures.append(f"“{name}”: the entry has no link")
            continue
        stamp = entry.get("updated") or entry.get("published") or ""
        known = clipper.known(link)
        if known is not None and (not stamp or known.meta.get("feed_entry") == stamp
                                  or normal_url(link) in clipper.seen):
            counts["present"] += 1  # the feed says it has not changed, or it was just fetched
            continue
        result = clipper.clip(link, entry={
            "title": entry.get("title", ""),
            "date": _iso_date(entry.get("published_parsed") or entry.get("updated_parsed")),
            "source": title, "feed": url, "feed_link": link, "feed_entry": stamp,
            "content": _entry_text(entry)})
        counts[result.action] += 1
        if result.action == "refused":
            failures.append(f"{link}: {result.reason}")
        elif result.action == "added":
            added.append(result.path)
    feed.update(title=title, updated=_now(), entries=len(parsed.entries), etag=page.etag,
                last_modified=page.last_modified)
    return FeedResult(url, title, counts["added"], counts["updated"], counts["present"],
                      counts["refused"], failures=tuple(failures)), added


def update_feeds(settings: Settings | None = None, *, urls=None, embedder=None,
                 allow_private: bool = False, user: str = "cli") -> FeedsReport:
    """Fetch every recorded feed (or those in ``urls``) and add their new entries' articles;
    one result per feed, then one index update for all (``user`` in the audit trail)."""
    settings = settings or Settings.from_env()
    feeds = list_feeds(settings)
    if not feeds:
        raise RagError("no feed is recorded; add one with `rag feed add URL`")
    wanted = {normal_url(u) for u in urls} if urls else None
    chosen = [f for f in feeds if wanted is None or normal_url(f["url"]) in wanted]
    if not chosen:
        raise RagError(f"{', '.join(urls)}: not a recorded feed; see `rag feed list`")
    with _fetcher(settings, allow_private) as fetcher:
        clipper = Clipper(settings, fetcher)
        done = [_update_feed(f, clipper) for f in chosen]
    report, duplicates = clipper.index(embedder, Actor(user, "feed"))
    results = []
    for result, added in done:
        # a new entry whose text was indexed already (under another file) is unchanged
        same = sum(p in duplicates for p in added)
        results.append(replace(result, new=result.new - same, unchanged=result.unchanged + same))
    _save_feeds(settings, feeds)  # the validators, once the articles are indexed
    return FeedsReport(tuple(results), report)


def add_from_url(url: str, settings: Settings, *, embedder=None,
                 allow_private: bool = False, user: str = "anonymous") -> list[str]:
    """The chat's "Add from URL": an article page is added; a feed is recorded and updated.
    One line per outcome; ``user`` is who the audit trail records."""
    url = url.strip()
    with _fetcher(settings, allow_private) as fetcher:
        try:
            page = fetcher.get(url, accept=None)
        except FetchError as e:
            return [f"✗ {url}: refused: {e.reason}"]
        if page.content_type in FEED_TYPES:
            added = add_feed(url, settings)
            report = update_feeds(settings, urls=[url], embedder=embedder,
                                  allow_private=allow_private, user=user)
            return ([f"✓ feed recorded: {url}" if added else f"= feed already recorded: {url}"]
                    + report.lines())
        clipper = Clipper(settings, fetcher)
        result = clipper.clip(url, page=page)
    index, duplicates = clipper.index(embedder, Actor(user, "url"))
    return [r.line() for r in _settled([result], duplicates)]


def parse_every(text: str) -> float:
    """Seconds in an interval such as ``15m``, ``1h``, ``90s`` or ``90``.

    >>> parse_every("15m"), parse_every("1h"), parse_every("90")
    (900.0, 3600.0, 90.0)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text or "")
    if not m or float(m.group(1)) <= 0:
        raise RagError(f"--every {text!r} is not an interval; give e.g. 15m, 1h or 90s")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def watch_feeds(every: float, settings: Settings, report, *, allow_private: bool = False,
                rounds: int | None = None) -> None:
    """Update the feeds every ``every`` seconds, calling ``report(FeedsReport)`` after each
    round, until stopped (or ``rounds`` rounds)."""
    n = 0
    while rounds is None or n < rounds:
        started = time.monotonic()
        report(update_feeds(settings, allow_private=allow_private))
        n += 1
        if rounds is not None and n >= rounds:
            return
        time.sleep(max(0.0, every - (time.monotonic() - started)))


