"""Regenerate the extraction golden files (tests/golden/extraction/**.json) from the test web: the demo
web's pages (crawlers/demo_site/sites) with the test web's own (tests/sites) over them.

Run ``python -m scripts.regenerate_extraction_golden`` (or ``python scripts/regenerate_extraction_golden.py``)
after a deliberate change to crawlers/extraction.py, then read the diff (``git diff tests/golden``)
before committing: every changed field is a behaviour change. The pages are served at
``https://<site>.fixture.test/<path>`` for the extraction (``{{base}}`` and ``{{canonical}}`` substituted),
as in the test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from crawlers.errors import ExtractionError  # noqa: E402  # after the path set-up above
from crawlers.extraction import decode_html, extract  # noqa: E402
from crawlers.site_server import CONTENT_TYPES, DEMO_SITES, PAGE_SUFFIXES, served_path  # noqa: E402

TEST_SITES = ROOT / "tests" / "sites"  # the test web's own sites, pages and feeds, over the demo's
SITE_ROOTS = (TEST_SITES, DEMO_SITES)  # where a file is looked up, first found wins
GOLDEN = ROOT / "tests" / "golden" / "extraction"
GOLDEN_VERSION = 1  # bump when the golden format (not the expected values) changes
FIRST_WORDS = 8  # body words kept in the golden file: enough to see the body start was found


def relative(page: Path) -> Path:
    """``page``'s path in the test web (``en/feed.rss``), whichever tree holds it."""
    root = next(r for r in SITE_ROOTS if page.is_relative_to(r))
    return page.relative_to(root)


def site_file(path: str | Path) -> Path:
    """The file served at ``path`` of the test web (``wp/__p=4821.html``): the test web's own, else the demo's."""
    return next((r / path for r in SITE_ROOTS if (r / path).is_file()), TEST_SITES / path)


def page_url(page: Path) -> str:
    """Where the fixture server serves ``page`` (``wp/__p=4821.html`` -> ``https://wp.fixture.test/?p=4821``)."""
    site, *rest = relative(page).parts
    return f"https://{site}.fixture.test" + served_path("/".join(rest))


def content_type(page: Path) -> str:
    """The Content-Type the fixture server sends for ``page`` (``.htm``: no charset)."""
    return CONTENT_TYPES[page.suffix]


def render(page: Path) -> str:
    """The page as the crawler decodes it (``{{base}}`` substituted; HTTP charset, else the page's own)."""
    base = f"https://{relative(page).parts[0]}.fixture.test".encode()
    raw = page.read_bytes().replace(b"{{canonical}}", base).replace(b"{{base}}", base)
    return decode_html(raw, content_type(page))[1]


def observe(page: Path) -> dict[str, Any]:
    """What extraction makes of ``page`` today."""
    try:
        result = extract(render(page), url=page_url(page), content_type=content_type(page))
    except ExtractionError as exc:
        return {"rejected": exc.reason}
    return {
        "title": result.title,
        "published": None if result.published is None else result.published.isoformat(),
        "date_source": result.date_source,
        "lang": result.lang,
        "authors": list(result.authors),
        "canonical": result.canonical,
        "first_words": " ".join(result.text.split()[:FIRST_WORDS]),
    }


def golden_path(page: Path) -> Path:
    return GOLDEN / relative(page).with_suffix(".json")


def pages() -> list[Path]:
    """Every page of the test web, in the order of their paths."""
    found = {
        p.relative_to(root): p
        for root in reversed(SITE_ROOTS)
        for p in root.rglob("*")
        if p.suffix in PAGE_SUFFIXES and "_broken" not in p.parts
    }
    return [found[k] for k in sorted(found)]


def main() -> None:
    for page in pages():
        out = golden_path(page)
        out.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": GOLDEN_VERSION, "url": page_url(page), "expected": observe(page)}
        out.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(out.relative_to(ROOT))  # noqa: T201  # a script's output


if __name__ == "__main__":
    main()
