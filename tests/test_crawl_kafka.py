"""The crawl stage of the distributed mode: ``sednaya-monitor crawl --bus kafka://...`` publishes the same
records to a real Kafka-protocol broker (tansu on loopback) as to the embedded bus."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from sednaya_monitor import wiring
from sednaya_monitor.settings import load_settings
from stream.article import Article
from stream.bus import H_SCHEMA, Record
from stream.canonical_url import id_for_url
from tests.broker_fixtures import Broker, kafka_test_overrides, unique_name
from tests.crawl_fixtures import FixtureWeb, crawl_json

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_crawl_publishes_to_kafka(fixture_web: FixtureWeb, tansu_broker: Broker, tmp_path: Path) -> None:
    overrides = kafka_test_overrides(tansu_broker)
    bus_url = overrides.pop("bus")
    env = fixture_web.env(tmp_path / "data", **{k.upper(): str(v) for k, v in overrides.items()}, DISCOVERY="false")
    summary = crawl_json(env, "--bus", bus_url, "--source", "nahost-rundschau", "--source", "courrier-levant")
    assert summary["published"] == 4
    settings = load_settings(environ={}, overrides={**overrides, "bus": bus_url, "data_dir": tmp_path / "data"})
    bus = wiring.make_bus(settings)
    try:
        consumer = bus.consumer(settings.topic_raw, unique_name("g"))
        records: list[Record] = []
        deadline = time.monotonic() + 30
        while len(records) < 4 and time.monotonic() < deadline:
            records.extend(consumer.poll(10, 1.0))
        consumer.close()
    finally:
        bus.close()
    expected = {
        id_for_url(fixture_web.url(site, path))[0]
        for site, path in [
            ("de", "/politik/sednaja-prozess.html"),
            ("de", "/politik/krematorium-vorwurf.html"),  # prefilter: region word + event word
            ("fr", "/articles/abattoir-humain.html"),
            ("fr", "/articles/visite-onu.html"),
        ]
    }
    assert sorted(r.key for r in records) == sorted(expected)
    assert all(r.headers[H_SCHEMA] == "1" and Article.from_json(r.value).id == r.key for r in records)
    assert not (tmp_path / "data" / "bus.sqlite3").exists(), "nothing went to the embedded bus"
