"""Server-rendered pages (Jinja2 templates in ``templates/``): search, stories, story, timeline, watchlists.

No JavaScript anywhere. Autoescape is on for every template (``select_autoescape``), and its last step
is :func:`sednaya_monitor.web.html.esc` (Unicode hygiene, then ``html.escape`` with quotes), so every
value from an article reaches the page cleaned and escaped; helpers passed to the templates return
``Markup`` built from escaped parts only. Each ``render_*`` function takes already-fetched data and
returns a complete page (bytes, UTF-8).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from indexer.alerting.watchlists import Watchlist
from indexer.store import Hit, SearchResult, StoryGroup
from sednaya_monitor.web.chart import plausible, volume_svg
from sednaya_monitor.web.html import (
    article_line,
    badge,
    badges,
    dir_attrs,
    esc,
    fmt_time,
    highlight,
    link,
    plain_snippet,
    query_terms,
    time_tag,
    url_for,
)
from sednaya_monitor.web.params import SearchParams, encode_cursor
from stream.article import Article
from stream.story import Story


@dataclass(frozen=True, kw_only=True, slots=True)
class FilterOptions:
    """Values offered in the filter drop-downs, with their article counts (from the store's facets)."""

    langs: Sequence[tuple[str, int]] = ()
    sources: Sequence[tuple[str, int]] = ()
    source_types: Sequence[tuple[str, int]] = ()

    def with_current(self, name: str, current: str | None) -> Sequence[tuple[str, int]]:
        """The options of drop-down ``name``, with ``current`` first when it is not among them."""
        options: Sequence[tuple[str, int]] = getattr(self, name)
        if current and current not in [v for v, _ in options]:
            return [(current, 0), *options]
        return options


@dataclass(frozen=True, kw_only=True, slots=True)
class AlertView:
    """One alert as the pages and the API show it (built from the alert ledger)."""

    watchlist: str
    story_id: str
    story_title: str
    at: datetime
    article_title: str = ""
    article_url: str = ""
    lang: str = ""
    source: str = ""
    matched_terms: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "watchlist": self.watchlist,
            "story_id": self.story_id,
            "story_title": self.story_title,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "article_title": self.article_title,
            "article_url": self.article_url,
            "lang": self.lang,
            "source": self.source,
            "matched_terms": list(self.matched_terms),
        }


@dataclass(frozen=True, kw_only=True, slots=True)
class Arrival:
    """A story's first article in one language, and how long after the story's first article it came."""

    lang: str
    article: Article
    when: datetime
    after_s: float
    count: int

    @property
    def lag(self) -> str:
        return "first" if self.after_s <= 0 else "+" + duration(self.after_s)


def plural(n: int, word: str) -> str:
    """``1 article``, ``2 articles`` (English regular plurals only)."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def duration(seconds: float) -> str:
    """``45 min``, ``15 h 10 min``, ``3 d 4 h`` (the two largest units)."""
    minutes = int(seconds // 60)
    days, rest = divmod(minutes, 1440)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"


def _finalize(value: Any) -> Any:
    """Autoescape's last step: ``None`` prints nothing, markup stays, anything else goes through ``esc``."""
    if value is None:
        return ""
    if isinstance(value, Markup) or hasattr(value, "__html__"):
        return value
    return esc(value)


def select_box(name: str, label: str, options: Sequence[tuple[str, int]], current: str | None) -> Markup:
    """A filter drop-down (``<label>`` around a ``<select>``), ``current`` selected; built in Python and kept:
    the options change at most every ``OPTIONS_TTL_S`` and every search page shows the same three."""
    return _select_box(name, label, tuple((str(v), int(n)) for v, n in options), current)


@functools.lru_cache(maxsize=256)
def _select_box(name: str, label: str, options: tuple[tuple[str, int], ...], current: str | None) -> Markup:
    items = "".join(
        f'<option value="{esc(value)}"{" selected" if value == current else ""}>{esc(value)}'
        f"{f' ({esc(count)})' if count else ''}</option>"
        for value, count in options
    )
    return Markup(  # noqa: S704  # escaped parts
        f'<label>{esc(label)}<select name="{esc(name)}"><option value="">any</option>{items}</select></label>'
    )


ENV = Environment(
    loader=PackageLoader("sednaya_monitor.web", "templates"),
    autoescape=select_autoescape(["html", "xml"], default_for_string=True),
    finalize=_finalize,
    trim_blocks=True,
    lstrip_blocks=True,
    auto_reload=False,
)
ENV.filters["qpath"] = lambda value: quote(str(value), safe="")
ENV.globals.update(
    article_line=article_line,
    badge=badge,
    badges=badges,
    dir_attrs=dir_attrs,
    fmt_time=fmt_time,
    link=link,
    plain_snippet=plain_snippet,
    plural=plural,
    select_box=select_box,
    time_tag=time_tag,
    url_for=url_for,
)


