"""Language detection from the text (lingua, offline). A page's own ``lang`` is only a hint.

The detector is limited to the languages the coverage comes in (``LANGUAGES``): fewer candidates make it
faster, lighter and more accurate on short news text. It is built once per process, lazily.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from stream.text import without_lone_surrogates

if TYPE_CHECKING:
    from lingua import LanguageDetector

# ISO 639-1 codes of the languages coverage of the topic is expected in (TOPIC.md), plus neighbours
# that are easily confused with them.
LANGUAGES = ("ar", "en", "fr", "de", "tr", "ru", "uk", "he", "fa", "es", "it", "pl", "nl", "pt", "sl", "mk", "id")
MIN_CHARS = 20  # below this, detection is a guess: the hint (or "und") wins
MIN_CONFIDENCE = 0.5  # lingua confidence below which the hint is preferred

_detector: LanguageDetector | None = None
_lock = threading.Lock()


def _get_detector() -> LanguageDetector:
    global _detector  # noqa: PLW0603  # one detector per process: building it loads the n-gram models
    with _lock:
        if _detector is None:
            from lingua import IsoCode639_1, LanguageDetectorBuilder

            codes = [getattr(IsoCode639_1, code.upper()) for code in LANGUAGES]
            _detector = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()
        return _detector


def detect_language(text: str, hint: str | None = None) -> str:
    """ISO 639-1 code of ``text``; ``hint`` (e.g. the page's ``lang``) when the text is too short or
    detection is unsure; ``"und"`` when neither helps."""
    hint_code = (hint or "").replace("_", "-").split("-")[0].strip().lower() or None
    sample = without_lone_surrogates(text.strip()[:2000])  # lingua (Rust) needs valid Unicode
    if len(sample) < MIN_CHARS:
        return hint_code or "und"
    detector = _get_detector()
    values = detector.compute_language_confidence_values(sample)
    if not values:
        return hint_code or "und"
    best = values[0]
    if best.value <= 0.0:  # none of the languages it knows (Chinese, Greek...): no guess
        return hint_code or "und"
    code = best.language.iso_code_639_1.name.lower()
    if best.value < MIN_CONFIDENCE and hint_code:
        return hint_code
    return code
