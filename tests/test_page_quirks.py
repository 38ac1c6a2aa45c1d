"""Pages, sitemaps and canonical links as sites unlike ours write them (crawlers.extraction,
crawlers.spiders.sitemaps): an XHTML page with its XML declaration, image and video tags inside a news
sitemap entry, a canonical link to a section page, a publication date no page can have."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from crawlers.errors import ExtractionError
from crawlers.extraction import decode_html, extract, is_html, plausible
from crawlers.spiders.sitemaps import parse_sitemap

BODY = (
    "Former detainees returned to Sednaya prison on Tuesday to show investigators the cells where they "
    "were held. They described hangings at night, beatings during transfers and the salt rooms where "
    "bodies were kept. Families waited outside the gates with photographs of missing relatives, hoping "
    "that the registers found in the administration building would say what happened to them."
)


def _page(head: str = "", *, declaration: str = "", url_canonical: str = "") -> str:
    canonical = f'<link rel="Canonical" href="{url_canonical}">' if url_canonical else ""
    return (
        f'{declaration}<html lang="en"><head><title>Detainees guide investigators</title>{canonical}{head}'
        "</head><body><article><h1>Detainees guide investigators through Sednaya</h1>"
        + "".join(f"<p>{BODY}</p>" for _ in range(3))
        + "</article></body></html>"
    )


def test_an_xhtml_page_with_its_xml_declaration_is_read() -> None:
    declaration = (
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "x">\n'
    )
    page = _page(declaration=declaration)
    found = extract(page, url="https://x.test/news/1.html", content_type="application/xhtml+xml")
    assert found.title.startswith("Detainees guide investigators") and "salt rooms" in found.text
    assert is_html(None, page.encode())  # no content type: the declaration, then a page
    assert not is_html(None, b'<?xml version="1.0"?><rss version="2.0"><channel></channel></rss>')


@pytest.mark.parametrize(
    ("canonical", "kept"),
    [
        ("https://x.test/news/", None),  # the section the page sits in: a template bug
        ("/news", None),
        ("https://x.test/news/2024/detainees.html", "https://x.test/news/2024/detainees.html"),
        ("https://x.test/news/2024/detainees", "https://x.test/news/2024/detainees"),  # its AMP variant's own
        ("https://wire.test/story/77", "https://wire.test/story/77"),  # a syndicated copy's original
    ],
)
def test_a_canonical_link_to_a_section_above_the_page_is_not_its_address(canonical: str, kept: str | None) -> None:
    url = (
        "https://x.test/news/2024/detainees/amp"
        if kept == "https://x.test/news/2024/detainees"
        else ("https://x.test/news/2024/detainees.html")
    )
    found = extract(_page(url_canonical=canonical), url=url)
    assert found.canonical == kept  # rel="Canonical" read in any case


@pytest.mark.parametrize(
    ("url", "canonical", "kept"),
    [
        ("https://x.test/news.php?id=1187", "/news.php", None),  # the script without the page's id: a template bug
        (
            "https://x.test/news.php?id=1187",
            "https://www.x.test/news.php?id=1187",
            "https://www.x.test/news.php?id=1187",
        ),
        ("https://x.test/news.php?id=1187&page=2", "/news.php?id=1187", "https://x.test/news.php?id=1187"),  # page 1
        ("https://x.test/story.html?from=rss", "/story.html", "https://x.test/story.html"),  # tracking dropped
    ],
)
def test_a_canonical_link_without_the_query_that_names_the_page_is_not_its_address(
    url: str, canonical: str, kept: str | None
) -> None:
    assert extract(_page(url_canonical=canonical), url=url).canonical == kept


@pytest.mark.parametrize("bad", ["1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2091-05-10T08:00:00Z"])
def test_a_publication_date_no_page_can_have_gives_way_to_the_next_source(bad: str) -> None:
    head = f'<meta property="article:published_time" content="{bad}">'
    found = extract(_page(head), url="https://x.test/2024/12/10/detainees.html")
    assert (found.published, found.date_source) == (datetime(2024, 12, 10, tzinfo=UTC), "url")
    assert not plausible(datetime(1970, 1, 1, tzinfo=UTC)) and plausible(datetime(2017, 5, 15, tzinfo=UTC))


def test_image_and_video_tags_of_a_sitemap_entry_are_not_the_articles() -> None:
    body = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"
        xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"
        xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"
        xmlns:video="http://www.google.com/schemas/sitemap-video/1.1">
 <url>
  <image:image><image:loc>https://x.test/img/gate.jpg</image:loc><image:title>Photo: a gate</image:title></image:image>
  <loc>https://x.test/news/families</loc>
  <video:video><video:title>Clip</video:title><video:publication_date>2019-01-01</video:publication_date></video:video>
  <news:news>
   <news:publication><news:name>X</news:name><news:language>en</news:language></news:publication>
   <news:publication_date>2024-12-09T10:00:00Z</news:publication_date>
   <news:title>Families wait at the Sednaya gates</news:title>
  </news:news>
 </url>
</urlset>"""
    kind, (entry,), repaired = parse_sitemap(body)
    assert (kind, repaired) == ("urlset", False)
    assert entry.loc == "https://x.test/news/families"
    assert entry.title == "Families wait at the Sednaya gates"
    assert entry.published == datetime(2024, 12, 9, 10, tzinfo=UTC)


