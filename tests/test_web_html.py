"""The pure parts of the web layer: escaping helpers, snippets, parameters, the chart."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sednaya_monitor.web.chart import bins, volume_svg
from sednaya_monitor.web.errors import BadRequest
from sednaya_monitor.web.html import dir_attrs, highlight, link, plain_snippet, query_terms, safe_href
from sednaya_monitor.web.params import date as date_param
from sednaya_monitor.web.params import decode_cursor, encode_cursor, search_params


def test_highlight_keeps_only_mark_tags() -> None:
    assert highlight("a <mark>b</mark> &lt;script&gt;") == "a <mark>b</mark> &lt;script&gt;"
    assert highlight('<script>x</script><mark onclick="y">z</mark>') == (
        "&lt;script&gt;x&lt;/script&gt;&lt;mark onclick=&quot;y&quot;&gt;z"
    )
    assert highlight("<mark>open") == "<mark>open</mark>"  # unbalanced marks are closed
    assert highlight("close</mark>") == "close"


@given(st.text())
def test_highlight_never_emits_another_tag(fragment: str) -> None:
    out = highlight(fragment).replace("<mark>", "").replace("</mark>", "")
    assert "<" not in out
    assert ">" not in out


def test_plain_snippet_marks_arabic_variants_and_escapes() -> None:
    text = "قبل <b> سجن صیدنایا بعد"
    out = plain_snippet(text, ["صيدنايا"])
    assert "<mark>صیدنایا</mark>" in out
    assert "&lt;b&gt;" in out
    long = "word " * 200 + "Sednaya " + "tail " * 200
    snippet = plain_snippet(long, ["sednaya"])
    assert snippet.startswith("…")
    assert snippet.endswith("…")
    assert "<mark>Sednaya</mark>" in snippet


def test_links_are_http_only() -> None:
    assert safe_href("javascript:alert(1)") is None
    assert safe_href(" data:text/html,x") is None
    assert safe_href("https://a.example/?q=<x>") == "https://a.example/?q=&lt;x&gt;"
    assert link("javascript:alert(1)", "<t>") == "&lt;t&gt;"


def test_direction_attributes() -> None:
    assert dir_attrs("ar") == 'lang="ar" dir="rtl"'
    assert dir_attrs("en") == 'lang="en" dir="ltr"'
    assert dir_attrs("und") == 'dir="auto"'
    assert dir_attrs('"><script>') == 'lang="&quot;&gt;&lt;script&gt;" dir="ltr"'


def test_query_terms_drop_operators_and_filters() -> None:
    assert query_terms('Sednaya AND "human slaughterhouse" NOT lang:ar title:prison (صيدنايا OR x)') == [
        "Sednaya",
        "human slaughterhouse",
        "prison",
        "صيدنايا",
        "x",
    ]


def test_cursor_round_trip_and_rejection() -> None:
    token = encode_cursor(("1.5", "abc"))
    assert token is not None
    assert decode_cursor(token) == ("1.5", "abc")
    for bad in ("!!", "e30", "W10"):  # not base64 / {} / []
        with pytest.raises(BadRequest, match="not a cursor returned by this server"):
            decode_cursor(bad)


def test_until_as_a_bare_date_includes_the_whole_day() -> None:
    until = date_param({"until": ["2024-12-09"]}, "until", end_of_day=True)
    assert until == datetime(2024, 12, 9, 23, 59, 59, 999999, tzinfo=UTC)
    exact = date_param({"until": ["2024-12-09T10:00:00Z"]}, "until", end_of_day=True)
    assert exact == datetime(2024, 12, 9, 10, 0, tzinfo=UTC)


def test_repeated_or_nul_parameters_are_refused() -> None:
    with pytest.raises(BadRequest, match="parameter 'q' given 2 times"):
        search_params({"q": ["a", "b"]})
    with pytest.raises(BadRequest, match="NUL"):
        search_params({"lang": ["a\x00"]})


def test_chart_bins_by_day_week_month() -> None:
    assert bins(date(2024, 1, 1), date(2024, 1, 10))[0] == "day"
    unit, starts = bins(date(2024, 1, 3), date(2024, 6, 30))
    assert unit == "week"
    assert starts[0] == date(2024, 1, 1)  # the Monday of the first week
    unit, starts = bins(date(2017, 2, 7), date(2024, 12, 9))
    assert unit == "month"
    assert (starts[0], starts[-1], len(starts)) == (date(2017, 2, 1), date(2024, 12, 1), 95)


def test_chart_stacks_languages_and_escapes_labels() -> None:
    svg = volume_svg({date(2024, 12, 8): {"ar": 3, "en": 1}, date(2024, 12, 9): {"<x>": 2}})
    assert 'data-day="2024-12-08" data-lang="ar" data-count="3"' in svg
    assert 'data-lang="&lt;x&gt;"' in svg
    assert "<x>" not in svg
    assert volume_svg({}) == '<p class="muted">No dated articles to chart.</p>'


def test_search_page_has_a_place_for_name_variants() -> None:
    """The search issue adds ``expanded`` (name variants searched too) to the store's result; the page shows it."""
    from indexer.store import SearchResult
    from sednaya_monitor.web.pages import FilterOptions, render_search

    class Expanded(SearchResult):  # stands for the field the search issue adds
        pass

    result = Expanded(total=0, hits=[])
    object.__setattr__(result, "expanded", {"Sednaya": ("Saydnaya", "صيدنايا", "<b>")})
    page = render_search(search_params({"q": ["Sednaya"]}), result, FilterOptions()).decode("utf-8")
    assert (
        'also searched: <span class="badge badge-variant" dir="auto">Saydnaya, صيدنايا, &lt;b&gt; (variants of Sednaya)'
        in page
    )
    assert "&lt;b&gt;" in page
    plain = render_search(search_params({"q": ["Sednaya"]}), SearchResult(total=0, hits=[]), FilterOptions())
    assert b"also searched" not in plain
