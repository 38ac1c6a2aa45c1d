"""Fixtures of the crawl tests: the fixture news web (the demo web with ``tests/sites`` over it) on
loopback, with dynamic GDELT and Google News stand-ins, and a helper that runs
``sednaya-monitor crawl --json`` in a fresh process.

Each crawl runs in its own subprocess because Twisted's reactor cannot restart within one process
(``crawlers/run.py``); the test process keeps the web server and reads the embedded bus afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from crawlers.site_server import DEMO_SITES, Answer, SiteServer

SITES = Path(__file__).resolve().parent / "sites"  # the test web's own sites, broken pages and feeds
SITES_NEXT = Path(__file__).resolve().parent / "sites_next"
CRAWL_TIMEOUT_S = 60  # one crawl of the fixture web takes ~10 s; a hang fails instead of blocking the suite
TEST_SETTINGS = {
    "CRAWL_DOWNLOAD_DELAY_S": "0",
    "CRAWL_DOWNLOAD_TIMEOUT_S": "1.5",
    "CRAWL_MAX_PAGE_BYTES": "1000000",
    "CRAWL_RETRY_TIMES": "0",
    "GDELT_MIN_INTERVAL_S": "0",
    "FOLLOW_INTERVAL_S": "2",
}


@dataclass
class FixtureWeb:
    server: SiteServer
    root: Path  # the served copy of the test web (tests may change it)
    registry: Path  # tests/sites/sources.toml with the served URLs

    def url(self, site: str, path: str = "/") -> str:
        return self.server.url(site, path)

    def env(self, data_dir: Path, **extra: str) -> dict[str, str]:
        """Environment of a crawl subprocess against this web."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEDNAYA_MONITOR_")}
        settings = {
            **TEST_SETTINGS,
            "DATA_DIR": str(data_dir),
            "SOURCES_FILE": str(self.registry),
            "GDELT_API_URL": self.url("gdelt", "/api/v2/doc/doc"),
            "GOOGLE_NEWS_URL": self.url("gnews", "/rss/search"),
            **extra,
        }
        env.update({f"SEDNAYA_MONITOR_{k}": v for k, v in settings.items()})
        env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
        return env

    def next_run(self) -> None:
        """Publish the second-run changes (tests/sites_next) on the served web."""
        shutil.copytree(SITES_NEXT, self.root, dirs_exist_ok=True)


def google_news_link(url: str) -> str:
    """A Google News article link in the older form: the id is URL-safe base64 of a protobuf message
    (field 1 = 19, field 4 = the publisher URL, an empty field 26), as Google News RSS served them."""
    raw = url.encode("utf-8")
    size = bytearray()
    n = len(raw)
    while True:
        size.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    message = b"\x08\x13\x22" + bytes(size) + raw + b"\xd2\x01\x00"
    return "https://news.google.com/rss/articles/" + base64.urlsafe_b64encode(message).decode().rstrip("=")


# A newer-form link: the id carries an opaque token, not the URL (resolved only by Google's JavaScript).
OPAQUE_GOOGLE_NEWS_LINK = "https://news.google.com/rss/articles/" + base64.urlsafe_b64encode(
    b"\x08\x13\x22\x19AU_yqLNfixtureOpaqueToken"
).decode().rstrip("=")


