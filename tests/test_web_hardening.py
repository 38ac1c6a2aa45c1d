"""The probes of issue 20 against a real server on loopback: far dates, Unicode tricks, Host checks,
cut-off and slow requests, dropped clients, concurrency without a global lock, signals, and the
analyst features (language spread, merged stories, follow-ups, stories filters, CSV export)."""

from __future__ import annotations

import csv
import io
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests

from indexer.store import SearchRequest, SearchResult
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.web import RunningServer, serve_in_thread
from sednaya_monitor.web.chart import MAX_BARS, bins, volume_svg
from stream.story import Story
from tests.store_fixtures import make_article
from tests.web_fixtures import API_TOKEN, NewsWeb

TIMEOUT = 30


def get(server: RunningServer, path: str, **kwargs: Any) -> requests.Response:
    return requests.get(server.url + path, timeout=TIMEOUT, **kwargs)


def _settings(data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(environ={}, overrides={"data_dir": data_dir, "api_token": API_TOKEN, **overrides})


# --- far dates ----------------------------------------------------------------------------------------


@pytest.fixture
def far_server(web_settings: Settings, web_store: EmbeddedStore) -> Iterator[RunningServer]:
    """The news web plus two articles (and a story) dated 9999-12-31 and 0001-01-01."""
    future = make_article(
        title="Sednaya report from the far future",
        published=datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
        story_id="story-far",
        story_role="first",
    )
    past = make_article(
        title="Sednaya report from year one",
        published=datetime(1, 1, 1, tzinfo=UTC),
        fetched_at=datetime(1, 1, 1, tzinfo=UTC),
        discovered_at=datetime(1, 1, 1, tzinfo=UTC),
        story_id="story-far",
        story_role="follow_up",
    )
    assert not web_store.write_articles([future, past])
    web_store.write_stories(
        [
            Story(
                id="story-far",
                title="Far dates",
                first_seen=past.published or past.fetched_at,
                last_seen=future.published or future.fetched_at,
                article_count=2,
                source_count=1,
                languages=("en",),
                sources=("example-news",),
                first_article_id=past.id,
            )
        ]
    )
    with serve_in_thread(web_settings, web_store, PrometheusMetrics(), port=0) as running:
        yield running


def test_far_stored_dates_never_break_a_page(far_server: RunningServer) -> None:
    for path in (
        "/",
        "/?q=Sednaya",
        "/?q=Sednaya&view=flat",
        "/timeline",
        "/stories",
        "/stories/story-far",
        "/api/search?q=Sednaya&facets=true",
        "/api/articles",
        "/api/stories/story-far",
        "/search.csv",
    ):
        r = get(far_server, path)
        assert r.status_code == 200, (path, r.text[:500])
    page = get(far_server, "/?q=Sednaya").text
    assert "2 dated before 1990 or in the future: not charted." in page
    assert '<svg class="chart"' in page  # the plausible dates are still drawn
    story = get(far_server, "/stories/story-far").text
    assert "9999-12-31 23:59 UTC" in story
    assert "0001-01-01 00:00 UTC" in story


@pytest.mark.parametrize("path", ["/", "/api/search", "/api/articles", "/timeline", "/api/stories", "/stories"])
@pytest.mark.parametrize(("name", "value"), [("until", "9999-12-31"), ("since", "0001-01-01"), ("since", "1989-12-31")])
def test_dates_outside_1990_to_tomorrow_are_400_naming_the_parameter(
    web_server: RunningServer, path: str, name: str, value: str
) -> None:
    if path in ("/api/stories", "/stories") and name == "until":
        name = "since"
    r = get(web_server, path, params={name: value})
    assert r.status_code == 400, r.text[:300]
    assert f"parameter &#x27;{name}&#x27;" in r.text or f"parameter '{name}'" in r.text


def test_chart_bins_any_span_without_overflow() -> None:
    for first, last in [
        (date(1, 1, 1), date(9999, 12, 31)),
        (date(1, 1, 1), date(1, 1, 1)),
        (date(9999, 12, 31), date(9999, 12, 31)),
        (date(9999, 1, 1), date(9999, 12, 31)),
        (date(1990, 1, 1), date(2026, 12, 1)),
    ]:
        unit, starts = bins(first, last)
        assert 1 <= len(starts) <= MAX_BARS, (first, last, unit)
    svg = volume_svg({date(1, 1, 1): {"en": 1}, date(9999, 12, 31): {"ar": 2}})
    assert "Articles per 100 years by language" in svg
    assert 'data-day="0001-01-01"' in svg


# --- Unicode hygiene ----------------------------------------------------------------------------------


def test_bidi_overrides_and_zero_width_are_neutralised_on_pages(
    web_settings: Settings, web_store: EmbeddedStore
) -> None:
    tricky = make_article(
        title="Sednaya \u202egnp.exe\u202c leaked file",
        text="A zero\u200bwidth joiner\u2060 and an isolate \u2066hidden\u2069 inside the Sednaya report.",
        source="odd\u200bsource",
        story_id="story-tricky",
        story_role="first",
    )
    assert not web_store.write_articles([tricky])
    web_store.write_stories(
        [
            Story(
                id="story-tricky",
                title=tricky.title,
                first_seen=tricky.published or tricky.fetched_at,
                last_seen=tricky.published or tricky.fetched_at,
                article_count=1,
                source_count=1,
                languages=("en",),
            )
        ]
    )
    with serve_in_thread(web_settings, web_store, PrometheusMetrics(), port=0) as server:
        pages = [
            get(server, "/", params={"q": "leaked"}).text,
            get(server, "/", params={"q": "leaked", "view": "flat"}).text,
            get(server, "/stories").text,
            get(server, "/stories/story-tricky").text,
            get(server, "/search.csv", params={"q": "leaked"}).text,
        ]
        for page in pages:
            for ch in ("\u202e", "\u202c", "\u200b", "\u2060", "\u2066", "\u2069"):
                assert ch not in page
        assert "Sednaya gnp.exe leaked file" in pages[0]
        assert "oddsource" in pages[1]
        api = get(server, "/api/articles/" + tricky.id).json()["article"]
        assert api["title"] == tricky.title  # the API returns the data as stored; display is what is cleaned


# --- hosts, headers, limits ----------------------------------------------------------------------------


def test_host_header_allowlist(data_dir: Path, web_store: EmbeddedStore) -> None:
    settings = _settings(data_dir, serve_allowed_hosts="monitor.example.org, *.analysts.example")
    with serve_in_thread(settings, web_store, PrometheusMetrics(), port=0) as server:
        port = server.url.rsplit(":", 1)[1]
        for host in (
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"[::1]:{port}",
            "monitor.example.org",
            "desk.analysts.example:443",
        ):
            assert get(server, "/healthz", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", f"evil.example:{port}", "analysts.example.evil", ""):
            r = get(server, "/api/search", headers={"Host": host})
            assert r.status_code == 400, host
            assert "is not allowed" in r.json()["error"]
        text = get(server, "/metrics").text
        assert 'sednaya_http_requests_total{method="GET",route="bad_host",status="400"} 4.0' in text


def test_security_headers_and_no_version_banner(web_server: RunningServer) -> None:
    for path in ("/", "/api/search", "/nope", "/api/nope"):
        r = get(web_server, path)
        assert "server" not in {k.lower() for k in r.headers}, path
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Referrer-Policy"] == "no-referrer"
        assert r.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in get(web_server, "/nope").headers["Content-Security-Policy"]


def _raw(server: RunningServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _count(server: RunningServer, route: str) -> float:
    for line in get(server, "/metrics").text.splitlines():
        if line.startswith("sednaya_http_requests_total{") and f'route="{route}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_cut_off_requests_are_never_executed(web_server: RunningServer) -> None:
    body = b'{"name": "cutoff", "query": "Sednaya"}'
    with _raw(web_server) as sock:  # headers complete, body cut short
        sock.sendall(
            b"POST /api/watchlists HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {API_TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
    with _raw(web_server) as sock:  # headers cut in the middle
        sock.sendall(b"GET /api/stories HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: appl")
    time.sleep(0.5)
    assert get(web_server, "/api/watchlists/cutoff").status_code == 404
    assert _count(web_server, "api_stories") == 0.0  # never dispatched
    metrics = get(web_server, "/metrics").text  # dispatched, found the body cut off, nothing done
    assert 'sednaya_http_requests_total{method="POST",route="api_watchlist_add",status="499"} 1.0' in metrics


def test_slow_requests_are_dropped_after_the_read_deadline(data_dir: Path, web_store: EmbeddedStore) -> None:
    settings = _settings(data_dir, serve_request_read_s=0.5)
    with serve_in_thread(settings, web_store, PrometheusMetrics(), port=0) as server, _raw(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and the final CRLF never comes
        started = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server, no answer
        assert time.monotonic() - started < 10
    with serve_in_thread(settings, web_store, PrometheusMetrics(), port=0) as server, _raw(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # one whole request on a kept-alive line
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # then half of the next one
        started = time.monotonic()
        while sock.recv(4096):
            pass
        assert time.monotonic() - started < 10


def test_request_over_the_answer_deadline_is_503(data_dir: Path, web_store: EmbeddedStore) -> None:
    class Slow(EmbeddedStore):
        def count_articles(self) -> int:
            time.sleep(1.5)
            return super().count_articles()

    store = Slow(web_store.path)
    settings = _settings(data_dir, serve_request_timeout_s=0.3)
    try:
        with serve_in_thread(settings, store, PrometheusMetrics(), port=0) as server:
            r = get(server, "/healthz")
            assert r.status_code == 503
            assert "longer than 0.3 s" in r.json()["error"]
            assert get(server, "/api/stories").status_code == 200  # the server is still fine
    finally:
        store.close()


def test_dropped_clients_leave_no_traceback(
    web_server: RunningServer, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    for _ in range(20):
        with _raw(web_server) as sock:
            sock.sendall(b"GET /?q=Sednaya HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close
    assert get(web_server, "/healthz").status_code == 200
    time.sleep(0.5)
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert "Traceback" not in capfd.readouterr().err
    assert "Traceback" not in caplog.text


def test_keep_alive_requests_do_not_stall(web_server: RunningServer) -> None:
    """Headers and body leave in one write with TCP_NODELAY: no 40 ms delayed-ACK wait per request."""
    with requests.Session() as session:
        times = []
        for _ in range(30):
            started = time.perf_counter()
            assert session.get(web_server.url + "/healthz", timeout=TIMEOUT).status_code == 200
            times.append(time.perf_counter() - started)
    assert min(times[1:]) < 0.035, times  # the stall was >= 40 ms on every request, the best one included


def test_a_burst_of_connections_is_served(web_server: RunningServer) -> None:
    """More simultaneous connections than the stdlib's backlog of 5 are all answered."""
    barrier = threading.Barrier(64)
    statuses: list[int] = []

    def one() -> None:
        barrier.wait()
        statuses.append(get(web_server, "/healthz").status_code)

    threads = [threading.Thread(target=one) for _ in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 64


# --- no global lock, few store calls ---------------------------------------------------------------------


class CountingStore(EmbeddedStore):
    """Counts store calls across the per-thread handles; ``search`` can be slowed down."""

    calls: ClassVar[list[str]] = []
    search_delay_s: ClassVar[float] = 0.0

    def search(self, request: SearchRequest) -> SearchResult:
        CountingStore.calls.append("search")
        time.sleep(CountingStore.search_delay_s)
        return super().search(request)

    def day_lang_counts(self, request: SearchRequest) -> list[tuple[str, str, int]]:
        CountingStore.calls.append("day_lang_counts")
        return super().day_lang_counts(request)

    def get_story(self, story_id: str) -> Story | None:
        CountingStore.calls.append("get_story")
        return super().get_story(story_id)


def test_search_page_makes_at_most_three_store_calls(web_settings: Settings, web_store: EmbeddedStore) -> None:
    store = CountingStore(web_store.path)
    CountingStore.calls = []
    try:
        with serve_in_thread(web_settings, store, PrometheusMetrics(), port=0) as server:
            assert get(server, "/", params={"q": "Sednaya", "view": "flat"}).status_code == 200
            assert CountingStore.calls == ["search", "search", "day_lang_counts"]  # options, results, chart
            CountingStore.calls = []
            assert get(server, "/", params={"q": "prison", "view": "flat"}).status_code == 200
            assert len(CountingStore.calls) <= 3
    finally:
        store.close()


def test_a_slow_search_does_not_block_other_requests(web_settings: Settings, web_store: EmbeddedStore) -> None:
    store = CountingStore(web_store.path)
    CountingStore.search_delay_s = 2.0
    try:
        with serve_in_thread(web_settings, store, PrometheusMetrics(), port=0) as server:
            slow = [threading.Thread(target=get, args=(server, "/api/search?q=Sednaya")) for _ in range(3)]
            for t in slow:
                t.start()
            time.sleep(0.3)
            started = time.monotonic()
            assert get(server, "/healthz").status_code == 200
            assert time.monotonic() - started < 1.5  # one lock would make it wait for all three searches (6 s)
            for t in slow:
                t.join()
    finally:
        CountingStore.search_delay_s = 0.0
        store.close()


# --- for analysts -------------------------------------------------------------------------------------------


def test_story_page_shows_when_each_language_joined(web_server: RunningServer) -> None:
    page = get(web_server, "/stories/story-crematorium").text
    assert '<table class="spread">' in page
    rows = page[page.index('<table class="spread">') : page.index("</table>")]
    assert rows.index('data-lang="en"') < rows.index('data-lang="ar"') < rows.index('data-lang="fr"')
    assert '<td class="lag">first</td>' in rows
    assert '<td class="lag">+14 h 55 min</td>' in rows  # wire 05-15 16:05 -> Arabic 05-16 07:00
    assert '<td class="lag">+17 h 10 min</td>' in rows
    assert '<ul class="follow-ups">' in page  # the Arabic and French follow-ups
    api = get(web_server, "/api/stories/story-crematorium").json()
    assert [(x["lang"], x["after_first_s"]) for x in api["languages"]] == [
        ("en", 0.0),
        ("ar", 14 * 3600 + 55 * 60.0),
        ("fr", 17 * 3600 + 10 * 60.0),
    ]
    assert api["languages"][0]["articles"] == 2  # the wire original and its English copy


def test_merged_stories_are_listed(web_server: RunningServer, web_store: EmbeddedStore, web_news: NewsWeb) -> None:
    crem = web_news.stories["crematorium"]
    web_store.write_stories(
        [
            Story(
                id="story-old",
                title="An earlier crematorium thread",
                first_seen=crem.first_seen,
                last_seen=crem.first_seen,
                article_count=1,
                source_count=1,
                languages=("en",),
                merged_into="story-crematorium",
            )
        ]
    )
    page = get(web_server, "/stories/story-crematorium").text
    assert '<h2>Merged stories</h2><ul class="merged"><li><a href="/stories/story-old" dir="auto">' in page
    assert [m["id"] for m in get(web_server, "/api/stories/story-crematorium").json()["merged"]] == ["story-old"]
    old = get(web_server, "/stories/story-old").text
    assert 'merged into <a href="/stories/story-crematorium">' in old


def test_stories_list_filters(web_server: RunningServer) -> None:
    def ids(**params: str) -> list[str]:
        r = get(web_server, "/api/stories", params=params)
        assert r.status_code == 200, r.text
        return [s["id"] for s in r.json()["stories"]]

    assert ids(lang="de") == ["story-report"]
    assert ids(min_sources="3") == ["story-crematorium"]
    assert ids(min_languages="2") == ["story-families", "story-crematorium", "story-report"]
    assert ids(lang="en", since="2024-01-01") == ["story-families"]
    assert get(web_server, "/api/stories", params={"min_sources": "0"}).status_code == 400
    page = get(web_server, "/stories", params={"lang": "fr", "min_sources": "", "since": ""}).text
    assert page.count('<li class="story-item">') == 1
    assert "story-crematorium" in page
    assert '<option value="fr" selected>' in page
    assert "No stories match these filters." in get(web_server, "/stories", params={"min_languages": "9"}).text


def test_csv_export_of_a_search(web_server: RunningServer, web_news: NewsWeb) -> None:
    r = get(web_server, "/search.csv", params={"q": "crematorium", "sort": "date"})
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="sednaya-search-')
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))
    assert [row["url"] for row in rows] == [
        web_news.articles[k].url for k in ("french", "copy", "wire")
    ]  # newest first
    assert rows[0]["lang"] == "fr"
    assert rows[1]["duplicate_of"] == web_news.articles["wire"].id
    assert rows[2]["source_type"] == "wire"
    assert "text" not in rows[0]
    search = get(web_server, "/", params={"q": "crematorium"}).text
    assert 'href="/search.csv?q=crematorium">CSV export</a>' in search
    assert get(web_server, "/search.csv", params={"q": "a AND"}).status_code == 400


def test_csv_cells_cannot_become_formulas(web_settings: Settings, web_store: EmbeddedStore) -> None:
    formula = make_article(title='=HYPERLINK("http://evil.example","Sednaya")', text="Sednaya formula test")
    assert not web_store.write_articles([formula])
    with serve_in_thread(web_settings, web_store, PrometheusMetrics(), port=0) as server:
        rows = list(csv.DictReader(io.StringIO(get(server, "/search.csv", params={"q": "formula"}).text)))
    assert rows[0]["title"].startswith("'=HYPERLINK")


# --- signals ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize(("sig", "workers"), [(signal.SIGINT, 1), (signal.SIGTERM, 1), (signal.SIGTERM, 2)])
def test_serve_stops_cleanly_on_a_signal(
    web_settings: Settings, web_store: EmbeddedStore, sig: int, workers: int
) -> None:
    web_store.close()
    cmd = [
        sys.executable,
        "-c",
        "from sednaya_monitor.cli import main; main()",
        "--data-dir",
        str(web_settings.data_dir),
        "serve",
        "--port",
        "0",
        "--workers",
        str(workers),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fixed argv
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line
        base = line.split()[2].rstrip("/")
        deadline = time.monotonic() + 30
        while True:
            try:
                assert requests.get(base + "/healthz", timeout=5).status_code == 200
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        with requests.Session() as kept_alive:  # an open keep-alive connection must not hold the stop
            for _ in range(4 * workers):  # connections land on every worker
                assert requests.get(base + "/api/stories", timeout=10).json()["stories"]
            assert kept_alive.get(base + "/api/stories", timeout=5).status_code == 200
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert f"stopping ({signal.Signals(sig).name})" in out
    assert "Traceback" not in err
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/healthz", timeout=5)


def _established_per_process(pids: list[int], port: int) -> dict[int, int]:
    """How many established TCP connections to local ``port`` each of ``pids`` holds (/proc, Linux)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    counts: dict[int, int] = {}
    for pid in pids:
        links = [Path(f"/proc/{pid}/fd/{fd.name}").readlink() for fd in Path(f"/proc/{pid}/fd").iterdir()]
        counts[pid] = sum(str(link) in {f"socket:[{i}]" for i in inodes} for link in links)
    return counts


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT: the workers share one socket")
def test_serve_workers_share_keep_alive_connections_evenly(web_settings: Settings, web_store: EmbeddedStore) -> None:
    """``serve --workers 2`` says where it serves only once both workers listen, each on a socket of its own:
    20 keep-alive connections opened at once land on both (one shared socket gave 20/0, 16/4, 14/6)."""
    web_store.close()
    cmd = [sys.executable, "-c", "from sednaya_monitor.cli import main; main()",
           "--data-dir", str(web_settings.data_dir), "serve", "--port", "0", "--workers", "2"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fixed argv
    sessions = [requests.Session() for _ in range(20)]
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), line
        base = line.split()[2].rstrip("/")
        for session in sessions:  # no wait for /healthz: the banner comes once every worker listens
            assert session.get(base + "/api/stories", timeout=10).status_code == 200
        workers = [int(pid) for pid in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        counts = _established_per_process(workers, int(base.rsplit(":", 1)[1]))
        assert len(workers) == 2 and sum(counts.values()) == 20, counts
        # the kernel hashes connections over the two sockets: fewer than 2 of 20 on one has odds of 4e-5
        assert min(counts.values()) >= 2, counts
    finally:
        for session in sessions:
            session.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_demo_stops_cleanly_on_ctrl_c_once_it_serves(tmp_path: Path) -> None:
    """``demo`` crawls its bundled web, drains the pipeline, serves the page, and stops on SIGINT."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEDNAYA_MONITOR_")}
    cmd = [sys.executable, "-c", "from sednaya_monitor.cli import main; main()",
           "--data-dir", str(tmp_path / "data"), "demo", "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)  # fixed argv
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not (lines and lines[-1].startswith("search page: ")):
            line = proc.stdout.readline()
            assert line, "".join(lines) + (proc.stderr.read() if proc.stderr else "")
            lines.append(line)
        base = lines[-1].split()[2].rstrip("/")
        assert requests.get(base + "/healthz", timeout=30).json()["status"] == "green"
        assert requests.get(base + "/", params={"q": "Sednaya"}, timeout=30).status_code == 200
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    assert "stopping (SIGINT)" in out
    assert "Traceback" not in err


def test_openapi_is_generated_from_the_models(web_server: RunningServer) -> None:
    doc = get(web_server, "/api/openapi.json").json()
    schemas = doc["components"]["schemas"]
    body = doc["paths"]["/api/watchlists"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/WatchlistInput"}  # one schema, the validator's own
    assert schemas["WatchlistInput"]["additionalProperties"] is False
    assert schemas["WatchlistInput"]["properties"]["name"]["pattern"].startswith("^[A-Za-z0-9]")
    assert "HTTPValidationError" not in schemas
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            assert "422" not in operation["responses"], (path, method)  # invalid input is a 400 here
            assert "400" in operation["responses"], (path, method)
    assert "expanded" in schemas["SearchResponse"]["properties"]  # the name variants of the search issue
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
