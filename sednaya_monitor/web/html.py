"""HTML building blocks: escaping, direction, badges, highlighted snippets, the page layout.

Every value that comes from an article (title, text, source, URL, author, story title) goes through
:func:`esc` (``html.escape`` with quotes) before it reaches a page; the only markup kept from the store
is ``<mark>`` around highlighted terms, re-inserted by :func:`highlight` after escaping everything
else. Text in right-to-left languages gets ``dir="rtl"``; text of unknown direction ``dir="auto"``.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from urllib.parse import urlencode, urlsplit

from stream.text import fold

RTL_LANGS = frozenset({"ar", "fa", "ur", "he", "ps", "ku", "yi"})  # scripts written right to left
SNIPPET_CHARS = 280  # fallback snippet length when the store returns no highlight fragment
SNIPPET_SCAN_CHARS = 4000  # the fallback looks for query terms in the lead only (folding is per character)
_MARK_SPLIT = re.compile(r"(</?mark>)")
_SAFE_SCHEMES = ("http", "https")  # links to originals: never javascript:, data:, ...


def esc(value: object) -> str:
    """``html.escape(str(value), quote=True)``: safe in element text and in quoted attributes."""
    return html.escape(str(value), quote=True)


def dir_attrs(lang: str | None) -> str:
    """``lang``/``dir`` attributes for a text in ``lang`` (``dir="auto"`` when unknown)."""
    if not lang or lang == "und":
        return 'dir="auto"'
    direction = "rtl" if lang in RTL_LANGS else "ltr"
    return f'lang="{esc(lang)}" dir="{direction}"'


def safe_href(url: str) -> str | None:
    """``url`` escaped for an ``href`` when it is http(s); ``None`` for any other scheme."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return esc(url) if scheme in _SAFE_SCHEMES else None


def link(url: str, text: str, *, attrs: str = "") -> str:
    """An external link (``rel=noopener noreferrer``), or the bare escaped text when the URL is unsafe."""
    href = safe_href(url)
    if href is None:
        return esc(text)
    extra = f" {attrs}" if attrs else ""
    return f'<a href="{href}" rel="noopener noreferrer nofollow"{extra}>{esc(text)}</a>'


def badge(text: str, *, kind: str = "lang") -> str:
    return f'<span class="badge badge-{esc(kind)}">{esc(text)}</span>'


def badges(values: Iterable[str], *, kind: str = "lang") -> str:
    return " ".join(badge(v, kind=kind) for v in values)


def highlight(fragment: str) -> str:
    """A store highlight fragment made safe: only its ``<mark>``/``</mark>`` tags stay markup.

    Stores return fragments as HTML (text escaped, terms in ``<mark>``), Elasticsearch without
    ``encoder: html`` returns them unescaped: every text part is unescaped and escaped again, so
    both come out right and nothing but ``<mark>`` can ever become a tag.
    """
    out: list[str] = []
    open_marks = 0
    for part in _MARK_SPLIT.split(fragment):
        if part == "<mark>":
            out.append("<mark>")
            open_marks += 1
        elif part == "</mark>":
            if open_marks:
                out.append("</mark>")
                open_marks -= 1
        else:
            out.append(esc(html.unescape(part)))
    out.extend("</mark>" * open_marks)
    return "".join(out)


