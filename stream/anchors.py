"""Language-independent anchors for cross-lingual story linking, and event kinds for novelty.

An English-only embedding model puts an Arabic and an English report of the same event far apart
(cosine ~0.1). What the two share is what does not translate: figures (13,000 / ١٣٬٠٠٠ / "13 ألف"),
dates (15 May 2017 / 15 أيار 2017 / 2017-05-15), and the people and bodies of the topic file in
their Latin and Arabic spellings. :class:`AnchorExtractor` turns a text into a set of such keys:

- ``num:<int>``   figures of at least ``MIN_FIGURE`` (not years) and the topic's anchor numbers;
- ``date:<yyyy-mm-dd>`` and ``month:<yyyy-mm>``  dates in en/fr/de/tr/ar/ru/uk/es/it/pl/pt month names or
  ISO form;
- ``ent:<key>``   an entity group of the topic file, whichever spelling matched;
- ``name:<word>`` capitalised Latin-script words (proper names shared by Latin-script languages).

:func:`event_kinds` finds what kind of development a headline reports (a denial, an arrest, a
trial, a release, ...): the novelty cue that keeps a new development out of the old story it
repeats the names and figures of. Pure functions, no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from stream.text import fold
from stream.topic import Topic

MIN_FIGURE = 100  # smaller numbers (ages, counts of days) recur in unrelated stories
YEAR_RANGE = range(1900, 2101)  # a bare year is a weak cue: it is kept only inside a date
MAX_NAME_ANCHORS = 12  # capitalised words kept per text (the first ones: headline and lead)
MIN_NAME_LEN = 4  # shorter capitalised words are mostly sentence starts and acronyms

# Weight of each anchor kind in the shared-anchor score (stream.clustering): a shared exact date
# or figure is strong evidence of one event; a shared entity or proper name less, a month little.
# name 0.5 (not 0.3): on the SemEval pairs the link rule (shared >= 2.0) then finds 133 of 319
# same-story pairs instead of 46, for 21 of 569 different-story pairs instead of 8 (docs/clustering.md).
ANCHOR_WEIGHTS: Mapping[str, float] = {
    "date": 1.0,
    "num": 1.0,
    "ent": 0.5,
    "month": 0.3,
    "name": 0.5,
}
# Kinds specific enough to retrieve a dormant story by (story_state's anchor index).
SPECIFIC_KINDS = frozenset({"date", "num", "ent"})

# Month names by language, January first. en, fr, de, tr and ar (Egyptian and Levantine names) are read in
# every order ("15 May 2017", "May 15, 2017", "May 2017"); es, it and pt after a day or before a year; the
# genitives of ru, uk and pl ("15 февраля 2017"), and the names that are also words or given names ("marco" =
# frame, "marca" = brand, County Mayo, Maja), only after a day.
_EVERY_ORDER = [
    ("january", "jan", "janvier", "janv", "januar", "ocak", "يناير", "كانون الثاني"),
    ("february", "feb", "fevrier", "fevr", "februar", "subat", "فبراير", "شباط"),
    ("march", "mar", "mars", "marz", "mart", "مارس", "اذار"),
    ("april", "apr", "avril", "avr", "nisan", "ابريل", "نيسان"),
    ("may", "mai", "mayis", "مايو", "ايار"),
    ("june", "jun", "juin", "juni", "haziran", "يونيو", "حزيران"),
    ("july", "jul", "juillet", "juil", "juli", "temmuz", "يوليو", "تموز"),
    ("august", "aug", "aout", "agustos", "اغسطس", "اب"),
    ("september", "sep", "sept", "septembre", "eylul", "سبتمبر", "ايلول"),
    ("october", "oct", "okt", "octobre", "oktober", "ekim", "اكتوبر", "تشرين الاول"),
    ("november", "nov", "novembre", "kasim", "نوفمبر", "تشرين الثاني"),
    ("december", "dec", "dez", "decembre", "dezember", "aralik", "ديسمبر", "كانون الاول"),
]
_BEFORE_A_YEAR = [  # es, it, pt
    ("enero", "gennaio", "janeiro"), ("febrero", "febbraio", "fevereiro"), ("marzo",), ("abril", "aprile"),
    ("maggio", "maio"), ("junio", "giugno", "junho"), ("julio", "luglio", "julho"), ("agosto",),
    ("septiembre", "settembre", "setembro"), ("octubre", "ottobre", "outubro"), ("noviembre", "novembro"),
    ("diciembre", "dicembre", "dezembro"),
]  # fmt: skip
_AFTER_A_DAY = [  # ru, uk, pl genitives; words elsewhere. Not Polish "listopada": October in Croatian.
    ("января", "січня", "stycznia"), ("февраля", "лютого", "lutego"), ("марта", "березня", "marca", "marco"),
    ("апреля", "квітня", "kwietnia"), ("мая", "травня", "mayo", "maja"), ("июня", "червня", "czerwca"),
    ("июля", "липня", "lipca"), ("августа", "серпня", "sierpnia"), ("сентября", "вересня", "wrzesnia"),
    ("октября", "жовтня", "pazdziernika"), ("ноября", "листопада"), ("декабря", "грудня", "grudnia"),
]  # fmt: skip
# The abbreviations newsrooms print in datelines ("10 дек. 2024", "10 лют. 2025", "10 Ara 2024"): ru, uk and tr,
# only after a day (several are words: "лист" letter, "ara" between, "kas" muscle).
_ABBREVIATED_AFTER_A_DAY = [
    ("янв", "січ", "oca"), ("фев", "февр", "лют", "sub"), ("мар", "бер", "берез"), ("апр", "квіт", "nis"),
    ("трав",), ("июн", "черв", "haz"), ("июл", "лип", "tem"), ("авг", "серп", "agu"),
    ("сен", "сент", "вер", "eyl"), ("окт", "жовт", "eki"), ("ноя", "нояб", "лист", "kas"), ("дек", "груд", "ara"),
]  # fmt: skip
_AFTER_A_DAY_TABLES = (_EVERY_ORDER, _BEFORE_A_YEAR, _AFTER_A_DAY, _ABBREVIATED_AFTER_A_DAY)  # every month name
_MONTHS: dict[str, int] = {
    fold(name): number for table in _AFTER_A_DAY_TABLES for number, names in enumerate(table, start=1) for name in names
}


def _month_group(*tables: list[tuple[str, ...]]) -> str:
    """A month name of ``tables``, or two joined by a slash (Arabic dates often give both: "15 أيار/مايو 2017")."""
    alt = "|".join(
        sorted({re.escape(fold(n)) for table in tables for names in table for n in names}, key=lambda m: (-len(m), m))
    )
    return rf"(?P<month>{alt})(?:\s*/\s*(?:{alt}))?"


_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th|er|\.)?"
_YEAR = r"(?P<year>\d{4})"
_DE = r"(?:de\s+)?"  # es/pt: "4 de abril de 2017"
_DATE_PATTERNS = (
    re.compile(rf"(?<!\w){_DAY}\s+{_DE}{_month_group(*_AFTER_A_DAY_TABLES)}\.?,?\s+{_DE}{_YEAR}(?!\w)"),
    re.compile(rf"(?<!\w){_month_group(_EVERY_ORDER)}\.?\s+{_DAY},?\s+{_YEAR}(?!\w)"),
    re.compile(r"(?<!\w)(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})(?!\w)"),
)
_MONTH_YEAR = re.compile(rf"(?<!\w){_month_group(_EVERY_ORDER, _BEFORE_A_YEAR)}\.?,?\s+{_DE}{_YEAR}(?!\w)")
# 13,000 / 13.000 / 13 000 / ١٣٬٠٠٠ / 17723, optionally "13 thousand" / "13 ألف".
_NUMBER = re.compile(
    r"(?<![\w.,])(\d{1,3}(?:[,.\u066c\u202f\u00a0 ]\d{3})+|\d+)(?:\s+(thousand|الف|الاف|million|مليون))?"
)
_MULTIPLIERS = {"thousand": 1000, "الف": 1000, "الاف": 1000, "million": 1_000_000, "مليون": 1_000_000}
_CAPITALISED = re.compile(r"(?<![\w'’-])([A-ZÀ-ÖØ-ÞĞİŞ][\w'’-]+)")
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\n\"“”«»]\s*)$")
_ARABIC_PREFIXES = "(?:و|ف|ب|ل|ك)?"  # clitic conjunctions and prepositions written onto the noun

# Event kinds of a headline (folded terms; matched as word prefixes in the title and first sentence).
EVENT_TERMS: Mapping[str, tuple[str, ...]] = {
    "denial": (
        "deny",
        "denies",
        "denied",
        "denial",
        "rejects",
        "rejected",
        "dismisses",
        "dismissed",
        "refutes",
        "dement",
        "dementiert",
        "bestreitet",
        "yalanladi",
        "reddetti",
        "نفت",
        "تنفي",
        "ينفي",
        "نفى",
        "نفي",
        "ترفض",
        "رفضت",
    ),
    "arrest": (
        "arrest",
        "arrested",
        "arrests",
        "apprehended",
        "taken into custody",
        "extradited",
        "arrete",
        "arrestation",
        "festgenommen",
        "festnahme",
        "verhaftet",
        "gozaltina",
        "tutuklandi",
        "اعتقال",
        "اعتقلت",
        "القبض",
        "توقيف",
        "اوقفت",
    ),
    "trial": (
        "trial",
        "verdict",
        "sentenced",
        "convicted",
        "indicted",
        "charged with",
        "condamne",
        "prozess",
        "verurteilt",
        "angeklagt",
        "dava",
        "mahkum edildi",
        "محاكمة",
        "حكم على",
        "ادانة",
        "لائحة اتهام",
    ),
    "release": (
        "released from",
        "freed",
        "liberated",
        "libere",
        "freigelassen",
        "serbest birakildi",
        "الافراج",
        "افرج",
        "اطلاق سراح",
    ),
    "exhumation": (
        "mass grave",
        "exhum",
        "unearthed",
        "fosse commune",
        "massengrab",
        "toplu mezar",
        "مقبرة جماعية",
        "رفات",
    ),
    "sanctions": ("sanction", "sanktion", "yaptirim", "عقوبات"),
}
_EVENT_LITERALS = {kind: tuple(fold(t).strip() for t in terms) for kind, terms in EVENT_TERMS.items()}
_EVENT_PATTERNS = {  # one look-behind before the alternatives: mid-word positions fail at once (14x faster)
    kind: re.compile(r"(?<!\w)(?:" + "|".join(re.escape(t) for t in literals) + ")")
    for kind, literals in _EVENT_LITERALS.items()
}
LEAD_CHARS = 300  # event kinds are read from the title and the start of the text only


def anchor_kind(anchor: str) -> str:
    """``"num"`` for ``"num:13000"``."""
    return anchor.split(":", 1)[0]


def anchor_weight(anchor: str) -> float:
    return ANCHOR_WEIGHTS.get(anchor_kind(anchor), 0.0)


def parse_figure(digits: str) -> int | None:
    """``"13,000"``/``"١٣٬٠٠٠"``/``"13 000"`` -> 13000; ``None`` when it is not a plain figure."""
    cleaned = re.sub(r"[,.\u066c\u202f\u00a0 ]", "", digits)
    try:
        return int(cleaned)  # int() reads Arabic-Indic and other Unicode digits
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class _EntityPattern:
    key: str
    pattern: re.Pattern[str]
    literals: tuple[str, ...]  # the pattern matches only where one of these occurs: a substring test first

    def search(self, folded: str) -> bool:
        return any(v in folded for v in self.literals) and self.pattern.search(folded) is not None


class AnchorExtractor:
    """Extracts anchors (see the module docstring) using the topic's anchor numbers and entity groups."""

    def __init__(self, topic: Topic | None = None) -> None:
        numbers: set[int] = set()
        entities: list[_EntityPattern] = []
        if topic is not None:
            for raw in topic.anchor_numbers:
                value = parse_figure(raw)
                if value is not None:
                    numbers.add(value)
            for group in topic.anchor_groups:
                key = re.sub(r"\W+", "-", fold(group[0])).strip("-")
                variants = sorted({fold(v) for v in group}, key=len, reverse=True)
                alts = "|".join(
                    (_ARABIC_PREFIXES + re.escape(v)) if re.search("[\u0600-\u06ff]", v) else re.escape(v)
                    for v in variants
                )
                entities.append(
                    _EntityPattern(key=key, pattern=re.compile(rf"(?<!\w)(?:{alts})(?!\w)"), literals=tuple(variants))
                )
        self.topic_numbers = frozenset(numbers)
        self.entities = tuple(entities)

    def extract(self, text: str) -> frozenset[str]:
        """Anchors of ``text`` (title and body together) as ``kind:value`` strings."""
        folded = fold(text)
        out: set[str] = set()
        date_spans: list[tuple[int, int]] = []
        for span, date in _date_matches(folded):
            out.add(date)
            out.add("month:" + date[5:12])
            date_spans.append(span)
        for m in _MONTH_YEAR.finditer(folded):
            month = _MONTHS.get(m.group("month"))
            year = parse_figure(m.group("year"))
            if month is not None and year in YEAR_RANGE:
                out.add(f"month:{year:04d}-{month:02d}")
        for m in _NUMBER.finditer(folded):
            if any(start <= m.start() < end for start, end in date_spans):
                continue
            value = parse_figure(m.group(1))
            if value is None:
                continue
            if m.group(2):
                value *= _MULTIPLIERS[m.group(2)]
            if value in self.topic_numbers or (value >= MIN_FIGURE and value not in YEAR_RANGE):
                out.add(f"num:{value}")
        for entity in self.entities:
            if entity.search(folded):
                out.add(f"ent:{entity.key}")
        out.update(_names(text))
        return frozenset(out)


