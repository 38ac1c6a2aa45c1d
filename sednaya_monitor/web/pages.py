"""Server-rendered pages: search, stories, story, over-time chart, watchlists. No JavaScript needed.

Each ``render_*`` function takes already-fetched data and returns a complete page (bytes, UTF-8).
Every article-derived value is escaped through :mod:`sednaya_monitor.web.html`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import quote

from indexer.store import Hit, SearchResult, StoryGroup
from indexer.watchlists import Watchlist
from sednaya_monitor.web.chart import volume_svg
from sednaya_monitor.web.html import (
    badge,
    badges,
    dir_attrs,
    esc,
    fmt_time,
    highlight,
    layout,
    link,
    plain_snippet,
    query_terms,
    time_tag,
    url_for,
)
from sednaya_monitor.web.params import DEFAULT_PAGE_SIZE, SearchParams, encode_cursor
from stream.article import Article
from stream.story import Story


@dataclass(frozen=True, kw_only=True, slots=True)
class FilterOptions:
    """Values offered in the filter drop-downs, with their article counts (from the store's facets)."""

    langs: Sequence[tuple[str, int]] = ()
    sources: Sequence[tuple[str, int]] = ()
    source_types: Sequence[tuple[str, int]] = ()


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


def plural(n: int, word: str) -> str:
    """``1 article``, ``2 articles`` (English regular plurals only)."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _select(name: str, label: str, options: Sequence[tuple[str, int]], current: str | None) -> str:
    values = [v for v, _ in options]
    if current and current not in values:
        options = [(current, 0), *options]
    opts = ['<option value="">any</option>']
    for value, count in options:
        selected = " selected" if value == current else ""
        suffix = f" ({count})" if count else ""
        opts.append(f'<option value="{esc(value)}"{selected}>{esc(value)}{esc(suffix)}</option>')
    return f'<label>{esc(label)}<select name="{esc(name)}">{"".join(opts)}</select></label>'


def search_form(sp: SearchParams | None, options: FilterOptions, *, action: str = "/") -> str:
    req = sp.request if sp is not None else None
    q = req.query if req else ""
    since = req.since.date().isoformat() if req and req.since else ""
    until = req.until.date().isoformat() if req and req.until else ""
    view = sp.view if sp is not None else "stories"
    sort = req.sort if req else "relevance"
    sort_opts = "".join(
        f'<option value="{s}"{" selected" if s == sort else ""}>{s}</option>' for s in ("relevance", "date")
    )
    return (
        f'<form class="search" method="get" action="{esc(action)}" role="search">'
        '<div class="q"><input type="search" name="q" dir="auto" aria-label="Query" '
        f"placeholder='صيدنايا OR Sednaya, \"human slaughterhouse\", title:Saydnaya NOT monastery' "
        f'value="{esc(q)}"><button type="submit">Search</button></div>'
        f"{_select('lang', 'Language', options.langs, req.lang if req else None)}"
        f"{_select('source', 'Source', options.sources, req.source if req else None)}"
        f"{_select('source_type', 'Source type', options.source_types, req.source_type if req else None)}"
        f'<label>From<input type="date" name="since" value="{esc(since)}"></label>'
        f'<label>To<input type="date" name="until" value="{esc(until)}"></label>'
        f'<label>Sort<select name="sort">{sort_opts}</select></label>'
        f'<input type="hidden" name="view" value="{esc(view)}">'
        "</form>"
    )


def _current(sp: SearchParams) -> dict[str, str | None]:
    req = sp.request
    return {
        "q": req.query,
        "lang": req.lang,
        "source": req.source,
        "source_type": req.source_type,
        "since": req.since.date().isoformat() if req.since else None,
        "until": req.until.date().isoformat() if req.until else None,
        "sort": req.sort if req.sort != "relevance" else None,
        "size": str(req.size) if req.size != DEFAULT_PAGE_SIZE else None,
    }


def snippet(hit: Hit, terms: Sequence[str]) -> str:
    """The store's highlight (text first, then title) escaped, or a fallback snippet of the text."""
    for fld in ("text", "title"):
        fragments = hit.highlights.get(fld)
        if fragments:
            return " … ".join(highlight(f) for f in fragments[:3])
    return plain_snippet(hit.article.text, list(hit.matched_terms) or list(terms))


def _article_line(a: Article) -> str:
    return (
        f'<span class="meta">{time_tag(a.published or a.fetched_at)} · {badge(a.lang)} '
        f'<span class="source">{esc(a.source)}</span></span>'
    )


def _hit_html(hit: Hit, terms: Sequence[str]) -> str:
    a = hit.article
    story = ""
    if a.story_id:
        story = f' · <a href="/stories/{esc(quote(a.story_id, safe=""))}">story</a>'
    return (
        f'<article class="result hit" {dir_attrs(a.lang)}>'
        f'<h3 class="title">{link(a.url, a.title or a.url)}</h3>'
        f'<div dir="ltr">{_article_line(a)}{story}</div>'
        f'<p class="snippet" {dir_attrs(a.lang)}>{snippet(hit, terms)}</p></article>'
    )


def _group_html(group: StoryGroup, terms: Sequence[str]) -> str:
    story = group.story
    best = group.best.article
    title = story.title if story is not None and story.title else best.title
    href = f"/stories/{esc(quote(group.story_id, safe=''))}"
    first_seen = story.first_seen if story is not None else (best.published or best.fetched_at)
    total = story.article_count if story is not None else group.article_count
    sources = story.source_count if story is not None else 1
    langs = story.languages if story is not None and story.languages else group.languages
    return (
        '<article class="result story-group">'
        f'<h2 class="story-title" dir="auto"><a href="{href}">{esc(title)}</a></h2>'
        f'<div class="meta">first seen {time_tag(first_seen)} · '
        f'<span class="count">{plural(total, "article")}</span> · '
        f'<span class="sources">{plural(sources, "source")}</span> · '
        f'{group.article_count} matching · <span class="langs">{badges(langs)}</span></div>'
        f'<div class="best" {dir_attrs(best.lang)}><strong>{link(best.url, best.title or best.url)}</strong> '
        f'<span dir="ltr">{_article_line(best)}</span>'
        f'<p class="snippet" {dir_attrs(best.lang)}>{snippet(group.best, terms)}</p></div></article>'
    )


def render_search(
    sp: SearchParams | None,
    result: SearchResult | None,
    options: FilterOptions,
    *,
    error: str | None = None,
    volume: Mapping[date, Mapping[str, int]] | None = None,
) -> bytes:
    """The search page: form, error (a bad query), results grouped or flat, pager, chart."""
    parts = ["<h1>Search the coverage</h1>", search_form(sp, options)]
    if error is not None:
        parts.append(f'<p class="error" role="alert">{esc(error)}</p>')
    if sp is not None and result is not None:
        current = _current(sp)
        other = "flat" if sp.view == "stories" else "stories"
        other_label = "Show flat results" if sp.view == "stories" else "Group by story"
        shown = len(result.groups) if sp.view == "stories" else len(result.hits)
        if sp.view == "stories":
            unit = "story" if shown == 1 else "stories"
        else:
            unit = "article" if shown == 1 else "articles"
        parts.append(
            f'<div class="toolbar"><span class="total">{result.total} matching article'
            f'{"s" if result.total != 1 else ""}</span><span class="muted">{shown} {unit} on this page</span>'
            f'<a class="toggle" href="{url_for("/", {**current, "view": other})}">{other_label}</a>'
            f'<a href="{url_for("/api/search", {**current, "view": sp.view})}">as JSON</a></div>'
        )
        if result.expanded:
            parts.append(
                '<p class="muted also-searched">'
                + "; ".join(
                    f"also searched: {esc(', '.join(added))} (variants of {esc(typed)})"
                    for typed, added in result.expanded.items()
                )
                + " — quote a name or write <code>exact:</code> to search one spelling</p>"
            )
        terms = query_terms(sp.request.query)
        if sp.view == "stories":
            items = [_group_html(g, terms) for g in result.groups]
        else:
            items = [_hit_html(h, terms) for h in result.hits]
        if items:
            parts.append(f'<section class="results results-{esc(sp.view)}">{"".join(items)}</section>')
        else:
            parts.append('<p class="muted no-results">Nothing matches. Try fewer words or another language.</p>')
        pager = []
        if sp.after is not None:
            pager.append(f'<a href="{url_for("/", {**current, "view": sp.view})}">« First page</a>')
        cursor = encode_cursor(result.next_after)
        if cursor is not None and shown:
            pager.append(
                f'<a rel="next" href="{url_for("/", {**current, "view": sp.view, "after": cursor})}">Next page »</a>'
            )
        if pager:
            parts.append(f'<nav class="pager">{"".join(pager)}</nav>')
        if volume is not None:
            parts.append(f'<section class="chart-box"><h2>Over time</h2>{volume_svg(volume)}</section>')
    return layout("Search", "".join(parts), nav_active="Search")


def render_stories(stories: Sequence[Story]) -> bytes:
    items = []
    for s in stories:
        items.append(
            '<li class="story-item">'
            f'<a class="story-title" dir="auto" href="/stories/{esc(quote(s.id, safe=""))}">{esc(s.title)}</a>'
            f'<div class="meta">first seen {time_tag(s.first_seen)} · last seen {time_tag(s.last_seen)} · '
            f"{plural(s.article_count, 'article')} · {plural(s.source_count, 'source')} · "
            f"{badges(s.languages)}</div></li>"
        )
    body = "<h1>Stories, newest first</h1>" + (
        f'<ol class="stories" style="list-style:none;padding:0">{"".join(items)}</ol>'
        if items
        else '<p class="muted">No stories yet.</p>'
    )
    return layout("Stories", body, nav_active="Stories")


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


def _article_links(a: Article, raw_available: bool) -> str:
    out = [link(a.url, "original")]
    if raw_available:
        out.append(f'<a href="/raw/{esc(a.content_sha256)}">stored copy</a>')
    out.append(f'<a href="/api/articles/{esc(quote(a.id, safe=""))}">JSON</a>')
    return " · ".join(out)


def render_story(story: Story, articles: Sequence[Article], raw_available: Mapping[str, bool]) -> bytes:
    """The story page: header, language × source matrix, timeline with duplicates folded under originals."""
    head = [
        f'<h1 class="story-title" dir="auto">{esc(story.title)}</h1>',
        (
            f'<p class="meta">first seen {time_tag(story.first_seen)} · last seen {time_tag(story.last_seen)} · '
            f'<span class="count">{plural(story.article_count, "article")}</span> · '
            f"{plural(story.source_count, 'source')} · "
            f"{badges(story.languages)}</p>"
        ),
    ]
    if story.merged_into:
        target = esc(quote(story.merged_into, safe=""))
        head.append(f'<p class="error">This story was merged into <a href="/stories/{target}">another story</a>.</p>')
    langs = sorted({a.lang for a in articles})
    sources = sorted({a.source for a in articles})
    cells: dict[tuple[str, str], int] = defaultdict(int)
    for a in articles:
        cells[(a.source, a.lang)] += 1
    rows = "".join(
        f'<tr><th scope="row">{esc(src)}</th>'
        + "".join(f"<td>{cells.get((src, lang), 0) or ''}</td>" for lang in langs)
        + "</tr>"
        for src in sources
    )
    matrix = (
        '<table class="matrix"><caption class="muted">Articles by source and language</caption>'
        f'<tr><th scope="col">source</th>{"".join(f"<th scope=col>{esc(x)}</th>" for x in langs)}</tr>{rows}</table>'
    )
    items = []
    for original, dups in fold_duplicates(articles):
        dup_html = ""
        if dups:
            lis = "".join(
                f"<li {dir_attrs(d.lang)}>{link(d.url, d.title or d.url)} "
                f'<span dir="ltr">{_article_line(d)} · {_article_links(d, raw_available.get(d.id, False))}</span></li>'
                for d in dups
            )
            dup_html = (
                f'<details class="dups"><summary>{len(dups)} duplicate{"s" if len(dups) != 1 else ""} '
                f"(syndicated or re-posted copies)</summary><ul>{lis}</ul></details>"
            )
        role = f" {badge(original.story_role, kind='role')}" if original.story_role else ""
        items.append(
            f'<li class="timeline-item" data-lang="{esc(original.lang)}" data-source="{esc(original.source)}">'
            f'<div dir="ltr">{_article_line(original)}{role}</div>'
            f'<div class="title" {dir_attrs(original.lang)}>'
            f"<strong>{link(original.url, original.title or original.url)}</strong></div>"
            f'<p class="snippet" {dir_attrs(original.lang)}>{plain_snippet(original.text, [])}</p>'
            f'<div class="links">{_article_links(original, raw_available.get(original.id, False))}</div>'
            f"{dup_html}</li>"
        )
    body = (
        "".join(head)
        + matrix
        + "<h2>Timeline</h2>"
        + (f'<ol class="timeline">{"".join(items)}</ol>' if items else '<p class="muted">No articles stored.</p>')
    )
    return layout(story.title or "Story", body, nav_active="Stories")


def render_timeline(
    sp: SearchParams | None,
    options: FilterOptions,
    volume: Mapping[date, Mapping[str, int]],
    new_stories: Mapping[date, Mapping[str, int]],
    *,
    error: str | None = None,
) -> bytes:
    """Matching articles per day and language, and new stories per day (all stories since ``since``)."""
    parts = ["<h1>Stories over time</h1>", search_form(sp, options, action="/timeline")]
    if error is not None:
        parts.append(f'<p class="error" role="alert">{esc(error)}</p>')
    else:
        parts.append(f'<section class="chart-box">{volume_svg(volume)}</section>')
        parts.append(f'<section class="chart-box">{volume_svg(new_stories, title="New stories per day")}</section>')
    body = "".join(parts)
    return layout("Over time", body, nav_active="Over time")


def render_watchlists(
    watchlists: Sequence[Watchlist], alerts: Mapping[str, Sequence[AlertView]], *, alerts_available: bool
) -> bytes:
    if not watchlists:
        body = (
            '<h1>Watchlists</h1><p class="muted">No watchlists yet. Add one with '
            "<code>sednaya-monitor watch add NAME QUERY</code> or <code>POST /api/watchlists</code>.</p>"
        )
        return layout("Watchlists", body, nav_active="Watchlists")
    items = []
    for w in watchlists:
        name = quote(w.name, safe="")
        filters = " ".join(badge(f"{k}:{v}", kind="filter") for k, v in (("lang", w.lang), ("source", w.source)) if v)
        recent = alerts.get(w.name, ())
        if recent:
            lis = "".join(
                f'<li><a href="/stories/{esc(quote(al.story_id, safe=""))}" dir="auto">{esc(al.story_title)}</a> '
                f'<span class="meta">{esc(fmt_time(al.at))}'
                f"{' · ' + badge(al.lang) if al.lang else ''}{' · ' + esc(al.source) if al.source else ''}</span></li>"
                for al in recent
            )
            alert_html = f'<ul class="alerts">{lis}</ul>'
        else:
            alert_html = '<p class="muted">No alerts yet.</p>' if alerts_available else ""
        items.append(
            f'<li class="story-item watchlist" id="w-{esc(w.name)}"><h2>{esc(w.name)}</h2>'
            f'<p><code dir="auto">{esc(w.query)}</code> {filters} '
            f'<span class="meta">{esc(w.mode)}{", every " + esc(w.every) if w.mode == "digest" else ""}</span></p>'
            f'<p><a href="{url_for("/", {"q": w.query, "lang": w.lang, "source": w.source})}">search now</a> · '
            f'<a class="atom" href="/watchlists/{esc(name)}/atom.xml" type="application/atom+xml">Atom feed</a></p>'
            f"{alert_html}</li>"
        )
    body = f'<h1>Watchlists</h1><ul style="list-style:none;padding:0">{"".join(items)}</ul>'
    return layout("Watchlists", body, nav_active="Watchlists")


def render_error(status: int, message: str) -> bytes:
    body = f'<h1>{status}</h1><p class="error" role="alert">{esc(message)}</p><p><a href="/">Back to search</a></p>'
    return layout(f"Error {status}", body)
