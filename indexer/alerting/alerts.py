"""Alert decisions and payloads: pure code, no I/O.

"Is this story event worth telling this watchlist about, and how?" A watchlist is matched against the
**whole story**: every ``created`` or ``updated`` event runs the watchlist's query (with its language
and source filters) on the article that caused it. A watchlist fires **once per story**, the first
time a story it has not alerted on (nor on a story merged with it) gets a matching **fresh** article:

* fresh = the article was published (else discovered) at most ``alert_max_age_s`` ago, and the story
  itself began within that window (an anniversary piece re-telling an old event is not news);
* the alert is **instant** for an ``instant`` watchlist, a **digest** entry marked new for a ``digest``
  one; it names the matching article (language, source), which need not be the story's first: a story
  that starts in Arabic fires a ``lang:en`` watchlist when English coverage joins;
* a matching article that is not fresh goes to the digest as **older coverage** and does not count
  as the alert (a later fresh article of the story can still fire);
* once the watchlist alerted on the story, later articles (matching or not) are **follow-ups** in
  the digest;
* ``merged`` events fire nothing (the stage records the merge in the ledger so the merge group
  counts as one story), and nothing caused by a backfill (historical loads) reaches a watchlist;
* a ``created`` event whose new story is *related* to an older one (``related_story``: the clustering
  stage kept them apart but the new story's first article is close to an article of the older one
  and time cannot tell them apart) joins the older story's group in the ledger like a merge: a
  follow-up in the digest if the watchlist alerted on the older story, never a second instant alert;
* a ``created`` event whose new story only *nearly* relates to an older one (``near_story``: it may be a
  new event, or one more language or facet of that one) is **unconfirmed**: an ``instant`` watchlist gets
  a digest entry marked unconfirmed, and its instant alert comes with the story's second report (an
  ``updated`` event: one more article joined, or a copy), if the story is still new to the watchlist
  then. A ``digest`` watchlist is told as usual (its digest is the wait).

The payloads (webhook JSON, Slack message, digest groups) are built here too, from an :class:`Alert`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from indexer.alerting.watchlists import Watchlist
from indexer.query import parse, positive_terms
from stream.article import Article, iso_utc_or_none, parse_time, utc
from stream.story import Story, StoryEvent
from stream.text import fold

Action = Literal["instant", "digest", "skip"]
# what an alert or digest entry is to its watchlist; "unconfirmed": a new story waiting for its second report
Role = Literal["new", "follow_up", "older", "unconfirmed"]
PAYLOAD_TYPE = "sednaya.alert"  # "type" of the webhook body: receivers can tell alerts from digests
DIGEST_TYPE = "sednaya.digest"
SLACK_TEXT_LIMIT = 3000  # Slack rejects section blocks with more than 3000 characters of text
_MARK_RE = re.compile(r"<mark>(.*?)</mark>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True, kw_only=True, slots=True)
class Verdict:
    action: Action
    reason: str  # bounded: new_story, digest_mode, follow_up, older_coverage, unconfirmed, merged, backfill,
    # no_match, already_alerted

    @property
    def role(self) -> Role:
        """The role of the entry this verdict creates."""
        if self.reason == "follow_up":
            return "follow_up"
        if self.reason == "older_coverage":
            return "older"
        if self.reason == "unconfirmed":
            return "unconfirmed"
        return "new"


def query_article_id(event: StoryEvent) -> str:
    """The article a watchlist's query is run against: the story's first article for ``created``,
    the article that joined for ``updated`` (the matching runs on every article of the story)."""
    if event.kind == "created":
        return event.story.first_article_id or event.article_id
    return event.article_id


def related_story_of(event: StoryEvent) -> str | None:
    """For a ``created`` event, the older story the clustering stage found the new one probably reports
    too (``extra["related_story"]``, ``stream.clustering.related_story``), else None. The ledger counts
    the two as one story: no second instant alert, the new story's articles are follow-ups."""
    if event.kind != "created":
        return None
    return event.extra.get("related_story") or None


def near_story_of(event: StoryEvent) -> str | None:
    """For a ``created`` event, the older story the new one only *nearly* relates to (``extra["near_story"]``,
    ``stream.clustering.relate``): the new story is unconfirmed and alerts on its second report."""
    if event.kind != "created":
        return None
    return event.extra.get("near_story") or None


