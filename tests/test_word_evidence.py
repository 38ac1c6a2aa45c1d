"""Same-language word evidence: an article's terms, their rarity over a sliding window of recent articles,
and the TF-IDF cosine with a story's articles in the article's language; kept by the story state so that a
reopened (or replaying) state weighs words exactly as the live one did."""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from stream import story_state
from stream.clustering import Candidate
from stream.story_state import StoryState
from stream.word_evidence import MIN_NAME_IDF, ArticleVector, TermWindow, article_terms

VEC = np.full(4, 0.5, dtype=np.float32)  # every recent article's vector (the word evidence does not read it)


def _same(story_id: str) -> str:
    return story_id


def test_terms_are_word_forms_in_the_articles_language_without_numbers_or_short_tokens() -> None:
    terms = article_terms("Detainees released", "The detainees were released on 8 December 2024 by HTS.", "en")
    assert terms["detaine"] == 2 and terms["releas"] == 2  # English stems, title and text counted
    assert "2024" not in terms and "8" not in terms and "on" not in terms  # numbers and short tokens left out
    assert "the" in terms  # a common word stays: its rarity, not a list, makes it weigh nothing
    assert article_terms("Détenus", "", "fr") == article_terms("DETENUS", "", "fr")  # folded
    arabic = article_terms("المعتقلين", "والمعتقلين في السجن", "ar")
    assert arabic[max(arabic, key=arabic.__getitem__)] == 2  # the same light stem with and without و ال


def test_a_word_every_recent_article_has_weighs_nothing_and_a_storys_own_name_weighs_most() -> None:
    window = TermWindow(100, _same)
    window.add("s1", "en", {"prison": 1, "saydnaya": 1, "crematorium": 1, "caesar": 1})
    window.add("s2", "en", {"prison": 1, "saydnaya": 1, "amnesty": 1, "report": 1})
    window.add("s3", "en", {"prison": 1, "saydnaya": 1, "trial": 1, "koblenz": 1})
    assert window.idf("prison") == pytest.approx(0.0)
    assert window.idf("crematorium") > window.idf("prison")
    common = window.vector({"prison": 1, "saydnaya": 1}, "en")
    assert window.similarity(common, "s1") == 0.0  # shares only what every article has
    specific = window.vector({"prison": 1, "crematorium": 1, "caesar": 1}, "en")
    assert window.similarity(specific, "s1") > 0.9
    assert window.similarity(specific, "s2") == 0.0
    assert window.similarity(window.vector({"crematorium": 1}, "ar"), "s1") == 0.0  # no Arabic article in s1


def test_the_window_slides_by_whole_articles_and_merges_move_a_storys_words() -> None:
    window = TermWindow(2, _same)
    window.add("old", "en", {"chemical": 2})
    window.add("a", "en", {"evacuation": 1})
    window.add("b", "en", {"evacuation": 1, "convoy": 1})  # "old" leaves the window
    assert len(window) == 2 and window.idf("chemical") == pytest.approx(np.log(3))  # no article has it now
    assert window.similarity(window.vector({"chemical": 1, "convoy": 1}, "en"), "old") == 0.0
    merged = {"b": "a"}
    window = TermWindow(10, lambda s: merged.get(s, s))
    window.add("a", "en", {"evacuation": 1})
    window.add("b", "en", {"convoy": 1})
    window.add("c", "en", {"ceasefire": 1})
    window.merge("b", "a")
    convoy = window.vector({"convoy": 1}, "en")
    assert window.similarity(convoy, "a") > 0.5 and window.similarity(convoy, "b") == 0.0


def _filler(window: TermWindow, n: int) -> None:
    """``n`` articles of other stories with neither words nor names in common (the window's N grows)."""
    for i in range(n):
        window.add(f"other{i}", "en", {f"~k{i}": 1})


