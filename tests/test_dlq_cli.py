"""`sednaya-monitor dlq list|replay`: short topic names as `redrive` and `offsets` take them, unknown topics
refused naming the valid ones, and the crawl's dead-letter file listed beside the bus's letters."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from crawlers.dead_letter import DeadLetterFile
from sednaya_monitor.cli import _register, cli
from sednaya_monitor.settings import Settings
from stream.bus import Record
from stream.bus_embedded import EmbeddedBus
from tests.store_fixtures import make_article

_register()


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def letter_on(settings: Settings, topic: str, key: str) -> None:
    """One dead letter of ``topic`` as a stage leaves it."""
    bus = EmbeddedBus(settings.data_dir / "bus.sqlite3")
    try:
        bus.ensure_topics(settings.topics)
        record = Record(topic=topic, key=key, value=b'{"schema": 9}', offset=4)
        bus.dead_letter(record, stage="index", error_class="UnsupportedSchemaError", reason="schema 9", attempts=3)
        bus.flush()
    finally:
        bus.close()


def crawl_letters(settings: Settings) -> DeadLetterFile:
    """A crawl dead-letter file: an article the bus refused, a search answer, and a line cut by a crash."""
    letters = DeadLetterFile(settings.data_dir)
    article = make_article(url="https://wing.example.net/refused", channel="feed")
    letters.write(kind="article", url=article.url, source=article.source, reason="broker gone",
                  error_class="BusError", payload=article.to_dict())  # fmt: skip
    letters.write(kind="search_response", url="https://api.gdeltproject.org/q", source="gdelt",
                  reason="malformed JSON", error_class="JSONDecodeError", payload="{[")  # fmt: skip
    with letters.path.open("a", encoding="utf-8") as fh:
        fh.write('{"at": "2026-12-07T10:00:00+00:00", "stage": "cra')
    return letters


def test_short_topic_names_are_the_pipeline_topics(settings: Settings) -> None:
    letter_on(settings, settings.topic_raw, "raw-key")
    letter_on(settings, settings.topic_clustered, "clustered-key")
    data = ("--data-dir", str(settings.data_dir))
    code, out, err = invoke(*data, "dlq", "list", "--topic", "raw")
    assert code == 0, err
    assert [row.split("\t")[1:3] for row in out.splitlines()] == [[settings.topic_raw, "raw-key"]]
    assert "1 dead letters" in err
    code, out, _err = invoke(*data, "dlq", "list", "--topic", "clustered", "--json")
    assert code == 0 and json.loads(out)["key"] == "clustered-key"
    code, out, _err = invoke(*data, "dlq", "list", "--topic", settings.topic_clustered)
    assert code == 0 and "clustered-key" in out  # a full name still works
    code, out, err = invoke(*data, "dlq", "replay", "--topic", "raw")
    assert code == 0 and out.strip() == f"{settings.topic_raw}: replayed 1", out + err
    code, out, err = invoke(*data, "dlq", "list", "--topic", "events")
    assert code == 0 and out == "" and "0 dead letters" in err


def test_an_unknown_topic_is_refused_naming_the_valid_ones(settings: Settings) -> None:
    letter_on(settings, settings.topic_raw, "raw-key")
    for argv in (["list", "--topic", "articles.raw"], ["replay", "--topic", "rwa"]):
        code, _out, err = invoke("--data-dir", str(settings.data_dir), "dlq", *argv)
        assert code == 2, err
        assert f"Invalid value for '--topic': '{argv[-1]}' is not a pipeline topic" in err, err
        assert "use one of raw, embedded, clustered, events" in err and settings.topic_story_events in err


def test_the_crawl_dead_letter_file_is_listed_after_the_bus_letters(settings: Settings) -> None:
    letter_on(settings, settings.topic_raw, "raw-key")
    letters = crawl_letters(settings)
    code, out, err = invoke("--data-dir", str(settings.data_dir), "dlq", "list")
    assert code == 0, err
    rows = [row.split("\t") for row in out.splitlines()]
    assert [row[1] for row in rows] == [settings.topic_raw, "crawl-file", "crawl-file", "crawl-file"]
    assert rows[1][:5] == ["crawl:1", "crawl-file", "https://wing.example.net/refused", "crawl", "BusError"]
    assert rows[2][5] == "kind=search_response" and rows[3][0] == "crawl:3" and rows[3][5] == "kind=unreadable"
    assert "line 3 is not JSON" in rows[3][7]
    assert f"4 dead letters (3 in {letters.path})" in err

    code, out, err = invoke("--data-dir", str(settings.data_dir), "dlq", "list", "--json")
    listed = [json.loads(row) for row in out.splitlines()]
    assert [d["place"] for d in listed] == ["bus", "crawl-file", "crawl-file", "crawl-file"]
    assert listed[1]["file"] == str(letters.path) and listed[1]["line"] == 1 and listed[1]["kind"] == "article"


def test_dlq_list_crawl_needs_no_bus(tmp_path: Path) -> None:
    """The crawl process of a deployment has the file and a Kafka bus: `--crawl` reads the file alone."""
    data = tmp_path / "crawl-data"
    letters = DeadLetterFile(data)
    letters.write(kind="article", url="https://wing.example.net/a", source="wing", reason="broker gone",
                  error_class="BusError", payload={})  # fmt: skip
    code, out, err = invoke("--data-dir", str(data), "--bus", "kafka://broker.invalid:9092", "dlq", "list", "--crawl")
    assert code == 0, err
    assert out.startswith("crawl:1\tcrawl-file\thttps://wing.example.net/a\tcrawl\tBusError\tkind=article\t")
    assert f"1 dead letters (1 in {letters.path})" in err
    code, _out, err = invoke("--data-dir", str(data), "dlq", "list", "--crawl", "--topic", "raw")
    assert code == 2 and "--crawl lists the crawl's dead-letter file, which has no topic" in err
