"""Same-language word evidence for story clustering: the words an article shares with a story's recent
articles in its own language, each weighted by how rare it is among the recent articles (a TF-IDF cosine
over a sliding window).

Why beside the model's cosine: reports of one story in one language share the story's own words (a
name, a place, an unusual noun), which a sentence embedding of a whole text dilutes; on English news with
many stories a day (NeuS) a TF-IDF cosine alone separates same-story pairs better than the multilingual
model does (docs/clustering.md). Across languages words say nothing, so the evidence is only computed
against a story's articles in the article's language.

- **Terms**: the folded tokens of the title and the first ``TEXT_CHARS`` characters of the text, reduced
  to their word forms in the article's language (``stream.word_forms``: the analysis search uses), without
  tokens shorter than ``MIN_TERM_CHARS`` and bare numbers (the anchors weigh figures and dates).
- **Rarity** is counted over a window, the last ``size`` original articles: ``idf = log((N + 1) / (df + 1))``
  with ``N`` the articles of the window that have terms and ``df`` those holding the term (an article
  remembered while the evidence was off has none, and holds its place). A word that every article of the topic has (the
  prison's name in all its spellings, "Assad", "prison") weighs about nothing; a story's own names weigh
  most. The window slides by whole articles, so a state rebuilt from its last ``size`` articles holds
  exactly the counts of the live one.
- **Weights**: ``(1 + log tf) * idf``; a story's term frequency in a language is the sum over its articles
  of that language in the window. The cosine is summed with ``math.fsum``: exact, so it does not depend on
  the order terms were counted in (a replica that rebuilt its window decides as the live one did).
- **Names across languages**: the terms may also hold an article's name keys (``stream.name_keys``, with
  ``KEY_PREFIX`` in front: Raqqa, Ракка and الرقة are one key). They count in the window's document
  frequencies like words, are kept per story and language apart from the words, and
  :meth:`TermWindow.name_similarity` compares an article's keys with those of a story's articles in the
  *other* languages, leaving out the keys of the topic (``MIN_NAME_IDF``).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from stream.name_keys import KEY_PREFIX
from stream.word_forms import document_forms, tokens

# A name key held by more than about one in seven of the window's articles (idf = log((N+1)/(df+1)) below 2) is
# a name of the topic (the country, its capital, its president, the big powers), not of one event: the name
# evidence leaves it out on both sides, instead of weighing it a little (chosen on half A of the multilingual
# tuning set among 0, 1.5, 2 and 2.5: docs/clustering.md, "Name evidence across languages").
MIN_NAME_IDF = 2.0
BOUND_SLACK = 1e-9  # added to a bound of the name cosine: more than the rounding of the two sums
TEXT_CHARS = 2000  # characters of an article's text read for its terms (with the title)
MIN_TERM_CHARS = 3  # shorter word forms are mostly function words and initials

Terms = Mapping[str, int]  # term -> occurrences in one article
_K = TypeVar("_K")


def article_terms(title: str, text: str, lang: str) -> dict[str, int]:
    """The terms of an article (see the module docstring), with their counts."""
    forms = document_forms(tokens(f"{title}\n{text[:TEXT_CHARS]}"), lang)
    return dict(Counter(f for f in forms if len(f) >= MIN_TERM_CHARS and not f.isdigit()))


def _tf(count: int) -> float:
    return 1.0 + math.log(count)


_TF = [0.0] + [_tf(count) for count in range(1, 64)]  # the same values, looked up for small counts


@dataclass(frozen=True, slots=True)
class _Entry:
    story_id: str
    lang: str
    terms: Terms | None  # None: an article without terms (it holds its place in the window, counts in nothing)


@dataclass(frozen=True, slots=True)
class ArticleVector:
    """An article's TF-IDF weights against the window as it stands, and their norm."""

    lang: str
    weights: dict[str, float]
    norm: float
    key_weights: dict[str, float] = field(default_factory=dict)  # its name keys' (stream.name_keys)
    key_norm: float = 0.0


