"""Per-language word forms, computed once in Python for both search stores.

A document is indexed twice: its *exact* tokens (``indexer.query.tokens``: folded, Arabic-normalised,
in order, so phrases stay exact) and its *stems*: each exact token reduced by the analysis of the
document's language and tagged with that language's two-letter code, ``endetaine`` for "detainees"
in an English article (a letter prefix rather than a separator, so that no tokenizer splits it). Both
stores index the stems as they are given (FTS5 columns on the embedded store, a whitespace-analysed
field on Elasticsearch), so a stem means the same on both.

Stemmers: Snowball (``PyStemmer``) for the languages of :data:`SNOWBALL`; for Arabic a light stemmer
(:func:`arabic_light_stem`) on top of ``stream.text.normalize_arabic``: the conjunction و, the
prepositions ب ك ل ف and the article ال (and their combinations وال بال كال فال لل) in front, and common
suffixes (dual/plural, feminine, pronoun clitics) behind, always leaving a stem of three letters or
more. A language without a stemmer gets no stems: its documents match on exact tokens only.

A query word is matched as: the exact token, OR the stem of the document's language. Without a
language filter the word is analysed for every language whose script it is written in
(:func:`query_stems`), so ``survivors`` looks for ``ensurvivor``, ``frsurvivor``, ``desurvivor``...
each of which can only match a document of that language.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Sequence

import Stemmer

# ISO 639-1 code -> Snowball algorithm name (the languages whose documents get stems).
SNOWBALL: dict[str, str] = {
    "en": "english",
    "fr": "french",
    "de": "german",
    "tr": "turkish",
    "ru": "russian",
    "es": "spanish",
    "it": "italian",
    "nl": "dutch",
    "pt": "portuguese",
    "sv": "swedish",
    "da": "danish",
    "no": "norwegian",
    "nb": "norwegian",
    "fi": "finnish",
    "hu": "hungarian",
    "ro": "romanian",
    "ca": "catalan",
    "id": "indonesian",
    "el": "greek",
    "sr": "serbian",
}
ARABIC = "ar"
LANGUAGES: frozenset[str] = frozenset({*SNOWBALL, ARABIC})  # languages with an analysis
assert all(len(code) == 2 for code in LANGUAGES), "stems are tagged with a two-letter code"

# Script of a token (from its first letter's Unicode name) -> languages written in it.
_SCRIPT_LANGS: dict[str, tuple[str, ...]] = {
    "LATIN": tuple(code for code in SNOWBALL if code not in ("ru", "el", "sr")),
    "CYRILLIC": ("ru", "sr"),
    "GREEK": ("el",),
    "ARABIC": (ARABIC,),
}

_AR_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")  # longest first (Larkey's light10 set)
_AR_SUFFIXES = ("ها", "ان", "ات", "ون", "ين", "يه", "ه", "ي")  # ة is ه after normalisation
_AR_CLITIC = "بكلف"  # one-letter prepositions/particles, stripped after و when a 3-letter stem remains
_AR_MIN = 3  # letters a stem keeps at least


@functools.cache
def _stemmer(lang: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(SNOWBALL[lang])


def arabic_light_stem(token: str) -> str:
    """Light stem of a normalised Arabic token (``stream.text.normalize_arabic`` already applied).

    ``السجن``, ``والسجن``, ``بسجن``, ``للسجن``, ``سجنها`` -> ``سجن``. A stem keeps at least three letters,
    so short words are left alone.
    """
    word = token
    if len(word) > _AR_MIN and word.startswith("و"):
        word = word[1:]
    for prefix in _AR_PREFIXES:
        if word.startswith(prefix) and len(word) - len(prefix) >= _AR_MIN:
            word = word[len(prefix) :]
            break
    else:
        if len(word) > _AR_MIN and word[0] in _AR_CLITIC:
            word = word[1:]
    for suffix in _AR_SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= _AR_MIN:
            word = word[: -len(suffix)]
            break
    return word


def stem(token: str, lang: str) -> str | None:
    """The stem of a folded token in ``lang``, or None when ``lang`` has no analysis."""
    if lang == ARABIC:
        return arabic_light_stem(token) if _script(token) == "ARABIC" else token
    if lang in SNOWBALL:
        return str(_stemmer(lang).stemWord(token))
    return None


def tag(lang: str, stemmed: str) -> str:
    """``lang`` (two letters, see the assertion below) + ``stemmed``: unambiguous, one token everywhere."""
    return lang + stemmed


def document_stems(toks: Sequence[str], lang: str) -> list[str]:
    """Tagged stems of a document's exact tokens (``[]`` for a language without analysis)."""
    lang = lang.lower()
    if lang not in LANGUAGES:
        return []
    if lang == ARABIC:
        return [tag(lang, arabic_light_stem(t) if _script(t) == "ARABIC" else t) for t in toks]
    stems = _stemmer(lang).stemWords(list(toks))
    return [tag(lang, s) for s in stems]


def _script(token: str) -> str:
    for ch in token:
        name = unicodedata.name(ch, "")
        if name:
            return name.split(" ", 1)[0]
    return ""


def query_languages(token: str, lang: str | None = None) -> tuple[str, ...]:
    """Languages a query token is analysed for: ``lang`` when given, else those of its script.

    Digits and tokens of a script no analysed language uses get none (they match exactly only).
    """
    if lang is not None:
        code = lang.lower()
        return (code,) if code in LANGUAGES else ()
    return _SCRIPT_LANGS.get(_script(token), ())


def query_stems(token: str, lang: str | None = None) -> tuple[str, ...]:
    """Tagged stems a query token matches: one per language of :func:`query_languages`."""
    out: dict[str, None] = {}
    for code in query_languages(token, lang):
        stemmed = stem(token, code)
        if stemmed is not None:
            out[tag(code, stemmed)] = None
    return tuple(out)
