"""Topic relevance on the real topic file: names in every script, co-terms, negative cues."""

from __future__ import annotations

import pytest

from crawlers.relevance import RelevanceFilter
from stream.settings import Settings
from stream.topic import load_topic


@pytest.fixture(scope="module")
def relevance() -> RelevanceFilter:
    return RelevanceFilter(load_topic(Settings().topic_file))


@pytest.mark.parametrize(
    ("title", "text"),
    [
        ("Freed Sednaya detainees speak", "Former detainees described torture in the prison."),
        ("", "Amnesty says thousands were hanged at Saydnaya prison."),
        ("سجن صيدنايا", "قال ناجون إن التعذيب كان يوميا في المعتقل."),
        ("", "وأكد شهود أن المعتقلين في صيدنايا تعرضوا للتعذيب"),  # prefixes attached to co-terms
        ("", "Un rapport décrit des pendaisons à la prison de Saidnaya."),
        ("", "Häftlinge berichten von Folter im Militärgefängnis Sednaja."),
        ("", "Sednaya'daki cezaevinde işkence iddiaları araştırılıyor."),
        ("", "SEDNAYA PRISON: DETAINEES"),  # case folding
        ("", "Saydnáya prisón detainées"),  # diacritic folding
        ("", "Сайеднайя: бывшие заключенные рассказали о тюрьмы"),
        ("Report", "The human slaughterhouse report was published today."),  # strong name alone
    ],
)
def test_prison_coverage_is_relevant(relevance: RelevanceFilter, title: str, text: str) -> None:
    result = relevance.score(title, text)
    assert relevance.is_relevant(result), f"{text!r}: {result}"
    assert result.terms


@pytest.mark.parametrize(
    "text",
    [
        "Saidnaya monastery welcomes pilgrims; tourists stay at a hotel near the convent.",
        "زار الحجاج دير صيدنايا وكنيسة سيدة صيدنايا في رحلة سياحة دينية.",
        "Le monastère de Saidnaya attire des pèlerins; le tourisme reprend.",
        "Das Kloster von Saidnaja ist ein Ziel für Pilger.",
        "Saydnaya manastırı turizm için yeniden açıldı.",
        "A day trip to Saidnaya.",  # the name alone is not enough
        "Thousands of detainees were tortured in prisons across the country.",  # co-terms without the name
    ],
)
def test_town_monastery_and_generic_texts_are_rejected(relevance: RelevanceFilter, text: str) -> None:
    result = relevance.score("", text)
    assert not relevance.is_relevant(result), f"{text!r}: {result}"


def test_negative_cues_are_reported_and_subtract(relevance: RelevanceFilter) -> None:
    result = relevance.score("Saidnaya", "The monastery and the prison: pilgrims and detainees.")
    assert "-monastery" in result.terms and "Saidnaya" in result.terms
    clean = relevance.score("Saidnaya", "The prison and its detainees.")
    assert result.score < clean.score


def test_arabic_word_inside_another_word_does_not_match(relevance: RelevanceFilter) -> None:
    # "مدير" (director) contains "دير" (monastery): it must not count as a negative cue.
    result = relevance.score("", "قال مدير سجن صيدنايا السابق إن المعتقلين عذبوا")
    assert not any(t.startswith("-") for t in result.terms), result
    assert relevance.is_relevant(result)


def test_mentions_name_is_the_cheap_prefilter(relevance: RelevanceFilter) -> None:
    assert relevance.mentions_name("https://x.test/sednaya-prison-report")
    assert relevance.mentions_name("تقرير عن صيدنايا")
    assert not relevance.mentions_name("Football: derby report")


def test_score_is_bounded_and_rounded(relevance: RelevanceFilter) -> None:
    long_text = "Sednaya prison detainees torture executions hangings Assad Amnesty crematorium " * 50
    result = relevance.score("Sednaya", long_text)
    assert result.score == 1.0
    assert relevance.score("", "nothing here").score == 0.0