class TermWindow:
    """Document frequencies over the last ``size`` articles, and each story's term counts per language.

    ``resolve`` maps a story id to the story that absorbed it (itself when live): an article leaving the
    window is taken from the story it belongs to now. Call :meth:`merge` when two stories merge.
    """

    def __init__(self, size: int, resolve: Callable[[str], str]) -> None:
        if size < 1:
            raise ValueError(f"term window size {size} must be at least 1")
        self.size = size
        self._resolve = resolve
        self._entries: deque[_Entry] = deque()
        self._documents = 0  # entries with terms: the N of the IDF
        self._df: Counter[str] = Counter()
        self._stories: dict[tuple[str, str], Counter[str]] = {}  # (story, language) -> its words' counts
        self._keys: dict[str, dict[str, Counter[str]]] = {}  # story -> language -> its name keys' counts
        self._holders: dict[str, Counter[str]] = {}  # name key -> story -> its count there (all languages)
        self._idf_by_df: dict[int, float] = {}  # IDF by document frequency, asked since the window last changed
        self._most: int | None = None  # the largest document frequency of a name key that counts (_most_named)

    def __len__(self) -> int:
        """Articles with terms in the window."""
        return self._documents

    def add(self, story_id: str, lang: str, terms: Terms | None) -> None:
        """Count an original article of ``story_id`` (the oldest article leaves once ``size`` are held);
        ``terms`` None: an article without terms, which only takes its place in the window."""
        self._entries.append(_Entry(story_id, lang, None if terms is None else dict(terms)))
        self._idf_by_df.clear()
        self._most = None
        if terms is not None:
            self._documents += 1
            self._df.update(terms.keys())
            words, keys = _split(terms)
            story = self._resolve(story_id)
            if words:
                self._stories.setdefault((story, lang), Counter()).update(words)
            if keys:
                self._keys.setdefault(story, {}).setdefault(lang, Counter()).update(keys)
                for key, count in keys.items():
                    self._holders.setdefault(key, Counter())[story] += count
        while len(self._entries) > self.size:
            self._drop(self._entries.popleft())

    def _drop(self, entry: _Entry) -> None:
        if entry.terms is None:
            return
        self._documents -= 1
        self._df.subtract(entry.terms.keys())
        for term in entry.terms:
            if self._df[term] <= 0:
                del self._df[term]
        words, keys = _split(entry.terms)
        story_id = self._resolve(entry.story_id)
        _subtract(self._stories, (story_id, entry.lang), words)
        by_lang = self._keys.get(story_id)
        if by_lang is not None:
            _subtract(by_lang, entry.lang, keys)
            if not by_lang:
                del self._keys[story_id]
        for key, count in keys.items():
            holders = self._holders.get(key)
            if holders is None:
                continue
            holders[story_id] -= count
            if holders[story_id] <= 0:
                del holders[story_id]
            if not holders:
                del self._holders[key]

    def merge(self, absorbed: str, survivor: str) -> None:
        """``absorbed`` now belongs to ``survivor``: its term counts move there."""
        for key in [k for k in self._stories if k[0] == absorbed]:
            self._stories.setdefault((survivor, key[1]), Counter()).update(self._stories.pop(key))
        moved: set[str] = set()
        for lang, keys in self._keys.pop(absorbed, {}).items():
            self._keys.setdefault(survivor, {}).setdefault(lang, Counter()).update(keys)
            moved.update(keys)
        for name in moved:
            holders = self._holders[name]
            holders[survivor] += holders.pop(absorbed, 0)

    def idf(self, term: str) -> float:
        """The IDF of ``term`` in the window as it stands (remembered by document frequency until the window
        changes: a story's terms share few frequencies). :meth:`_weights` and :meth:`_against` compute it in
        place by the same expression."""
        frequency = self._df.get(term, 0)
        value = self._idf_by_df.get(frequency)
        if value is None:
            value = self._idf_by_df[frequency] = math.log((self._documents + 1) / (frequency + 1))
        return value

    def _against(
        self, weights: Mapping[str, float], counts: Mapping[str, int], floor: int | None = None
    ) -> tuple[float, float]:
        """The dot product of an article's ``weights`` with a story's summed ``counts`` weighed as :meth:`vector`
        weighs an article's, ``(1 + log tf) * idf`` by the same expressions (so the same floats), and the norm of
        the story's side; ``floor``: only terms held by at most that many articles (the name keys that count,
        :meth:`_most_named`). One pass over the story's terms, both sums exact (``math.fsum``)."""
        df, by_df, documents = self._df.get, self._idf_by_df, self._documents + 1
        mine_of, tf_of, small = weights.get, _TF, len(_TF)
        squares: list[float] = []
        products: list[float] = []
        square, product = squares.append, products.append
        for term, count in counts.items():
            frequency = df(term, 0)
            if floor is not None and frequency > floor:
                continue
            value = by_df.get(frequency)
            if value is None:
                value = by_df[frequency] = math.log(documents / (frequency + 1))
            weight = (tf_of[count] if count < small else _tf(count)) * value
            square(weight * weight)
            mine = mine_of(term)
            if mine is not None:
                product(mine * weight)
        return math.fsum(products), math.sqrt(math.fsum(squares))

    def vector(self, terms: Terms, lang: str) -> ArticleVector:
        """``terms`` weighed against the window as it stands (before the article itself is added)."""
        words, keys = _split(terms)
        weights = self._weights(words)
        key_weights = self._weights(keys, min_idf=MIN_NAME_IDF)
        return ArticleVector(lang, weights, _norm(weights), key_weights, _norm(key_weights))

    def _weights(self, counts: Terms, min_idf: float | None = None) -> dict[str, float]:
        """``(1 + log tf) * idf`` of each term of ``counts`` counted at least once (``min_idf``: and at least that
        rare), by the expressions of :meth:`idf` and :func:`_tf` (so the same floats), in one loop."""
        df, by_df, documents = self._df.get, self._idf_by_df, self._documents + 1
        tf_of, small = _TF, len(_TF)
        out: dict[str, float] = {}
        for term, count in counts.items():
            if count <= 0:
                continue
            frequency = df(term, 0)
            value = by_df.get(frequency)
            if value is None:
                value = by_df[frequency] = math.log(documents / (frequency + 1))
            if min_idf is not None and value < min_idf:
                continue
            out[term] = (tf_of[count] if count < small else _tf(count)) * value
        return out

    def similarity(self, article: ArticleVector, story_id: str) -> float:
        """TF-IDF cosine of ``article`` with ``story_id``'s articles in the article's language in the
        window (0 when it has none there, or either side has no weight)."""
        story = self._stories.get((story_id, article.lang))
        if not story or article.norm == 0.0:
            return 0.0
        return self._cosine(article.weights, article.norm, story)

    def name_bounds(self, article: ArticleVector) -> dict[str, float]:
        """For each story that holds one of ``article``'s weighed name keys in the window (in any language), an
        upper bound of its :meth:`name_similarity` with the article, from the article's side alone: by
        Cauchy-Schwarz the cosine is at most the norm of the article's weights on the keys the story holds over
        the article's whole norm (plus ``BOUND_SLACK`` for rounding). A story not in the result has none: 0.
        Cheap (the article's keys times their holders), so that the costly cosine is asked only where it can
        decide (``stream.clustering.assign``) and far stories are not even built (``Reach``)."""
        if article.key_norm == 0.0:
            return {}
        shared: dict[str, float] = {}
        for key, weight in article.key_weights.items():
            for story in self._holders.get(key, ()):
                shared[story] = shared.get(story, 0.0) + weight * weight
        return {story: min(1.0, math.sqrt(mass) / article.key_norm + BOUND_SLACK) for story, mass in shared.items()}

    def _most_named(self) -> int:
        """The largest document frequency whose IDF is at least ``MIN_NAME_IDF`` (the same expression as
        :meth:`idf`, so the same keys pass), for the window as it stands."""
        if self._most is None:
            n = self._documents + 1
            most = int(n * math.exp(-MIN_NAME_IDF))  # about; then exactly, by the expression itself
            while most >= 0 and math.log(n / (most + 1)) < MIN_NAME_IDF:
                most -= 1
            while math.log(n / (most + 2)) >= MIN_NAME_IDF:
                most += 1
            self._most = most
        return self._most

    def name_similarity(self, article: ArticleVector, story_id: str) -> float:
        """TF-IDF cosine of ``article``'s name keys (``stream.name_keys``) with those of ``story_id``'s articles
        in *other* languages in the window (0 when it has none there, or either side has no weight): the
        evidence across languages that words cannot give (in the article's own language they do)."""
        by_lang = self._keys.get(story_id)
        if not by_lang or article.key_norm == 0.0:
            return 0.0
        others = [keys for lang, keys in by_lang.items() if lang != article.lang]
        if not others:
            return 0.0
        story: Mapping[str, int] = others[0]
        if len(others) > 1:
            summed: dict[str, int] = {}
            for counts in others:
                for key, count in counts.items():
                    summed[key] = summed.get(key, 0) + count
            story = summed
        dot, their_norm = self._against(article.key_weights, story, floor=self._most_named())  # topic names out
        if their_norm == 0.0:
            return 0.0
        return min(1.0, dot / (article.key_norm * their_norm))  # a cosine, also where rounding passes 1

    def _cosine(self, weights: Mapping[str, float], norm: float, story: Mapping[str, int]) -> float:
        """Cosine of an article's ``weights`` (of ``norm``) with ``story``'s term counts weighed as the article's
        are."""
        dot, their_norm = self._against(weights, story)
        if their_norm == 0.0:
            return 0.0
        return dot / (norm * their_norm)


def _norm(weights: Mapping[str, float]) -> float:
    return math.sqrt(math.fsum(w * w for w in weights.values()))


def _split(terms: Terms) -> tuple[Terms, Terms]:
    """``terms`` as (words, name keys): the keys are the terms with ``KEY_PREFIX`` in front."""
    words: dict[str, int] = {}
    keys: dict[str, int] = {}
    for term, count in terms.items():
        (keys if term.startswith(KEY_PREFIX) else words)[term] = count
    return (words, keys) if keys else (terms, keys)


def _subtract(buckets: dict[_K, Counter[str]], bucket: _K, terms: Terms) -> None:
    counts = buckets.get(bucket)
    if counts is None or not terms:
        return
    counts.subtract(terms)
    for term in terms:
        if counts[term] <= 0:
            del counts[term]
    if not counts:
        del buckets[bucket]
