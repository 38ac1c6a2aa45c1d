"""Text normalisation shared by relevance, duplicate detection and both search stores.

``normalize_arabic`` folds the spelling variance that breaks exact matching in Arabic script: alef
variants (أ إ آ ٱ → ا), ta marbuta (ة → ه), alef maqsura and Persian yeh (ى ی → ي), keheh (ک → ك),
tatweel and diacritics (harakat, Quranic marks) removed, Arabic-Indic and Persian digits read as 0-9.
``fold`` adds case and Latin-diacritic folding for matching in any script. Both are idempotent.
"""

from __future__ import annotations

import functools
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
        # Arabic-Indic and Persian digits are the digits: "٢٠١٧" is 2017 to a search, an anchor and a hash
        **{chr(0x0660 + d): str(d) for d in range(10)},
        **{chr(0x06F0 + d): str(d) for d in range(10)},
    }
)
_ARABIC_DIACRITICS = re.compile("[\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06ed]")
_SPACES = re.compile(r"\s+")
_ARABIC_BLOCK = re.compile("[\u0600-\u06ff]")
FOLD_CACHE = 256  # texts whose folded form is kept (a few batches of titles, texts and names)
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # in a Python str only lone surrogates match
# The combining marks below U+0600 (Latin, Greek, Cyrillic, Hebrew diacritics) that ``fold`` strips: one
# regex instead of a per-character test (the Arabic marks are ``normalize_arabic``'s business).
# The breve of the Cyrillic short i stays: "й" is a letter of its own in Russian and Ukrainian, not "и" with
# an accent, and the Snowball stemmer finds the endings "-ый", "-ой", "-ий" only with it ("военный" ->
# "воен"; folded to "военныи" it stayed "военны", and one word had several forms).
_COMBINING_BELOW_ARABIC = re.compile(
    "[" + "".join(re.escape(chr(c)) for c in range(0x0600) if unicodedata.combining(chr(c)) and c != 0x0306) + "]"
)
_BREVE = "\u0306"
_BREVE_NOT_OF_SHORT_I = re.compile("(?<!\u0438)\u0306")  # a second, rarer pass: one class is a C scan


def strip_arabic_diacritics(text: str) -> str:
    """``text`` without Arabic short-vowel marks, shadda and the like (its letters as they are)."""
    return _ARABIC_DIACRITICS.sub("", text) if _ARABIC_BLOCK.search(text) is not None else text


def normalize_arabic(text: str) -> str:
    """Arabic orthographic normalisation (no-op on text without Arabic letters)."""
    if _ARABIC_BLOCK.search(text) is None:  # every character it maps or strips is in U+0600-U+06FF
        return text
    return _ARABIC_DIACRITICS.sub("", text).translate(_ARABIC_MAP)


# Characters that are not part of the words they sit in: a soft hyphen (German headlines break long words
# with it: "Militär\u00adgefängnis"), zero-width space, joiner, word joiner and a stray BOM go; a zero-width
# non-joiner (Persian writes compounds with it: "دسته\u200cجمعی") stands for the space others write.
_WORD_BREAKS = str.maketrans({"\u00ad": None, "\u200b": None, "\u200d": None, "\u2060": None, "\ufeff": None,
                            "\u200c": " "})  # fmt: skip
_WORD_BREAK = re.compile("[" + "".join(map(chr, _WORD_BREAKS)) + "]")  # a C scan: most texts hold none


@functools.lru_cache(maxsize=FOLD_CACHE)
def fold(text: str) -> str:
    """Case-, diacritic- and Arabic-variant-insensitive form of ``text`` for matching, without the
    invisible characters that break words apart (``_WORD_BREAKS``).

    Pure, and cached for the last ``FOLD_CACHE`` texts: the embed stage folds an article's text for its
    anchors and again for its near-duplicate shingles."""
    if text.isascii():  # every step below is the identity on ASCII but the case folding
        return text.lower()
    if _WORD_BREAK.search(text) is not None:  # translate maps every character: only when there is one
        text = text.translate(_WORD_BREAKS)
    text = normalize_arabic(unicodedata.normalize("NFKC", text)).casefold()
    stripped = _COMBINING_BELOW_ARABIC.sub("", unicodedata.normalize("NFD", text))
    if _BREVE in stripped:  # й, and the breve of ğ and ă, which goes
        stripped = _BREVE_NOT_OF_SHORT_I.sub("", stripped)
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
    return hashlib.sha256(normalize_whitespace(fold(text)).encode("utf-8")).hexdigest()


# Invisible characters that change what a reader sees without being seen themselves (issue 20):
# bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) reorder the text after them,
# so "Sednaya \u202egnp.exe" shows as "Sednaya exe.png"; zero-width space, word joiner, invisible
# operators, BOM, soft hyphen and the Mongolian vowel separator hide inside words ("zero\u200bwidth"
# no longer matches "zerowidth"). C0/C1 controls (NUL, ESC, ...) have no place in prose; tab and
# newline stay. Kept on purpose: ZWNJ/ZWJ (U+200C/U+200D: Persian and Arabic spelling, emoji) and the
# plain direction marks LRM/RLM/ALM (they only nudge neutral characters, never reorder letters).
_INVISIBLE = re.compile(
    "[\u202a-\u202e\u2066-\u2069\u200b\u2060-\u2064\ufeff\u00ad\u180e\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
)


def clean_text(text: str) -> str:
    """``text`` without bidi overrides/isolates, zero-width characters and control characters.

    A pure function for display and for the contract (ingest may apply it to titles and texts):
    idempotent; keeps tab, newline, carriage return, ZWNJ/ZWJ and LRM/RLM.
    """
    return _INVISIBLE.sub("", text)