def render(template: str, **context: Any) -> bytes:
    return ENV.get_template(template).render(**context).encode("utf-8")


def snippet(hit: Hit, terms: Sequence[str]) -> Markup:
    """The store's highlight (text first, then title) escaped, or a fallback snippet of the text."""
    for fld in ("text", "title"):
        fragments = hit.highlights.get(fld)
        if fragments:
            return Markup(" … ").join(highlight(f) for f in fragments[:3])
    return plain_snippet(hit.article.text, list(hit.matched_terms) or list(terms))


@dataclass(frozen=True, kw_only=True, slots=True)
class _Form:
    q: str = ""
    lang: str | None = None
    source: str | None = None
    source_type: str | None = None
    since: str = ""
    until: str = ""
    sort: str = "relevance"
    view: str = "stories"


def _form(sp: SearchParams | None) -> _Form:
    if sp is None:
        return _Form()
    req = sp.request
    return _Form(
        q=req.query,
        lang=req.lang,
        source=req.source,
        source_type=req.source_type,
        since=req.since.date().isoformat() if req.since else "",
        until=req.until.date().isoformat() if req.until else "",
        sort=req.sort,
        view=sp.view,
    )


def current_params(sp: SearchParams, default_size: int) -> dict[str, str | None]:
    """The search as link parameters (defaults left out)."""
    req = sp.request
    return {
        "q": req.query,
        "lang": req.lang,
        "source": req.source,
        "source_type": req.source_type,
        "since": req.since.date().isoformat() if req.since else None,
        "until": req.until.date().isoformat() if req.until else None,
        "sort": req.sort if req.sort != "relevance" else None,
        "size": str(req.size) if req.size != default_size else None,
    }


@dataclass(frozen=True, kw_only=True, slots=True)
class _GroupView:
    story_id: str
    title: str
    first_seen: datetime | None
    total: int
    sources: int
    matching: int
    langs: Sequence[str]
    best: Article
    snippet: Markup


def _group_view(group: StoryGroup, terms: Sequence[str]) -> _GroupView:
    story = group.story
    best = group.best.article
    return _GroupView(
        story_id=group.story_id,
        title=story.title if story is not None and story.title else best.title,
        first_seen=story.first_seen if story is not None else (best.published or best.fetched_at),
        total=story.article_count if story is not None else group.article_count,
        sources=story.source_count if story is not None else 1,
        matching=group.article_count,
        langs=story.languages if story is not None and story.languages else group.languages,
        best=best,
        snippet=snippet(group.best, terms),
    )


def chart(volume: Mapping[date, Mapping[str, int]], *, title: str = "Articles per day by language") -> Markup:
    """The volume chart of plausible dates, with a note on articles dated outside them (never charted)."""
    kept, dropped = plausible(volume)
    svg = Markup(volume_svg(kept, title=title))  # noqa: S704  # volume_svg escapes every label itself
    if dropped:
        svg += (
            Markup('<p class="muted far-dates">')
            + esc(f"{dropped} dated before 1990 or in the future: not charted.")
            + Markup("</p>")
        )
    return svg


def render_search(
    sp: SearchParams | None,
    result: SearchResult | None,
    options: FilterOptions,
    *,
    error: str | None = None,
    volume: Mapping[date, Mapping[str, int]] | None = None,
    default_size: int = 20,
) -> bytes:
    """The search page: form, error (a bad query), results grouped or flat, pager, chart."""
    context: dict[str, Any] = {
        "title": "Search",
        "nav_active": "Search",
        "form": _form(sp),
        "options": options,
        "error": error,
        "result": None,
        "chart": None,
    }
    if sp is not None and result is not None:
        current = current_params(sp, default_size)
        terms = query_terms(sp.request.query)
        stories = sp.view == "stories"
        items: list[Any]
        if stories:
            items = [_group_view(g, terms) for g in result.groups]
        else:
            items = [{"article": h.article, "snippet": snippet(h, terms)} for h in result.hits]
        shown = len(items)
        cursor = encode_cursor(result.next_after)
        context.update(
            result=result,
            view=sp.view,
            items=items,
            shown=shown,
            unit=("story" if shown == 1 else "stories") if stories else ("article" if shown == 1 else "articles"),
            toggle_url=url_for("/", {**current, "view": "flat" if stories else "stories"}),
            toggle_label="Show flat results" if stories else "Group by story",
            json_url=url_for("/api/search", {**current, "view": sp.view}),
            csv_url=url_for("/search.csv", current),
            first_url=url_for("/", {**current, "view": sp.view}) if sp.after is not None else None,
            next_url=url_for("/", {**current, "view": sp.view, "after": cursor}) if cursor and shown else None,
            expanded=[
                f"{', '.join(added)} (variants of {typed})" for typed, added in result.expanded.items()
            ],
            chart=chart(volume) if volume is not None else None,
        )
    return render("search.html", **context)


