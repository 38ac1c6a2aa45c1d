"""The search page in a real headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

``serve`` runs on a loopback port over the fixture news web (tests/web_fixtures.py). The analyst's
path runs with JavaScript disabled (the pages need none); the hostile-article check runs with it
enabled, to show that no script from an article ever executes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Dialog, Page, sync_playwright

from sednaya_monitor.web import RunningServer
from tests.web_fixtures import HOSTILE_TITLE, NewsWeb

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package; Playwright never downloads a browser here
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PAGE_TIMEOUT_MS = 20_000  # per navigation/wait; pages render in milliseconds, a loaded CI box is slower

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (browser tests never download one)")
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page with JavaScript disabled: search and story pages must work without it."""
    context = browser.new_context(java_script_enabled=False, locale="en-GB", viewport={"width": 1200, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    yield context.new_page()
    context.close()


def _search(page: Page, server: RunningServer, query: str) -> None:
    page.goto(server.url + "/")
    page.fill("input[name=q]", query)
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state("domcontentloaded")


def test_search_in_english_grouped_by_story_then_flat(page: Page, web_server: RunningServer, tmp_path: Path) -> None:
    _search(page, web_server, "crematorium")
    groups = page.locator("article.story-group")
    assert groups.count() == 1
    group = groups.first
    assert group.locator("h2.story-title").inner_text() == "US says Syria built a crematorium at Sednaya prison"
    assert group.locator(".count").inner_text() == "4 articles"
    assert group.locator(".sources").inner_text() == "4 sources"
    assert group.locator(".langs .badge").all_inner_texts() == ["ar", "en", "fr"]
    marks = [m.lower() for m in group.locator(".snippet mark").all_inner_texts()]
    assert marks and all(m in ("crematorium", "crématorium") for m in marks)
    assert page.locator("svg.chart rect.bar").count() >= 2
    page.screenshot(path=str(tmp_path / "search-en-stories.png"), full_page=True)

    page.click("a.toggle")
    page.wait_for_load_state("domcontentloaded")
    assert "view=flat" in page.url
    hits = page.locator("section.results-flat article.hit")
    assert hits.count() == 3
    assert set(page.locator("article.hit .source").all_inner_texts()) == {"wire-example", "daily-one", "quotidien"}
    assert page.locator("a.toggle").inner_text() == "Group by story"
    shot = tmp_path / "search-en-flat.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_search_in_arabic_renders_right_to_left(page: Page, web_server: RunningServer, tmp_path: Path) -> None:
    page.goto(web_server.url + "/")
    page.fill("input[name=q]", "صيدنايا")
    page.select_option("select[name=lang]", "ar")
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state("domcontentloaded")
    assert page.locator(".total").inner_text() == "2 matching articles"
    titles = page.locator("article.story-group h2.story-title").all_inner_texts()
    assert "عائلات المعتقلين تتوافد إلى سجن صیدنایا بحثا عن أبنائها" in titles
    snippet = page.locator("article.story-group .best .snippet").first
    assert snippet.get_attribute("dir") == "rtl"
    # the browser lays it out right to left (computed style, not just the attribute)
    assert snippet.evaluate("el => getComputedStyle(el).direction") == "rtl"
    assert page.locator("h1").evaluate("el => getComputedStyle(el).direction") == "ltr"
    marks = snippet.locator("mark")
    assert marks.count() >= 1
    assert marks.first.inner_text() in ("صيدنايا", "صیدنایا")
    page.screenshot(path=str(tmp_path / "search-ar.png"), full_page=True)
    flat_link = page.locator("a.toggle")
    flat_link.click()
    page.wait_for_load_state("domcontentloaded")
    assert page.locator("article.hit[dir=rtl]").count() == 2


def test_open_a_story_with_its_timeline_and_folded_duplicate(
    page: Page, web_server: RunningServer, web_news: NewsWeb, tmp_path: Path
) -> None:
    _search(page, web_server, "crematorium")
    page.click("article.story-group h2.story-title a")
    page.wait_for_load_state("domcontentloaded")
    assert page.url.endswith("/stories/story-crematorium")
    assert page.locator("h1.story-title").inner_text() == "US says Syria built a crematorium at Sednaya prison"
    items = page.locator("li.timeline-item")
    assert items.count() == 3
    assert [items.nth(i).get_attribute("data-lang") for i in range(3)] == ["en", "ar", "fr"]
    duplicate_link = page.locator("details.dups li a").first
    assert not duplicate_link.is_visible()  # folded under its original until opened
    page.click("details.dups summary")
    assert duplicate_link.is_visible()
    assert duplicate_link.get_attribute("href") == web_news.articles["copy"].url
    assert page.locator("li.timeline-item .title[dir=rtl]").inner_text() == web_news.articles["arabic"].title
    page.screenshot(path=str(tmp_path / "story.png"), full_page=True)
    page.click("text=stored copy")
    page.wait_for_load_state("domcontentloaded")
    assert page.locator("h1").inner_text() == "Stored original"


def test_hostile_article_shows_as_text_and_runs_nothing(
    browser: Browser, web_server: RunningServer, tmp_path: Path
) -> None:
    context = browser.new_context(java_script_enabled=True)
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    try:
        _search(page, web_server, "markup")
        assert page.locator("h2.story-title").inner_text() == HOSTILE_TITLE
        assert page.locator("article.story-group img").count() == 0
        page.click("h2.story-title a")
        page.wait_for_load_state("domcontentloaded")
        assert page.locator("h1.story-title").inner_text() == HOSTILE_TITLE
        assert page.locator("li.timeline-item a").filter(has_text="original").count() == 0  # javascript: URL
        page.screenshot(path=str(tmp_path / "hostile.png"), full_page=True)
        assert page.evaluate("document.title").startswith("<script>")  # the title as text, not markup
        assert dialogs == []
    finally:
        context.close()


def test_watchlists_page_links_the_atom_feed(page: Page, web_server: RunningServer) -> None:
    import requests

    from tests.web_fixtures import API_TOKEN

    r = requests.post(
        web_server.url + "/api/watchlists",
        json={"name": "sednaya-ar", "query": "صيدنايا", "lang": "ar"},
        headers={"Authorization": f"Bearer {API_TOKEN}"},
        timeout=30,
    )
    assert r.status_code == 201
    page.goto(web_server.url + "/watchlists")
    assert page.locator("li.watchlist h2").all_inner_texts() == ["sednaya-ar"]
    assert page.locator("a.atom").get_attribute("href") == "/watchlists/sednaya-ar/atom.xml"
    page.click("text=search now")
    page.wait_for_load_state("domcontentloaded")
    assert page.locator("select[name=lang]").input_value() == "ar"
    assert page.locator(".total").inner_text() == "2 matching articles"


def test_story_spread_across_languages_and_stories_filters(
    page: Page, web_server: RunningServer, tmp_path: Path
) -> None:
    page.goto(web_server.url + "/stories/story-crematorium")
    rows = page.locator("table.spread tr.arrival")
    assert [rows.nth(i).get_attribute("data-lang") for i in range(rows.count())] == ["en", "ar", "fr"]
    assert rows.locator("td.lag").all_inner_texts() == ["first", "+14 h 55 min", "+17 h 10 min"]
    assert page.locator("ul.follow-ups li").count() == 2
    page.screenshot(path=str(tmp_path / "story-spread.png"), full_page=True)
    page.goto(web_server.url + "/stories")
    assert page.locator("li.story-item").count() == 4
    page.select_option("select[name=lang]", "fr")
    page.click("form.stories-filter button[type=submit]")
    page.wait_for_load_state("domcontentloaded")
    assert "lang=fr" in page.url
    assert page.locator("li.story-item a.story-title").all_inner_texts() == [
        "US says Syria built a crematorium at Sednaya prison"
    ]
    page.fill("input[name=min_languages]", "4")
    page.click("form.stories-filter button[type=submit]")
    page.wait_for_load_state("domcontentloaded")
    assert page.locator("li.story-item").count() == 0


def test_csv_export_downloads_from_the_search_page(page: Page, web_server: RunningServer, tmp_path: Path) -> None:
    _search(page, web_server, "crematorium")
    with page.expect_download() as info:
        page.click("a.csv")
    target = tmp_path / "export.csv"
    info.value.save_as(target)
    lines = target.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id,published,fetched_at,lang,source")
    assert len(lines) == 4  # header + the three matching articles
