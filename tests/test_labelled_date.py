"""A page's date read from an element it labels as a date, when its markup, feed, sitemap and URL say
nothing (crawlers.extraction.labelled_date), and the date grammar it shares with the anchors."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime

import lxml.html
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawlers.extraction import MAX_LABEL_DISTANCE, extract, labelled_date
from sednaya_monitor.settings import Settings
from stream.anchors import AnchorExtractor, dates_in
from stream.topic import load_topic

NOW = datetime(2025, 3, 1, tzinfo=UTC)

# Written for these tests: a short report on a hand-made template, long enough for the extractor's floor.
BODY = (
    "<p>Families gathered again outside the prison gates on Saturday, holding photographs of relatives who "
    "disappeared inside the detention complex years ago and asking the new authorities for the records.</p>"
    "<p>Volunteers said they had copied several hundred pages of registers found in an office near the "
    "entrance and would hand them to the commission that is collecting testimony from former detainees.</p>"
)


def _tree(body: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(f"<html><body>{body}</body></html>")


def _date(body: str, lang: str = "en") -> dt.date | None:
    found = labelled_date(_tree(body), lang, now=NOW)
    return None if found is None else found.date()


@pytest.mark.parametrize(
    ("label", "lang", "expected"),
    [
        ('<font class="date">2024/12/14</font>', "ar", dt.date(2024, 12, 14)),  # a legacy table template
        ('<span class="post-date">14 décembre 2024</span>', "fr", dt.date(2024, 12, 14)),
        ('<div class="news_date">Veröffentlicht: 14.12.2024, 10:12 Uhr</div>', "de", dt.date(2024, 12, 14)),
        ('<span class="tarih">14 Aralık 2024</span>', "tr", dt.date(2024, 12, 14)),
        ('<span class="article-date">١٤ كانون الأول ٢٠٢٤</span>', "ar", dt.date(2024, 12, 14)),
        ('<p class="byline">By a staff reporter, December 14, 2024</p>', "en", dt.date(2024, 12, 14)),
        ('<span id="pubDate">14/12/2024</span>', "en", dt.date(2024, 12, 14)),  # day first: 14 is no month
        ('<span id="pubDate">12/14/2024</span>', "en", dt.date(2024, 12, 14)),  # month first in English
        ('<span id="pubDate">05/06/2024</span>', "fr", dt.date(2024, 6, 5)),  # day first outside English
        ('<span class="meta-time" datetime="2024-12-14T23:30:00-05:00">Saturday</span>', "en", dt.date(2024, 12, 15)),
        ('<time datetime="2024-12-14">last Saturday</time>', "en", dt.date(2024, 12, 14)),  # a <time> needs no class
        ('<div itemprop="datePublished" content="2024-12-14T08:00:00Z"></div>', "en", dt.date(2024, 12, 14)),
    ],
)
def test_a_date_label_gives_the_date_it_shows(label: str, lang: str, expected: dt.date) -> None:
    assert _date(f"<article><h1>Registers found</h1>{label}{BODY}</article>", lang) == expected


@pytest.mark.parametrize(
    "label",
    [
        '<span id="pubDate">05/06/2024</span>',  # English: 5 June or 6 May, the numbers do not say
        '<span class="date-modified">2024-12-20</span>',  # an update, not the publication
        '<span class="updated">20 December 2024</span>',
        '<span class="comment-date">2024-12-20</span>',
        '<span class="copyright">© 2024-12-20</span>',
        '<span class="candidate">2024-12-20</span>',  # "date" inside another word is no label
        '<span class="date">in 2025-06-01 the hearings resume</span>',  # after the crawl: not a publication
        '<span class="date">31.02.2024</span>',  # no such day
        '<span class="date">' + "The hearing that opened on 14 December 2024 lasted into the night. " * 2 + "</span>",
        '<p class="lead">On <time datetime="2017-05-15">15 May 2017</time> the State Department spoke.</p>',
    ],
)
def test_what_is_not_a_publication_date_is_not_read(label: str) -> None:
    assert _date(f"<article><h1>Registers found</h1>{label}{BODY}</article>") is None


HEADLINE = "<h1>Registers found</h1>"


def test_the_label_nearest_the_headline_is_the_page_s_date() -> None:
    teasers = (
        '<div class="list">'
        + "".join(
            f'<div class="item"><a href="/n{i}">Older report {i}</a> <span class="date">2017-05-{i + 10}</span></div>'
            for i in range(5)
        )
        + "</div>"
    )
    page = f'{teasers}<div id="content">{HEADLINE}<span class="date">2024-12-14</span>{BODY}</div>'
    assert _date(page) == dt.date(2024, 12, 14)
    above = f'{teasers}<div id="content"><span class="date">14.12.2024</span>{HEADLINE}{BODY}</div>'
    assert _date(above, "de") == dt.date(2024, 12, 14)  # a kicker date above the headline


@pytest.mark.parametrize(
    "around",
    [
        '<nav><span class="date">2024-12-01</span></nav>',
        '<aside><time datetime="2024-12-02">Most read</time></aside>',
        '<div id="header"><span class="date">Sunday, 2 March 2025</span></div>',  # today, in the site's top bar
        '<header><time datetime="2025-03-01">Today</time></header>',
        '<td class="top"><span class="date">2025/03/01</span></td>',
        '<div class="trending"><article><time datetime="2017-05-15">An older report</time></article></div>',
    ],
)
def test_dates_of_the_site_around_the_article_are_not_its_date(around: str) -> None:
    assert _date(f"{around}{HEADLINE}{BODY}") is None
    assert _date(f'{around}{HEADLINE}<span class="date">2024-12-14</span>{BODY}') == dt.date(2024, 12, 14)


@pytest.mark.parametrize(
    "after",
    [
        '<div class="related"><span class="date">2017-05-15</span> <a href="/old">An older report</a></div>',
        '<section id="comments"><div class="c"><span class="date">2025-02-28</span> A reader wrote.</div></section>',
        '<footer><span class="date">2025-01-01</span></footer>',
    ],
)
def test_related_links_comments_and_footers_below_the_article_are_not_its_date(after: str) -> None:
    assert _date(f"<main>{HEADLINE}{BODY}{after}</main>") is None


def test_a_label_far_from_the_headline_is_not_its_date() -> None:
    paragraphs = "".join(f"<p>Paragraph {i} of the testimony.</p>" for i in range(MAX_LABEL_DISTANCE))
    assert _date(f'{HEADLINE}{paragraphs}<span class="date">2024-12-14</span>') is None
    assert _date(
        f'{HEADLINE}{paragraphs[: -len("<p>Paragraph 39 of the testimony.</p>")]}<span class="date">2024-12-14</span>'
    ) == dt.date(2024, 12, 14)


def test_an_article_header_holding_the_headline_holds_its_date() -> None:
    page = f'<article><header class="entry-header">{HEADLINE}<span class="posted-on">14 Aralık 2024</span></header>'
    assert _date(page + BODY + "</article>", "tr") == dt.date(2024, 12, 14)


def test_a_time_in_running_text_is_a_date_the_article_mentions() -> None:
    prose = '<p>On <time datetime="2017-05-15">15 May 2017</time> the State Department showed the images.</p>'
    assert _date(HEADLINE + prose + BODY) is None
    assert _date(HEADLINE + '<time datetime="2024-12-14">Saturday</time>' + prose + BODY) == dt.date(2024, 12, 14)


def test_a_label_s_timestamp_keeps_its_instant() -> None:
    label = '<time class="published" datetime="2024-12-14T01:30:00+03:00">14 December</time>'
    found = labelled_date(_tree(HEADLINE + label + BODY), "en", now=NOW)
    assert found == datetime(2024, 12, 13, 22, 30, tzinfo=UTC)


@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "not a date"])
def test_an_unreadable_or_out_of_range_attribute_is_no_date(value: str) -> None:
    label = f'<time class="published" datetime="{value}">?</time>'
    assert labelled_date(_tree(HEADLINE + label + BODY), "en", now=NOW) is None
    page = f"<html><head><title>Registers found</title></head><body>{HEADLINE}{label}{BODY}</body></html>"
    assert extract(page, url="https://example.test/news.php?id=7").date_source == "none"


def test_without_a_headline_the_title_s_element_is_the_headline() -> None:
    legacy = (
        '<table><tr><td class="top">Home | World</td></tr><tr><td class="main">'
        '<font class="date">2024/12/14</font><br><font class="title"><b>Registers found</b></font>'
        f"<font class=text>{BODY}</font></td></tr></table>"
    )
    assert labelled_date(_tree(legacy), "ar", "Registers found", now=NOW) == datetime(2024, 12, 14, tzinfo=UTC)
    assert labelled_date(_tree(legacy), "ar", now=NOW) is None  # no headline at all: nothing to be near


def test_extract_reads_a_label_only_when_markup_feed_and_url_say_nothing() -> None:
    page = (
        '<html lang="en"><head><title>Registers found</title></head><body><article><h1>Registers found</h1>'
        f'<span class="date">14 December 2024</span>{BODY}</article></body></html>'
    )
    labelled = extract(page, url="https://example.test/news.php?id=7")
    assert (labelled.published, labelled.date_source) == (datetime(2024, 12, 14, tzinfo=UTC), "meta")
    from_feed = extract(
        page,
        url="https://example.test/news.php?id=7",
        hinted_published=datetime(2024, 12, 13, 18, 0, tzinfo=UTC),
        hinted_date_source="feed",
    )
    assert (from_feed.published, from_feed.date_source) == (datetime(2024, 12, 13, 18, 0, tzinfo=UTC), "feed")
    from_url = extract(page, url="https://example.test/2024/12/12/registers.html")
    assert (from_url.published, from_url.date_source) == (datetime(2024, 12, 12, tzinfo=UTC), "url")
    unlabelled = extract(page.replace('class="date"', 'class="lead"'), url="https://example.test/news.php?id=7")
    assert (unlabelled.published, unlabelled.date_source) == (None, "none")


@pytest.mark.parametrize(
    ("head", "lang", "expected", "source"),
    [
        ('<meta name="date" content="14.12.2024">', "de", datetime(2024, 12, 14, tzinfo=UTC), "meta"),
        ('<meta name="pubdate" content="2024/12/14">', "ar", datetime(2024, 12, 14, tzinfo=UTC), "meta"),
        ('<meta property="article:published_time" content="December 14, 2024">', "en",
         datetime(2024, 12, 14, tzinfo=UTC), "meta"),
        ('<script type="application/ld+json">{"@type": "NewsArticle", "datePublished": "14 décembre 2024"}</script>',
         "fr", datetime(2024, 12, 14, tzinfo=UTC), "jsonld"),
        ('<meta name="date" content="2024-12-14T09:30:00+01:00">', "en", datetime(2024, 12, 14, 8, 30, tzinfo=UTC),
         "meta"),
        ('<meta name="date" content="05/06/2024">', "en", None, "none"),  # English: which is the month?
        ('<meta name="date" content="14.12.0024">', "de", None, "none"),
        ('<meta name="date" content="soon">', "en", None, "none"),
    ],
)  # fmt: skip
def test_a_date_in_the_markup_is_read_as_people_write_it_too(
    head: str, lang: str, expected: datetime | None, source: str
) -> None:
    page = f'<html lang="{lang}"><head><title>Registers found</title>{head}</head><body>{HEADLINE}{BODY}</body></html>'
    found = extract(page, url="https://example.test/news.php?id=7")
    assert (found.published, found.date_source) == (expected, source)


def test_dates_in_reads_the_anchor_grammar_in_order_and_skips_impossible_days() -> None:
    text = "Published 2024-12-14. The report of 15 May 2017 and the hearing of 30 février 2024, then March 3, 2025."
    assert dates_in(text) == [dt.date(2024, 12, 14), dt.date(2017, 5, 15), dt.date(2025, 3, 3)]


@pytest.mark.parametrize(
    "text",
    ["El Marco 2030 de la ONU", "Este acuerdo marca 2024 como", "County Mayo 2019", "Maja 2024", "Marco 12, 2024"],
)
def test_month_names_that_are_also_words_need_a_day_before_them(text: str) -> None:
    extractor = AnchorExtractor(load_topic(Settings().topic_file))
    assert not {a for a in extractor.extract(text) if a.startswith(("date:", "month:"))}
    assert dates_in(text) == []


def test_each_month_name_means_one_month() -> None:
    from stream import anchors
    from stream.text import fold

    meaning: dict[str, set[int]] = {}
    for table in anchors._AFTER_A_DAY_TABLES:
        assert len(table) == 12
        for number, names in enumerate(table, start=1):
            for name in names:
                meaning.setdefault(fold(name), set()).add(number)
    assert {name: months for name, months in meaning.items() if len(months) > 1} == {}


def test_a_month_name_that_is_also_a_word_is_read_after_a_day() -> None:
    extractor = AnchorExtractor(load_topic(Settings().topic_file))
    assert {"date:2019-03-15", "month:2019-03"} <= extractor.extract("raport z 15 marca 2019 r.")
    assert {"month:2017-02"} <= extractor.extract("el informe de febrero de 2017")


XML_TEXT = st.characters(blacklist_categories=("Cs", "Cc"))  # what an element's text can hold
DATE_LIKE = st.sampled_from([*"0123456789٠١٢٣٤٥./-, ", "May ", "décembre ", "Aralık ", "أيار ", "2024", "31"])


@pytest.mark.parametrize(
    "text",
    [
        "В докладе от 7 февраля 2017 года",  # ru
        "у доповіді від 7 лютого 2017 року",  # uk
        "el informe del 7 de febrero de 2017",  # es
        "il rapporto del 7 febbraio 2017",  # it
        "raport z 7 lutego 2017 r.",  # pl
        "o relatório de 7 de fevereiro de 2017",  # pt
        "التقرير الصادر في 7 شباط/فبراير 2017",  # ar, both month names
        "Di, 7. Feb. 2017, 10:00 Uhr",  # de dateline, abbreviated
        "7 févr. 2017",  # fr, abbreviated
        "Опубликовано: 7 фев. 2017 г.",  # ru, abbreviated
        "7 лют. 2017",  # uk, abbreviated
        "7 Şub 2017 Salı",  # tr, abbreviated
    ],
)
def test_dates_in_reads_the_topic_s_languages(text: str) -> None:
    assert dates_in(text) == [dt.date(2017, 2, 7)]


LABEL_TEXT = st.one_of(st.text(XML_TEXT, max_size=120), st.lists(DATE_LIKE, max_size=12).map("".join))
ISO_LIKE = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?[+-][0-9]{2}:?[0-9]{2}\Z"),
    st.text(XML_TEXT, max_size=40),
)


@given(LABEL_TEXT, ISO_LIKE, st.sampled_from(["datetime", "content", "title"]))
def test_labelled_date_never_raises_on_any_label(text: str, attribute: str, key: str) -> None:
    headline = lxml.html.Element("h1")
    headline.text = "Registers found"
    span = lxml.html.Element("time", {"class": "date", key: attribute})
    span.text = text
    body = lxml.html.Element("body")
    body.extend([headline, span])
    root = lxml.html.Element("html")
    root.append(body)
    found = labelled_date(root, "en", now=NOW)
    assert found is None or (found.tzinfo is UTC and found <= NOW + dt.timedelta(days=1))
