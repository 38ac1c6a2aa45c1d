"""Text normalisation shared by relevance, duplicate detection and both search stores.

``normalize_arabic`` folds the spelling variance that breaks exact matching in Arabic script: alef
variants (أ إ آ ٱ → ا), ta marbuta (ة → ه), alef maqsura and Persian yeh (ى ی → ي), keheh (ک → ك),
tatweel and diacritics (harakat, Quranic marks) removed. ``fold`` adds case and Latin-diacritic folding
for matching in any script. Both are idempotent.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_ARABIC_MAP = str.maketrans(
    {
        "أ": "ا",
        "إ": "ا",
        "آ": "ا",
        "ٱ": "ا",
        "ٲ": "ا",
        "ٳ": "ا",
        "ة": "ه",
        "ى": "ي",
        "ی": "ي",
        "ې": "ي",
        "ێ": "ي",
        "ئ": "ي",
        "ک": "ك",
        "ڪ": "ك",
        "ؤ": "و",
        "ۀ": "ه",
        "ہ": "ه",
        "ھ": "ه",
        "ـ": None,  # tatweel
    }
)
_ARABIC_DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed]")
_SPACES = re.compile(r"\s+")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a Python str only lone surrogates match


def normalize_arabic(text: str) -> str:
    """Arabic orthographic normalisation (no-op on text without Arabic letters)."""
    return _ARABIC_DIACRITICS.sub("", text).translate(_ARABIC_MAP)


def fold(text: str) -> str:
    """Case-, diacritic- and Arabic-variant-insensitive form of ``text`` for matching."""
    text = normalize_arabic(unicodedata.normalize("NFKC", text)).casefold()
    decomposed = unicodedata.normalize("NFD", text)
    stripped = "".join(ch for ch in decomposed if not (unicodedata.combining(ch) and ord(ch) < 0x0600))
    stripped = stripped.replace("ı", "i").replace("ß", "ss")
    return unicodedata.normalize("NFC", stripped)


def normalize_whitespace(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def content_hash(text: str) -> str:
    """Hex SHA-256 of the folded, whitespace-normalised text (same story text → same hash).

    A lone surrogate (from a JSON ``\\ud800`` escape) is hashed as its code point (``surrogatepass``):
    never an error, and two texts differing only there still hash apart.
    """
    return hashlib.sha256(normalize_whitespace(fold(text)).encode("utf-8", "surrogatepass")).hexdigest()


def without_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD (for libraries that need valid Unicode)."""
    return LONE_SURROGATE.sub("\ufffd", text)
