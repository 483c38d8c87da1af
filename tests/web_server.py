"""A small news site on 127.0.0.1 for the tests (standard library only): article pages with and
without metadata, an RSS 2.0 and an Atom feed that honour ETag / If-None-Match and can be changed
between two updates, a redirect loop, a slow page, a 6 MB page, a PDF, a 404, a page without
article text, a malformed feed, and a robots.txt that disallows /private/.

Every request is recorded in ``site.requests`` as (method, path, headers).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler

from local_http import LocalServer


def article_page(title: str, paragraphs: list[str], *, date: str = "", author: str = "",
                 site: str = "", canonical: str = "") -> str:
    head = [f"<title>{title} | {site or 'News'}</title>"]
    if canonical:
        head.append(f'<link rel="canonical" href="{canonical}">')
    if date:
        head.append(f'<meta property="article:published_time" content="{date}">')
    if author:
        head.append(f'<meta name="author" content="{author}">')
    if site:
        head.append(f'<meta property="og:site_name" content="{site}">')
    head.append(f'<meta property="og:title" content="{title}">')
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (f"<!doctype html><html><head><meta charset='utf-8'>{''.join(head)}</head><body>"
            "<nav><a href='/'>Home</a> <a href='/world'>World</a></nav>"
            f"<article><h1>{title}</h1>{body}</article>"
            "<footer>Copyright The Calder Courier</footer></body></html>")


FERRY = [
    "The harbour authority of Velmora approved a new ferry terminal on Tuesday, ending a "
    "decade of debate over the city's crowded waterfront.",
    "The terminal will cost 48 million euros and is due to open in 2029, according to the "
    "authority's chair, Ilse Marten.",
    "The mayor said the project would double passenger capacity on the northern routes and "
    "take some four thousand cars a day off the coastal road.",
]
TRAM = [
    "Port Calder opened its first tram line on Saturday after four years of construction.",
    "The 11-kilometre line links the harbour with the university and cost 212 million euros, "
    "the city's transport office said.",
    "About 30,000 passengers a day are expected to ride the line in its first year, said "
    "transport director Amal Okafor.",
]
MARATHON = [
    "Kenyan runner Joyce Wanjiru won the Port Calder marathon on Sunday in 2 hours 21 minutes, "
    "a course record.",
    "Wanjiru pulled away from the lead group after the harbour bridge at the 30-kilometre mark.",
    "Organisers said 14,000 runners finished the race, the most in its history.",
]
LIBRARY = [
    "The Port Calder city library will stay open until midnight during exam weeks, the council "
    "decided on Monday after a petition signed by 5,200 students.",
    "The late opening will cost about 90,000 euros a year, paid from the culture budget.",
    "Head librarian Tomas Ridder said extra staff would be hired for the evening shifts.",
]


@dataclass
class Feed:
    """A feed's entries: (title, path, date as RFC 822, summary); ``etag`` changes with them."""

    title: str
    entries: list[tuple[str, str, str, str]] = field(default_factory=list)

    def etag(self) -> str:
        return '"' + hashlib.sha1(repr((self.title, self.entries)).encode()).hexdigest()[:12] + '"'


def rss(feed: Feed, base: str) -> str:
    items = "".join(
        f"<item><title>{t}</title>" + (f"<link>{base}{p}</link>" if p else "")
        + f"<pubDate>{d}</pubDate><description>{s}</description></item>"
        for t, p, d, s in feed.entries)
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            f"<title>{feed.title}</title><link>{base}/</link><description>news</description>"
            f"{items}</channel></rss>")


def atom(feed: Feed, base: str) -> str:
    def iso(d):
        return datetime.strptime(d, "%a, %d %b %Y %H:%M:%S %z").isoformat()

    entries = "".join(
        f"<entry><title>{t}</title><link href='{base}{p}'/><id>{base}{p}</id>"
        f"<updated>{iso(d)}</updated><summary>{s}</summary></entry>"
        for t, p, d, s in feed.entries)
    return ("<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
            f"<title>{feed.title}</title><id>{base}/atom</id>"
            f"<updated>2026-03-05T00:00:00Z</updated>{entries}</feed>")