def plain_snippet(text: str, terms: Sequence[str], *, limit: int = SNIPPET_CHARS) -> str:
    """Escaped snippet of ``text`` around the first of ``terms`` found, terms wrapped in ``<mark>``.

    Used when the store gives no highlight (the Elasticsearch stand-in, empty queries). Matching uses
    :func:`stream.text.fold` per character so Arabic spelling variants and case still match.
    """
    text = text[:SNIPPET_SCAN_CHARS]
    folded_chars = [fold(ch) or ch for ch in text]
    folded = "".join(c[:1] for c in folded_chars)  # one char per char keeps offsets aligned
    wanted = [fold(t) for t in terms if len(fold(t)) >= 2]
    start = 0
    for term in wanted:
        pos = folded.find(term)
        if pos >= 0:
            start = max(0, pos - limit // 4)
            break
    end = min(len(text), start + limit)
    window = text[start:end]
    fwindow = folded[start:end]
    spans: list[tuple[int, int]] = []
    for term in wanted:
        pos = fwindow.find(term)
        while pos >= 0:
            spans.append((pos, pos + len(term)))
            pos = fwindow.find(term, pos + len(term))
    spans.sort()
    out: list[str] = ["…" if start > 0 else ""]
    cursor = 0
    for s, e in spans:
        if s < cursor:
            continue
        out.append(esc(window[cursor:s]))
        out.append(f"<mark>{esc(window[s:e])}</mark>")
        cursor = e
    out.append(esc(window[cursor:]))
    out.append("…" if end < len(text) else "")
    return "".join(out)


_QUERY_WORD = re.compile(r'"([^"]+)"|([^\s()"]+)')
_OPERATORS = frozenset({"AND", "OR", "NOT"})


def query_terms(query: str) -> list[str]:
    """The words and phrases of a query, without operators and field filters other than ``title:``."""
    terms: list[str] = []
    for phrase, word in _QUERY_WORD.findall(query):
        if phrase:
            terms.append(phrase)
            continue
        if word in _OPERATORS:
            continue
        field, sep, value = word.partition(":")
        if sep:
            if field == "title" and value:
                terms.append(value.strip('"'))
            continue
        terms.append(word.lstrip("-+"))
    return [t for t in terms if t]


def fmt_time(value: datetime | None) -> str:
    """``2024-12-08 14:05 UTC`` (escaped-safe), or ``date unknown``."""
    if value is None:
        return "date unknown"
    return value.strftime("%Y-%m-%d %H:%M UTC")


def time_tag(value: datetime | None) -> str:
    if value is None:
        return '<span class="muted">date unknown</span>'
    return f'<time datetime="{esc(value.isoformat())}">{esc(fmt_time(value))}</time>'


def url_for(path: str, params: Mapping[str, str | None]) -> str:
    """``path?k=v`` with empty values left out, escaped for an attribute."""
    clean = {k: v for k, v in params.items() if v}
    return esc(path + ("?" + urlencode(clean) if clean else ""))


STYLE = """
:root { --fg:#1b1f24; --muted:#5b6470; --line:#d8dde3; --accent:#8a1c1c; --bg:#fbfbfa; }
* { box-sizing: border-box; }
body { font-family: system-ui, "Noto Sans", "Noto Naskh Arabic", sans-serif; color: var(--fg);
  background: var(--bg); margin: 0; line-height: 1.45; }
header.top { background: #20252b; color: #fff; padding: .6rem 1rem; display: flex; gap: 1.2rem;
  align-items: baseline; flex-wrap: wrap; }
header.top nav { display: flex; gap: 1rem; }
header.top a { color: #fff; text-decoration: none; } header.top .brand { font-weight: 700; }
main { max-width: 72rem; margin: 0 auto; padding: 1rem; }
form.search { display: grid; grid-template-columns: repeat(auto-fit, minmax(10rem, 1fr)); gap: .5rem;
  background: #fff; border: 1px solid var(--line); padding: .8rem; border-radius: 6px; }
form.search .q { grid-column: 1 / -1; display: flex; gap: .5rem; }
form.search input[type=search] { flex: 1; font-size: 1.05rem; padding: .4rem; }
form.search label { display: flex; flex-direction: column; font-size: .85rem; color: var(--muted); }
.toolbar { display: flex; gap: 1rem; align-items: baseline; margin: .8rem 0; flex-wrap: wrap; }
.result, .story-item { background: #fff; border: 1px solid var(--line); border-radius: 6px;
  padding: .7rem .9rem; margin: .6rem 0; }
.result h2, .result h3 { margin: 0 0 .3rem; font-size: 1.1rem; }
.meta { color: var(--muted); font-size: .85rem; }
.snippet { margin: .35rem 0 0; }
mark { background: #ffe58a; padding: 0 .1em; }
.badge { display: inline-block; font-size: .75rem; padding: 0 .45em; border-radius: 999px;
  border: 1px solid var(--line); background: #eef1f4; margin-inline-end: .2em; }
.badge-lang { background: #e6f0ff; border-color: #b8cff5; }
.badge-role { background: #f4ecec; border-color: #e0c4c4; }
.error { background: #fff0f0; border: 1px solid #e3a1a1; padding: .6rem .9rem; border-radius: 6px; }
.muted { color: var(--muted); }
.pager { display: flex; gap: 1rem; margin: 1rem 0; }
table.matrix { border-collapse: collapse; font-size: .9rem; }
table.matrix th, table.matrix td { border: 1px solid var(--line); padding: .2rem .5rem; text-align: center; }
ol.timeline { list-style: none; padding: 0; }
ol.timeline > li { border-inline-start: 3px solid var(--accent); padding: .3rem .8rem; margin: .5rem 0;
  background: #fff; }
details.dups { margin: .3rem 0 0; } details.dups ul { margin: .2rem 0; }
svg.chart { background: #fff; border: 1px solid var(--line); border-radius: 6px; max-width: 100%; height: auto; }
"""


def layout(title: str, body: str, *, nav_active: str = "") -> bytes:
    """A full page: ``title`` is escaped here, ``body`` must already be safe HTML."""
    nav = [("/", "Search"), ("/stories", "Stories"), ("/timeline", "Over time"), ("/watchlists", "Watchlists")]
    links = " ".join(
        f'<a href="{href}"{" aria-current=page" if label == nav_active else ""}>{label}</a>' for href, label in nav
    )
    page = (
        '<!doctype html>\n<html lang="en" dir="ltr"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · Sednaya Monitor</title><style>{STYLE}</style></head>"
        f'<body><header class="top"><a class="brand" href="/">Sednaya Monitor</a><nav>{links}</nav>'
        '<a href="/api/openapi.json">API</a></header>'
        f"<main>{body}</main></body></html>\n"
    )
    return page.encode("utf-8")
