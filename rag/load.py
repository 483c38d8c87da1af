"""Reading articles from a corpus folder.

Supported files:

- ``.txt`` and ``.md``: the article text, with optional YAML front matter between ``---`` lines
  (``title``, ``url``, ``date``, ``author``, ``source`` and any other fields). Without front
  matter, a short first line followed by a blank line is taken as the title (``# Title`` in
  Markdown).
- ``.html`` / ``.htm``: main text and metadata extracted with trafilatura.
- ``.json``: one article object or a list of them; ``.jsonl``: one object per line. An object
  has ``text`` (or ``body`` / ``content``) and optionally ``id``, ``title``, ``url``, ``date``,
  ``author``, ``source``.

A file that cannot be read as articles raises :class:`SkipFile`; callers log it and go on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import CorpusError, first_line
from .spans import leading_date
from .types import Article

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
JSON_SUFFIXES = (".json", ".jsonl")
SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + JSON_SUFFIXES

META_FIELDS = ("title", "url", "date", "author", "source")
TEXT_FIELDS = ("text", "body", "content")

# Whole lines that web pages wrap around a story and that copy-paste drags along.
FURNITURE = re.compile(
    r"^\s*(skip to (main )?content|related (stories|articles|coverage|news)|advertisement|"
    r"share this (article|story)|sign up for our newsletter|read more|you may also like|"
    r"most popular|trending now|follow us on \w+)\s*:?\s*$",
    re.IGNORECASE | re.MULTILINE,
)
FRONT_MATTER = re.compile(r"\A\ufeff?---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|\Z)", re.DOTALL)


class SkipFile(Exception):
    """This file holds no usable article; the message says why."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def article_id(key: str) -> str:
    """Stable id from where an article lives (its file, and its place inside a JSON file)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def content_hash(text: str, meta: dict[str, str]) -> str:
    payload = json.dumps({"text": text, **meta}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def make_article(key: str, path: str, text: str, meta: dict) -> Article:
    """Build an :class:`Article` from text and loose metadata (values become strings)."""
    clean = {k: _as_str(v) for k, v in meta.items() if v is not None and _as_str(v) != ""}
    known = {k: clean.pop(k, "") for k in META_FIELDS}
    known["title"] = " ".join(known["title"].split())  # no stray no-break spaces or newlines
    if not known["date"] and (lead := leading_date(text)):
        known["date"] = lead[1]  # a search-result snippet: "Mar 3, 2024 ... story ..."
    clean.pop("id", None)
    for f in TEXT_FIELDS:
        clean.pop(f, None)
    extra = tuple(sorted(clean.items()))
    return Article(
        id=article_id(key),
        text=text,
        hash=content_hash(text, {**known, **dict(extra)}),
        path=path,
        extra=extra,
        **known,
    )


def _as_str(value) -> str:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(_as_str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def strip_furniture(text: str) -> str:
    """Remove whole lines of page furniture ("Skip to main content", "Related Stories")."""
    text = FURNITURE.sub("", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def decode(raw: bytes) -> str:
    if not raw.strip():
        raise SkipFile("empty file")
    if b"\x00" in raw[:8192]:
        raise SkipFile("binary file, not text")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SkipFile(f"not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None


def parse_text(raw: str, suffix: str) -> tuple[str, dict]:
    """Split front matter from body; fall back to a first-line title."""
    import yaml

    meta: dict = {}
    m = FRONT_MATTER.match(raw)
    if m:
        try:
            loaded = yaml.safe_load(m.group(1)) or {}
        except yaml.YAMLError as e:
            raise SkipFile(f"front matter is not valid YAML: {first_line(e)}") from None
        if not isinstance(loaded, dict):
            raise SkipFile("front matter must be `key: value` lines")
        meta = {str(k).lower(): v for k, v in loaded.items()}
        raw = raw[m.end() :]
    body = strip_furniture(raw.replace("\r\n", "\n"))
    if "title" not in meta:
        first, sep, rest = body.partition("\n")
        heading = first.lstrip("# ").strip() if suffix == ".md" and first.startswith("# ") else ""
        if heading:
            meta["title"], body = heading, rest.strip()
        elif rest.startswith("\n") and len(first) <= 200 and rest.strip():
            meta["title"], body = first.strip(), rest.strip()
    return body, meta


def parse_html(raw: str, url: str | None = None) -> tuple[str, dict]:
    """The article's text and metadata (title, canonical URL, date, author, site name) from an
    HTML page; ``url``: where it was fetched from (resolves relative links and names the site
    when the page does not). :class:`SkipFile` when it holds no article text."""
    import trafilatura

    doc = trafilatura.bare_extraction(raw, url=url, with_metadata=True, include_comments=False)
    if doc is None or not (doc.text or "").strip():
        raise SkipFile("no article text found in the HTML")
    text = doc.text.strip()
    title = (doc.title or "").strip()
    if title and text.startswith(title + "\n"):
        text = text[len(title) :].lstrip()
    meta = {
        "title": title,
        "url": doc.url,
        "date": doc.date,
        "author": doc.author,
        "source": doc.sitename or doc.hostname,
    }
    return strip_furniture(text), meta


def parse_json_objects(raw: str, suffix: str) -> list[dict]:
    try:
        if suffix == ".jsonl":
            objs = [json.loads(line) for line in raw.splitlines() if line.strip()]
        else:
            loaded = json.loads(raw)
            objs = loaded if isinstance(loaded, list) else [loaded]
    except json.JSONDecodeError as e:
        raise SkipFile(f"invalid JSON at line {e.lineno}: {e.msg}") from None
    return objs


def load_file(path: Path, corpus: Path) -> list[Article]:
    """All articles in one file. Raises :class:`SkipFile` when it holds none."""
    rel = path.relative_to(corpus).as_posix()
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise SkipFile(f"unsupported file type {suffix or '(none)'}; use {', '.join(SUFFIXES)}")
    raw = decode(path.read_bytes())
    if suffix in TEXT_SUFFIXES:
        text, meta = parse_text(raw, suffix)
        if not text:
            raise SkipFile("no article text")
        return [make_article(rel, rel, text, meta)]
    if suffix in HTML_SUFFIXES:
        text, meta = parse_html(raw)
        return [make_article(rel, rel, text, meta)]
    articles = []
    for i, obj in enumerate(parse_json_objects(raw, suffix)):
        if not isinstance(obj, dict):
            raise SkipFile(f"item {i} is not a JSON object")
        text = next((obj[f] for f in TEXT_FIELDS if isinstance(obj.get(f), str)), "")
        text = strip_furniture(text)
        if not text:
            log.warning("%s: item %d has no text field (%s); skipped", rel, i, "/".join(TEXT_FIELDS))
            continue
        key = f"{rel}#{obj.get('id') or obj.get('url') or i}"
        articles.append(make_article(key, rel, text, obj))
    if not articles:
        raise SkipFile("no object with a text field")
    return articles


def scan(corpus: Path) -> list[Path]:
    """Every candidate file below ``corpus``, sorted; hidden files and folders are ignored."""
    corpus = Path(corpus)
    if not corpus.is_dir():
        raise CorpusError(
            f"corpus folder {corpus} does not exist; create it and put articles in it "
            f"({', '.join(SUFFIXES)}), or pass --corpus DIR"
        )
    files = [
        p
        for p in corpus.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(corpus).parts)
    ]
    if not files:
        raise CorpusError(
            f"corpus folder {corpus} is empty; add articles ({', '.join(SUFFIXES)}) to it"
        )
    return sorted(files)


def iter_corpus(corpus: Path) -> Iterator[tuple[Path, list[Article] | Skipped]]:
    """Yield each file with its articles, or with why it was skipped (also logged)."""
    for path in scan(corpus):
        try:
            yield path, load_file(path, Path(corpus))
        except (SkipFile, OSError) as e:
            rel = path.relative_to(corpus).as_posix()
            log.warning("skipped %s: %s", rel, e)
            yield path, Skipped(rel, str(e))


def load_corpus(corpus: Path) -> tuple[list[Article], list[Skipped]]:
    """All articles of a corpus folder, and the files that were skipped."""
    articles: list[Article] = []
    skipped: list[Skipped] = []
    for _, result in iter_corpus(corpus):
        if isinstance(result, Skipped):
            skipped.append(result)
        else:
            articles.extend(result)
    if not articles:
        raise CorpusError(f"no readable article in {corpus}; see the warnings for each file")
    return articles, skipped