def screen(event: StoryEvent) -> Verdict | None:
    """A ``skip`` verdict for events no watchlist hears about (before any query runs), else None."""
    if event.kind == "merged":
        return Verdict(action="skip", reason="merged")
    if event.backfill:
        return Verdict(action="skip", reason="backfill")
    return None


def is_fresh(article: Article, story: Story, *, now: datetime, max_age_s: float) -> bool:
    """The article was published (else discovered) at most ``max_age_s`` before ``now``, and the story
    began (``first_seen``) within that window too. An article dated in the future counts as fresh."""
    born = article.published if article.published is not None else article.discovered_at
    ages = ((utc(now) - utc(born)).total_seconds(), (utc(now) - utc(story.first_seen)).total_seconds())
    return all(age <= max_age_s for age in ages)


def decide(
    event: StoryEvent, watchlist: Watchlist, *, matched: bool, already_alerted: bool, fresh: bool = True
) -> Verdict:
    """What to do with ``event`` for ``watchlist`` (see the module docstring).

    Args:
        matched: the watchlist's query (with its filters) matched ``query_article_id(event)``.
        already_alerted: the ledger holds an alert of this watchlist on this story or a story merged
            with it (redeliveries of the event that fired are screened out by the stage before).
        fresh: ``is_fresh`` of the event's article and story.
    """
    skipped = screen(event)
    if skipped is not None:
        return skipped
    if already_alerted:
        if event.kind == "created" and related_story_of(event) is None:
            return Verdict(action="skip", reason="already_alerted")  # it can only repeat what already fired
        return Verdict(action="digest", reason="follow_up")
    if not matched:
        return Verdict(action="skip", reason="no_match")
    if not fresh:
        return Verdict(action="digest", reason="older_coverage")
    if watchlist.mode == "instant":
        if near_story_of(event) is not None and related_story_of(event) is None:
            return Verdict(action="digest", reason="unconfirmed")  # the alert waits for a second report
        return Verdict(action="instant", reason="new_story")
    return Verdict(action="digest", reason="digest_mode")


