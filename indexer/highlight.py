"""Highlights and "why it matched", computed from the original text and the query's positive terms.

Matching is on folded tokens (``stream.word_forms.tokens``): case, Latin diacritics and Arabic variants
do not matter, and a word also marks its word forms in the article's language (``stream.word_forms``),
exactly as in the stores. Fragments are HTML: the original text escaped, matched tokens wrapped in
``<mark>``.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence

from indexer.query import Phrase, Term
from stream.article import Article
from stream.word_forms import form, query_forms, tokens

FRAGMENT_CHARS = 160  # characters of context per text fragment (about two lines on the page)
MAX_FRAGMENTS = 3  # fragments of the text per hit
_MARKS = "\u0300-\u036f\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed"  # diacritics fold() removes
# a maximal run of word characters and diacritics; runs of each kind are matched whole (possessive), not one
# character per alternation step: the same matches as ``(?:[^\W_]|[marks])+`` at about half the cost
_ORIGINAL_TOKEN = re.compile(rf"(?:[^\W_]++|[{_MARKS}]++)++")
_WORD_CHAR = re.compile(rf"[^\W_]|[{_MARKS}]")  # a character of a word (``_ORIGINAL_TOKEN``)


Terms = Sequence[str | Term | Phrase]  # a plain string is a word


def query_tokens(terms: Terms) -> frozenset[str]:
    """Folded tokens of the positive terms."""
    return frozenset(t for term in terms for t in tokens(term if isinstance(term, str) else term.text))


def _word_forms(terms: Terms) -> frozenset[str]:
    """Query forms (``stream.word_forms.query_forms``) of the tokens of the words among ``terms``."""
    return frozenset(
        f
        for term in terms
        if not isinstance(term, Phrase)
        for tok in tokens(term if isinstance(term, str) else term.text)
        for f in query_forms(tok)
    )


@functools.lru_cache(maxsize=256)  # every hit of a page asks with the same terms
def _wanted(terms: tuple[str | Term | Phrase, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """The phrase tokens and the word forms of ``terms`` (what marks a word of a text)."""
    return query_tokens([t for t in terms if isinstance(t, Phrase)]), _word_forms(terms)


@functools.lru_cache(maxsize=65536)  # the hits of a page share most of their words
def _marks(word: str, lang: str, wanted: frozenset[str], forms: frozenset[str]) -> bool:
    """Whether a word of a text in ``lang`` is marked: one of its tokens is a phrase token or has a query form."""
    return any(t in wanted or form(t, lang) in forms for t in _leaf_tokens(word))


def _spans(
    text: str, wanted: frozenset[str], forms: frozenset[str] = frozenset(), lang: str = ""
) -> list[tuple[int, int]]:
    """``(start, end)`` of each word of ``text`` (a maximal run of ``_ORIGINAL_TOKEN``) that a term marks,
    in order. Each distinct word is decided once, then only the marked ones are looked up in the text."""
    marked = [word for word in set(_ORIGINAL_TOKEN.findall(text)) if _marks(word, lang, wanted, forms)]
    out = []
    for word in marked:
        start = text.find(word)
        while start >= 0:
            end = start + len(word)
            if not (start and _WORD_CHAR.match(text, start - 1)) and not _WORD_CHAR.match(text, end):
                out.append((start, end))  # the whole word, not a piece of a longer one
            start = text.find(word, end)
    out.sort()
    return out


def _marked(text: str, spans: Sequence[tuple[int, int]], start: int, end: int) -> str:
    parts: list[str] = []
    pos = start
    for s, e in spans:
        if e <= start or s >= end:
            continue
        parts.append(html.escape(text[pos:s]))
        parts.append(f"<mark>{html.escape(text[s:e])}</mark>")
        pos = e
    parts.append(html.escape(text[pos:end]))
    return "".join(parts)


def highlight_field(text: str, terms: Terms, *, whole: bool = False, lang: str | None = None) -> list[str]:
    """HTML fragments of ``text`` with the terms marked; ``[]`` when no term occurs.

    ``lang``: the text's language, whose word forms of the words are marked too.

    ``whole`` returns the entire text as one fragment (titles); otherwise up to ``MAX_FRAGMENTS``
    windows of about ``FRAGMENT_CHARS`` characters around the first matches, ``…`` where cut.
    """
    phrases, forms = _wanted(tuple(terms))
    spans = _spans(text, phrases, forms, (lang or "").lower())
    if not spans:
        return []
    if whole:
        return [_marked(text, spans, 0, len(text))]
    fragments: list[str] = []
    covered_until = -1
    for s, _e in spans:
        if s < covered_until:
            continue
        start = max(0, s - FRAGMENT_CHARS // 3)
        space = text.rfind(" ", 0, start + 1)
        start = space + 1 if start > 0 and space >= 0 and start - space < 20 else start
        end = min(len(text), start + FRAGMENT_CHARS)
        space = text.find(" ", end)
        end = space if 0 <= space < end + 20 else end
        fragment = _marked(text, spans, start, end)
        fragments.append(("…" if start > 0 else "") + fragment + ("…" if end < len(text) else ""))
        covered_until = end
        if len(fragments) == MAX_FRAGMENTS:
            break
    return fragments


def highlights(article: Article, terms: Terms) -> dict[str, list[str]]:
    """``{"title": [...], "text": [...]}`` for the fields where a term occurs."""
    out: dict[str, list[str]] = {}
    if not terms:
        return out
    lang = article.lang.lower()
    title = highlight_field(article.title, terms, whole=True, lang=lang)
    if title:
        out["title"] = title
    text = highlight_field(article.text, terms, lang=lang)
    if text:
        out["text"] = text
    return out


def matched_terms(article: Article, leaves: Sequence[Term | Phrase]) -> tuple[str, ...]:
    """Texts of the positive leaves that occur in the article, without repeats.

    A word needs, for each of its tokens, one of its query forms among the article's word forms in the
    field(s) it names (``stream.word_forms``, as the stores); a phrase its tokens adjacent, in order, within one field.
    """
    title = tokens(article.title)
    fields = [title, tokens(article.text)]
    lang = article.lang.lower()
    # a token's form does not depend on its place: each distinct token once, through ``form``'s cache (the
    # same as ``document_forms`` of the distinct tokens, without stemming words the cache has seen)
    title_set = set(title)
    title_forms = {form(t, lang) for t in title_set}
    all_forms = title_forms.union([form(t, lang) for t in set(fields[1]).difference(title_set)])
    found: list[str] = []
    for leaf in leaves:
        toks = _leaf_tokens(leaf.text)
        in_title = leaf.field == "title"
        if isinstance(leaf, Phrase):
            hit = any(_contains_seq(f, toks) for f in fields[: 1 if in_title else 2])
        else:
            present = title_forms if in_title else all_forms
            hit = bool(toks) and all(not present.isdisjoint(query_forms(t)) for t in toks)
        if hit and leaf.text not in found:
            found.append(leaf.text)
    return tuple(found)


@functools.lru_cache(maxsize=65536)
def _leaf_tokens(text: str) -> tuple[str, ...]:
    """The folded tokens of a query word or phrase, or of a word of a text (words repeat: fold each once)."""
    return tuple(tokens(text))


def _contains_seq(doc: Sequence[str], seq: Sequence[str]) -> bool:
    n = len(seq)
    if n == 0:
        return False
    first, rest = seq[0], list(seq[1:])
    return any(t == first and list(doc[i + 1 : i + n]) == rest for i, t in enumerate(doc))
