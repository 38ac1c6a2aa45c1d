"""The query language parser (indexer/query.py): AST, errors naming the position, properties."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.errors import QuerySyntaxError
from indexer.query import (
    MAX_DEPTH,
    And,
    FieldFilter,
    MatchAll,
    Node,
    Not,
    Or,
    Phrase,
    Term,
    normalise,
    parse,
    positive_terms,
    to_query,
)
from stream.word_forms import tokens


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", MatchAll()),
        ("   ", MatchAll()),
        ("sednaya", Term("sednaya")),
        ("crematorium AND Sednaya", And((Term("crematorium"), Term("Sednaya")))),
        ("crematorium Sednaya", And((Term("crematorium"), Term("Sednaya")))),
        ('"mass graves"', Phrase("mass graves")),
        ("a OR b c", Or((Term("a"), And((Term("b"), Term("c")))))),
        ("a AND (b OR c)", And((Term("a"), Or((Term("b"), Term("c")))))),
        ("NOT a", Not(Term("a"))),
        ("a NOT b", And((Term("a"), Not(Term("b"))))),
        ("NOT NOT a", Term("a")),  # the normal form: NOT NOT x is x
        ("NOT NOT NOT a", Not(Term("a"))),
        ("-(-a) b", And((Term("a"), Term("b")))),
        ("a AND (b AND (c d))", And((Term("a"), Term("b"), Term("c"), Term("d")))),  # one AND, not three
        ("(a OR b) OR (c OR d)", Or((Term("a"), Term("b"), Term("c"), Term("d")))),
        ("a (b OR c) OR d", Or((And((Term("a"), Or((Term("b"), Term("c"))))), Term("d")))),  # kinds alternate
        ("title:prison", Term("prison", "title")),
        ('Title:"red prison"', Phrase("red prison", "title")),
        ("lang:ar", FieldFilter("lang", "ar")),
        ("source:bbc-arabic", FieldFilter("source", "bbc-arabic")),
        ('source:"two words"', FieldFilter("source", "two words")),
        ("story:abc123 amnesty", And((FieldFilter("story", "abc123"), Term("amnesty")))),
        ("and or not", And((Term("and"), Term("or"), Term("not")))),  # lower case: words
        ("10:30", Term("10:30")),  # digits before ':' are not a field name
        ("صيدنايا OR صيدنايه", Or((Term("صيدنايا"), Term("صيدنايه")))),
        ("(a)", Term("a")),
        # a minus before a term is NOT; a hyphen inside a word is part of it
        ("Sednaya -monastery", And((Term("Sednaya"), Not(Term("monastery"))))),
        ("-monastery Sednaya", And((Not(Term("monastery")), Term("Sednaya")))),
        ('a -"mass graves"', And((Term("a"), Not(Phrase("mass graves"))))),
        ("a -(b OR c)", And((Term("a"), Not(Or((Term("b"), Term("c"))))))),
        ("(-b)", Not(Term("b"))),
        ("a -lang:ar", And((Term("a"), Not(FieldFilter("lang", "ar"))))),
        ("a OR -b", Or((Term("a"), Not(Term("b"))))),
        ("al-Assad", Term("al-Assad")),
        ("Sednaya-prison", Term("Sednaya-prison")),
        # exact: is a quoted word (no word forms, no name variants)
        ("exact:Sednaya", Phrase("Sednaya")),
        ('exact:"White Helmets"', Phrase("White Helmets")),
        ("EXACT:x -exact:y", And((Phrase("x"), Not(Phrase("y"))))),
    ],
)
def test_parse_builds_the_ast(query: str, expected: Node) -> None:
    assert parse(query) == expected


@pytest.mark.parametrize(
    ("query", "position", "token", "words"),
    [
        ("a AND", 5, "", "expected a term after 'AND'"),
        ("AND a", 0, "AND", "expected a term before operator 'AND'"),
        ("a OR OR b", 5, "OR", "found operator 'OR'"),
        ("(a OR b", 7, "", "missing ')' to close the '(' opened at position 0"),
        ("a b)", 3, ")", "unbalanced ')'"),
        ("a ()", 3, ")", "empty parentheses"),
        ('prison "mass graves', 7, '"mass graves', "unterminated phrase"),
        ('x ""', 2, '""', "empty phrase"),
        ("author:someone", 0, "author:someone", "unknown field 'author'"),
        ("lang: ar", 0, "lang:", "empty value for field 'lang'"),
        ("a NOT", 5, "", "expected a term after 'NOT'"),
        ("x - y", 2, "-", "at least one letter or digit"),  # a minus alone is not an operator
        ("x -", 2, "-", "at least one letter or digit"),
        ("x -AND y", 3, "AND", "expected a term after '-', found operator 'AND'"),
        ("x -)", 3, ")", "unexpected ')'"),
        ("exact: x", 0, "exact:", "empty value for field 'exact'"),
    ],
)
def test_errors_name_position_and_token(query: str, position: int, token: str, words: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse(query)
    err = info.value
    assert (err.position, err.token) == (position, token)
    assert words in str(err)
    assert f"at position {position}" in str(err)
    assert repr(query) in str(err)


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    with pytest.raises(QuerySyntaxError, match="nested deeper"):
        parse("(" * 500 + "a" + ")" * 500)


def _levels(node: Node) -> int:
    if isinstance(node, Not):
        return 1 + _levels(node.item)
    if isinstance(node, And | Or):
        return 1 + max(_levels(item) for item in node.items)
    return 0


@pytest.mark.parametrize(
    ("nest", "reached"),
    [
        (lambda inner: f"NOT {inner}", 1),  # NOTs that cancel out nest nothing; 20 NOTs as written are refused
        (lambda inner: f"(x ({inner}))", 1),  # ANDs in ANDs are one AND
        (lambda inner: f"NOT (x OR {inner})", MAX_DEPTH - 1),
        (lambda inner: f"x OR y ({inner})", MAX_DEPTH - 1),
        (lambda inner: f"x -(y OR {inner})", MAX_DEPTH - 2),
    ],
    ids=["NOT", "(x (...))", "NOT (x OR ...)", "x OR y (...)", "x -(y OR ...)"],
)
def test_the_parser_accepts_only_what_the_stores_can_nest(nest: Callable[[str], str], reached: int) -> None:
    """Nesting a shape until the parser refuses: the last query accepted nests at most MAX_DEPTH levels of
    AND/OR/NOT, and the refusal names the query and a position in it."""
    query, accepted = "prison", 0
    for _ in range(200):
        deeper = nest(query)
        try:
            node = parse(deeper)
        except QuerySyntaxError as err:
            assert "nested deeper than 20 levels" in str(err), err
            assert repr(deeper) in str(err)
            assert deeper[err.position :].startswith(err.token)
            break
        assert _levels(node) <= MAX_DEPTH, deeper
        query, accepted = deeper, max(accepted, _levels(node))
    else:
        pytest.fail(f"{query!r} nests without end")
    assert accepted >= reached  # the shape reached the limit it is meant to reach


def test_positive_terms_leave_out_negated_and_filters() -> None:
    node = parse('crematorium "mass graves" NOT (hoax OR NOT amnesty) lang:ar title:Saydnaya crematorium')
    assert positive_terms(node) == ("crematorium", "mass graves", "amnesty", "Saydnaya")


def test_tokens_fold_case_diacritics_and_arabic_variants() -> None:
    assert tokens("Prison de Saydnâya") == ["prison", "de", "saydnaya"]
    assert tokens("سجن صيدنايا") == tokens("سجن صيدنايا")
    assert tokens("مدرسة") == tokens("مدرسه")  # ta marbuta
    assert tokens("إعدام") == tokens("اعدام")  # alef with hamza below
    assert tokens("al-Assad_regime") == ["al", "assad", "regime"]


# --- properties -----------------------------------------------------------------------------------

_words = st.text(alphabet=st.sampled_from(list("abcxyzéü019") + list("صيدناأةى")), min_size=1, max_size=6).filter(
    lambda w: w not in {"AND", "OR", "NOT"}
)


def _nodes() -> st.SearchStrategy[Node]:
    leaves: st.SearchStrategy[Node] = st.one_of(
        st.builds(Term, _words, st.sampled_from(["any", "title"])),
        st.builds(Phrase, st.lists(_words, min_size=1, max_size=3).map(" ".join), st.sampled_from(["any", "title"])),
        st.builds(FieldFilter, st.sampled_from(["lang", "source", "story"]), _words),
    )
    return st.recursive(
        leaves,
        lambda kids: st.one_of(
            st.builds(Not, kids),
            st.lists(kids, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
            st.lists(kids, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
        ),
        max_leaves=8,
    )


@settings(max_examples=200, deadline=None)
@given(_nodes())
def test_to_query_round_trips(node: Node) -> None:
    text = to_query(node)
    assert parse(text) == normalise(node), text
    assert parse(to_query(normalise(node))) == normalise(node), text


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([*'ab ()"-:', " AND ", " OR ", "NOT ", "title:", "lang:", "x:"]), max_size=15).map("".join)
)
def test_parse_raises_only_query_syntax_error(query: str) -> None:
    try:
        node = parse(query)
    except QuerySyntaxError as err:
        assert 0 <= err.position <= len(query)
        assert query[err.position :].startswith(err.token)
    else:
        assert parse(to_query(node)) == node


@settings(max_examples=100, deadline=None)
@given(st.lists(_words, min_size=1, max_size=5))
def test_juxtaposition_is_and(words: list[str]) -> None:
    node = parse(" ".join(words))
    joined = parse(" AND ".join(words))
    assert node == joined