@dataclass(frozen=True, kw_only=True, slots=True)
class Alert:
    """What a watchlist is told about one story event (instant alert or digest entry)."""

    watchlist: str
    story_id: str
    story_title: str
    event_kind: str  # "created" or "updated"
    article_id: str
    title: str
    source: str
    lang: str
    url: str
    published: datetime | None
    matched_terms: tuple[str, ...]
    link: str  # the story on the search page
    at: datetime  # when the event happened (UTC)
    entered_at: datetime | None = None  # when the causing article entered the bus (latency)
    article_count: int = 1
    source_count: int = 1
    languages: tuple[str, ...] = ()
    role: Role | None = None  # new (the alert, or a new story of a digest), follow_up, older (older
    # coverage), unconfirmed (a new story waiting for its second report); None = from the event: new for
    # created, follow_up for updated

    def __post_init__(self) -> None:
        if self.role is None:
            object.__setattr__(self, "role", "new" if self.event_kind == "created" else "follow_up")

    def to_dict(self) -> dict[str, Any]:
        return {
            "watchlist": self.watchlist,
            "story_id": self.story_id,
            "story_title": self.story_title,
            "event_kind": self.event_kind,
            "article_id": self.article_id,
            "title": self.title,
            "source": self.source,
            "lang": self.lang,
            "url": self.url,
            "published": iso_utc_or_none(self.published),
            "matched_terms": list(self.matched_terms),
            "link": self.link,
            "at": iso_utc_or_none(self.at),
            "entered_at": iso_utc_or_none(self.entered_at),
            "article_count": self.article_count,
            "source_count": self.source_count,
            "languages": list(self.languages),
            "role": self.role,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        """Inverse of ``to_dict`` (ledger rows). Raises KeyError/ValueError on a malformed dict."""
        return cls(
            watchlist=str(data["watchlist"]),
            story_id=str(data["story_id"]),
            story_title=str(data["story_title"]),
            event_kind=str(data["event_kind"]),
            article_id=str(data["article_id"]),
            title=str(data["title"]),
            source=str(data["source"]),
            lang=str(data["lang"]),
            url=str(data["url"]),
            published=parse_time(data["published"]) if data.get("published") else None,
            matched_terms=tuple(str(t) for t in data.get("matched_terms", [])),
            link=str(data["link"]),
            at=parse_time(data["at"]),
            entered_at=parse_time(data["entered_at"]) if data.get("entered_at") else None,
            article_count=int(data.get("article_count", 1)),
            source_count=int(data.get("source_count", 1)),
            languages=tuple(str(x) for x in data.get("languages", [])),
            role=_role(data.get("role")),
        )


def _role(value: Any) -> Role | None:
    """``role`` of a stored alert; None (from the event kind) for rows written before roles existed."""
    roles: dict[str, Role] = {"new": "new", "follow_up": "follow_up", "older": "older", "unconfirmed": "unconfirmed"}
    return roles.get(value) if isinstance(value, str) else None


def story_link(public_url: str, story_id: str) -> str:
    """``{public_url}/stories/{story_id}``: the story on the search page."""
    return f"{public_url.rstrip('/')}/stories/{story_id}"


def build_alert(
    event: StoryEvent,
    watchlist: Watchlist,
    article: Article,
    *,
    matched_terms: Sequence[str],
    public_url: str,
    role: Role | None = None,
) -> Alert:
    """The alert for ``event`` on ``watchlist``; ``article`` is ``query_article_id(event)``'s article
    (the matching article the alert names)."""
    story = event.story
    return Alert(
        watchlist=watchlist.name,
        story_id=story.id,
        story_title=story.title or article.title,
        event_kind=event.kind,
        article_id=article.id,
        title=article.title,
        source=article.source,
        lang=article.lang,
        url=article.url,
        published=article.published,
        matched_terms=tuple(matched_terms),
        link=story_link(public_url, story.id),
        at=event.at,
        entered_at=event.entered_at,
        article_count=story.article_count,
        source_count=story.source_count,
        languages=tuple(story.languages),
        role=role,
    )


def matched_terms(hit_terms: Sequence[str], highlights: dict[str, list[str]], query: str) -> tuple[str, ...]:
    """Why it matched: the store's matched terms, else the ``<mark>``ed words of the highlights, else the
    query's positive words and phrases (``indexer.query.positive_terms``: not negated, no filters).
    Order kept; duplicates after folding (case, diacritics, Arabic letter variants) removed."""
    found: list[str] = list(hit_terms)
    if not found:
        for fragments in highlights.values():
            for fragment in fragments:
                found.extend(m.strip() for m in _MARK_RE.findall(fragment))
    if not found:
        found.extend(positive_terms(parse(query)))
    return _unique(t for t in found if t)


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    seen: set[str] = set()
    out: list[str] = []
    for item in items:
        key = fold(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return tuple(out)


def webhook_body(alert: Alert, *, alert_id: str) -> dict[str, Any]:
    """The JSON body POSTed to a webhook for an instant alert.

    Shape: ``{"type": "sednaya.alert", "id", "watchlist", "story": {id, title, link, article_count,
    source_count, languages}, "article": {id, title, source, lang, url, published}, "matched_terms",
    "at", "entered_at"}``. ``id`` is stable across resends: receivers can de-duplicate on it.
    """
    return {
        "type": PAYLOAD_TYPE,
        "id": alert_id,
        "watchlist": alert.watchlist,
        "story": {
            "id": alert.story_id,
            "title": alert.story_title,
            "link": alert.link,
            "article_count": alert.article_count,
            "source_count": alert.source_count,
            "languages": list(alert.languages),
        },
        "article": {
            "id": alert.article_id,
            "title": alert.title,
            "source": alert.source,
            "lang": alert.lang,
            "url": alert.url,
            "published": iso_utc_or_none(alert.published),
        },
        "matched_terms": list(alert.matched_terms),
        "at": iso_utc_or_none(alert.at),
        "entered_at": iso_utc_or_none(alert.entered_at),
    }


def slack_escape(text: str) -> str:
    """Escape ``&``, ``<``, ``>`` as Slack's mrkdwn requires."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_body(alert: Alert) -> dict[str, Any]:
    """A Slack incoming-webhook message: ``{"text": fallback, "blocks": [section, context]}``."""
    published = alert.published.date().isoformat() if alert.published else "date unknown"
    terms = ", ".join(alert.matched_terms) or "-"
    headline = f"New story for *{slack_escape(alert.watchlist)}*: <{alert.link}|{slack_escape(alert.story_title)}>"
    detail = (
        f"<{alert.url}|{slack_escape(alert.title)}> ({slack_escape(alert.source)}, {alert.lang}, {published})\n"
        f"Matched: {slack_escape(terms)}"
    )
    return {
        "text": f"New story for {alert.watchlist}: {alert.story_title} {alert.link}"[:SLACK_TEXT_LIMIT],
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": headline[:SLACK_TEXT_LIMIT]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": detail[:SLACK_TEXT_LIMIT]}]},
        ],
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class DigestStory:
    """One story of a digest: its entries (oldest first) and how many came from each source."""

    story_id: str
    title: str
    link: str
    new: bool  # the story is new to the watchlist in this digest (an entry with role "new")
    older: bool  # every entry is older coverage (articles past ``alert_max_age_s``)
    entries: tuple[Alert, ...]
    source_counts: tuple[tuple[str, int], ...]  # (source, articles), most first, then by name
    languages: tuple[str, ...]
    # every entry is an unconfirmed new story (its instant alert waits for a second report)
    unconfirmed: bool = False


def group_digest(entries: Sequence[Alert]) -> list[DigestStory]:
    """Group digest entries by story: new stories first, then unconfirmed ones, then updated ones, then older
    coverage; within each, by most entries, then oldest first."""
    by_story: dict[str, list[Alert]] = {}
    for entry in entries:
        by_story.setdefault(entry.story_id, []).append(entry)
    groups: list[DigestStory] = []
    for story_id, items in by_story.items():
        items.sort(key=lambda a: (utc(a.at), a.article_id))
        counts = Counter(a.source for a in items)
        titled = next((a for a in items if a.event_kind == "created"), items[0])
        new = any(a.role == "new" for a in items)
        older = all(a.role == "older" for a in items)
        unconfirmed = all(a.role == "unconfirmed" for a in items)
        groups.append(
            DigestStory(
                story_id=story_id,
                title=titled.story_title,
                link=items[0].link,
                new=new,
                older=older,
                unconfirmed=unconfirmed,
                entries=tuple(items),
                source_counts=tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                languages=tuple(sorted({a.lang for a in items})),
            )
        )
    groups.sort(
        key=lambda g: (not g.new, not g.unconfirmed, g.older, -len(g.entries), utc(g.entries[0].at), g.story_id)
    )
    return groups


def digest_body(watchlist: str, groups: Sequence[DigestStory], *, digest_id: str, period: str) -> dict[str, Any]:
    """The JSON body POSTed to a webhook for a digest: ``{"type": "sednaya.digest", "id", "watchlist",
    "period", "stories": [{id, title, link, new, older, sources: {source: n}, languages, articles: [...]}]}``;
    ``older`` marks a story listed only for older coverage, each article has its ``role``."""
    return {
        "type": DIGEST_TYPE,
        "id": digest_id,
        "watchlist": watchlist,
        "period": period,
        "stories": [
            {
                "id": g.story_id,
                "title": g.title,
                "link": g.link,
                "new": g.new,
                "older": g.older,
                "unconfirmed": g.unconfirmed,
                "sources": dict(g.source_counts),
                "languages": list(g.languages),
                "articles": [
                    {
                        "id": a.article_id,
                        "title": a.title,
                        "source": a.source,
                        "lang": a.lang,
                        "url": a.url,
                        "published": iso_utc_or_none(a.published),
                        "kind": a.event_kind,
                        "role": a.role,
                    }
                    for a in g.entries
                ],
            }
            for g in groups
        ],
    }


def slack_digest_body(watchlist: str, groups: Sequence[DigestStory], *, period: str) -> dict[str, Any]:
    """A Slack message listing the digest's stories, one line each with the source counts."""
    lines = [f"Digest for *{slack_escape(watchlist)}* ({period}): {len(groups)} stories"]
    for g in groups:
        sources = ", ".join(f"{slack_escape(s)} {n}" for s, n in g.source_counts)
        marker = digest_marker(g).lower()
        lines.append(f"• <{g.link}|{slack_escape(g.title)}> ({marker}; {sources})")
    text = "\n".join(lines)[:SLACK_TEXT_LIMIT]
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}


def digest_marker(group: DigestStory) -> str:
    """``NEW``, ``UNCONFIRMED``, ``UPDATED`` or ``OLDER COVERAGE``: how a digest lists a story."""
    if group.new:
        return "NEW"
    if group.unconfirmed:
        return "UNCONFIRMED"
    return "OLDER COVERAGE" if group.older else "UPDATED"
