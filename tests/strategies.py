"""Hypothesis strategies for URLs and articles (kept apart and tested themselves, like hyperlink's)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import strategies as st

from stream.article import Article, Relevance
from stream.canonical_url import TRACKING_PARAMS, id_for_url
from stream.text import content_hash

_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
_segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_.~%صيد é", min_size=0, max_size=12)
_param = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_value = st.lists(st.sampled_from([*"abcdefghijklmnopqrstuvwxyz0123456789 -/&=+صي", "%2B", "%20"]), max_size=8).map(
    "".join
)


@st.composite
def urls(draw: st.DrawFn) -> str:
    """Absolute http(s) URLs with odd case, ports, tracking parameters, fragments and trailing slashes."""
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "Https"]))
    host = ".".join(draw(st.lists(_label, min_size=2, max_size=3)))
    if draw(st.booleans()):
        host = "www." + host
    if draw(st.booleans()):
        host = host.upper()
    port = draw(st.sampled_from(["", ":80", ":443", ":8080"]))
    path = "/".join(draw(st.lists(_segment, max_size=4)))
    if draw(st.booleans()):
        path += "/"
    params = draw(st.lists(st.tuples(_param, _value), max_size=3))
    tracking = draw(
        st.lists(st.tuples(st.sampled_from([*sorted(TRACKING_PARAMS), "utm_source", "utm_medium"]), _value), max_size=2)
    )
    query = "&".join(f"{k}={v}" for k, v in params + tracking)
    fragment = draw(st.sampled_from(["", "#top", "#section-2"]))
    return f"{scheme}://{host}{port}/{path}" + (f"?{query}" if query else "") + fragment


_times = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=0)
)


@st.composite
def articles(draw: st.DrawFn) -> Article:
    ident, canonical = id_for_url(draw(urls()))
    text = draw(st.text(max_size=200))
    return Article(
        id=ident,
        url=canonical,
        canonical_url=canonical,
        source=draw(_label),
        channel=draw(st.sampled_from(["feed", "sitemap", "search", "import"])),
        backfill=draw(st.booleans()),
        lang=draw(st.sampled_from(["ar", "en", "fr", "de", "tr", "und"])),
        title=draw(st.text(max_size=80)),
        text=text,
        authors=tuple(draw(st.lists(st.text(min_size=1, max_size=20), max_size=3))),
        published=draw(st.none() | _times),
        date_source=draw(st.sampled_from(["jsonld", "meta", "feed", "sitemap", "url", "none"])),
        discovered_at=draw(_times),
        fetched_at=draw(_times),
        content_sha256=content_hash(text),
        relevance=draw(
            st.none()
            | st.builds(
                Relevance,
                score=st.floats(min_value=0, max_value=1),
                terms=st.lists(st.text(min_size=1, max_size=10), max_size=3).map(tuple),
            )
        ),
        duplicate_of=draw(st.none() | st.just("0" * 32)),
        story_id=draw(st.none() | _label),
        story_role=draw(st.none() | st.sampled_from(["first", "duplicate", "follow_up"])),
    )
