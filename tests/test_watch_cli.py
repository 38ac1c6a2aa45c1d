"""``sednaya-monitor watch ...`` through click, over a real embedded store in the data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from indexer.alerting.ledger import AlertLedger
from indexer.errors import WatchlistError
from indexer.store_embedded import EmbeddedStore
from sednaya_monitor.cli import _register, cli
from tests.alert_fixtures import SmtpServer, make_event
from tests.store_fixtures import make_article


def _run(data_dir: Path, *args: str) -> Result:
    _register()
    return CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=True)


def test_add_list_remove(data_dir: Path) -> None:
    added = _run(data_dir, "watch", "add", "sednaya", "Sednaya OR صيدنايا", "--webhook", "https://hooks.example.org/h",
                 "--email", "a@test.example", "--lang", "ar")  # fmt: skip
    assert added.exit_code == 0, added.output
    assert "watchlist 'sednaya' saved (instant)" in added.output
    assert "webhook secret" in added.output
    assert "Atom feed: http://127.0.0.1:8080/watchlists/sednaya/atom.xml" in added.output
    listed = _run(data_dir, "watch", "list", "--json")
    assert listed.exit_code == 0, listed.output
    (item,) = json.loads(listed.output)
    assert item["name"] == "sednaya" and item["lang"] == "ar" and item["secret_set"] is True
    assert "secret" not in item and item["alerts"] == 0
    text = _run(data_dir, "watch", "list").output
    assert "sednaya  [instant]  Sednaya OR صيدنايا lang:ar" in text
    assert "targets: webhook https://hooks.example.org/h, email a@test.example" in text
    again = _run(data_dir, "watch", "add", "sednaya", "Sednaya")
    assert isinstance(again.exception, WatchlistError)
    assert "'sednaya' already exists" in str(again.exception)
    assert _run(data_dir, "watch", "remove", "sednaya").output == "watchlist 'sednaya' removed\n"
    missing = _run(data_dir, "watch", "remove", "sednaya")
    assert isinstance(missing.exception, WatchlistError)
    assert str(missing.exception) == "no watchlist named 'sednaya' (known: none)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad name", "x"], "watchlist name 'bad name'"),
        (["w", "Sednaya AND"], "expected a term after 'AND' at position 11"),
        (["w", "x", "--email", "nobody"], "e-mail address 'nobody'"),
        (["w", "x", "--mode", "weekly"], "Invalid value for '--mode'"),
        (["w", "x", "--webhook", "http://169.254.169.254/latest"], "169.254.169.254 is a link-local"),
        (["w", "x", "--webhook", "http://127.0.0.1:22/"], "set alert_allow_private_targets"),
    ],
)
def test_add_rejects_bad_input_with_usage_error(data_dir: Path, args: list[str], message: str) -> None:
    result = _run(data_dir, "watch", "add", *args)
    assert result.exit_code == 2
    assert message in result.output


def test_watch_test_shows_matching_stories_and_alerted_ones(data_dir: Path) -> None:
    store = EmbeddedStore(data_dir / "store.sqlite3")
    store.ensure_ready()
    hit = make_article(title="Families search Sednaya prison", text="Families came to Sednaya.", story_id="s1")
    miss = make_article(title="Football results", text="A draw.", story_id="s2")
    assert store.write_articles([hit, miss]) == []
    store.close()
    assert _run(data_dir, "watch", "add", "w", "Sednaya").exit_code == 0
    ledger = AlertLedger.in_data_dir(data_dir)
    from indexer.alerting.alerts import build_alert
    from indexer.alerting.watchlists import Watchlist

    wl = Watchlist(name="w", query="Sednaya")
    ledger.record_alert(
        build_alert(make_event("created", hit, story_id="s1"), wl, hit, matched_terms=(), public_url="http://h"),
        mode="instant",
        targets=(),
    )
    ledger.close()
    out = _run(data_dir, "watch", "test", "w")
    assert out.exit_code == 0, out.output
    assert out.output.startswith("w: 1 matching articles in 1 stories shown\n")
    assert "alerted  2017-05-15  [en] Families search Sednaya prison" in out.output
    data = json.loads(_run(data_dir, "watch", "test", "w", "--json").output)
    assert [s["story_id"] for s in data["stories"]] == ["s1"] and data["stories"][0]["alerted"] is True
    alerts = _run(data_dir, "watch", "alerts", "w").output
    assert "[en] Families search Sednaya prison" in alerts and "http://h/stories/s1" in alerts


@pytest.mark.timeout(60)
def test_watch_digest_force_sends_queued_entries(
    data_dir: Path, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEDNAYA_MONITOR_SMTP_PORT", str(smtp_server.port))
    assert (
        _run(data_dir, "watch", "add", "d", "Sednaya", "--email", "a@test.example", "--mode", "digest").exit_code == 0
    )
    article = make_article(title="Sednaya news", story_id="s1")
    ledger = AlertLedger.in_data_dir(data_dir)
    from indexer.alerting.alerts import build_alert
    from indexer.alerting.watchlists import Watchlist

    wl = Watchlist(name="d", query="Sednaya", mode="digest")
    event = make_event("created", article, story_id="s1")
    ledger.add_digest_item(build_alert(event, wl, article, matched_terms=(), public_url="http://h"))
    ledger.close()
    not_due = _run(data_dir, "watch", "digest")
    assert not_due.exit_code == 0, not_due.output
    assert "digests opened: 0" in not_due.output
    forced = _run(data_dir, "watch", "digest", "--force")
    assert "digests opened: 1; sent by e-mail: 1, by webhook: 0" in forced.output
    (mail,) = smtp_server.wait_for(1)
    assert mail.message["Subject"] == "[d] daily digest: 1 new, 0 updated stories"


def test_watch_list_says_when_story_events_wait_for_their_article(data_dir: Path) -> None:
    from stream.bus import Record

    assert _run(data_dir, "watch", "add", "w", "Sednaya").exit_code == 0
    ledger = AlertLedger.in_data_dir(data_dir)
    ledger.park(Record(topic="t", key="k", value=b"{}"), story_id="s1", article_id="a1", next_try=0.0)
    ledger.close()
    result = _run(data_dir, "watch", "list")
    assert result.exit_code == 0, result.output
    assert "1 story event(s) wait for their article to be indexed (oldest: article a1 of story s1" in result.stderr
    assert "1 story event(s)" not in result.stdout
