"""Alert latency: from an article's entry on the bus to the webhook receiving its alert.

Embedded default (SQLite bus and store in a temporary data directory, the default model),
100 watchlists (10 of them match the articles), every watchlist with a webhook to a loopback receiver.
New-story articles go in two ways:

* ``trickle``: one article at a time (publish, drain, deliver), the steady state of ``run --follow``;
* ``burst``: ``BURST`` articles at once, then one drain: queueing behind embedding is included.

The latency of an alert is the receiver's clock at arrival minus the payload's ``entered_at`` (the
``entered_at`` header stamped when the article was published to the raw topic). Prints the figures and
rewrites the ``## alert_latency`` section of docs/benchmarks.md.

    python -m bench.alert_latency [--trickle 30] [--burst 30]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.report import write_section as write_doc_section

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from indexer.alerting.alert_stage import AlertStage  # after the offline switches
from indexer.alerting.watchlists import SqliteWatchlistRepository, Watchlist
from sednaya_monitor.pipeline import Pipeline
from sednaya_monitor.settings import load_settings
from stream.article import Article
from stream.canonical_url import id_for_url
from stream.text import content_hash

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "alert_latency"
WATCHLISTS = 100
MATCHING = 10  # watchlists whose query matches every benchmark article
BURST = 30
PUBLISHED_FROM = datetime(2019, 1, 1, tzinfo=UTC)
SPACING_DAYS = 10  # > settings.cluster_window_days (7)

# Distinct events (own words) so that each article opens a new story: different actors, places, acts.
EVENTS = [
    ("A court in Koblenz", "sentenced a former intelligence officer", "for torture of detainees"),
    ("Civil defence teams", "finished searching the basements", "for hidden cells"),
    ("A rights group", "published satellite images of a new mass grave", "near the prison road"),
    ("Families in Idlib", "held a vigil with photographs of missing relatives", "at the town square"),
    ("The UN commission of inquiry", "asked for access to the prison registers", "before they are lost"),
    ("A former guard", "was arrested at the Lebanese border crossing", "carrying forged papers"),
    ("Volunteers in Damascus", "began scanning thousands of handwritten release forms", "into a database"),
    ("A Dutch prosecutor", "opened a case against a military police commander", "under universal jurisdiction"),
    ("Forensic doctors", "started identifying remains with DNA samples", "given by relatives"),
    ("Students at a university", "staged an exhibition of drawings by survivors", "of the red building"),
    ("A survivors' association", "called for a museum", "on the site of the prison"),
    ("The health ministry", "opened a clinic for released detainees", "with psychologists"),
    ("A journalist from Aleppo", "found the file of his brother", "among papers left behind"),
    ("Lawyers in Paris", "filed a complaint about enforced disappearances", "naming officers"),
    ("A bakery owner", "told how he was held for six years", "without trial"),
    ("Engineers", "inspected the ventilation shafts of the white building", "for structural damage"),
    ("A German court", "heard testimony from a former inmate", "about the hanging rooms"),
    ("Relatives in Homs", "received death certificates", "dated years after the arrests"),
    ("An NGO in Gaziantep", "launched a hotline", "for information on the missing"),
    ("The transitional government", "announced a committee", "on missing persons"),
    ("A photographer", "documented the empty cells", "after the doors were opened"),
    ("Teachers in Daraa", "collected names of pupils", "who never came home"),
    ("A British charity", "shipped equipment for exhumations", "to local teams"),
    ("A poet", "read verses written on cell walls", "to a crowd in Beirut"),
    ("Investigators", "recovered hard drives", "from the administration block"),
    ("A mother from Hama", "identified her son's clothes", "in a storage room"),
    ("A Swedish court", "convicted a former officer", "of war crimes"),
    ("Archivists", "moved prison ledgers", "to a secure location"),
    ("A theatre group", "performed a play based on survivor testimony", "in Berlin"),
    ("Medical students", "volunteered to treat former detainees", "in rural clinics"),
    ("A radio station", "broadcast the names of the missing", "every evening"),
    ("Muslim and Christian clergy", "held a joint prayer", "for the disappeared"),
    ("The Red Crescent", "set up tents", "for families waiting outside"),
    ("A software developer", "built a search tool", "for lists of detainees"),
    ("A football club", "wore black armbands", "for former players who died in detention"),
    ("Researchers", "mapped the prison from drone footage", "for a 3D model"),
    ("An Italian prosecutor", "sought an arrest warrant", "for a senior officer"),
    ("Former inmates", "returned to the prison", "to guide investigators"),
    ("A village council", "renamed a street", "after a man who died in the prison"),
    ("The justice ministry", "began reviewing thousands of sentences", "from field courts"),
    ("A novelist", "published a book based on letters", "smuggled out of the prison"),
    ("A hospital in Damascus", "found records of bodies received", "from the military police"),
    ("Aid workers", "distributed winter clothes", "to released prisoners"),
    ("A cartoonist", "exhibited drawings about the salt rooms", "in Amman"),
    ("Guards' relatives", "asked for fair trials", "in a public letter"),
    ("Lawmakers in Brussels", "debated sanctions", "on people linked to the prison"),
    ("A historian", "gave a lecture on the prison's construction", "in the 1980s"),
    ("A survivor", "testified before a US congressional committee", "about his interrogation"),
    ("Children's artists", "painted murals", "on the road to the prison"),
    ("Statisticians", "revised estimates of the dead", "using new documents"),
    ("A bus company", "ran free trips for families", "from the coast to the prison"),
    ("Satellite analysts", "spotted trenches dug", "in the months before the collapse"),
    ("A pharmacist", "described medicines denied to prisoners", "in an interview"),
    ("A film director", "premiered a documentary", "at a festival in Tunis"),
    ("The interior ministry", "handed keys of the prison", "to a civilian committee"),
    ("A monastery choir", "sang in memory of the detainees", "in the old town"),
    ("A farmer", "found identity cards", "buried in a field near the prison"),
    ("A women's network", "trained interviewers", "to record testimonies"),
    ("A Canadian court", "froze assets", "of a former prison director"),
    ("An imam", "spoke about forgiveness and justice", "in a Friday sermon"),
    ("A dentist", "examined former prisoners for free", "in a mobile clinic"),
    ("A chess club", "held a tournament", "in honour of a member who died in custody"),
]


class _Receiver:
    def __init__(self) -> None:
        self.arrivals: list[tuple[datetime, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                now = datetime.now(UTC)
                with receiver.lock:
                    receiver.arrivals.append((now, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _article(i: int) -> Article:
    actor, act, detail = EVENTS[i % len(EVENTS)]
    url = f"https://bench.example/{i}/story"
    ident, canonical = id_for_url(url)
    title = f"{actor} {act} {detail}"
    text = f"{actor} {act} {detail}. It concerns the detainees of Sednaya."
    now = datetime.now(UTC)
    # Publication dates further apart than the clustering window, so every article opens a new story
    # (same-week pieces about the prison may rightly join one story).
    published = PUBLISHED_FROM + timedelta(days=SPACING_DAYS * i)
    return Article(
        id=ident, url=url, canonical_url=canonical, source=f"bench-{i % 7}", channel="import", backfill=False,
        lang="en", title=title, text=text, authors=(), published=published, date_source="meta", discovered_at=now,
        fetched_at=now, content_sha256=content_hash(text), relevance=None,
    )  # fmt: skip


def _watchlists(url: str) -> list[Watchlist]:
    out = []
    for i in range(WATCHLISTS):
        query = f"Sednaya OR Saydnaya{i}" if i < MATCHING else f"unmatchedterm{i} OR (monastery AND pilgrims{i})"
        out.append(Watchlist(name=f"wl-{i:03d}", query=query, webhooks=(url,), secret=f"secret-{i}"))
    return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _latencies(receiver: _Receiver, start: int) -> list[float]:
    with receiver.lock:
        arrivals = receiver.arrivals[start:]
    return [(at - datetime.fromisoformat(p["entered_at"])).total_seconds() for at, p in arrivals]


def run(trickle: int, burst: int) -> dict[str, Any]:
    receiver = _Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), receiver.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            environ={},
            overrides={
                "data_dir": Path(tmp),
                "alert_allow_private_targets": True,  # the receiver listens on 127.0.0.1
                # the articles are dated from 2019 (10 days apart, one story each): widen the freshness
                # window, the latency measured is the same
                "alert_max_age_s": 30 * 365 * 86400.0,
            },
        )
        repo = SqliteWatchlistRepository.in_data_dir(settings.data_dir)
        for wl in _watchlists(url):
            repo.add(wl)
        repo.close()
        started = time.perf_counter()
        pipeline = Pipeline(settings)
        stage = pipeline.stage(AlertStage)
        pipeline.publish([_article(0)])  # warm-up: loads the model, not measured
        pipeline.drain()
        stage.wait_idle(120)
        results["startup_s"] = time.perf_counter() - started
        results["model"] = settings.model_name
        mark = len(receiver.arrivals)
        for i in range(1, trickle + 1):  # in publication order, as a crawl finds them
            pipeline.publish([_article(i)])
            pipeline.drain()
            stage.wait_idle(120)
        results["trickle"] = _latencies(receiver, mark)
        mark = len(receiver.arrivals)
        pipeline.publish([_article(trickle + 1 + i) for i in range(burst)])
        pipeline.drain()
        stage.wait_idle(300)
        results["burst"] = _latencies(receiver, mark)
        results["stories_created"] = int(
            pipeline.metrics.registry.get_sample_value("sednaya_story_events_total", {"kind": "created"}) or 0
        )
        stage.close()
        pipeline.close()
    server.shutdown()
    return results


def _write_section(lines: list[str]) -> None:
    write_doc_section(SECTION, lines, DOC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trickle", type=int, default=30, help="articles sent one at a time")
    parser.add_argument("--burst", type=int, default=BURST, help="articles sent at once")
    args = parser.parse_args()
    r = run(args.trickle, args.burst)
    rows = []
    for mode, n in (("trickle", args.trickle), ("burst", args.burst)):
        lat = r[mode]
        if not lat:
            rows.append(f"| {mode} | {n} | 0 | - | - | - |")
            continue
        rows.append(
            f"| {mode} | {n} | {len(lat)} | {statistics.median(lat) * 1000:.0f} | "
            f"{_percentile(lat, 0.95) * 1000:.0f} | {max(lat) * 1000:.0f} |"
        )
    intro = (
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.alert_latency` on the embedded default "
        f"(SQLite bus and store, {r['model']} on CPU), {WATCHLISTS} watchlists of which {MATCHING} match every "
        f"article, each with a webhook to a loopback receiver (so a matching article gives "
        f"{MATCHING} deliveries). Every article is a distinct event, published {SPACING_DAYS} days after the "
        "previous one, so each opens a new story. Latency = receiver arrival minus the article's `entered_at` "
        "(publish to the raw "
        f"topic): embedding, clustering, indexing, {WATCHLISTS} watchlist queries, ledger write and the HTTP POST. "
        "`trickle` sends one article at a time (steady state); `burst` sends them all at once, so later articles "
        f"also wait for the embedding of earlier ones. Stories created: {r['stories_created']}; start-up "
        f"(model load + first article) {r['startup_s']:.1f} s, not counted. The state starts fresh: the warm-up "
        "hold (`warmup_hold_s`) keeps the story events of its first 20 articles, each released when its drain "
        "ends (one article per drain in `trickle`), and the burst comes after the warm-up."
    )
    lines = [
        intro,
        "",
        "| mode | articles | alerts delivered | p50 ms | p95 ms | max ms |",
        "|---|---|---|---|---|---|",
        *rows,
    ]
    for line in lines:
        print(line)
    _write_section(lines)


if __name__ == "__main__":
    main()
