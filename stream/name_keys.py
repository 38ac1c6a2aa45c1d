"""Cross-script name keys: the names of an article written so that their spellings in other scripts and
languages meet, for the name evidence of story clustering (``stream.word_evidence``).

Across languages the words of two reports of one event differ, but the names of its places and people
are mostly the same sounds: الرقة, Ракка, Raqqa and Rakka; دوما, Дума, Douma and Duma; خان شيخون, Хан-Шейхун,
Khan Shaykhun and Han Şeyhun. A name's *key* is its consonant skeleton in Latin letters:

- the word is transliterated to ASCII by ``anyascii`` (a maintained table of every script); an Arabic
  word first loses its article (ال, also after a one-letter clitic: وال بال ...) and a final ة, which Latin
  spellings do not write, and a word that may begin with a clitic (و ب ل ف ك) without the article has a key
  with it and one without;
- a language that writes a sound its own way has it respelled first (German, Dutch and Polish ``ch`` and
  Spanish ``j`` are the ``kh`` of خ; Turkish ``c`` is ``j``; Greek ``χ``, ``ντ``, ``μπ``): Chan Scheichun, Jan
  Sheijun and Khan Shaykhun meet;
- spellings of one sound become one letter (``sch``, ``sh``, ``ch``, ``ş`` -> s; ``kh`` -> h; ``th`` ->
  t; ``q``, ``c`` -> k; ``tz``, ``ts`` -> z; ``ph`` -> f ...), vowels and the letters that are vowels
  in one script and consonants in another (w, y) are dropped, and doubled letters are one.

Which words are names: capitalised words in Latin, Cyrillic and Greek text (also after a hyphen: al-Raqqa);
every word of an Arabic-script text (Arabic has no capitals); neither the function words of the article's
language nor Arabic ones (stopwords-iso's lists, :func:`stop_words`). The evidence leaves out the keys most
recent articles hold (``stream.word_evidence.MIN_NAME_IDF``): the topic's own names, and the common words
of a language that holds much of the window. A skeleton of fewer than ``MIN_KEY_CHARS`` letters is too common a sound to
tell anything. The keys are coarse by design: two different names may share one (Douma and Dima), and the
rarity weighting and the model's cosine beside them bound what such a collision can do.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter

import stopwordsiso
from anyascii import anyascii

from stream.text import strip_arabic_diacritics

KEY_PREFIX = "~"  # a term that is a name key (a searchable token never holds it: stream.word_forms.TOKEN_RE)
MIN_KEY_CHARS = 2  # shorter skeletons ("m", "t") are too common a sound
TEXT_CHARS = 2000  # characters of the text read (with the title), as for the word evidence

# A word of letters, not inside a word or after an apostrophe (after a hyphen: al-Raqqa, Хан-Шейхун); a name when
# its first letter is a capital.
_WORD = re.compile(r"(?<![\w'’])[^\W\d_]{3,}")
_ARABIC_WORD = re.compile(r"[\u0620-\u064a\u0671-\u06d3]{3,}")
_ARABIC_PREFIXES = ("وال", "بال", "فال", "كال", "لل", "ال")  # the article, with a clitic in front
_ARABIC_CLITICS = "وبلفك"
_ARABIC_MIN = 3  # letters a word keeps at least when its article is taken away (a final ة may go after)
ARABIC = "ar"
# Spellings of one sound in the transliterations of the languages of the news, longest first.
_DIGRAPHS = (
    ("tsch", "s"),
    ("dsch", "j"),
    ("sch", "s"),
    ("sh", "s"),
    ("ch", "s"),
    ("kh", "h"),
    ("zh", "j"),
    ("dj", "j"),
    ("dzh", "j"),
    ("th", "t"),
    ("dh", "d"),
    ("gh", "g"),
    ("ph", "f"),
    ("tz", "z"),
    ("ts", "z"),
    ("ck", "k"),
    ("q", "k"),
    ("c", "k"),
    ("x", "ks"),
    ("v", "w"),
)
# Letters a language reads otherwise than the shared table above (which follows English and French), respelled
# before transliteration, on the lower-cased word: German, Dutch and Polish "ch" (not German "sch") is the sound
# of Arabic خ and Russian х, written "kh" elsewhere (Chan Scheichun / Khan Shaykhun / Хан-Шейхун); so is Spanish
# "j" (Jan Sheijun); Turkish "c" is the sound of Arabic ج (Cerablus / Jarablus) and "ç" that of English "ch";
# Italian "ch" is a k; Polish "sz" and "cz" are "sh" and "ch".
_RESPELLINGS: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    "de": ((re.compile(r"(?<!s)ch"), "kh"),),
    "nl": ((re.compile(r"(?<!s)ch"), "kh"),),
    "pl": ((re.compile(r"ch"), "kh"), (re.compile(r"sz"), "sh"), (re.compile(r"cz"), "ch")),
    "es": ((re.compile(r"j"), "kh"),),
    "tr": ((re.compile(r"c"), "j"), (re.compile(r"ç"), "ch")),
    "it": ((re.compile(r"ch"), "k"),),
}
# Greek, by its script whatever the article's language: χ is "kh" (anyascii writes "ch"), and Greek writes the
# d and b of a foreign name as ντ and μπ, anywhere in it (Ντούμα, Ιντλίμπ, Άσαντ: Douma, Idlib, Assad), and its g
# as γκ at the start; γκ and γγ inside a word are ng.
_GREEK = re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]")
_GREEK_SPELLINGS = (
    (re.compile(r"χ"), "kh"),
    (re.compile(r"ντ"), "d"),
    (re.compile(r"μπ"), "b"),
    (re.compile(r"^γκ"), "g"),
    (re.compile(r"γ[κγ]"), "ng"),
)
_DROPPED = frozenset("aeiouyw'`\"-")  # vowels, and w/y/' (vowel letters or glides in one script, consonants in others)


def _skeleton(ascii_word: str) -> str:
    word = ascii_word.lower()
    for spelling, sound in _DIGRAPHS:
        word = word.replace(spelling, sound)
    out: list[str] = []
    for ch in word:
        if ch in _DROPPED or not ch.isalpha():
            continue
        if out and out[-1] == ch:
            continue
        out.append(ch)
    return "".join(out)


def _bare_arabic(word: str) -> str:
    """An Arabic word without its article (and a clitic in front of it) and its final ة."""
    for prefix in _ARABIC_PREFIXES:
        if word.startswith(prefix) and len(word) - len(prefix) >= _ARABIC_MIN:
            word = word[len(prefix) :]
            break
    return word[:-1] if word.endswith("ة") and len(word) >= _ARABIC_MIN else word


def _respelled(word: str, lang: str) -> str:
    """``word`` lower-cased, with the letters its language (``lang``) or its script gives a sound of their own
    written as the transliterations of the other languages write that sound (:data:`_RESPELLINGS`)."""
    word = word.lower()
    for pattern, spelling in _RESPELLINGS.get(lang, ()):
        word = pattern.sub(spelling, word)
    if _GREEK.search(word):
        for pattern, spelling in _GREEK_SPELLINGS:
            word = pattern.sub(spelling, word)
    return word


@functools.lru_cache(maxsize=65536)  # a story's articles repeat their names
def key(word: str, arabic: bool = False, lang: str = "") -> str:
    """The key of one word (``arabic``: a word of Arabic script, read without its article; ``lang``: the language
    of the article a word of a cased script is in, whose spelling rules it follows, :data:`_RESPELLINGS`); ''
    when it is too short to be one."""
    skeleton = _skeleton(anyascii(_bare_arabic(word) if arabic else _respelled(word, lang)))
    return skeleton if len(skeleton) >= MIN_KEY_CHARS else ""


@functools.lru_cache(maxsize=65536)
def arabic_keys(word: str) -> tuple[str, ...]:
    """The keys of an Arabic word: as written, and without a one-letter clitic in front (و ب ل ف ك: "and",
    "in", "for"...) when one may be there. Both: a name may begin with the same letter (كوبلنز, فرنسا, بوتين)."""
    keys = [key(word, arabic=True)]
    if word[0] in _ARABIC_CLITICS and len(word) > _ARABIC_MIN and not word.startswith(_ARABIC_PREFIXES):
        keys.append(key(word[1:], arabic=True))
    return tuple(dict.fromkeys(k for k in keys if k))


@functools.cache
def stop_words(lang: str) -> frozenset[str]:
    """The function words of ``lang`` (stopwords-iso, through ``stopwordsiso``; none for a language it lacks),
    case-folded, Arabic ones without their diacritics."""
    if not lang or not stopwordsiso.has_lang(lang):
        return frozenset()
    return frozenset(strip_arabic_diacritics(word.casefold()) for word in stopwordsiso.stopwords(lang))


def name_keys(title: str, text: str, lang: str = "") -> dict[str, int]:
    """The name keys of an article in ``lang``, each with ``KEY_PREFIX`` in front, with their counts.

    The text is read in NFC and without Arabic diacritics (a decomposed "Ş", a shadda in الرقّة would split or
    change a word). A capitalised word that is a function word of the article's language ("The", "Nach" at a
    sentence's start) is no name, nor is an Arabic function word (قبل, كما, الذي): stopwords-iso's lists. Their
    rarity would weigh most of them out, but not while few articles of the window are in their language."""
    body = strip_arabic_diacritics(unicodedata.normalize("NFC", f"{title}\n{text[:TEXT_CHARS]}"))
    keys: Counter[str] = Counter()
    lang = lang.lower()
    common = stop_words(lang)
    respelled = lang if lang in _RESPELLINGS else ""  # (one cache entry for a word of the other languages)
    for match in _WORD.finditer(body):
        word = match.group(0)
        if not word[0].isupper() or word.casefold() in common:
            continue
        found = key(word, lang=respelled)
        if found:
            keys[KEY_PREFIX + found] += 1
    arabic_common = stop_words(ARABIC)
    for match in _ARABIC_WORD.finditer(body):
        word = match.group(0)
        if word in arabic_common or _bare_arabic(word) in arabic_common:
            continue
        for found in arabic_keys(word):
            keys[KEY_PREFIX + found] += 1
    return dict(keys)