def test_names_meet_a_storys_articles_in_other_languages_only_and_common_names_count_nothing() -> None:
    # name keys (stream.name_keys) are terms with the key prefix; a story's keys are compared with an article's
    # only over its articles in *other* languages (in its own language the words already say it), and a key that
    # more than about one article in seven of the window holds is a name of the topic, left out on both sides
    window = TermWindow(100, _same)
    _filler(window, 20)
    window.add("raqqa", "ar", {"~rk": 1, "~sr": 1, "capture": 1})  # "capture": a word, not a name
    window.add("raqqa", "fr", {"~rk": 2, "~sdf": 1, "~sr": 1})
    for i in range(4):  # "sr" (Syria) in many articles of other stories: 6 of 26 hold it
        window.add(f"s{i}", "de", {"~sr": 1})
    assert window.idf("~sr") < MIN_NAME_IDF < window.idf("~rk")
    russian = window.vector({"~rk": 1, "~sr": 1}, "ru")
    assert window.name_similarity(russian, "raqqa") > 0.8  # the story's names: "rk" three times, "sdf" once
    assert window.name_similarity(russian, "raqqa") == window.name_similarity(window.vector({"~rk": 1}, "ru"), "raqqa")
    assert window.similarity(russian, "raqqa") == 0.0  # names are not words: no Russian article in the story
    french = window.vector({"~rk": 1}, "fr")
    # against the Arabic article only: its "rk" ("sr" left out); the French article's "sdf" does not dilute it
    assert window.name_similarity(french, "raqqa") == pytest.approx(1.0)
    assert window.name_similarity(window.vector({"~sr": 1}, "ru"), "raqqa") == 0.0  # a common name is no evidence
    assert window.name_similarity(window.vector({"capture": 1}, "ru"), "raqqa") == 0.0  # words do not cross
    arabic_only = TermWindow(100, _same)
    _filler(arabic_only, 20)
    arabic_only.add("s", "ar", {"~rk": 1})
    assert arabic_only.name_similarity(arabic_only.vector({"~rk": 1}, "ar"), "s") == 0.0  # its own language


def test_names_leave_with_their_articles_and_move_with_a_merge() -> None:
    merged: dict[str, str] = {}
    window = TermWindow(30, lambda s: merged.get(s, s))
    _filler(window, 20)
    window.add("b", "ar", {"~dm": 1})
    window.add("a", "en", {"~kblnz": 1})
    query = window.vector({"~dm": 1}, "de")
    assert window.name_similarity(query, "b") == pytest.approx(1.0) and window.name_similarity(query, "a") == 0.0
    assert window.name_bounds(query) == {"b": pytest.approx(1.0)}  # the only story whose names can count
    merged["b"] = "a"
    window.merge("b", "a")
    assert window.name_similarity(query, "a") > 0.5 and window.name_similarity(query, "b") == 0.0
    assert set(window.name_bounds(query)) == {"a"} and window.name_bounds(query)["a"] >= window.name_similarity(
        query, "a"
    )
    for i in range(30):  # both leave the window: nothing of them is left anywhere
        window.add(f"late{i}", "en", {"~zz": 1})
    assert window.name_similarity(window.vector({"~dm": 1}, "de"), "a") == 0.0
    assert not window._keys.get("a") and not window._keys.get("b")
    assert "~dm" not in window._holders and "~kblnz" not in window._holders


def _name_cosine(window: TermWindow, article: ArticleVector, story: str) -> float:
    """The name evidence by its definition: the TF-IDF cosine of the article's keys with the summed counts of the
    story's articles in the other languages, keys under the IDF floor left out on both sides."""
    counts: Counter[str] = Counter()
    for lang, keys in window._keys.get(story, {}).items():
        if lang != article.lang:
            counts.update(keys)
    theirs = {t: (1.0 + math.log(c)) * window.idf(t) for t, c in counts.items() if window.idf(t) >= MIN_NAME_IDF}
    norm = math.sqrt(math.fsum(w * w for w in theirs.values()))
    if not theirs or norm == 0.0 or article.key_norm == 0.0:
        return 0.0
    dot = math.fsum(w * theirs[t] for t, w in article.key_weights.items() if t in theirs)
    return min(1.0, dot / (article.key_norm * norm))


