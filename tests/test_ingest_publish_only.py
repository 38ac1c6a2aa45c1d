"""`ingest --publish-only`: the lines are read as `ingest` reads them (line limit, dead letters recorded once),
an article too large for the bus is dead-lettered with its file and line instead of failing the publish,
and the counts are printed whatever happens. On the embedded bus and on tansu (a real Kafka-protocol broker).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kafka import KafkaProducer

from crawlers.dead_letter import DeadLetterFile
from sednaya_monitor import wiring
from sednaya_monitor.cli import _register, cli
from sednaya_monitor.ingest_run import (
    DEAD_LETTER_HEADROOM_BYTES,
    STAGE_HEADROOM_BYTES,
    IngestRun,
    RawTopicPublisher,
    record_bytes,
)
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from stream.article import Article
from stream.bus import Bus, BusAdmin
from stream.bus_embedded import EmbeddedBus
from stream.bus_kafka import MAX_RECORD_BYTES as KAFKA_MAX_RECORD_BYTES
from stream.errors import BusError, SednayaError
from tests.broker_fixtures import Broker, kafka_test_overrides
from tests.store_fixtures import make_article

_register()

WING = "The detainees were moved to another wing of the prison, a released guard told the court. "


def invoke(*args: str) -> tuple[int, str, str]:
    """The CLI in process; a domain error exits 1 with ``Error: <message>`` as ``main`` prints it."""
    result = CliRunner().invoke(cli, list(args))
    if isinstance(result.exception, SednayaError):
        return 1, result.stdout, result.stderr + f"Error: {result.exception}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def line(n: int, *, text: str = WING) -> str:
    return json.dumps({"url": f"https://wing.example.net/report/{n}", "title": f"Report {n}", "text": text})


def config_file(path: Path, values: Mapping[str, Any]) -> Path:
    """A settings file holding ``values`` (strings and integers)."""
    rows = [f"{k} = {json.dumps(v) if isinstance(v, str) else v}" for k, v in values.items()]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def records(bus: Bus, topic: str) -> list[bytes]:
    assert isinstance(bus, BusAdmin)
    return [r.value for r in bus.read_topic(topic)]


def test_kafka_record_limit_is_the_producers() -> None:
    """KafkaBus keeps kafka-python's max_request_size: the limit ingest checks is that one."""
    assert KafkaProducer.DEFAULT_CONFIG["max_request_size"] == KAFKA_MAX_RECORD_BYTES


