"""A small multi-site news web on loopback, for ``sednaya-monitor demo`` and the crawl tests.

Each sub-directory of ``root`` is one site served on its own ``127.0.0.1`` port (so robots.txt,
politeness and attribution are per site, as on the real web). Files are served as they are, after
byte-level substitutions: ``{{base}}`` becomes the site's base URL and ``{{site:NAME}}`` another
site's; ``{{canonical}}`` the base of the site's ``rel=canonical`` links (``canonical`` with ``{site}``
replaced: the demo's stable ``https://<site>.demo.sednaya-monitor.invalid``; by default the base URL);
``{{today:rfc822}}`` and ``{{today:iso}}`` become today's date at 00:00 UTC (feeds whose newest
entry must look recent; the date changes once a day, so conditional GET still sees an unchanged file).

The demo web (:data:`DEMO_SITES`, package data) is also the base of the test web: the tests serve a copy
of it with their own sites, broken pages and feeds listing them copied over it (``tests/sites``).
``X.gz.src`` is served at ``X.gz``, gzip-compressed after substitution. Static answers carry an
``ETag`` and ``Last-Modified`` and honour ``If-None-Match`` (304).

Pages with a query string (WordPress ``/?p=42``, legacy ``/news.php?id=7``) live in files named
``<name>__<query>.html`` (``__p=42.html``, ``news.php__id=7.htm``; :func:`served_path` maps back).
``.html`` is served as ``text/html; charset=utf-8``; ``.htm`` as bare ``text/html``, like a legacy server
that leaves the charset to the page's ``<meta http-equiv>``.

Broken cases live under ``/_broken/`` on every site: ``status/<code>``, ``slow`` (answers after
``slow_s`` seconds), ``loop/<n>`` (a redirect loop), ``huge`` (``huge_bytes`` of HTML),
``redirect?to=<url>`` (301). ``dynamic`` handlers (site name -> callable) answer whole sites in code.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

logger = logging.getLogger(__name__)

DEMO_SITES = Path(__file__).resolve().parent / "demo_site" / "sites"  # the shipped demo web (package data)
# The demo pages' canonical links point at stable hosts, so a second demo run, on new ports, recognises
# the articles it already has (crawlers/demo_site/sources.toml.tmpl).
DEMO_CANONICAL = "https://{site}.demo.sednaya-monitor.invalid"
LAST_MODIFIED = "Mon, 09 Dec 2024 08:00:00 GMT"  # fixed: fixture files do not change between requests
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html",  # no charset: the page's <meta http-equiv="Content-Type"> decides
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".pdf": "application/pdf",
    ".gz": "application/x-gzip",
}


QUERY_SEPARATOR = "__"  # file name = <path name>__<query> + .html/.htm for pages served with a query
PAGE_SUFFIXES = (".html", ".htm")


def served_path(relative: str) -> str:
    """The URL path (and query) at which the file ``relative`` (``a/b.html``, ``news.php__id=7.htm``)
    is served."""
    directory, _, name = relative.rpartition("/")
    prefix = f"/{directory}/" if directory else "/"
    if QUERY_SEPARATOR in name and name.endswith(PAGE_SUFFIXES):
        stem, _, query = name.rpartition(".")[0].partition(QUERY_SEPARATOR)
        return f"{prefix}{stem}?{query}"
    return prefix + name


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    """One request the server answered (for tests: what was fetched, when, with which headers)."""

    site: str
    path: str  # path and query
    status: int
    at: float  # time.monotonic() when the request arrived
    headers: Mapping[str, str]


Dynamic = Callable[[str, Mapping[str, list[str]], Mapping[str, str]], Answer]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients hanging up mid-answer (timeouts, size limits) are expected here; anything else is a bug.
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, BrokenPipeError)):
            logger.debug("fixture client went away", extra={"client": str(client_address)})
        else:
            logger.error("fixture server failed", extra={"client": str(client_address)}, exc_info=error)


class SiteServer:
    """Serve every site under ``root``; use as a context manager or call :meth:`start`/:meth:`stop`."""

    def __init__(
        self,
        root: Path,
        *,
        dynamic: Mapping[str, Dynamic] | None = None,
        slow_s: float = 5.0,
        huge_bytes: int = 6_000_000,
        canonical: str | None = None,
    ) -> None:
        self.root = Path(root)
        self.canonical = canonical
        self.dynamic = dict(dynamic or {})
        self.slow_s = slow_s
        self.huge_bytes = huge_bytes
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._servers: dict[str, _QuietServer] = {}
        self._threads: list[threading.Thread] = []
        names = {p.name for p in self.root.iterdir() if p.is_dir()} | set(self.dynamic)
        self.sites = sorted(names)

    def url(self, site: str, path: str = "/") -> str:
        """Absolute URL of ``path`` on ``site`` (the server must be started)."""
        host, port = self._servers[site].server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def start(self) -> Self:
        for site in self.sites:
            server = _QuietServer(("127.0.0.1", 0), self._handler(site))
            self._servers[site] = server
            thread = threading.Thread(target=server.serve_forever, name=f"site-{site}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers.values():
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def hits_for(self, site: str, prefix: str = "/") -> list[Hit]:
        with self._lock:
            return [h for h in self.hits if h.site == site and h.path.startswith(prefix)]

    def _substitute(self, site: str, body: bytes) -> bytes:
        base = self.url(site).rstrip("/")
        canonical = base if self.canonical is None else self.canonical.format(site=site)
        body = body.replace(b"{{canonical}}", canonical.encode())
        body = body.replace(b"{{base}}", base.encode())
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        body = body.replace(b"{{today:rfc822}}", format_datetime(today, usegmt=True).encode())
        body = body.replace(b"{{today:iso}}", today.strftime("%Y-%m-%dT%H:%M:%SZ").encode())
        for other in self._servers:
            body = body.replace(b"{{site:" + other.encode() + b"}}", self.url(other).rstrip("/").encode())
        return body

    def answer(self, site: str, raw_path: str, headers: Mapping[str, str]) -> Answer:
        """What the server answers to GET ``raw_path`` on ``site``."""
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        if path.startswith("/_broken/"):
            return self._broken(site, path.removeprefix("/_broken/"), query)
        if site in self.dynamic:
            return self.dynamic[site](path, query, headers)
        base = (self.root / site).resolve()
        relative = path.lstrip("/") or "index.html"
        if relative.endswith("/"):
            relative += "index.html"
        target = (base / relative).resolve()
        if parts.query:
            name = "" if path.endswith("/") else target.name
            for suffix in PAGE_SUFFIXES:
                candidate = (target.parent / f"{name}{QUERY_SEPARATOR}{parts.query}{suffix}").resolve()
                if candidate.is_file():
                    target = candidate
                    break
        gz_source = target.with_name(target.name + ".src")
        if not target.is_relative_to(base):
            return Answer(404, b"not found")
        if target.is_file():
            body = self._substitute(site, target.read_bytes())
        elif target.suffix == ".gz" and gz_source.is_file():
            body = gzip.compress(self._substitute(site, gz_source.read_bytes()), mtime=0)
        else:
            return Answer(404, b"<html><body>not found</body></html>", {"Content-Type": "text/html"})
        etag = '"' + hashlib.sha1(body, usedforsecurity=False).hexdigest()[:16] + '"'
        common = {"ETag": etag, "Last-Modified": LAST_MODIFIED}
        if headers.get("If-None-Match") == etag:
            return Answer(304, b"", common)
        kind = CONTENT_TYPES.get(target.suffix, "application/octet-stream")
        return Answer(200, body, {"Content-Type": kind, **common})

    def _broken(self, site: str, what: str, query: Mapping[str, list[str]]) -> Answer:
        html = {"Content-Type": "text/html; charset=utf-8"}
        if what.startswith("status/"):
            code = int(what.split("/")[1])
            return Answer(code, f"<html><body>status {code}</body></html>".encode(), html)
        if what == "slow":
            time.sleep(self.slow_s)
            return Answer(200, b"<html><body>late</body></html>", html)
        if what.startswith("loop/"):
            step = int(what.split("/")[1])
            return Answer(302, b"", {"Location": self.url(site, f"/_broken/loop/{(step + 1) % 2}")})
        if what == "huge":
            filler = b"<p>" + b"x" * 1000 + b"</p>\n"
            body = b"<html><body>" + filler * (self.huge_bytes // len(filler) + 1) + b"</body></html>"
            return Answer(200, body, html)
        if what == "redirect" and query.get("to"):
            return Answer(301, b"", {"Location": query["to"][0]})
        return Answer(404, b"no such broken case", html)

    def _handler(self, site: str) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # http.server's naming
                arrived = time.monotonic()
                headers = dict(self.headers.items())
                try:
                    answer = server.answer(site, self.path, headers)
                except Exception:
                    logger.exception("fixture server failed", extra={"site": site, "path": self.path})
                    answer = Answer(500, b"fixture server error")
                with server._lock:
                    server.hits.append(Hit(site, self.path, answer.status, arrived, headers))
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                # The crawler may give up mid-answer (timeout, size limit): that is the case under test.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(answer.body)

            def log_message(self, format: str, *args: object) -> None:  # http.server's name
                logger.debug("fixture %s: " + format, site, *args)

        return Handler
