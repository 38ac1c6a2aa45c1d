"""Pure alert decisions and payloads (indexer/alerting/alerts.py) and the watchlist model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from indexer.alerting.alerts import (
    Alert,
    build_alert,
    decide,
    digest_body,
    digest_marker,
    group_digest,
    is_fresh,
    matched_terms,
    near_story_of,
    query_article_id,
    related_story_of,
    slack_body,
    story_link,
    webhook_body,
)
from indexer.alerting.channels.email import render_digest_email
from indexer.alerting.watchlists import SqliteWatchlistRepository, Watchlist, require
from indexer.errors import WatchlistError
from tests.alert_fixtures import make_event
from tests.store_fixtures import make_article

WL = Watchlist(name="sednaya", query="Sednaya OR صيدنايا")
DIGEST_WL = Watchlist(name="weekly", query="Sednaya", mode="digest", every="hourly")


@pytest.mark.parametrize(
    ("kind", "backfill", "matched", "already", "fresh", "watchlist", "expected"),
    [
        ("created", False, True, False, True, WL, ("instant", "new_story")),
        ("created", False, False, False, True, WL, ("skip", "no_match")),
        ("created", False, True, True, True, WL, ("skip", "already_alerted")),
        ("created", True, True, False, True, WL, ("skip", "backfill")),
        ("created", False, True, False, False, WL, ("digest", "older_coverage")),
        ("created", False, True, False, True, DIGEST_WL, ("digest", "digest_mode")),
        ("created", False, True, False, False, DIGEST_WL, ("digest", "older_coverage")),
        ("created", True, True, False, True, DIGEST_WL, ("skip", "backfill")),
        ("updated", False, True, False, True, WL, ("instant", "new_story")),
        ("updated", False, True, False, False, WL, ("digest", "older_coverage")),
        ("updated", False, True, True, True, WL, ("digest", "follow_up")),
        ("updated", False, False, True, True, WL, ("digest", "follow_up")),
        ("updated", False, False, False, True, WL, ("skip", "no_match")),
        ("updated", True, True, True, True, WL, ("skip", "backfill")),
        ("merged", False, True, True, True, WL, ("skip", "merged")),
    ],
)
def test_decide(
    kind: str,
    backfill: bool,
    matched: bool,
    already: bool,
    fresh: bool,
    watchlist: Watchlist,
    expected: tuple[str, str],
) -> None:
    event = make_event(kind, make_article(), story_id="s1", backfill=backfill)
    verdict = decide(event, watchlist, matched=matched, already_alerted=already, fresh=fresh)
    assert (verdict.action, verdict.reason) == expected


def test_a_new_story_related_to_an_alerted_one_is_a_follow_up_not_a_second_alert() -> None:
    related = make_event("created", make_article(), story_id="s2", related_story="s1")
    assert related_story_of(related) == "s1"
    verdict = decide(related, WL, matched=True, already_alerted=True, fresh=True)
    assert (verdict.action, verdict.reason, verdict.role) == ("digest", "follow_up", "follow_up")
    # related to a story this watchlist never alerted on: a new story like any other
    assert decide(related, WL, matched=True, already_alerted=False, fresh=True).action == "instant"
    assert related_story_of(make_event("updated", make_article(), story_id="s2")) is None


def test_an_unconfirmed_new_story_waits_for_its_second_report_on_an_instant_watchlist() -> None:
    """A new story that only nearly relates to an older one (``near_story``) is a digest entry marked
    unconfirmed for an instant watchlist; its next event alerts if the story is still new to it."""
    near = make_event("created", make_article(), story_id="s2", near_story="s1")
    assert near_story_of(near) == "s1"
    verdict = decide(near, WL, matched=True, already_alerted=False, fresh=True)
    assert (verdict.action, verdict.reason, verdict.role) == ("digest", "unconfirmed", "unconfirmed")
    second = make_event("updated", make_article(), story_id="s2")
    assert near_story_of(second) is None
    assert decide(second, WL, matched=True, already_alerted=False, fresh=True).action == "instant"
    # what decides before the wait is unchanged: no match, older coverage, an alerted group, a backfill
    assert decide(near, WL, matched=False, already_alerted=False, fresh=True).reason == "no_match"
    assert decide(near, WL, matched=True, already_alerted=False, fresh=False).reason == "older_coverage"
    assert decide(near, WL, matched=True, already_alerted=True, fresh=True).reason == "already_alerted"
    # a digest watchlist is told as usual: its digest is the wait
    assert decide(near, DIGEST_WL, matched=True, already_alerted=False, fresh=True).reason == "digest_mode"
    # related wins over near (the clustering stage sets one; a hand-made event with both is related)
    both = make_event("created", make_article(), story_id="s3", related_story="s1", near_story="s1")
    assert decide(both, WL, matched=True, already_alerted=False, fresh=True).action == "instant"


def test_a_matching_article_joining_a_story_not_yet_alerted_fires_instantly() -> None:
    """Matching on the whole story: English coverage joining a story that began in Arabic fires ``lang:en``."""
    event = make_event("updated", make_article(lang="en"), story_id="s1")
    assert decide(event, WL, matched=True, already_alerted=False, fresh=True).action == "instant"
    assert decide(event, WL, matched=True, already_alerted=True, fresh=True).action == "digest"


def test_freshness_is_published_else_discovered_and_the_story_must_be_young() -> None:
    now = datetime(2026, 12, 6, tzinfo=UTC)
    day = 86400.0
    recent = make_article(published=now - timedelta(days=1))
    event = make_event("created", recent, story_id="s")
    assert is_fresh(recent, event.story, now=now, max_age_s=3 * day)
    assert not is_fresh(recent, event.story, now=now, max_age_s=0.5 * day)
    undated = make_article(published=None, discovered_at=now - timedelta(days=4))
    assert not is_fresh(
        undated, make_event("created", undated, story_id="s", first_seen=now).story, now=now, max_age_s=3 * day
    )
    old_story = make_event("updated", recent, story_id="s", first_seen=datetime(2017, 2, 7, tzinfo=UTC)).story
    assert not is_fresh(recent, old_story, now=now, max_age_s=3 * day)  # an anniversary piece is not news


def test_query_runs_on_first_article_for_created_and_joining_article_for_updated() -> None:
    first, copy = make_article(), make_article()
    assert query_article_id(make_event("created", first, story_id="s")) == first.id
    assert query_article_id(make_event("updated", copy, story_id="s", first_article_id=first.id)) == copy.id


def test_alert_carries_story_article_terms_and_link() -> None:
    article = make_article(title="Families gather at Sednaya", source="wire", lang="en")
    event = make_event("created", article, story_id="story-42", title="Families gather at Sednaya")
    alert = build_alert(event, WL, article, matched_terms=("Sednaya",), public_url="https://mon.example/")
    assert alert.link == "https://mon.example/stories/story-42" == story_link("https://mon.example", "story-42")
    assert (alert.title, alert.source, alert.lang, alert.url) == (article.title, "wire", "en", article.url)
    assert alert.published == article.published
    assert Alert.from_dict(alert.to_dict()) == alert
    body = webhook_body(alert, alert_id="sednaya/story-42")
    assert body["type"] == "sednaya.alert"
    assert body["id"] == "sednaya/story-42"
    assert body["story"]["link"] == alert.link
    assert body["article"] == {
        "id": article.id,
        "title": article.title,
        "source": "wire",
        "lang": "en",
        "url": article.url,
        "published": "2017-05-15T12:00:00Z",
    }
    assert body["matched_terms"] == ["Sednaya"]


def test_slack_body_escapes_and_links() -> None:
    article = make_article(title="A <b>bold</b> & odd title")
    alert = build_alert(
        make_event("created", article, story_id="s9"), WL, article, matched_terms=("x",), public_url="http://h"
    )
    body = slack_body(alert)
    assert set(body) == {"text", "blocks"}
    detail = body["blocks"][1]["elements"][0]["text"]
    assert "A &lt;b&gt;bold&lt;/b&gt; &amp; odd title" in detail
    assert "<http://h/stories/s9|" in body["blocks"][0]["text"]["text"]


def test_matched_terms_prefers_store_terms_then_highlights_then_query_words() -> None:
    assert matched_terms(("Sednaya", "sednaya", "prison"), {}, "x") == ("Sednaya", "prison")
    assert matched_terms(("صيدنايا", "صیدنایا"), {}, "x") == ("صيدنايا",)  # Arabic and Persian yeh: one term
    assert matched_terms((), {"title": ["the <mark>Saydnaya</mark> file", "<mark>prison</mark>"]}, "x") == (
        "Saydnaya",
        "prison",
    )
    assert matched_terms((), {}, '"military prison" AND (Sednaya OR title:Saidnaya) NOT monastery lang:en') == (
        "military prison",
        "Sednaya",
        "Saidnaya",
    )


def test_group_digest_groups_by_story_with_source_counts() -> None:
    def entry(story: str, source: str, kind: str, minute: int) -> Alert:
        article = make_article(source=source)
        at = datetime(2024, 12, 9, 10, minute, tzinfo=UTC)
        return Alert(
            watchlist="w", story_id=story, story_title=f"title {story}", event_kind=kind, article_id=article.id,
            title=article.title, source=source, lang="en", url=article.url, published=None, matched_terms=(),
            link=f"http://h/stories/{story}", at=at,
        )  # fmt: skip

    groups = group_digest(
        [
            entry("old", "a", "updated", 1),
            entry("new", "a", "created", 2),
            entry("new", "b", "updated", 3),
            entry("new", "b", "updated", 4),
            entry("old", "c", "updated", 5),
        ]
    )
    assert [g.story_id for g in groups] == ["new", "old"]
    assert groups[0].new and not groups[1].new
    assert groups[0].source_counts == (("b", 2), ("a", 1))
    assert groups[1].source_counts == (("a", 1), ("c", 1))
    assert [e.source for e in groups[0].entries] == ["a", "b", "b"]


def test_a_digest_lists_unconfirmed_stories_after_new_ones_and_says_so() -> None:
    def entry(story: str, role: str, minute: int) -> Alert:
        article = make_article()
        return Alert.from_dict(
            {
                "watchlist": "w", "story_id": story, "story_title": f"title {story}",
                "event_kind": "updated" if role == "follow_up" else "created", "article_id": article.id,
                "title": article.title, "source": article.source, "lang": "en", "url": article.url,
                "published": None, "link": f"http://h/stories/{story}",
                "at": f"2024-12-09T10:{minute:02d}:00Z", "role": role,
            }
        )  # fmt: skip

    groups = group_digest([entry("old", "follow_up", 1), entry("maybe", "unconfirmed", 2), entry("new", "new", 3)])
    assert [(g.story_id, digest_marker(g)) for g in groups] == [
        ("new", "NEW"),
        ("maybe", "UNCONFIRMED"),
        ("old", "UPDATED"),
    ]
    assert groups[1].entries[0].role == "unconfirmed"  # the role survives the ledger's dict round trip
    body = digest_body("w", groups, digest_id="d1", period="p")
    assert [s["unconfirmed"] for s in body["stories"]] == [False, True, False]
    subject, plain, _ = render_digest_email("w", groups, period="p")
    assert subject == "[w] daily digest: 1 new, 1 updated stories, 1 unconfirmed"
    assert "UNCONFIRMED: title maybe" in plain


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "no spaces"}, "watchlist name 'no spaces'"),
        ({"query": "  "}, "watchlist 'w': the query is empty"),
        ({"query": "Sednaya AND"}, "watchlist 'w': query 'Sednaya AND': expected a term after 'AND' at position 11"),
        ({"webhooks": ("ftp://x",)}, "webhook 'ftp://x' is not an http(s) URL"),
        ({"emails": ("nobody",)}, "e-mail address 'nobody'"),
        ({"mode": "sometimes"}, "mode 'sometimes'"),
        ({"every": "weekly"}, "every 'weekly'"),
        ({"slack": True}, "--slack needs a webhook URL"),
    ],
)
def test_watchlist_validation_names_the_field(changes: dict[str, object], message: str) -> None:
    fields: dict[str, object] = {"name": "w", "query": "Sednaya", **changes}
    with pytest.raises(WatchlistError, match=None) as info:
        Watchlist(**fields)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_repository_round_trip_and_duplicates(data_dir: object) -> None:
    from pathlib import Path

    repo = SqliteWatchlistRepository.in_data_dir(Path(str(data_dir)))
    wl = Watchlist(
        name="ar-news", query="صيدنايا", lang="ar", webhooks=("http://127.0.0.1:9/x",), secret="s3", emails=("a@b.c",)
    )
    repo.add(wl)
    with pytest.raises(WatchlistError, match="'ar-news' already exists"):
        repo.add(wl)
    assert repo.get("ar-news") == wl
    assert [w.name for w in repo.all()] == ["ar-news"]
    assert wl.to_dict()["secret_set"] is True and "secret" not in wl.to_dict()
    assert repo.remove("ar-news") and not repo.remove("ar-news")
    with pytest.raises(WatchlistError, match="no watchlist named 'ar-news' \\(known: none\\)"):
        require(repo, "ar-news")
    repo.close()


@given(
    kind=st.sampled_from(["created", "updated", "merged"]),
    backfill=st.booleans(),
    matched=st.booleans(),
    already=st.booleans(),
    fresh=st.booleans(),
    mode=st.sampled_from(["instant", "digest"]),
)
def test_instant_alert_only_for_a_fresh_matching_article_of_a_story_not_yet_alerted(
    kind: str, backfill: bool, matched: bool, already: bool, fresh: bool, mode: str
) -> None:
    event = make_event(kind, make_article(), story_id="s", backfill=backfill)
    wl = Watchlist(name="w", query="Sednaya", mode=mode)  # type: ignore[arg-type]
    verdict = decide(event, wl, matched=matched, already_alerted=already, fresh=fresh)
    fires = kind in {"created", "updated"} and not backfill and matched and not already and fresh
    assert (verdict.action == "instant") == (fires and mode == "instant")
    if backfill or kind == "merged":
        assert verdict.action == "skip"
    if kind == "updated" and not backfill and not fires:
        assert verdict.action == ("digest" if matched or already else "skip")