def test_on_kafka_an_oversized_line_is_dead_lettered_with_file_and_line_once(
    tansu_broker: Broker, data_dir: Path, tmp_path: Path
) -> None:
    overrides = {**kafka_test_overrides(tansu_broker), "data_dir": str(data_dir)}
    config = config_file(tmp_path / "ops.toml", overrides)
    settings = load_settings(environ={}, overrides=overrides)
    big_text = WING * (KAFKA_MAX_RECORD_BYTES // len(WING) + 200)  # over 1 MiB once in a record
    source = tmp_path / "wing.jsonl"
    source.write_text("\n".join([line(1), line(2, text=big_text), "{no json", line(3)]) + "\n", encoding="utf-8")

    code, out, err = invoke("--config", str(config), "ingest", "--publish-only", str(source))
    assert code == 0, out + err
    assert f"published 2 articles to {settings.topic_raw} on {settings.bus}" in out
    assert "lines in:      4" in out and "dead letters:  2" in out, out
    assert f"{source}: line 2: article https://wing.example.net/report/2 makes a " in err, err
    assert f"the bus takes at most {KAFKA_MAX_RECORD_BYTES}" in err and f"{source}: line 3: not valid JSON" in err

    bus = wiring.make_bus(settings)
    try:
        published = [Article.from_json(v).url for v in records(bus, settings.topic_raw)]
        assert sorted(published) == ["https://wing.example.net/report/1", "https://wing.example.net/report/3"]
        letters = bus.dead_letters(settings.topic_raw, limit=100)
        assert sorted(d.headers["ingest.kind"] for d in letters) == ["not_json", "too_large"], letters
        too_large = next(d for d in letters if d.headers["ingest.kind"] == "too_large")
        assert too_large.reason.startswith(f"{source}: line 2: ") and too_large.headers["ingest.line"] == "2"
        assert too_large.stage == "ingest" and too_large.error_class == "IngestError"
        kept = int(too_large.headers["ingest.kept_bytes"])  # the letter's copy is cut to fit the bus
        assert len(too_large.value) == kept == KAFKA_MAX_RECORD_BYTES - DEAD_LETTER_HEADROOM_BYTES
    finally:
        bus.close()

    # a rerun publishes the good lines again (harmless) and records no letter twice
    code, out, err = invoke("--config", str(config), "ingest", "--publish-only", str(source))
    assert code == 0, out + err
    assert "dead letters:  2 (2 already recorded by an earlier run)" in out, out
    bus = wiring.make_bus(settings)
    try:
        assert len(bus.dead_letters(settings.topic_raw, limit=100)) == 2
    finally:
        bus.close()


def test_an_article_that_fits_kafka_but_leaves_the_stages_no_room_is_refused(data_dir: Path) -> None:
    """The limit keeps room for what the stages add (vector, story): such a line fails no publish later."""
    settings = load_settings(environ={}, overrides={"data_dir": data_dir, "bus": "kafka://broker.invalid:9092"})
    text = "x" * (KAFKA_MAX_RECORD_BYTES - STAGE_HEADROOM_BYTES // 2)
    article = make_article(text=text)
    assert KAFKA_MAX_RECORD_BYTES - STAGE_HEADROOM_BYTES < record_bytes(article) < KAFKA_MAX_RECORD_BYTES
    refused: list[str] = []
    bus = EmbeddedBus(data_dir / "bus.sqlite3")  # stands in for the broker: the settings' bus sets the limit
    try:
        run = IngestRun(
            RawTopicPublisher(settings, PrometheusMetrics(), bus), on_error=lambda origin, e: refused.append(str(e))
        )
        report = run.read(io.BytesIO(f"{line(1)}\n{line(2, text=text)}\n".encode()))
        assert (report.published, report.dead_at_ingest, report.accounted) == (1, 1, 2)
        assert refused and refused[0].startswith("line 2: article https://wing.example.net/report/2 makes a ")
        (letter,) = bus.dead_letters(settings.topic_raw)
        assert letter.headers["ingest.kind"] == "too_large"
    finally:
        bus.close()


def test_the_line_limit_holds_for_publish_only(settings_factory: Any, tmp_path: Path) -> None:
    settings = settings_factory()
    config = config_file(tmp_path / "small.toml", {"ingest_max_line_bytes": 10_000})
    source = tmp_path / "long.jsonl"
    source.write_text("\n".join([line(1), line(2, text=WING * 600), line(3)]) + "\n", encoding="utf-8")
    code, out, err = invoke("--data-dir", str(settings.data_dir), "--config", str(config), "ingest", "--publish-only",
                            str(source))  # fmt: skip
    assert code == 0, out + err
    assert "published 2 articles" in out and "dead letters:  1" in out, out
    assert f"{source}: line 2: line is longer than 10000 bytes" in err, err
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    try:
        assert len(records(bus, settings.topic_raw)) == 2
        (letter,) = bus.dead_letters(settings.topic_raw)
        assert letter.headers["ingest.kind"] == "too_long" and len(letter.value) == 10_000
    finally:
        bus.close()


class FlushRefusingBus:
    """The real embedded bus whose ``flush`` the broker refuses (as a Kafka flush fails when it is down)."""

    def __init__(self, inner: EmbeddedBus) -> None:
        self.inner = inner

    def flush(self, timeout_s: float | None = None) -> None:
        raise BusError("kafka ['broker:9092']: 3 records not delivered: broker gone (refused by the test)")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_the_counts_are_printed_when_the_bus_fails(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = wiring.make_bus
    monkeypatch.setattr(wiring, "make_bus", lambda s, metrics=None: FlushRefusingBus(real(s, metrics)))  # type: ignore[arg-type]
    source = tmp_path / "three.jsonl"
    source.write_text("\n".join([line(1), "[1]", line(2), line(3)]) + "\n", encoding="utf-8")
    code, out, err = invoke("--data-dir", str(settings.data_dir), "ingest", "--publish-only", str(source))
    assert code == 1 and "Error: kafka ['broker:9092']: 3 records not delivered" in err, out + err
    assert f"publishing to {settings.topic_raw} on embedded stopped after 4 lines" in out, out
    assert "lines in:      4" in out and "published:     0" in out and "dead letters:  1" in out, out
    assert "not confirmed: 3" in out and "UNACCOUNTED" not in out, out


def test_the_crawl_dead_letter_file_is_replayed_as_crawled(settings: Settings) -> None:
    crawled = make_article(url="https://wing.example.net/crawled", channel="feed", date_source="jsonld")
    letters = DeadLetterFile(settings.data_dir)
    letters.write(kind="article", url=crawled.url, source=crawled.source, reason="broker gone",
                  error_class="BusError", payload=crawled.to_dict())  # fmt: skip
    letters.write(kind="search_response", url="https://api.gdeltproject.org/x", source="gdelt",
                  reason="malformed JSON", error_class="JSONDecodeError", payload="{[")  # fmt: skip
    code, out, err = invoke("--data-dir", str(settings.data_dir), "ingest", "--publish-only", str(letters.path))
    assert code == 0, out + err
    assert "published 1 articles" in out and "dead letters:  1" in out, out
    assert "line 2, field 'kind': crawl dead letter of kind 'search_response' holds no article" in err, err
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    try:
        (value,) = records(bus, settings.topic_raw)
        assert Article.from_json(value) == crawled  # channel, dates and relevance as crawled
    finally:
        bus.close()
