"""The CLI ``search`` over the embedded store the product's wiring builds: the order of results, the date
bounds, and the errors that name the input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sednaya_monitor import wiring
from sednaya_monitor.cli import _register, cli
from sednaya_monitor.settings import load_settings
from tests.store_fixtures import make_article


def _day(day: int, hour: int = 12) -> datetime:
    return datetime(2024, 12, day, hour, tzinfo=UTC)


# Written for these tests: a week of bulletins on a harbour, one a day, each its own story; the one of the
# 10th published late in the evening.
BULLETINS = {
    day: make_article(
        url=f"https://harbour.example/bulletin/{day}",
        story_id=f"bulletin-{day}",
        lang="en",
        title=f"Harbour bulletin of December {day}",
        text="Ferries ran on time; the fish market opened at dawn.",
        published=_day(day, 23 if day == 10 else 12),
    )
    for day in range(5, 12)
}
DAY_OF = {a.id: day for day, a in BULLETINS.items()}


@pytest.fixture
def harbour_dir(data_dir: Path) -> Path:
    store = wiring.make_store(load_settings(environ={}, overrides={"data_dir": data_dir}))
    store.ensure_ready()
    assert store.write_articles(list(BULLETINS.values())) == []
    store.close()
    return data_dir


def _run(data_dir: Path, *args: str) -> Result:
    _register()
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args])


def _days(result: Result) -> list[int]:
    assert result.exit_code == 0, result.output
    return [DAY_OF[h["id"]] for h in json.loads(result.output)["hits"]]


def test_a_query_nested_too_deep_is_a_usage_error_naming_it(harbour_dir: Path) -> None:
    query = "NOT " * 36 + "ferries"
    result = _run(harbour_dir, "search", query)
    assert result.exit_code == 2, result.output
    assert "Invalid value for 'QUERY'" in result.output
    assert "nested deeper than 20 levels" in result.output
    assert "Traceback" not in result.output
    assert _days(_run(harbour_dir, "search", "NOT NOT ferries", "--json")) != []  # NOTs that cancel out


def test_until_a_plain_date_includes_that_whole_day(harbour_dir: Path) -> None:
    """``--until 2024-12-10`` keeps the bulletin published at 23:00 that day, as the search page does."""
    found = _days(
        _run(harbour_dir, "search", "--since", "2024-12-08", "--until", "2024-12-10", "--sort", "date", "--json")
    )
    assert found == [10, 9, 8]
    at_noon = _run(harbour_dir, "search", "--until", "2024-12-10T12:00:00Z", "--sort", "date", "--json")
    assert _days(at_noon)[0] == 9  # a date-time is the instant given
    one_day = _run(harbour_dir, "search", "--since", "2024-12-10", "--until", "2024-12-10", "--json")
    assert _days(one_day) == [10]


def test_since_after_until_is_a_usage_error_naming_both(harbour_dir: Path) -> None:
    result = _run(harbour_dir, "search", "ferries", "--since", "2024-12-11", "--until", "2024-12-10")
    assert result.exit_code == 2, result.output
    assert "Invalid value: '--since' '2024-12-11' is after '--until' '2024-12-10'" in result.output


@pytest.mark.parametrize("query", ["", "lang:en", "NOT regatta", "-regatta"])
def test_a_search_without_words_is_newest_first(harbour_dir: Path, query: str) -> None:
    """The default sort is relevance; with no word to rank by, it is the date order (it was id order)."""
    found = _days(_run(harbour_dir, "search", "--json", "--", query))
    assert found == [11, 10, 9, 8, 7, 6, 5]
    by_story = _run(harbour_dir, "search", "--by-story", "--json", "--", query)
    assert [g["story_id"] for g in json.loads(by_story.output)["groups"]] == [f"bulletin-{d}" for d in found]