def _gdelt(web: dict[str, SiteServer]) -> Any:
    """GDELT stand-in: >6 h windows are full (250 records: the spider must split), the newest 6 h slice holds
    repairable JSON, the slice 12-18 h ago unrepairable JSON, the others ``{}`` (no match)."""

    def handle(path: str, query: Mapping[str, list[str]], headers: Mapping[str, str]) -> Answer:
        server = web["server"]
        if path != "/api/v2/doc/doc":
            return Answer(404, b"not found")
        start = datetime.strptime(query["startdatetime"][0], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        end = datetime.strptime(query["enddatetime"][0], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        now = datetime.now(UTC)
        json_type = {"Content-Type": "application/json"}
        if end - start > timedelta(hours=6):
            rows = [{"url": server.url("gdelt", f"/never/{i}"), "title": f"t{i}"} for i in range(250)]
            return Answer(200, json.dumps({"articles": rows}).encode(), json_type)
        if end >= now - timedelta(minutes=10):
            tr = server.url("tr", "/dunya/sednaya-idam-arsivi.html")
            fr = server.url("fr", "/articles/abattoir-humain.html")
            body = (
                '{"articles": [\n'
                f' {{"url": "{tr}", "title": "Sednaya ar\\şivi\tidam", "seendate": "20241214T090000Z",'
                ' "language": "Turkish", "domain": "tr"},\n'
                f' {{"url": "{fr}", "title": "Saydnaya \\\'abattoir\\\'", "seendate": "20170207T080000Z",'
                ' "language": "French", "domain": "fr"},\n'
                "]}"
            )
            return Answer(200, body.encode(), json_type)
        if start <= now - timedelta(hours=13) < end:
            return Answer(200, b'{"articles": [{"url": "http://example.org/a", "title": "cut off', json_type)
        return Answer(200, b"{}", json_type)

    return handle


def _gnews(web: dict[str, SiteServer]) -> Any:
    """Google News stand-in: "Sednaya" in English links (through a redirect) to an article only found here;
    "Saydnaya" in English answers 429 (the spider must report it degraded); everything else is empty."""

    def handle(path: str, query: Mapping[str, list[str]], headers: Mapping[str, str]) -> Answer:
        server = web["server"]
        if path != "/rss/search":
            return Answer(404, b"not found")
        q, hl = query.get("q", [""])[0], query.get("hl", [""])[0]
        if q == '"Saydnaya"' and hl == "en-US":
            return Answer(429, b"Too many requests", {"Content-Type": "text/plain"})
        items = ""
        if q == '"Sednaya"' and hl == "en-US":
            target = server.url("en", "/2024/12/11/families-search.html")
            link = server.url("en", "/_broken/redirect") + "?to=" + target
            archive = server.url("gazette", "/2024/12/15/archive-digitised.html")
            items = (
                "<item><title>Families search Sednaya records for the missing - Levant Ledger</title>"
                f"<link>{link.replace('&', '&amp;')}</link><pubDate>Wed, 11 Dec 2024 09:15:00 GMT</pubDate>"
                f'<source url="{server.url("en")}">Levant Ledger</source></item>'
                "<item><title>Volunteers digitise the Sednaya prison archive - Harbour Gazette</title>"
                f"<link>{google_news_link(archive)}?oc=5</link><pubDate>Sun, 15 Dec 2024 08:00:00 GMT</pubDate>"
                f'<source url="{server.url("gazette")}">Harbour Gazette</source></item>'
                "<item><title>Sednaya: a story behind an opaque link - Harbour Gazette</title>"
                f"<link>{OPAQUE_GOOGLE_NEWS_LINK}?oc=5</link><pubDate>Sun, 15 Dec 2024 09:00:00 GMT</pubDate>"
                f'<source url="{server.url("gazette")}">Harbour Gazette</source></item>'
            )
        rss = f'<?xml version="1.0"?><rss version="2.0"><channel><title>{q}</title>{items}</channel></rss>'
        return Answer(200, rss.encode(), {"Content-Type": "application/rss+xml"})

    return handle


def copy_test_web(root: Path) -> Path:
    """Write the test web at ``root``: the demo web's sites (the shipped package data), then the test
    web's own (``tests/sites``: more sites, broken and edge-case pages, feeds that list them) over them."""
    shutil.copytree(DEMO_SITES, root)
    shutil.copytree(SITES, root, dirs_exist_ok=True)
    return root


def render_registry(template: Path, server: SiteServer, out: Path) -> Path:
    text = template.read_text(encoding="utf-8")
    for site in server.sites:
        text = text.replace("{{site:" + site + "}}", server.url(site).rstrip("/"))
    out.write_text(text, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def fixture_web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FixtureWeb]:
    """The fixture news web, served from a private copy of the test web, for one test module."""
    root = copy_test_web(tmp_path_factory.mktemp("web") / "sites")
    holder: dict[str, SiteServer] = {}
    server = SiteServer(
        root, dynamic={"gdelt": _gdelt(holder), "gnews": _gnews(holder)}, slow_s=3.0, huge_bytes=2_000_000
    )
    holder["server"] = server
    with server:
        registry = render_registry(root / "sources.toml", server, root.parent / "sources.toml")
        yield FixtureWeb(server=server, root=root, registry=registry)


def run_cli(env: Mapping[str, str], *args: str, timeout: float = CRAWL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    """``sednaya-monitor ARGS`` in a fresh Python process."""
    return subprocess.run(
        [sys.executable, "-c", "from sednaya_monitor.cli import main; main()", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def crawl_json(env: Mapping[str, str], *args: str) -> dict[str, Any]:
    """Run ``crawl --json ARGS`` and return the summary (fails the test with stderr when it fails)."""
    done = run_cli(env, "crawl", "--json", *args)
    assert done.returncode == 0, f"crawl failed ({done.returncode}):\n{done.stderr[-4000:]}"
    summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return summary
