"""Regenerate the extraction golden files (tests/golden/extraction/**.json) from tests/sites.

Run ``python -m scripts.regenerate_extraction_golden`` (or ``python scripts/regenerate_extraction_golden.py``)
after a deliberate change to crawlers/extraction.py, then read the diff (``git diff tests/golden``)
before committing: every changed field is a behaviour change. The pages are served at
``https://<site>.fixture.test/<path>`` for the extraction (``{{base}}`` substituted), as in the test.
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
from crawlers.site_server import CONTENT_TYPES, PAGE_SUFFIXES, served_path  # noqa: E402

SITES = ROOT / "tests" / "sites"
GOLDEN = ROOT / "tests" / "golden" / "extraction"
GOLDEN_VERSION = 1  # bump when the golden format (not the expected values) changes
FIRST_WORDS = 8  # body words kept in the golden file: enough to see the body start was found


def page_url(page: Path) -> str:
    """Where the fixture server serves ``page`` (``wp/__p=4821.html`` -> ``https://wp.fixture.test/?p=4821``)."""
    site, *rest = page.relative_to(SITES).parts
    return f"https://{site}.fixture.test" + served_path("/".join(rest))


def content_type(page: Path) -> str:
    """The Content-Type the fixture server sends for ``page`` (``.htm``: no charset)."""
    return CONTENT_TYPES[page.suffix]


def render(page: Path) -> str:
    """The page as the crawler decodes it (``{{base}}`` substituted; HTTP charset, else the page's own)."""
    site = page.relative_to(SITES).parts[0]
    raw = page.read_bytes().replace(b"{{base}}", f"https://{site}.fixture.test".encode())
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
    return GOLDEN / page.relative_to(SITES).with_suffix(".json")


def pages() -> list[Path]:
    return sorted(p for p in SITES.rglob("*") if p.suffix in PAGE_SUFFIXES and "_broken" not in p.parts)


def main() -> None:
    for page in pages():
        out = golden_path(page)
        out.parent.mkdir(parents=True, exist_ok=True)
        data = {"version": GOLDEN_VERSION, "url": page_url(page), "expected": observe(page)}
        out.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(out.relative_to(ROOT))  # noqa: T201  # a script's output


if __name__ == "__main__":
    main()
