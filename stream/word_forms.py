"""Tokens and per-language word forms, computed once in Python for both search stores and for the
same-language word evidence of story clustering (``stream.word_evidence``).

A document is indexed twice: its *exact* tokens (``stream.word_forms.tokens``: folded, Arabic-normalised,
in order, for phrases) and its *word forms*: each exact token reduced by the analysis of the document's
language (:func:`document_forms`; "detainees" in an English article becomes ``detaine``). A token
written in a script the language does not use (a Latin name in an Arabic article, digits) is its own
form, and so is every token of a language without analysis. Both stores index the forms as they are
given (FTS5 columns on the embedded store, a whitespace-analysed field on Elasticsearch), so a form
means the same on both.

Stemmers: Snowball (``PyStemmer``) for the languages of :data:`SNOWBALL`; for Arabic a light stemmer
(:func:`arabic_light_stem`) on top of ``stream.text.normalize_arabic``: the conjunction و, the
prepositions ب ك ل ف and the article ال (and their combinations وال بال كال فال لل) in front, and common
suffixes (dual/plural, feminine, pronoun clitics) behind, always leaving a stem of three letters or
more.

A query *word* matches an article when, for each of its tokens, one of the token's query forms
(:func:`query_forms`: the token as written, and its stem in every analysed language of its script, or
in the request's language only) is one of the article's word forms. So ``survivor`` finds
"survivors", ``السجن`` finds "والسجن" and "بسجن", and a token still finds itself in any article. A
quoted phrase matches the exact tokens only.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence

import Stemmer

from stream.text import fold

TOKEN_RE = re.compile(r"[^\W_]+")  # a searchable token: a run of letters/digits (any script)

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
}  # not Serbian: its Snowball stemmer answers in Latin script
# The version of the rules that turn a text into its exact tokens and word forms (``stream.text.fold``
# included): a store whose text index was written with other rules rebuilds it (the embedded store does, on
# opening). 2: Arabic-Indic and Persian digits are 0-9, the Cyrillic short i stays a letter.
FORMS_VERSION = 2
ARABIC = "ar"
LANGUAGES: frozenset[str] = frozenset({*SNOWBALL, ARABIC})  # languages with an analysis

# Script of each analysed language; a token of another script is left as it is.
_LANG_SCRIPT: dict[str, str] = dict.fromkeys(SNOWBALL, "LATIN") | {
    "ru": "CYRILLIC",
    "el": "GREEK",
    ARABIC: "ARABIC",
}
# Script -> the analysed languages written in it (the languages a query token is analysed for).
_SCRIPT_LANGS: dict[str, tuple[str, ...]] = {}
for _code, _name in _LANG_SCRIPT.items():
    _SCRIPT_LANGS[_name] = (*_SCRIPT_LANGS.get(_name, ()), _code)

_AR_PREFIXES = ("وال", "بال", "كال", "فال", "لل", "ال")  # longest first (Larkey's light10 set)
_AR_SUFFIXES = ("ها", "ان", "ات", "ون", "ين", "يه", "ه", "ي")  # ة is ه after normalisation
_AR_CLITIC = "بكلف"  # one-letter prepositions/particles, stripped when a 3-letter stem remains
_AR_MIN = 3  # letters a stem keeps at least


def tokens(text: str) -> list[str]:
    """Folded searchable tokens of ``text`` (case, diacritics and Arabic variants folded)."""
    return TOKEN_RE.findall(fold(text))


@functools.cache
def _stemmer(lang: str) -> Stemmer.Stemmer:
    return Stemmer.Stemmer(SNOWBALL[lang])


@functools.cache
def _char_script(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return name.split(" ", 1)[0] if name else ""


def script(token: str) -> str:
    """The Unicode script word of the token's first character (``LATIN``, ``ARABIC``, ``DIGIT``...)."""
    return _char_script(token[0]) if token else ""


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


# The stems of the Arabic words indexed lately: an article repeats its words and a story's articles share
# most of theirs (Snowball stems the other languages in C, a list at a time).
_cached_arabic_stem = functools.lru_cache(maxsize=65536)(arabic_light_stem)


@functools.lru_cache(maxsize=65536)  # highlights ask for the form of every token of every hit shown
def form(token: str, lang: str) -> str:
    """The word form of a folded token in an article of language ``lang`` (see the module doc)."""
    lang = lang.lower()
    if _LANG_SCRIPT.get(lang) != script(token):
        return token
    if lang == ARABIC:
        return arabic_light_stem(token)
    return str(_stemmer(lang).stemWord(token))


def document_forms(toks: Sequence[str], lang: str) -> list[str]:
    """The word forms of a document's exact tokens, in order."""
    lang = lang.lower()
    wanted = _LANG_SCRIPT.get(lang)
    if wanted is None:
        return list(toks)
    if lang == ARABIC:
        return [_cached_arabic_stem(t) if script(t) == wanted else t for t in toks]
    inside = [i for i, t in enumerate(toks) if script(t) == wanted]
    out = list(toks)
    for i, stemmed in zip(inside, _stemmer(lang).stemWords([toks[i] for i in inside]), strict=True):
        out[i] = stemmed
    return out


def query_languages(token: str, lang: str | None = None) -> tuple[str, ...]:
    """Languages a query token is analysed for: ``lang`` when given, else those of its script."""
    if lang is not None:
        code = lang.lower()
        return (code,) if code in LANGUAGES else ()
    return _SCRIPT_LANGS.get(script(token), ())


@functools.lru_cache(maxsize=65536)  # "why it matched" asks again for every hit
def query_forms(token: str, lang: str | None = None) -> tuple[str, ...]:
    """The forms a query token matches: itself, and its form in each language of :func:`query_languages`."""
    out: dict[str, None] = {token: None}
    for code in query_languages(token, lang):
        out[form(token, code)] = None
    return tuple(out)