def _date_matches(folded: str) -> Iterator[tuple[tuple[int, int], str]]:
    """Each full date written in the folded text: its span and its ``date:YYYY-MM-DD`` anchor."""
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(folded):
            date = _date_key(m.group("year"), m.group("month"), m.group("day"))
            if date is not None:
                yield m.span(), date


def dates_in(text: str) -> list[dt.date]:
    """The full dates (day, month and year) written in ``text``, in the order they appear: the grammar of the
    ``date:`` anchors ("15 May 2017", "May 15, 2017", "15 أيار/مايو 2017", "2017-05-15"...)."""
    out: list[dt.date] = []
    for _, key in sorted(_date_matches(fold(text))):
        try:
            out.append(dt.date.fromisoformat(key[len("date:") :]))
        except ValueError:  # 31 February: the grammar checks each part, not the calendar
            continue
    return out


def _date_key(year: str, month: str, day: str) -> str | None:
    y = parse_figure(year)
    m = parse_figure(month) if month.isdigit() else _MONTHS.get(month)
    d = parse_figure(day)
    if y is None or m is None or d is None or y not in YEAR_RANGE or not 1 <= m <= 12 or not 1 <= d <= 31:
        return None
    return f"date:{y:04d}-{m:02d}-{d:02d}"


def _names(text: str) -> list[str]:
    """Capitalised Latin-script words not at a sentence start, folded, first ``MAX_NAME_ANCHORS``."""
    out: list[str] = []
    for m in _CAPITALISED.finditer(text):
        word = re.sub(r"['’]s$", "", m.group(1)).rstrip("'’-")
        before = text[max(0, m.start() - 3) : m.start()]
        if len(word) < MIN_NAME_LEN or word.isupper() or _SENTENCE_START.search(before):
            continue
        key = "name:" + fold(word)
        if key not in out:
            out.append(key)
        if len(out) >= MAX_NAME_ANCHORS:
            break
    return out


def event_kinds(title: str, text: str) -> frozenset[str]:
    """Kinds of development (``denial``, ``arrest``, ``trial``, ``release``, ``exhumation``, ``sanctions``)
    named in ``title`` and the first ``LEAD_CHARS`` of ``text``."""
    head = fold(f"{title}\n{text[:LEAD_CHARS]}")
    return frozenset(
        kind
        for kind, pattern in _EVENT_PATTERNS.items()
        # a match needs one of the terms as a substring: that C-speed test first skips most regex scans
        if any(t in head for t in _EVENT_LITERALS[kind]) and pattern.search(head)
    )
