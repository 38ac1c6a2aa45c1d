"""Topic relevance: is this text about the monitored subject? (pure domain code, no I/O)

Matching runs on :func:`stream.text.fold` forms, so case, Latin diacritics and Arabic spelling variants
(alef forms, ta marbuta, Persian yeh...) do not matter. Terms in Latin, Cyrillic or Hebrew script match
at the start of a word and may carry a suffix (``Sednaya'daki``, ``prisons``, ``cezaevinde``); Arabic
terms match at the start of a word after an optional attached prefix (``و``, ``ف``, ``ب``, ``ل``, ``ك``,
``ال``, ``لل``), so ``والسجن`` matches ``سجن`` but ``مدير`` (director) does not match ``دير`` (monastery).

Score (the formula documented in the topic file): a name variant counts ``NAME_WEIGHT`` (once), a strong
name ``STRONG_WEIGHT``, each distinct co-term ``COTERM_WEIGHT`` (at most ``MAX_COTERMS``), each distinct
negative cue subtracts ``NEGATIVE_WEIGHT``; the sum is divided by ``FULL_SCORE`` and clamped to [0, 1].
A name joined to the kind of place the topic is (``[institution]``: "Sednaya prison", "سجن صيدنايا",
"prison de Saydnaya") is the institution's own name and weighs as a strong name (``terms`` then holds
``~institution``); negative cues still subtract, and a passing mention stays one (a name's weight, no
co-term).
Without a name or strong name the score is 0: a text about prisons in general is not about Sednaya.
A name with one co-term reaches 0.5 (the default ``min_score``); a name alone, or a name with co-terms
outweighed by monastery/pilgrimage/tourism cues, does not.

Negative cues need context to count:

- a cue matches a whole word (``convent`` is not ``convention``) unless written with a trailing ``*``
  (``manastır*`` takes Turkish case endings); Arabic cues still take the attached prefixes;
- place names of the region that contain a cue word (``[negative] places``: ``دير الزور``, Deir ez-Zor,
  ``دير عطية``) are masked before the cues are matched, so ``دير`` (monastery) does not fire on them;
- a passing mention: when the topic's name occurs once and other places of the kind
  (``[negative] other_places``: other Syrian prisons) occur at least ``PASSING_OTHER_MIN`` times, the
  co-terms describe those and do not count (``terms`` then holds ``~passing``).

The feed prefilter (:meth:`RelevanceFilter.prefilter`) decides which feed or sitemap entries are worth a
fetch from their title, summary, keywords and URL: a name or strong name, or a region word
(``[prefilter] context``) together with a co-term or an event word (``[prefilter] events``) in any
language ("Washington accuses Damascus of using a crematorium").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from stream.article import Relevance
from stream.text import fold
from stream.topic import Topic

NAME_WEIGHT = 1.0
STRONG_WEIGHT = 2.0  # a strong name ("human slaughterhouse", ADMSP) is a name and a co-term at once
COTERM_WEIGHT = 0.5
MAX_COTERMS = 4  # more co-terms add nothing: long articles should not win on length alone
NEGATIVE_WEIGHT = 0.75
FULL_SCORE = 3.0  # name + 4 co-terms = 1.0
_ARABIC = re.compile("[\u0600-\u06ff]")
_ARABIC_PREFIX = "(?:[وف]?(?:[بلك]?ال|لل|[بلك])?)"  # conjunctions, prepositions and the article
_HEBREW = re.compile("[\u0590-\u05ff]")
_HEBREW_PREFIX = "(?:[ושכ]?[מהבלכ]?)"  # and, that, as; from, the, in, to, like ("בסיידנאיא": in Sednaya)
PASSING_OTHER_MIN = 3  # mentions of other prisons that make a single mention of the name a passing one
# (3, not 2: a Sednaya excerpt may name the prison a detainee came from twice)
_WORD_END = r"(?![^\W_])"
_WILDCARD = "*"
_APOSTROPHES = "['’ʼ]"
_GLUED = r"(?:[^\W\d_]|['’ʼ])*"  # letters (and apostrophes) glued to a word: case endings, "Sednaya'daki"
_JOIN = r"[\s\-]+"  # what may stand between the words of a phrase: spaces or a hyphen, never punctuation
MAX_LINKS = 2  # link words inside an institution phrase ("prison militaire de Saydnaya")


def _body(term: str) -> str:
    """Regex body of a folded term: any run of spaces for a space, an optional space or hyphen for a
    hyphen, any apostrophe (', ’, ʼ) for an apostrophe ("в'язниця" is also written "в’язниця")."""
    return re.escape(term).replace(r"\ ", r"\s+").replace(r"\-", r"[\s\-]?").replace("'", _APOSTROPHES)


def _pattern(term: str, *, whole_word: bool = False) -> re.Pattern[str]:
    """Pattern of ``term`` on folded text: starts at a word start (Arabic, Hebrew: after an attached prefix);
    ``whole_word`` also requires a word end, unless the term ends with ``*`` (then a suffix may follow)."""
    wildcard = term.endswith(_WILDCARD)
    folded = fold(term.removesuffix(_WILDCARD))
    body = _body(folded)
    end = _WORD_END if whole_word and not wildcard else ""
    if _ARABIC.search(folded):
        return re.compile(r"(?<![^\W_])" + _ARABIC_PREFIX + body + end)
    if _HEBREW.search(folded):
        return re.compile(r"(?<![^\W_])" + _HEBREW_PREFIX + body + end)
    return re.compile(r"(?<![^\W_])" + body + end)


@dataclass(frozen=True, slots=True)
class _Term:
    """A topic term as written, its pattern on folded text, and a piece of it every match contains (a
    plain substring test first: most texts hold most terms nowhere, and the test is far cheaper)."""

    written: str
    pattern: re.Pattern[str]
    literal: str

    def search(self, folded: str) -> bool:
        return self.literal in folded and self.pattern.search(folded) is not None

    def finditer(self, folded: str) -> Iterator[re.Match[str]]:
        return self.pattern.finditer(folded) if self.literal in folded else iter(())

    def count(self, folded: str) -> int:
        return len(self.pattern.findall(folded)) if self.literal in folded else 0


class RelevanceFilter:
    """Scores texts against one :class:`Topic`. Build once, call :meth:`score` per article."""

    def __init__(self, topic: Topic) -> None:
        self.topic = topic

    @cached_property
    def _names(self) -> tuple[_Term, ...]:
        return _terms(self.topic.matched_names)

    @cached_property
    def _strong(self) -> tuple[_Term, ...]:
        return _terms(self.topic.strong)

    @cached_property
    def _coterms(self) -> tuple[_Term, ...]:
        return _terms(self.topic.all_coterms)

    @cached_property
    def _negative(self) -> tuple[_Term, ...]:
        return _terms(self.topic.negative, whole_word=True)

    @cached_property
    def _negative_places(self) -> tuple[_Term, ...]:
        return _terms(self.topic.negative_places, whole_word=True)

    @cached_property
    def _other_places(self) -> tuple[_Term, ...]:
        return _terms(self.topic.other_places, whole_word=True)

    @cached_property
    def _institution(self) -> re.Pattern[str] | None:
        """A name joined to the kind of place the topic is, in either order, by spaces or a hyphen and at
        most ``MAX_LINKS`` link words, with no punctuation between: "Sednaya prison", "سجن صيدنايا",
        "prison militaire de Saydnaya", "Sednaja-Gefängnis", "Sednaya Cezaevi"."""
        topic = self.topic
        if not topic.institution_words:
            return None
        names = "|".join(_body(fold(n)) for n in sorted(set(topic.matched_names), key=len, reverse=True))
        words = "|".join(
            _body(fold(w.removesuffix(_WILDCARD))) for w in sorted(set(topic.institution_words), key=len, reverse=True)
        )
        links = "|".join(
            _body(fold(w.removesuffix(_WILDCARD))) + (_GLUED if w.endswith(_WILDCARD) else "")
            for w in sorted(set(topic.institution_links), key=len, reverse=True)
        )
        link = f"(?:(?:{links}){_JOIN}){{0,{MAX_LINKS}}}" if links else ""
        start = r"(?<![^\W_])"
        name_first = f"{start}(?:{names}){_GLUED}{_JOIN}{link}{_ARABIC_PREFIX}(?:{words})"
        word_first = f"{start}{_ARABIC_PREFIX}(?:{words}){_GLUED}{_JOIN}{link}(?:{names})"
        return re.compile(f"{name_first}|{word_first}")

    @cached_property
    def _context(self) -> tuple[_Term, ...]:
        return _terms(self.topic.prefilter_context)

    @cached_property
    def _events(self) -> tuple[_Term, ...]:
        return _terms((*self.topic.all_coterms, *self.topic.prefilter_events))

    def mentions_name(self, text: str) -> bool:
        """True when ``text`` contains a name variant or strong name."""
        folded = fold(text)
        return any(t.search(folded) for t in (*self._names, *self._strong))

    def prefilter(self, text: str) -> str | None:
        """Why a feed/sitemap entry (its title, summary, keywords and URL in ``text``) is worth fetching:
        ``"name"`` (a name or strong name), ``"context"`` (a region word and a distinct co-term or event
        word, any language), or None (not fetched)."""
        folded = fold(text)
        if any(t.search(folded) for t in (*self._names, *self._strong)):
            return "name"
        context = [m.span() for t in self._context for m in t.finditer(folded)]
        if not context:
            return None
        # an event word counts where it is not (part of) a region word: one word is not two ("Assad";
        # Persian "اسد" inside Arabic "الأسد")
        for term in self._events:
            for match in term.finditer(folded):
                if not any(match.start() < end and start < match.end() for start, end in context):
                    return "context"
        return None

    def score(self, title: str, text: str) -> Relevance:
        """Score ``title`` + ``text``; ``terms`` lists matched names, co-terms and negative cues (the latter
        prefixed with ``-``), as written in the topic file."""
        folded = fold(f"{title}\n{text}")
        names = [t.written for t in self._names if t.search(folded)]
        strong = [t.written for t in self._strong if t.search(folded)]
        if not names and not strong:
            return Relevance(score=0.0, terms=())
        coterms = _dedupe_folded(t.written for t in self._coterms if t.search(folded))
        masked = folded
        for place in self._negative_places:
            if place.literal in masked:
                masked = place.pattern.sub(lambda m: " " * len(m.group(0)), masked)
        negative = _dedupe_folded(t.written for t in self._negative if t.search(masked))
        # a headline that names the prison is about it, however many other prisons the text lists
        passing = not strong and self._passing_mention(folded) and not any(t.search(fold(title)) for t in self._names)
        institution = self._institution is not None and self._institution.search(masked) is not None
        counted = 0 if passing else min(len(coterms), MAX_COTERMS)
        named_strongly = strong or (institution and not passing)  # a passing "Sednaya prison" stays a passing one
        raw = (STRONG_WEIGHT if named_strongly else NAME_WEIGHT) + COTERM_WEIGHT * counted
        raw -= NEGATIVE_WEIGHT * len(negative)
        value = max(0.0, min(1.0, raw / FULL_SCORE))
        marks = (*(("~institution",) if institution else ()), *(("~passing",) if passing else ()))
        terms = (*names, *strong, *coterms, *(f"-{n}" for n in negative), *marks)
        return Relevance(score=round(value, 3), terms=tuple(dict.fromkeys(terms)))

    def _passing_mention(self, folded: str) -> bool:
        """The name occurs once while other places of the kind (other prisons) occur at least
        ``PASSING_OTHER_MIN`` times: the text is about those (unless its headline names it: :meth:`score`)."""
        mentions = sum(t.count(folded) for t in self._names)
        if mentions != 1:
            return False
        others = sum(t.count(folded) for t in self._other_places)
        return others >= PASSING_OTHER_MIN

    def is_relevant(self, relevance: Relevance) -> bool:
        """``relevance.score`` reaches the topic's ``min_score``."""
        return relevance.score >= self.topic.min_score


def _terms(written: tuple[str, ...], *, whole_word: bool = False) -> tuple[_Term, ...]:
    seen: dict[str, _Term] = {}
    for term in written:
        key = fold(term)
        if key not in seen:
            seen[key] = _Term(term.removesuffix(_WILDCARD), _pattern(term, whole_word=whole_word), _literal(key))
    return tuple(seen.values())


def _literal(folded: str) -> str:
    """The longest piece of a folded term that every match holds as it is: the pattern lets spaces,
    hyphens and apostrophes vary, so the term is cut there."""
    pieces = [p for p in re.split(r"[\s\-'’ʼ*]+", folded) if p]
    return max(pieces, key=len) if pieces else ""


def _dedupe_folded(terms: object) -> list[str]:
    """Distinct terms; a term contained in a longer matched term is not counted twice
    ("دير" inside "دير صيدنايا", "salt room" inside "salt rooms")."""
    items = list(dict.fromkeys(terms))  # type: ignore[call-overload]
    folded = [fold(t) for t in items]
    out = []
    for i, term in enumerate(items):
        if any(j != i and folded[i] != folded[j] and folded[i] in folded[j] for j in range(len(items))):
            continue
        out.append(term)
    return out