def test_a_storys_name_bound_is_never_below_its_name_evidence() -> None:
    # and the name evidence equals its plain definition (the window's sums skip keys by frequency)
    # assign and the store's Reach skip a story when its bound cannot lift it: on random windows (merges, articles
    # leaving), every story's name evidence is at most its bound, and a story without a bound has none
    rng = np.random.default_rng(5)
    merged: dict[str, str] = {}

    def resolve(story: str) -> str:
        while story in merged:
            story = merged[story]
        return story

    window = TermWindow(60, resolve)
    langs = ["ar", "en", "fr", "ru"]
    checked = 0
    for n in range(400):
        keys = {f"~k{int(k)}": int(rng.integers(1, 3)) for k in rng.integers(0, 40, size=int(rng.integers(1, 6)))}
        story = f"s{int(rng.integers(0, 25))}"
        window.add(story, langs[n % 4], keys)
        if rng.uniform() < 0.05:
            a, b = resolve(f"s{int(rng.integers(0, 25))}"), resolve(f"s{int(rng.integers(0, 25))}")
            if a != b:
                merged[a] = b
                window.merge(a, b)
        query = window.vector({f"~k{int(k)}": 1 for k in rng.integers(0, 40, size=4)}, langs[int(rng.integers(0, 4))])
        bounds = window.name_bounds(query)
        for s in {resolve(f"s{i}") for i in range(25)}:
            found = window.name_similarity(query, s)
            assert found <= bounds.get(s, 0.0), (n, s, found, bounds.get(s))
            assert found == _name_cosine(window, query, s)  # the definition, computed the plain way
            checked += found > 0
    assert checked > 100  # the draw holds many stories with name evidence


def _word_cosine(window: TermWindow, terms: dict[str, int], lang: str, story: str) -> float:
    """The word evidence by its definition: the TF-IDF cosine, ``(1 + log tf) * idf`` on both sides, of an article's
    terms with the summed counts of the story's articles in the article's language."""
    mine = {t: (1.0 + math.log(c)) * window.idf(t) for t, c in terms.items()}
    counts = window._stories.get((story, lang), Counter())
    theirs = {t: (1.0 + math.log(c)) * window.idf(t) for t, c in counts.items()}
    norm, their_norm = (
        math.sqrt(math.fsum(w * w for w in mine.values())),
        math.sqrt(math.fsum(w * w for w in theirs.values())),
    )
    if not theirs or norm == 0.0 or their_norm == 0.0:
        return 0.0
    return math.fsum(w * theirs[t] for t, w in mine.items() if t in theirs) / (norm * their_norm)


def test_the_word_evidence_is_its_plain_definition_on_random_windows() -> None:
    # the window weighs and compares in one pass over a story's terms: the same floats as the definition
    rng = np.random.default_rng(11)
    window = TermWindow(50, _same)
    checked = 0
    for n in range(300):
        words = {f"w{int(k)}": int(rng.integers(1, 80)) for k in rng.integers(0, 60, size=int(rng.integers(1, 9)))}
        words.update({f"~k{int(k)}": 1 for k in rng.integers(0, 8, size=2)})  # name keys most articles hold
        window.add(f"s{int(rng.integers(0, 15))}", ["en", "fr"][n % 2], words)
        query = {f"w{int(k)}": int(rng.integers(1, 4)) for k in rng.integers(0, 60, size=5)}
        lang = ["en", "fr"][int(rng.integers(0, 2))]
        article = window.vector(query, lang)
        keys = {f"~k{int(k)}": int(rng.integers(0, 3)) for k in rng.integers(0, 60, size=5)}  # a count of 0 too
        named = window.vector({**query, **keys}, lang)  # the name keys' weights: counted, at least MIN_NAME_IDF
        plain = {t: (1.0 + math.log(c)) * window.idf(t) for t, c in keys.items() if c > 0}
        assert named.key_weights == {t: w for t, w in plain.items() if window.idf(t) >= MIN_NAME_IDF}
        assert named.weights == article.weights
        for i in range(15):
            found = window.similarity(article, f"s{i}")
            assert found == _word_cosine(window, query, lang, f"s{i}"), (n, i)
            checked += found > 0
    assert checked > 500  # the draw holds many stories with shared words (and counts past the tf table, 64)
    assert window.idf("~k0") < MIN_NAME_IDF < window.idf("~k59")  # the floor kept some keys and left out others


