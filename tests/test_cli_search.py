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
