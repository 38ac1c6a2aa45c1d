"""Google News RSS search: one query per name variant and language (TOPIC.md, "any" row).

``https://news.google.com/rss/search?q="<variant>"&hl=<hl>&gl=<gl>&ceid=<gl>:<lang>``. Latin-script
variants are asked in the Latin-script languages, Arabic variants in Arabic. Item links point to
news.google.com; the spider follows the HTTP redirect, and a link that does not leave news.google.com is
rejected as ``unresolved_redirect`` (never worked around: no anti-bot bypass). The item's ``<source
url=...>`` names the outlet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

# language -> (hl, gl): interface language and country edition asked for.
EDITIONS: Mapping[str, tuple[str, str]] = {
    "en": ("en-US", "US"),
    "ar": ("ar", "EG"),
    "fr": ("fr", "FR"),
    "de": ("de", "DE"),
    "tr": ("tr", "TR"),
}
SCRIPT_LANGUAGES: Mapping[str, tuple[str, ...]] = {"latin": ("en", "fr", "de", "tr"), "arabic": ("ar",)}


@dataclass(frozen=True, slots=True)
class SearchQuery:
    variant: str
    lang: str
    url: str


def queries(base: str, names_by_script: Mapping[str, Sequence[str]]) -> list[SearchQuery]:
    """Every (variant, language) query for the scripts in ``SCRIPT_LANGUAGES``."""
    out = []
    for script, langs in SCRIPT_LANGUAGES.items():
        for variant in names_by_script.get(script, ()):
            for lang in langs:
                hl, gl = EDITIONS[lang]
                q = quote(f'"{variant}"', safe="")
                out.append(SearchQuery(variant, lang, f"{base}?q={q}&hl={hl}&gl={gl}&ceid={gl}:{lang}"))
    return out
