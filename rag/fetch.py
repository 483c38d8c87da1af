"""Fetching pages and feeds from the web, politely and safely.

- Only http(s); a host that does not resolve, a timeout, an error status, a redirect loop, a
  body over the size limit, or a content type that was not asked for is a :class:`FetchError`
  of one line.
- Local and private addresses (loopback, RFC 1918, link-local, and the like) are refused,
  before the request and at every redirect, unless ``allow_private``: a shared chat server must
  not become a way into the network it runs in.
- ``robots.txt`` is read once per site a day (with protego; kept in the cache folder) and
  obeyed.
- Requests name the project in their User-Agent, and can be conditional (ETag /
  Last-Modified), so that an unchanged feed costs one small request.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from .errors import RagError, first_line

log = logging.getLogger(__name__)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rag-news")
    except PackageNotFoundError:
        return "dev"


USER_AGENT = (f"rag-news/{_version()} (local question answering over news articles; "
              "fetches the articles and feeds its user asked for)")
ROBOTS_AGENT = "rag-news"  # the name robots.txt rules address
DEFAULT_TIMEOUT = 10.0  # seconds
DEFAULT_MAX_MB = 5.0
MAX_REDIRECTS = 10
ROBOTS_TTL = 24 * 3600  # seconds a site's robots.txt is kept (as the big crawlers do)
HTML_TYPES = ("text/html", "application/xhtml+xml")
FEED_TYPES = ("application/rss+xml", "application/atom+xml", "application/rdf+xml",
              "application/feed+json", "application/xml", "text/xml")
PRIVATE_HINT = "pass --allow-private (RAG_ALLOW_PRIVATE=1 for the chat) to fetch from it"


def allow_private_from_env() -> bool:
    """``RAG_ALLOW_PRIVATE`` set to 1/true/yes: the chat may fetch from local addresses."""
    return os.environ.get("RAG_ALLOW_PRIVATE", "").strip().lower() in ("1", "true", "yes")


class FetchError(RagError):
    """A page or feed could not be fetched: ``url`` and ``reason``; the message is both."""

    def __init__(self, url: str, reason: str):
        self.url, self.reason = url, reason
        super().__init__(f"{url}: {reason}")


@dataclass(frozen=True)
class Page:
    """What a GET returned: ``url`` after redirects, the status (200, or 304 for a conditional
    request whose resource did not change), the media type, the body, and the validators to send
    next time."""

    url: str
    status: int
    content_type: str = ""
    body: bytes = b""
    charset: str = ""
    etag: str = ""
    last_modified: str = ""

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def text(self) -> str:
        """The body as text, in the charset the server declared (UTF-8 otherwise)."""
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # an unknown charset name
            return self.body.decode("utf-8", errors="replace")


def is_public(ip: str) -> bool:
    """Whether ``ip`` is an address of the public internet.

    >>> is_public("93.184.216.34"), is_public("127.0.0.1"), is_public("10.1.2.3")
    (True, False, False)
    >>> is_public("::ffff:192.168.0.1"), is_public("169.254.169.254"), is_public("fd00::1")
    (False, False, False)
    """
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_global and not addr.is_multicast


class Fetcher:
    """One HTTP client for a run: the limits, the address policy, and the robots.txt of every
    site seen so far."""

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, max_mb: float = DEFAULT_MAX_MB,
                 allow_private: bool = False, robots: bool = True):
        import httpx

        self.timeout = timeout
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.allow_private = allow_private
        self.robots = robots
        self.client = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False,
                                   headers={"User-Agent": USER_AGENT})
        self._robots: dict[str, object] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the checks --------------------------------------------------------------------------

    def check_address(self, url: str) -> None:
        """Refuse what is not http(s), a host that does not resolve, and (unless allowed) a
        host that resolves to a local or private address."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(url, "only http:// and https:// addresses can be fetched")
        host = parts.hostname
        if not host:
            raise FetchError(url, "no host name in the address")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except ValueError:
            raise FetchError(url, "the port is not a number") from None
        except (socket.gaierror, UnicodeError):
            raise FetchError(url, f"host {host} does not resolve; check the address") from None
        if self.allow_private:
            return
        for info in infos:
            ip = info[4][0]
            if not is_public(ip):
                raise FetchError(url, f"{host} is a local or private address ({ip}); "
                                 f"{PRIVATE_HINT}")

    def allowed_by_robots(self, url: str) -> bool:
        """Whether the site's robots.txt lets this project fetch ``url`` (a site without one,
        or whose robots.txt cannot be read, allows everything)."""
        if not self.robots:
            return True
        from protego import Protego

        parts = urlsplit(url)
        site = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            rules = self._robots.get(site)
        if rules is None:
            rules = Protego.parse(self._robots_txt(site))
            with self._lock:
                self._robots[site] = rules
        return rules.can_fetch(url, ROBOTS_AGENT)

    def _robots_txt(self, site: str) -> str:
        """The site's robots.txt, from the cache when it was fetched within ``ROBOTS_TTL``
        (so that a feed update that finds nothing new costs one request, not two)."""
        import hashlib

        from .config import cache_dir

        cached = cache_dir() / "robots" / (hashlib.sha256(site.encode()).hexdigest()[:24] + ".txt")
        try:
            if time.time() - cached.stat().st_mtime < ROBOTS_TTL:
                return cached.read_text(encoding="utf-8")
        except OSError:
            pass
        text = ""
        try:
            text = self._get(f"{site}/robots.txt", accept=None, follow=True).text()
        except FetchError as e:
            log.info("no robots.txt for %s (%s); fetching as allowed", site, e)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, cached)
        except OSError as e:  # a read-only cache: fetched again next time
            log.debug("cannot cache robots.txt of %s: %s", site, e)
        return text

    # -- fetching ----------------------------------------------------------------------------

    def get(self, url: str, accept: tuple[str, ...] | None = HTML_TYPES, etag: str = "",
            last_modified: str = "") -> Page:
        """GET ``url`` (following redirects, each one checked); ``accept``: the media types
        wanted (None: any); ``etag`` / ``last_modified``: from the last fetch, to get a 304
        when nothing changed."""
        return self._get(url, accept, etag=etag, last_modified=last_modified, follow=True,
                         robots=True)

    def _get(self, url: str, accept, etag: str = "", last_modified: str = "",
             follow: bool = True, robots: bool = False) -> Page:
        import httpx

        seen = [url]
        headers = {}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        for _ in range(MAX_REDIRECTS + 1):
            self.check_address(url)
            if robots and not self.allowed_by_robots(url):
                raise FetchError(url, "the site's robots.txt disallows fetching it")
            try:
                with self.client.stream("GET", url, headers=headers) as r:
                    if r.has_redirect_location and follow:
                        target = urljoin(url, r.headers.get("location", ""))
                        if target in seen:
                            raise FetchError(seen[0], f"redirect loop ({' -> '.join(seen)} "
                                             f"-> {target})")
                        seen.append(target)
                        url = target
                        continue
                    return self._read(url, r, accept)
            except httpx.TimeoutException:
                raise FetchError(url, f"no answer within {self.timeout:g} s; try again later, "
                                 "or give a longer --timeout (RAG_FETCH_TIMEOUT)") from None
            except httpx.HTTPError as e:
                raise FetchError(url, f"{first_line(e)}") from None
        raise FetchError(seen[0], f"more than {MAX_REDIRECTS} redirects")

    def _read(self, url: str, r, accept) -> Page:
        etag = r.headers.get("etag", "")
        modified = r.headers.get("last-modified", "")
        if r.status_code == 304:
            return Page(url, 304, etag=etag, last_modified=modified)
        if r.status_code >= 400 or r.status_code >= 300:
            reason = r.reason_phrase or "error"
            raise FetchError(url, f"the server answered HTTP {r.status_code} ({reason})")
        kind, _, params = r.headers.get("content-type", "").partition(";")
        kind = kind.strip().lower()
        charset = ""
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset":
                charset = value.strip().strip('"')
        if accept is not None and kind not in accept:
            raise FetchError(url, f"the content type is {kind or 'not given'}, not "
                             f"{' or '.join(accept[:2])}")
        limit_mb = f"{self.max_bytes / 1024 / 1024:g} MB"
        length = r.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            raise FetchError(url, f"the page is {int(length) / 1024 / 1024:.1f} MB, over the "
                             f"{limit_mb} limit")
        body = bytearray()
        deadline = time.monotonic() + 3 * self.timeout  # a page that trickles in forever
        for chunk in r.iter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                raise FetchError(url, f"the page is over the {limit_mb} limit")
            if time.monotonic() > deadline:
                raise FetchError(url, f"the page took over {3 * self.timeout:g} s to arrive")
        return Page(url, r.status_code, kind, bytes(body), charset, etag, modified)