def rfc822(y, m, d) -> str:
    return format_datetime(datetime(y, m, d, 9, 0, tzinfo=timezone.utc))


class NewsSite(LocalServer):
    """``with NewsSite() as site:`` serves at ``site.base`` (http://127.0.0.1:PORT)."""

    def __init__(self):
        self.pages: dict[str, tuple[str, bytes]] = {}  # path -> (content type, body)
        self.requests: list[tuple[str, str, dict]] = []
        self.rss = Feed("Calder Courier", [
            ("Velmora approves ferry terminal", "/news/ferry.html", rfc822(2026, 3, 1),
             "The harbour authority approved a terminal."),
            ("Port Calder opens tram line", "/news/tram.html", rfc822(2026, 3, 2),
             "The first tram line opened."),
        ])
        self.atom = Feed("Calder Courier sport", [
            ("Wanjiru wins the marathon", "/sport/marathon.html", rfc822(2026, 4, 12),
             "A course record in Port Calder."),
        ])
        self.set_page("/news/ferry.html", article_page(
            "Velmora approves ferry terminal", FERRY, date="2026-03-01", author="Lena Brandt",
            site="The Calder Courier", canonical="/news/ferry.html"))
        self.set_page("/news/tram.html", article_page(
            "Port Calder opens tram line", TRAM, date="2026-03-02", site="The Calder Courier"))
        self.set_page("/sport/marathon.html", article_page(
            "Wanjiru wins the marathon", MARATHON, date="2026-04-12", site="Courier Sport"))
        self.set_page("/plain.html", "<html><body>" + "".join(
            f"<p>{p}</p>" for p in LIBRARY) + "</body></html>")
        self.set_page("/empty.html", "<html><head><title>Nothing</title></head><body>"
                      "<nav><a href='/'>Home</a></nav></body></html>")
        self.set_page("/private/memo.html", article_page("Internal memo", LIBRARY))
        self.set_page("/report.pdf", b"%PDF-1.4 not really", "application/pdf")
        six_mb = "x" * (6 * 1024 * 1024)
        self.set_page("/big.html", f"<html><body><p>{six_mb}</p></body></html>")
        self.set_page("/bad-feed.xml", "<rss><channel><title>Broken<item></rss",
                      "application/rss+xml")
        self.set_page("/robots.txt", "User-agent: *\nDisallow: /private/\n", "text/plain")
        self.serve(self._handler())
        self.base = f"http://127.0.0.1:{self.port}"

    def set_page(self, path: str, body: str | bytes, kind: str = "text/html; charset=utf-8"):
        self.pages[path] = (kind, body.encode() if isinstance(body, str) else body)

    def url(self, path: str) -> str:
        return self.base + path

    def gets(self, path: str) -> list[dict]:
        """The headers of every GET of ``path`` so far."""
        return [h for m, p, h in self.requests if m == "GET" and p == path]

    def _handler(self):
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status: int, kind: str = "", body: bytes = b"", headers=()):
                self.send_response(status)
                if kind:
                    self.send_header("Content-Type", kind)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0]
                site.requests.append(("GET", path, dict(self.headers)))
                if path in ("/loop-a", "/loop-b"):
                    other = "/loop-b" if path == "/loop-a" else "/loop-a"
                    return self._send(302, headers=[("Location", other)])
                if path == "/moved":
                    return self._send(301, headers=[("Location", "/news/ferry.html")])
                if path == "/slow.html":
                    time.sleep(3)
                    return self._send(200, "text/html", b"<p>late</p>")
                if path in ("/feed.rss", "/feed.atom"):
                    feed = site.rss if path == "/feed.rss" else site.atom
                    tag = feed.etag()
                    if self.headers.get("If-None-Match") == tag:
                        return self._send(304, headers=[("ETag", tag)])
                    body = (rss if path == "/feed.rss" else atom)(feed, site.base).encode()
                    kind = "application/rss+xml" if path == "/feed.rss" else \
                        "application/atom+xml"
                    return self._send(200, kind, body, [("ETag", tag)])
                if path not in site.pages:
                    return self._send(404, "text/html", b"<h1>Not found</h1>")
                kind, body = site.pages[path]
                self._send(200, kind, body)

        return Handler
