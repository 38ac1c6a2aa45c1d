"""The search query language of DESIGN.md, parsed once into an AST both stores translate.

Grammar (operators are upper-case; ``and``/``or``/``not`` in lower case are ordinary words)::

    query    := or_expr?                      empty query = everything (``MatchAll``)
    or_expr  := and_expr ("OR" and_expr)*
    and_expr := not_expr (["AND"] not_expr)*  juxtaposition is AND
    not_expr := ("NOT" | "-") not_expr | primary     ``-word`` (a minus right before a term) is NOT
    primary  := "(" or_expr ")" | WORD | "PHRASE" | FIELD ":" (WORD | "PHRASE")

``FIELD`` is one of ``title`` (text search restricted to the title), ``exact`` (the word or phrase as
written: no word forms, no name variants; the same as quoting it), ``lang``, ``source``, ``story``
(exact filters on the article's language, source id and story id). Field names are case-insensitive.
A ``-`` at the start of a word, phrase, field or parenthesis (``Sednaya -monastery``) negates it; a
hyphen inside a word (``al-Assad``) is part of the word.

Meaning of the leaves (both stores, see ``stream.word_forms`` and ``indexer.names``): a WORD matches its
folded tokens or their word forms in the document's language, and, when it spells a name of the topic's
name groups, every variant of that name; a "PHRASE" (or ``exact:``) matches its folded tokens exactly,
adjacent and in order.
A word containing ``:`` after letters is read as ``field:value``; quote it (``"10:30"``) to search it as text.

Every node is a frozen dataclass, and a parsed query is in a normal form: ``NOT NOT x`` is ``x``, and an
AND (OR) holds no AND (OR) directly (``a AND (b AND c)`` is one AND of three), so the nesting a store has to
run is the nesting of meaning; deeper than ``MAX_DEPTH`` levels is a syntax error. :func:`normalise` gives
that form of any node. ``parse`` raises :class:`indexer.errors.QuerySyntaxError` naming the
0-based position and the offending token. ``positive_terms`` gives the words and phrases a match can be
"because of" (those not under an odd number of ``NOT``), for highlights and "why it matched".
``tokens`` is the one tokeniser of searchable text (fold, then runs of letters/digits) used wherever
Python decides what a term is (highlights, matched terms, the embedded store's query terms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, TypeAlias

from indexer.errors import QuerySyntaxError
from stream.text import fold
from stream.word_forms import TOKEN_RE

TextField = Literal["any", "title"]  # "any" = title or text
FilterField = Literal["lang", "source", "story"]
TEXT_FIELDS: frozenset[str] = frozenset({"title"})
FILTER_FIELDS: frozenset[str] = frozenset({"lang", "source", "story"})
FIELDS: tuple[str, ...] = ("exact", "lang", "source", "story", "title")
OPERATORS: frozenset[str] = frozenset({"AND", "OR", "NOT"})
MAX_QUERY_LENGTH = 4096  # characters; longer input is a paste accident, not a query
# Levels of AND/OR/NOT a query may nest (after ``NOT NOT x`` became ``x`` and ``a AND (b AND c)`` one AND), and
# of parentheses and NOTs as written. Both stores must run whatever the parser accepts: Elasticsearch 8 refuses
# queries nested deeper than 30 (``indices.query.bool.max_nested_depth``), and each level here is one bool
# query, under the store's own bool around the query (1) and at most 4 below the deepest operator (a name
# expanded to OR of variants, its AND of words, a word's bool over its tokens, the match). SQLite's parser stack
# (100 entries: ``parser stack overflow`` at 36 nested NOTs) holds the embedded store's SQL of 20 levels.
MAX_DEPTH = 20

_FIELD_RE = re.compile(r"^([A-Za-z_]+):(.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class MatchAll:
    """The empty query: every document."""


@dataclass(frozen=True, slots=True)
class Term:
    """A word; every token of it must occur (in the title for ``field="title"``)."""

    text: str
    field: TextField = "any"


@dataclass(frozen=True, slots=True)
class Phrase:
    """Tokens in this order, adjacent."""

    text: str
    field: TextField = "any"


@dataclass(frozen=True, slots=True)
class FieldFilter:
    """Exact match of a keyword field (``lang:ar``, ``source:bbc-arabic``, ``story:<id>``)."""

    field: FilterField
    value: str


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


Node: TypeAlias = MatchAll | Term | Phrase | FieldFilter | And | Or | Not

_Kind = Literal["word", "phrase", "field", "lparen", "rparen", "op", "end"]


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: _Kind
    text: str  # the token as written (for errors)
    pos: int
    value: str = ""  # word/phrase text, or the field value
    field: str = ""  # for kind == "field"
    quoted: bool = False  # field value was a phrase

    @property
    def op(self) -> str:
        """The operator of an ``op`` token (``-`` is ``NOT``)."""
        return "NOT" if self.text == "-" else self.text


def _lex(query: str) -> list[_Tok]:
    out: list[_Tok] = []
    i, n = 0, len(query)
    while i < n:
        ch = query[i]
        if ch.isspace():
            i += 1
            continue
        if ch == "(":
            out.append(_Tok("lparen", "(", i))
            i += 1
            continue
        if ch == ")":
            out.append(_Tok("rparen", ")", i))
            i += 1
            continue
        if (
            ch == "-"
            and i + 1 < n
            and not query[i + 1].isspace()  # at the start of a term (a word is read whole below)
        ):
            out.append(_Tok("op", "-", i))  # -word: NOT word
            i += 1
            continue
        if ch == '"':
            text, end = _read_phrase(query, i)
            out.append(_Tok("phrase", query[i:end], i, value=text))
            i = end
            continue
        start = i
        while i < n and not query[i].isspace() and query[i] not in '()"':
            i += 1
        word = query[start:i]
        if word in OPERATORS:
            out.append(_Tok("op", word, start))
            continue
        match = _FIELD_RE.match(word)
        if match is None:
            out.append(_Tok("word", word, start, value=word))
            continue
        name, value = match.group(1).lower(), match.group(2)
        if name not in FIELDS:
            raise QuerySyntaxError(
                query,
                start,
                word,
                f"unknown field {match.group(1)!r} (known: {', '.join(FIELDS)}; quote text containing ':')",
            )
        quoted = False
        if not value and i < n and query[i] == '"':
            value, end = _read_phrase(query, i)
            quoted = True
            i = end
        if not value.strip():
            raise QuerySyntaxError(query, start, query[start:i], f"empty value for field {name!r}")
        out.append(_Tok("field", query[start:i], start, value=value, field=name, quoted=quoted))
    out.append(_Tok("end", "", n))
    return out


def _read_phrase(query: str, start: int) -> tuple[str, int]:
    """The text between the quote at ``start`` and the next quote, and the index after it."""
    end = query.find('"', start + 1)
    if end < 0:
        raise QuerySyntaxError(query, start, query[start:], "unterminated phrase (missing closing '\"')")
    text = query[start + 1 : end]
    if not TOKEN_RE.search(fold(text)):
        raise QuerySyntaxError(query, start, query[start : end + 1], "empty phrase")
    return text, end + 1


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.toks = _lex(query)
        self.i = 0
        self.depth = 0  # parentheses and NOTs open at this point (the recursion of the parser)
        self.levels: dict[int, tuple[Node, int]] = {}  # id -> (AND/OR/NOT node, its levels of operators)

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, tok: _Tok, problem: str) -> QuerySyntaxError:
        return QuerySyntaxError(self.query, tok.pos, tok.text, problem)

    def parse(self) -> Node:
        if self.peek().kind == "end":
            return MatchAll()
        node = self.or_expr()
        tok = self.peek()
        if tok.kind == "rparen":
            raise self.fail(tok, "unbalanced ')' (no matching '(')")
        if tok.kind != "end":  # pragma: no cover - and_expr consumes every term start
            raise self.fail(tok, "unexpected token")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        first_op: _Tok | None = None
        while self.peek().kind == "op" and self.peek().op == "OR":
            op = self.take()
            first_op = first_op or op
            items.append(self.and_expr(after=op))
        if first_op is None:
            return items[0]
        return self._level(Or(_flat(Or, items)), first_op)

    def and_expr(self, after: _Tok | None = None) -> Node:
        start = self.peek()
        items = [self.not_expr(after)]
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.op == "AND":
                self.take()
                items.append(self.not_expr(tok))
            elif tok.kind in ("word", "phrase", "field", "lparen") or (tok.kind == "op" and tok.op == "NOT"):
                items.append(self.not_expr())
            else:
                break
        return items[0] if len(items) == 1 else self._level(And(_flat(And, items)), start)

    def not_expr(self, after: _Tok | None = None) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.op == "NOT":
            self.take()
            self._enter(tok)
            inner = self.not_expr(tok)
            self.depth -= 1
            return inner.item if isinstance(inner, Not) else self._level(Not(inner), tok)  # NOT NOT x is x
        return self.primary(after)

    def _levels(self, node: Node) -> int:
        """Levels of AND/OR/NOT in ``node`` (0 for a leaf), as recorded when the parser built it."""
        entry = self.levels.get(id(node))
        return entry[1] if entry is not None and entry[0] is node else 0

    def _level(self, node: And | Or | Not, tok: _Tok) -> Node:
        """``node`` (just built, its operator at ``tok``), refused when it nests deeper than ``MAX_DEPTH``."""
        items = (node.item,) if isinstance(node, Not) else node.items
        levels = 1 + max(self._levels(item) for item in items)
        if levels > MAX_DEPTH:
            raise self.fail(tok, f"query nested deeper than {MAX_DEPTH} levels of AND/OR/NOT")
        self.levels[id(node)] = (node, levels)  # the entry keeps the node alive: its id is not reused
        return node

    def _enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(tok, f"query nested deeper than {MAX_DEPTH} levels of parentheses/NOT")

    def primary(self, after: _Tok | None) -> Node:
        tok = self.take()
        if tok.kind == "word":
            if not TOKEN_RE.search(fold(tok.value)):
                raise self.fail(tok, "a word needs at least one letter or digit")
            return Term(tok.value)
        if tok.kind == "phrase":
            return Phrase(tok.value)
        if tok.kind == "field":
            if tok.field == "title":
                if not TOKEN_RE.search(fold(tok.value)):
                    raise self.fail(tok, "a word needs at least one letter or digit")
                return Phrase(tok.value, "title") if tok.quoted else Term(tok.value, "title")
            if tok.field == "exact":
                if not TOKEN_RE.search(fold(tok.value)):
                    raise self.fail(tok, "a word needs at least one letter or digit")
                return Phrase(tok.value)  # as written: exact tokens, no word forms, no name variants
            return FieldFilter(tok.field, tok.value)  # type: ignore[arg-type]  # checked against FILTER_FIELDS
        if tok.kind == "lparen":
            self._enter(tok)
            if self.peek().kind == "rparen":
                raise self.fail(self.peek(), "empty parentheses")
            node = self.or_expr()
            close = self.take()
            if close.kind != "rparen":
                raise self.fail(close, f"missing ')' to close the '(' opened at position {tok.pos},")
            self.depth -= 1
            return node
        if tok.kind == "end":
            problem = f"expected a term after {after.text!r}" if after else "expected a term"
            raise self.fail(tok, problem)
        if tok.kind == "rparen":
            raise self.fail(tok, "unexpected ')'")
        # an operator where a term should be
        if after is not None:
            raise self.fail(tok, f"expected a term after {after.text!r}, found operator {tok.text!r}")
        raise self.fail(tok, f"expected a term before operator {tok.text!r}")


def parse(query: str) -> Node:
    """Parse ``query`` (DESIGN.md query language) into an AST.

    Raises:
        QuerySyntaxError: the query is malformed; ``.position`` and ``.token`` name the offending token.
    """
    if len(query) > MAX_QUERY_LENGTH:
        raise QuerySyntaxError(
            query[:40] + "...", MAX_QUERY_LENGTH, "", f"query longer than {MAX_QUERY_LENGTH} characters"
        )
    return _Parser(query).parse()


def _flat(kind: type[And | Or], items: list[Node]) -> tuple[Node, ...]:
    """``items`` with the items of each ``kind`` node among them in its place (``a AND (b AND c)``: a, b, c)."""
    out: list[Node] = []
    for item in items:
        if isinstance(item, kind):
            out.extend(item.items)
        else:
            out.append(item)
    return tuple(out)


def normalise(node: Node) -> Node:
    """``node`` in the form :func:`parse` gives: ``NOT NOT x`` as ``x``, no AND (OR) directly in an AND (OR).

    Same meaning and same matches; ``parse(to_query(n)) == normalise(n)`` for any ``n``.
    """
    if isinstance(node, Not):
        inner = normalise(node.item)
        return inner.item if isinstance(inner, Not) else Not(inner)
    if isinstance(node, And):
        return And(_flat(And, [normalise(item) for item in node.items]))
    if isinstance(node, Or):
        return Or(_flat(Or, [normalise(item) for item in node.items]))
    return node


def positive_leaves(node: Node) -> tuple[Term | Phrase, ...]:
    """Words and phrases that can make a document match: not under an odd number of NOTs.

    Order of first appearance, without repeats. Filters (``lang:``...) are not terms.
    """
    out: list[Term | Phrase] = []

    def walk(n: Node, negated: bool) -> None:
        if isinstance(n, Term | Phrase):
            if not negated and n not in out:
                out.append(n)
        elif isinstance(n, And | Or):
            for item in n.items:
                walk(item, negated)
        elif isinstance(n, Not):
            walk(n.item, not negated)

    walk(node, False)
    return tuple(out)


def positive_terms(node: Node) -> tuple[str, ...]:
    """The text of :func:`positive_leaves` (as written, without repeats): "why it matched"."""
    return tuple(dict.fromkeys(leaf.text for leaf in positive_leaves(node)))


def to_query(node: Node) -> str:
    """The canonical query text of ``node``: ``parse(to_query(n)) == n`` for every parsed ``n``."""
    if isinstance(node, MatchAll):
        return ""
    if isinstance(node, Term):
        return ("title:" if node.field == "title" else "") + node.text
    if isinstance(node, Phrase):
        prefix = "title:" if node.field == "title" else ""
        return f'{prefix}"{node.text}"'
    if isinstance(node, FieldFilter):
        plain = not any(ch.isspace() or ch in '()"' for ch in node.value)
        return f"{node.field}:{node.value}" if plain else f'{node.field}:"{node.value}"'
    if isinstance(node, Not):
        return f"NOT {_group(node.item)}"
    if isinstance(node, And):
        return " AND ".join(_group(item) for item in node.items)
    return " OR ".join(_group(item) for item in node.items)


def _group(node: Node) -> str:
    text = to_query(node)
    return f"({text})" if isinstance(node, And | Or) else text