def test_a_page_that_is_no_page_still_fails_clearly() -> None:
    with pytest.raises(ExtractionError):
        extract("<?xml version='1.0'?>", url="https://x.test/empty")


@pytest.mark.parametrize(
    ("text", "encoding", "content_type", "meta"),
    [
        ("سجن صيدنايا: عائلات المعتقلين تبحث عن ذويها", "utf-8", "text/html", "windows-1256"),
        ("Şam'ın kuzeyindeki Sednaya cezaevinde işkence", "utf-8", "text/html; charset=ISO-8859-1", ""),
        ("Узники тюрьмы Сайеднайя рассказали о пытках", "utf-8", "text/html", "iso-8859-1"),
        ("سجن صيدنايا: عائلات المعتقلين تبحث عن ذويها", "windows-1256", "text/html; charset=utf-8", ""),
        ("Häftlinge im Militärgefängnis", "iso-8859-1", "text/html", "iso-8859-1"),  # declared right: kept
    ],
)
def test_a_charset_declared_wrongly_gives_way_to_the_bytes(
    text: str, encoding: str, content_type: str, meta: str
) -> None:
    head = f'<meta charset="{meta}">' if meta else ""
    body = f"<html><head>{head}</head><body><p>{text}</p></body></html>".encode(encoding)
    _, decoded = decode_html(body, content_type)
    assert text in decoded and "\ufffd" not in decoded


def _links(n: int, prefix: str) -> str:
    return "".join(f'<a href="/{prefix}/{i}">{prefix} section {i}</a> ' for i in range(n))


ARABIC_PARAGRAPHS = (
    "<p>قال معتقلون سابقون في سجن صيدنايا إن الحراس كانوا ينقلون السجناء ليلا إلى المبنى الأحمر، وإن كثيرين "
    "منهم لم يعودوا أبدا إلى زنازينهم بعد تلك الليالي الطويلة.</p>"
    "<p>وطالبت عائلات المفقودين بفتح السجلات التي عثر عليها في مكاتب الإدارة، وبالسماح لفرق الطب الشرعي "
    "بالوصول إلى المقابر الجماعية قرب الطريق المؤدي إلى السجن.</p>"
)


