"""HTML building blocks for the Jinja2 templates: escaping, direction, badges, highlighted snippets.

Every value that comes from an article (title, text, source, URL, author, story title) goes through
:func:`esc` before it reaches a page: ``stream.text.clean_text`` first (bidi overrides, zero-width and
control characters removed, so "Sednaya \u202egnp.exe" cannot pose as "exe.png"), then
``html.escape`` with quotes. The templates' autoescape ends in the same function (``pages.py``), and
the helpers here return :class:`markupsafe.Markup` built only from escaped parts. The only markup
kept from the store is ``<mark>`` around highlighted terms, re-inserted by :func:`highlight` after
escaping everything else. Text in right-to-left languages gets ``dir="rtl"``; unknown ``dir="auto"``.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from urllib.parse import urlencode, urlsplit

from markupsafe import Markup, escape

from stream.article import Article
from stream.text import clean_text, fold

RTL_LANGS = frozenset({"ar", "fa", "ur", "he", "ps", "ku", "yi"})  # scripts written right to left
SNIPPET_CHARS = 280  # fallback snippet length when the store returns no highlight fragment
SNIPPET_SCAN_CHARS = 4000  # the fallback looks for query terms in the lead only (folding is per character)
_MARK_SPLIT = re.compile(r"(</?mark>)")
_SAFE_SCHEMES = ("http", "https")  # links to originals: never javascript:, data:, ...


def esc(value: object) -> Markup:
    """``html.escape(clean_text(str(value)), quote=True)``: safe in element text and in quoted attributes."""
    if isinstance(value, Markup):
        return value
    text = str(value)
    return _esc_short(text) if len(text) <= SHORT_CHARS else _escaped(text)


SHORT_CHARS = 80  # values this short repeat on a page (languages, sources, kinds, dates): escaped once each


def _escaped(text: str) -> Markup:
    return Markup(html.escape(clean_text(text), quote=True))  # noqa: S704  # escaped just now


_esc_short = functools.lru_cache(maxsize=8192)(_escaped)


def dir_attrs(lang: str | None) -> Markup:
    """``lang``/``dir`` attributes for a text in ``lang`` (``dir="auto"`` when unknown)."""
    if not lang or lang == "und":
        return Markup('dir="auto"')
    direction = "rtl" if lang in RTL_LANGS else "ltr"
    return Markup(f'lang="{esc(lang)}" dir="{direction}"')  # noqa: S704  # escaped value, fixed direction


def safe_href(url: str) -> Markup | None:
    """``url`` escaped for an ``href`` when it is http(s); ``None`` for any other scheme."""
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return None
    return esc(url) if scheme in _SAFE_SCHEMES else None


def link(url: str, text: str, *, attrs: str = "") -> Markup:
    """An external link (``rel=noopener noreferrer``), or the bare escaped text when the URL is unsafe."""
    href = safe_href(url)
    if href is None:
        return esc(text)
    extra = f" {attrs}" if attrs else ""
    return Markup(f'<a href="{href}" rel="noopener noreferrer nofollow"{escape(extra)}>{esc(text)}</a>')  # noqa: S704


def badge(text: str, *, kind: str = "lang") -> Markup:
    # f-strings of escaped parts: Markup.format parses its template in Python on every call (a page has ~100 badges)
    return Markup(f'<span class="badge badge-{esc(kind)}">{esc(text)}</span>')  # noqa: S704  # escaped parts


def badges(values: Iterable[str], *, kind: str = "lang") -> Markup:
    return Markup(" ").join(badge(v, kind=kind) for v in values)


def highlight(fragment: str) -> Markup:
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
    return Markup("".join(out))  # noqa: S704  # escaped parts and <mark> tags only


def plain_snippet(text: str, terms: Sequence[str], *, limit: int = SNIPPET_CHARS) -> Markup:
    """Escaped snippet of ``text`` around the first of ``terms`` found, terms wrapped in ``<mark>``.

    Used when the store gives no highlight (the Elasticsearch stand-in, empty queries). Matching uses
    :func:`stream.text.fold` per character so Arabic spelling variants and case still match.
    """
    text = clean_text(text[:SNIPPET_SCAN_CHARS])
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
    return Markup("".join(out))  # noqa: S704  # escaped parts and <mark> tags only


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
    """``2024-12-08 14:05 UTC`` (escaped-safe), or ``date unknown``; any year 1..9999 (no strftime)."""
    if value is None:
        return "date unknown"
    return f"{value.date().isoformat()} {value.hour:02d}:{value.minute:02d} UTC"


def time_tag(value: datetime | None) -> Markup:
    if value is None:
        return Markup('<span class="muted">date unknown</span>')
    return Markup(f'<time datetime="{esc(value.isoformat())}">{esc(fmt_time(value))}</time>')  # noqa: S704


def article_line(a: Article) -> Markup:
    """The meta line of an article (time, language badge, source): a function, not a template macro, as the
    result lists call it once per article (a Jinja2 macro call costs several times the markup it builds)."""
    return Markup(  # noqa: S704  # escaped parts
        f'<span class="meta">{time_tag(a.published or a.fetched_at)} · {badge(a.lang)} '
        f'<span class="source">{esc(a.source)}</span></span>'
    )


def url_for(path: str, params: Mapping[str, str | None]) -> Markup:
    """``path?k=v`` with empty values left out, escaped for an attribute."""
    clean = {k: v for k, v in params.items() if v}
    return esc(path + ("?" + urlencode(clean) if clean else ""))