def render_stories(
    stories: Sequence[Story],
    *,
    langs: Sequence[tuple[str, int]] = (),
    filters: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> bytes:
    filters = dict(filters or {})
    filtered = any(filters.get(k) for k in ("lang", "since")) or any(
        int(filters.get(k) or 1) > 1 for k in ("min_sources", "min_languages")
    )
    return render(
        "stories.html",
        title="Stories",
        nav_active="Stories",
        stories=stories,
        langs=langs,
        filters=filters,
        filtered=filtered,
        error=error,
    )


def _when(a: Article) -> datetime:
    return a.published or a.fetched_at


def fold_duplicates(articles: Sequence[Article]) -> list[tuple[Article, list[Article]]]:
    """``(original, duplicates)`` pairs in time order; a duplicate whose original is not in the story stands alone."""
    ids = {a.id for a in articles}
    dups: dict[str, list[Article]] = defaultdict(list)
    originals: list[Article] = []
    for a in articles:
        if a.duplicate_of and a.duplicate_of in ids and a.duplicate_of != a.id:
            dups[a.duplicate_of].append(a)
        else:
            originals.append(a)
    originals.sort(key=lambda a: (_when(a), a.id))
    return [(o, sorted(dups.get(o.id, []), key=lambda a: (_when(a), a.id))) for o in originals]


def language_arrivals(articles: Sequence[Article]) -> list[Arrival]:
    """Per language, the story's first article in it and the delay after the story's first article.

    In order of arrival (the first language first, delay 0). Shows how fast a story crossed languages.
    """
    if not articles:
        return []
    ordered = sorted(articles, key=lambda a: (_when(a), a.id))
    start = _when(ordered[0])
    counts: dict[str, int] = defaultdict(int)
    first: dict[str, Article] = {}
    for a in ordered:
        counts[a.lang] += 1
        first.setdefault(a.lang, a)
    return [
        Arrival(lang=lang, article=a, when=_when(a), after_s=(_when(a) - start).total_seconds(), count=counts[lang])
        for lang, a in first.items()
    ]


def render_story(
    story: Story,
    articles: Sequence[Article],
    raw_available: Mapping[str, bool],
    *,
    merged: Sequence[Story] = (),
) -> bytes:
    """The story page: header, spread across languages, merged stories, follow-ups, matrix, timeline."""
    cells: dict[tuple[str, str], int] = defaultdict(int)
    for a in articles:
        cells[(a.source, a.lang)] += 1
    arrivals = language_arrivals(articles)
    return render(
        "story.html",
        title=story.title or "Story",
        nav_active="Stories",
        story=story,
        arrivals=arrivals if len(arrivals) > 1 else [],
        merged=merged,
        follow_ups=sorted((a for a in articles if a.story_role == "follow_up"), key=lambda a: (_when(a), a.id)),
        langs=sorted({a.lang for a in articles}),
        sources=sorted({a.source for a in articles}),
        cells=cells,
        items=fold_duplicates(articles),
        raw=raw_available,
    )


def render_timeline(
    sp: SearchParams | None,
    options: FilterOptions,
    volume: Mapping[date, Mapping[str, int]],
    new_stories: Mapping[date, Mapping[str, int]],
    *,
    error: str | None = None,
) -> bytes:
    """Matching articles per day and language, and new stories per day (all stories since ``since``)."""
    return render(
        "timeline.html",
        title="Over time",
        nav_active="Over time",
        form=_form(sp),
        options=options,
        error=error,
        volume=chart(volume) if error is None else None,
        new_stories=chart(new_stories, title="New stories per day") if error is None else None,
    )


def render_watchlists(
    watchlists: Sequence[Watchlist], alerts: Mapping[str, Sequence[AlertView]], *, alerts_available: bool
) -> bytes:
    return render(
        "watchlists.html",
        title="Watchlists",
        nav_active="Watchlists",
        watchlists=watchlists,
        alerts=alerts,
        alerts_available=alerts_available,
    )


def render_error(status: int, message: str) -> bytes:
    return render("error.html", title=f"Error {status}", nav_active="", status=status, message=message)