def test_a_short_article_in_an_old_template_full_of_menus_is_not_a_listing() -> None:
    page = (
        '<html lang="ar"><head><title>شهادات جديدة عن سجن صيدنايا</title></head><body>'
        f'<div class="menu">{_links(16, "qism")}</div>'
        f"<table><tr><td><h1>شهادات جديدة عن سجن صيدنايا</h1>{ARABIC_PARAGRAPHS}</td>"
        f'<td><div class="box">الأكثر قراءة {_links(10, "khabar")}</div></td></tr></table>'
        f'<div id="footer">{_links(16, "qism")}</div></body></html>'
    )
    found = extract(page, url="https://old.example/news.php?id=5")
    assert "المبنى الأحمر" in found.text


def test_a_section_front_is_still_a_listing() -> None:
    teasers = "".join(
        f'<div class="item"><a href="/news/{i}">Detainees from Sednaya give new testimony number {i}</a></div>'
        for i in range(20)
    )
    menu = f'<div class="menu">{_links(8, "s")}</div>'
    page = f"<html><head><title>News</title></head><body>{menu}{teasers}</body></html>"
    with pytest.raises(ExtractionError) as caught:
        extract(page, url="https://old.example/news/")
    assert caught.value.reason == "listing_page"


def test_json_ld_as_sites_write_it_still_dates_the_page() -> None:
    block = (
        '<script type="application/ld+json"><!--\n{"@type": "NewsArticle", "headline": "Detainees guide investigators",'
        '\n "articleBody": "First line\nsecond line", "datePublished": ["2024-12-11T09:30:00Z"],}\n--></script>'
    )
    found = extract(_page(block), url="https://x.test/news/detainees")
    assert (found.published, found.date_source) == (datetime(2024, 12, 11, 9, 30, tzinfo=UTC), "jsonld")


def _titled(title: str, head: str = "") -> str:
    return (
        f'<html lang="en"><head><title>{title}</title>{head}</head><body><div class="content">'
        + "".join(f"<p>{BODY}</p>" for _ in range(3))
        + "</div></body></html>"
    )


OG_WITH_SUFFIX = (
    '<meta property="og:title" content="Families wait at the Sednaya gates | Daily Courier">'
    '<meta property="og:site_name" content="Daily Courier">'
)


@pytest.mark.parametrize(
    ("title", "head"),
    [
        ("Daily Courier - Families wait at the Sednaya gates", ""),  # the site first, no <h1>
        ("Families wait at the Sednaya gates | Daily Courier", ""),
        ("Families wait at the Sednaya gates", OG_WITH_SUFFIX),
    ],
)
def test_a_headline_beside_the_sites_name_is_the_title(title: str, head: str) -> None:
    found = extract(_titled(title, head), url="https://courier.example/news/families")
    assert found.title == "Families wait at the Sednaya gates"


@pytest.mark.parametrize(
    ("title", "head", "url"),
    [  # the site named by its host: an og:title with the site's name and no og:site_name, a '::' separator
        (
            "Families wait at the Sednaya gates",
            '<meta property="og:title" content="Families wait at the Sednaya gates | Daily Courier">',
            "https://www.dailycourier.example/news/families",
        ),
        ("Families wait at the Sednaya gates :: Courier", "", "https://courier.example/news/families"),
        ("Families wait at the Sednaya gates :: Syria TV", "", "https://m.syria.tv/news/families"),
    ],
)
def test_a_title_part_naming_the_host_is_dropped(title: str, head: str, url: str) -> None:
    assert extract(_titled(title, head), url=url).title == "Families wait at the Sednaya gates"


def test_a_title_part_that_only_looks_like_the_host_stays() -> None:
    found = extract(_titled("Syria frees the last prisoners :: Sednaya"), url="https://sednaya-archive.example/a")
    assert found.title == "Syria frees the last prisoners :: Sednaya"  # 'sednaya' is not the host's name


def test_a_short_title_stays_whole() -> None:
    found = extract(_titled("Sednaya - Courier"), url="https://courier.example/news/short")
    assert found.title in {"Sednaya - Courier", "Sednaya"}  # no part of three words to prefer
