"""Golden files for extraction: every fixture page's title, date, date source, language, authors,
canonical URL and first words (or its rejection reason) as recorded in tests/golden/extraction.

Regenerate with ``python scripts/regenerate_extraction_golden.py`` and read the diff.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crawlers.errors import ExtractionError
from crawlers.extraction import (
    MIN_TEXT_CHARS,
    MIN_TEXT_CHARS_ARABIC,
    date_from_url,
    decode_html,
    extract,
    min_text_chars,
    parse_date,
    trim_boilerplate_lines,
)
from scripts.regenerate_extraction_golden import (
    GOLDEN_VERSION,
    content_type,
    golden_path,
    observe,
    page_url,
    pages,
    relative,
    render,
)

PAGES = pages()


def test_every_fixture_page_has_a_golden_file() -> None:
    assert len(PAGES) >= 15
    missing = [str(p) for p in PAGES if not golden_path(p).exists()]
    assert not missing, f"no golden file for {missing}: run scripts/regenerate_extraction_golden.py"


@pytest.mark.parametrize("page", PAGES, ids=[str(relative(p)) for p in PAGES])
def test_extraction_matches_golden(page: Path) -> None:
    golden = json.loads(golden_path(page).read_text(encoding="utf-8"))
    assert golden["version"] == GOLDEN_VERSION, f"{golden_path(page)}: golden version {golden['version']}"
    expected, actual = golden["expected"], observe(page)
    for field in sorted(set(expected) | set(actual)):
        assert actual.get(field) == expected.get(field), (
            f"{golden['url']} (golden v{GOLDEN_VERSION}): field {field!r} is {actual.get(field)!r}, "
            f"golden says {expected.get(field)!r}"
        )


def test_golden_covers_every_date_source_and_language() -> None:
    observed = [json.loads(golden_path(p).read_text(encoding="utf-8"))["expected"] for p in PAGES]
    assert {o["date_source"] for o in observed if "date_source" in o} >= {"jsonld", "meta", "url", "none"}
    assert {o["lang"] for o in observed if "lang" in o} >= {"ar", "en", "fr", "de", "tr"}
    assert {o["rejected"] for o in observed if "rejected" in o} >= {"listing_page", "too_short", "bad_encoding"}


def test_page_lang_is_only_a_hint() -> None:
    page = next(p for p in PAGES if p.name == "salt-rooms.html")
    assert '<html lang="en"' in page.read_text(encoding="utf-8")
    assert observe(page)["lang"] == "ar"


def test_feed_date_is_used_when_the_page_has_none() -> None:
    page = next(p for p in PAGES if p.name == "salt-rooms.html")
    when = datetime(2024, 12, 13, 11, tzinfo=UTC)
    html = page.read_text(encoding="utf-8")
    result = extract(
        html, url="https://ar.fixture.test/news/salt-rooms.html", hinted_published=when, hinted_date_source="feed"
    )
    assert (result.published, result.date_source) == (when, "feed")


def test_non_html_is_rejected_with_reason() -> None:
    with pytest.raises(ExtractionError) as info:
        extract("%PDF-1.4 ...", url="https://x.test/report.pdf", content_type="application/pdf")
    assert info.value.reason == "not_html"
    assert "https://x.test/report.pdf" in str(info.value)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://x.test/2024/12/08/a.html", datetime(2024, 12, 8, tzinfo=UTC)),
        ("https://x.test/news/2017-02-07-report", datetime(2017, 2, 7, tzinfo=UTC)),
        ("https://x.test/20250116/visit/", datetime(2025, 1, 16, tzinfo=UTC)),
        ("https://x.test/2024/13/40/a.html", None),
        ("https://x.test/about", None),
    ],
)
def test_date_from_url(url: str, expected: datetime | None) -> None:
    assert date_from_url(url) == expected


def test_parse_date_accepts_iso_rfc822_and_compact_offsets() -> None:
    assert parse_date("2024-12-08T12:00:00+03:00") == datetime(2024, 12, 8, 9, tzinfo=UTC)
    assert parse_date("Sun, 08 Dec 2024 09:00:00 GMT") == datetime(2024, 12, 8, 9, tzinfo=UTC)
    assert parse_date("2024-12-08T12:00:00+0300") == datetime(2024, 12, 8, 9, tzinfo=UTC)
    assert parse_date("yesterday") is None


def test_a_canonical_naming_the_site_root_is_ignored() -> None:
    page = next(p for p in PAGES if p.name == "sednaya-survivors.html")
    html = page.read_text(encoding="utf-8").replace("{{canonical}}/2024/12/09/sednaya-survivors.html", "/")
    assert extract(html, url="https://en.fixture.test/2024/12/09/sednaya-survivors.html").canonical is None


def test_an_article_with_related_story_teasers_is_not_a_listing() -> None:
    page = next(p for p in PAGES if p.name == "sednaya-survivors.html")
    related = "".join(f'<article><a href="/r{i}">Related story {i}</a></article>' for i in range(5))
    html = page.read_text(encoding="utf-8").replace("</main>", f"</main><aside>{related}</aside>")
    assert extract(html, url="https://en.fixture.test/2024/12/09/sednaya-survivors.html").title
    bare = html.replace('"@type": "NewsArticle"', '"@type": "Thing"')
    with pytest.raises(ExtractionError) as info:
        extract(bare, url="https://en.fixture.test/2024/12/09/sednaya-survivors.html")
    assert info.value.reason == "listing_page"


def _page(path: str) -> Path:
    return next(p for p in PAGES if relative(p).as_posix() == path)


LEGACY = "legacy/news.php__id=1187.htm"


@pytest.mark.parametrize("header", ["text/html", "text/html; charset=utf-8", "text/html; charset=ISO-8859-1"])
def test_legacy_page_is_read_in_the_charset_of_its_meta_http_equiv(header: str) -> None:
    raw = _page(LEGACY).read_bytes()
    assert b"charset=windows-1256" in raw and b"\xd3\xcc\xe4" in raw  # "سجن" in windows-1256
    encoding, text = decode_html(raw, header)
    assert encoding == "cp1256", header
    assert "سجن صيدنايا" in text and "\ufffd" not in text


def test_a_page_whose_meta_lies_like_its_header_stays_bad_encoding() -> None:
    raw = _page("ar/news/bad-encoding.html").read_bytes()  # windows-1256 bytes, meta and header say UTF-8
    encoding, text = decode_html(raw, "text/html; charset=utf-8")
    assert encoding == "utf-8" and "\ufffd" in text


def test_legacy_table_page_body_comes_from_the_recall_pass_without_its_menus() -> None:
    page = _page(LEGACY)
    result = extract(render(page), url=page_url(page), content_type="text/html")
    assert result.title == "شهادات جديدة عن الإعدامات في صيدنايا"
    assert result.text.startswith("دمشق - المنارة")
    for boilerplate in ("الرئيسية", "الأكثر قراءة", "طباعة", "جميع الحقوق"):
        assert boilerplate not in result.text, boilerplate
    assert MIN_TEXT_CHARS_ARABIC <= len(result.text) < MIN_TEXT_CHARS + 200


def test_wordpress_post_keeps_its_short_entry_and_drops_the_widgets() -> None:
    page = _page("wp/__p=4821.html")
    result = extract(render(page), url=page_url(page), content_type=content_type(page))
    assert page_url(page) == "https://wp.fixture.test/?p=4821"
    assert len(result.text) < 300  # under the old floor: this short note used to be rejected
    for boilerplate in ("Recent Posts", "Leave a Reply", "Earlier note", "Proudly powered"):
        assert boilerplate not in result.text, boilerplate


def test_a_short_wire_brief_is_news_and_a_one_line_teaser_is_not() -> None:
    brief = _page("wire/en/briefs/2024/12/13/guards-detained.html")
    result = extract(render(brief), url=page_url(brief))
    assert MIN_TEXT_CHARS <= len(result.text) < 300
    teaser = _page("en/briefs/sednaya-brief.html")
    with pytest.raises(ExtractionError) as info:
        extract(render(teaser), url=page_url(teaser))
    assert info.value.reason == "too_short" and f"floor {MIN_TEXT_CHARS}" in info.value.detail


def test_the_floor_is_lower_for_arabic_script() -> None:
    arabic = "قال معتقلون سابقون في سجن صيدنايا إن التعذيب كان يوميا داخل الزنازين وإن الطعام كان قليلا جدا. " * 2
    latin = "Former detainees said torture in the prison was daily and food scarce, the report said. " * 2
    assert min_text_chars(arabic) == MIN_TEXT_CHARS_ARABIC < min_text_chars(latin) == MIN_TEXT_CHARS
    html = "<html><body><article><h1>t</h1><p>{}</p></article></body></html>"
    assert MIN_TEXT_CHARS_ARABIC <= len(arabic.strip()) < MIN_TEXT_CHARS
    assert extract(html.format(arabic), url="https://x.test/a").lang == "ar"


def test_boilerplate_trim_keeps_inner_lines_and_cuts_link_bars() -> None:
    story = "The first sentence of the story is here.\nA subhead\nThe second sentence, too."
    text = f"Home\n|\nWorld\n{story}\nPrint\n|\nSend\nFooter line that is long enough to be a sentence"
    assert trim_boilerplate_lines(text) == story


def test_a_legacy_page_declaring_no_charset_is_detected() -> None:
    raw = _page(LEGACY).read_bytes()
    bare = raw.replace(b'<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=windows-1256">', b"")
    assert b"charset" not in bare.lower()
    encoding, text = decode_html(bare, "text/html")
    assert encoding == "cp1256" and "سجن صيدنايا" in text
    assert decode_html("<p>سجن</p>".encode(), "text/html") == ("utf-8", "<p>سجن</p>")


def test_a_short_post_gets_back_the_block_the_precise_pass_drops() -> None:
    """The only sentence naming the prison sits in a WordPress block ``<div>`` that trafilatura's precise
    pass drops; the body is above the floor, so only the short-page recall retry brings it back."""
    page = _page("wp/__p=4840.html")
    result = extract(render(page), url=page_url(page), content_type=content_type(page))
    assert "records office of Sednaya prison" in result.text
    assert result.text.startswith("Volunteers sorting the papers")
    assert (result.published, result.date_source) == (parse_date("2024-12-14T09:30:00+00:00"), "meta")