def test_the_cosine_does_not_depend_on_the_order_words_were_counted_in() -> None:
    articles = [
        ("s1", {"alpha": 3, "beta": 1, "gamma": 2}),
        ("s1", {"delta": 1, "alpha": 1}),
        ("s2", {"beta": 2, "epsilon": 1}),
        ("s1", {"gamma": 1, "zeta": 4, "eta": 1}),
    ]
    forward, backward = TermWindow(10, _same), TermWindow(10, _same)
    for story, terms in articles:
        forward.add(story, "en", terms)
    for story, terms in reversed(articles):
        backward.add(story, "en", dict(reversed(list(terms.items()))))
    query = {"alpha": 1, "zeta": 2, "beta": 1}
    assert forward.similarity(forward.vector(query, "en"), "s1") == backward.similarity(
        backward.vector(query, "en"), "s1"
    )


def _remember(state: StoryState, n: int, story: str, terms: dict[str, int], lang: str = "en") -> None:
    state.remember_article(f"a{n}", story, VEC, None, lang=lang, terms=terms)


def test_a_reopened_state_weighs_words_exactly_as_the_live_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(story_state, "RECENT_ARTICLES", 20)  # the window: the last 20 articles with terms
    path = tmp_path / "stories.sqlite3"
    state = StoryState(path)
    words = ["siege", "convoy", "evacuation", "ceasefire", "bus", "corridor"]
    for n in range(45):  # rows are trimmed every 2 articles, the window slides by each one
        _remember(state, n, f"s{n % 3}", {words[n % 7 % 6]: 1 + n % 2, words[(n + 1) % 5]: 1, "aleppo": 1})
    # remembered while the evidence is off: holds its place in the window, counts in nothing
    state.remember_article("no-terms", "s9", VEC, None)
    state.commit()
    for n in range(45, 50):  # with name keys too, in other languages
        _remember(state, n, f"s{n % 3}", {"convoy": 1, f"~k{n}": 1, "~dm": 1}, lang="ar")
    state.commit()
    query = {"convoy": 1, "evacuation": 2, "aleppo": 1, "~k45": 1, "~k46": 1}

    def both(state: StoryState) -> list[tuple[float, float]]:
        found = state.evidence(query, "en")
        assert set(found.name_bounds) == {"s0", "s1"}  # the stories holding k45 and k46
        return [(found.words(_cand(s)), found.names(_cand(s))) for s in ("s0", "s1", "s2")]

    live = both(state)
    assert len(state._word_window()) == 19 and len(set(live)) == 3
    assert all(w > 0 for w, _ in live) and [n > 0 for _, n in live] == [True, True, False]
    assert [state.evidence(query, "en").words(_cand(s)) for s in ("s0", "s1", "s2")] == [w for w, _ in live]
    state.close()
    reopened = StoryState(path)
    assert both(reopened) == live
    reopened.close()


def test_a_schema_2_state_gains_the_columns_of_the_word_evidence(tmp_path: Path) -> None:
    path = tmp_path / "stories.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(story_state._SCHEMA.replace(", lang TEXT, terms TEXT", ""))
    db.execute("INSERT INTO meta (key, value) VALUES ('schema', '2')")
    db.execute(
        "INSERT INTO recent_articles (article_id, story_id, day, vec) VALUES ('old', 's0', NULL, ?)",
        (np.ones(4, dtype="<f4").tobytes(),),
    )
    db.commit()
    db.close()
    state = StoryState(path)
    _remember(state, 1, "s1", {"convoy": 1})
    _remember(state, 2, "s2", {"ceasefire": 1})
    state.commit()
    assert state.evidence({"convoy": 1}, "en").words(_cand("s1")) == pytest.approx(1.0)
    assert state._meta("schema", "") == str(story_state.SCHEMA_VERSION) == "3"
    state.close()


def _cand(story_id: str) -> Candidate:
    at = datetime(2024, 12, 8, tzinfo=UTC)
    return Candidate(story_id=story_id, centroid=np.ones(4, dtype=np.float32), first_seen=at, last_seen=at)


def test_the_frequency_bound_of_a_counted_name_is_the_idf_floor_exactly() -> None:
    # the story's side skips a key by its document frequency (an integer test) instead of its IDF: the same keys
    window = TermWindow(10, _same)
    for documents in range(6000):
        window._documents, window._most = documents, None
        most = window._most_named()
        for frequency in range(max(0, most - 2), most + 3):
            assert (math.log((documents + 1) / (frequency + 1)) >= MIN_NAME_IDF) == (frequency <= most)
