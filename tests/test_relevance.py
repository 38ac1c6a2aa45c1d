"""Topic relevance on the real topic file: names in every script, co-terms, negative cues."""

from __future__ import annotations

from pathlib import Path

import pytest

from crawlers.relevance import RelevanceFilter
from sednaya_monitor.settings import Settings
from stream.errors import TopicError
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
        # Slavic declension replaces the name's last vowel; Hebrew attaches prepositions; invisible hyphens
        ("", "Узники в Сайеднайе рассказали о пытках в тюрьме."),
        ("", "Освобождение Сайеднайи: заключенные вышли на свободу."),
        ("", "Колишні в'язні у Сайднайї розповіли про катування."),
        ("", "Byli więźniowie z Sajdnai mówią o torturach w więzieniu w Sednai."),
        ("", "אסירים לשעבר בסיידנאיא סיפרו על עינויים בכלא."),
        ("Häft\u00adlinge in Sed\u00adnaya", "Hin\u00adrichtungen im Militär\u00adgefängnis bezeugt."),
        # a headline naming the prison, a text listing the other prisons opened that day (not a passing mention)
        (
            "Detainees walk out of Sednaya",
            (
                "Fighters freed detainees from Sednaya prison and from Aleppo Central Prison, Hama Central "
                "Prison and Homs Central Prison."
            ),
        ),
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


# --- negative cues with context, in five languages (pieces written for the fixtures) ---------------------
@pytest.mark.parametrize(
    "text",
    [
        # the town, its convent and pilgrimages: the prison named in passing does not rescue it
        (
            "Pilgrims climb to the convent of Our Lady above Saidnaya; the nuns open the chapel. The town is known "
            "abroad for the prison outside it."
        ),
        "Des pèlerins montent au couvent de Saidnaya; les religieuses ouvrent la chapelle, loin de la prison.",
        "Pilger ziehen zum Nonnenkloster von Saidnaja; das Gefängnis liegt außerhalb der Stadt.",
        "Hacılar Saydnaya'daki manastıra çıktı; rahibeler kiliseyi açtı. Cezaevi şehrin dışında.",
        "صعد الحجاج إلى دير سيدة صيدنايا وفتحت الراهبات الكنيسة، بعيدا عن السجن.",
        # other Syrian prisons: Sednaya named once, the other prison repeatedly
        (
            "Adra prison holds thousands. Detainees in Adra said guards beat them; some were moved to Sednaya. "
            "Adra's files will be reviewed."
        ),
        (
            "La prison d'Adra déborde. Les détenus d'Adra décrivent la torture; certains sont partis à Saydnaya. "
            "Adra sera inspectée."
        ),
        (
            "Das Gefängnis Adra ist überfüllt. Häftlinge in Adra berichten von Folter; einige kamen nach Sednaja. "
            "Adra wird geprüft."
        ),
        (
            "Adra Cezaevi'nde mahkumlar kalabalıktan yakındı. Adra'da işkence var; bazıları Adra'dan Sednaya'ya "
            "nakledildi."
        ),
        "سجن عدرا مكتظ. وقال معتقلون في عدرا إن التعذيب كان يوميا، ونقل بعضهم إلى صيدنايا. وستراجع ملفات عدرا.",
    ],
)
def test_town_convent_pilgrimage_and_other_prisons_are_rejected(relevance: RelevanceFilter, text: str) -> None:
    result = relevance.score("", text)
    assert not relevance.is_relevant(result), f"{text!r}: {result}"


@pytest.mark.parametrize(
    "text",
    [
        # Deir ez-Zor holds the word for monastery (دير) in Arabic and must not count as a negative cue
        "نقل معتقلون من سجن صيدنايا إلى سجون في دير الزور، ولم يعرف مصيرهم.",
        "Detainees were moved from Sednaya prison to Deir ez-Zor, the documents show.",
        "Des détenus de la prison de Saydnaya ont été transférés à Deir ez-Zor.",
        "Häftlinge aus dem Gefängnis Sednaja wurden nach Deir ez-Zor verlegt.",
        "Sednaya cezaevindeki tutuklular Deir ez-Zor'a nakledildi.",
        # a cue must be a whole word: "convention" is not "convent", "hotelier" not "hotel"
        "The UN Convention against Torture applies to the Sednaya prison detainees, lawyers said.",
        # a Sednaya article that also names another prison is still about Sednaya
        "Sednaya prison survivors said some cellmates came from Adra prison. Sednaya's guards fled.",
        # named once, beside another prison named twice: still about Sednaya
        "Detainees were moved from Mezzeh to Sednaya prison; Mezzeh's records list their names.",
    ],
)
def test_deir_ez_zor_conventions_and_shared_mentions_stay_relevant(relevance: RelevanceFilter, text: str) -> None:
    result = relevance.score("", text)
    assert relevance.is_relevant(result), f"{text!r}: {result}"
    assert not any(t.startswith("-") for t in result.terms), result


def test_arabic_monastery_cue_still_fires_on_its_own(relevance: RelevanceFilter) -> None:
    result = relevance.score("", "زار الحجاج الدير في صيدنايا ثم مروا قرب السجن")
    assert "-دير" in result.terms, result


def test_passing_mention_is_reported(relevance: RelevanceFilter) -> None:
    result = relevance.score("", "Adra prison, Adra detainees, Adra guards, and once Sednaya.")
    assert "~passing" in result.terms


# --- the feed prefilter ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("Freed Sednaya detainees speak", "name"),
        ("https://x.test/2024/12/saydnaya-report.html", "name"),
        ("Washington accuses Damascus of using a crematorium", "context"),
        ("Syrie : des charniers découverts au nord de Damas", "context"),
        ("Washington wirft Damaskus Krematorium vor", "context"),
        ("Şam yakınlarında toplu mezar bulundu", "context"),
        ("واشنطن تتهم دمشق بإقامة محرقة للجثث", "context"),
        ("Syria: prisoners freed from Aleppo central jail", "context"),
        ("Syria's football league to restart in January", None),  # region word alone
        ("Assad visits Moscow", None),  # "Assad" is a region word and a co-term: one word is not two
        ("Prison reform bill passes in parliament", None),  # a co-term alone
        ("Late goal settles the capital derby", None),
    ],
)
def test_prefilter_needs_a_name_or_a_region_word_with_an_event_word(
    relevance: RelevanceFilter, entry: str, expected: str | None
) -> None:
    assert relevance.prefilter(entry) == expected


def test_topic_file_prefilter_and_negative_tables(tmp_path: Path) -> None:
    topic = load_topic(Settings().topic_file)
    assert "دير الزور" in topic.negative_places and "Adra" in topic.other_places
    assert "Damascus" in topic.prefilter_context and "mass grave" in topic.prefilter_events
    bad = tmp_path / "t.toml"
    base = 'id = "x"\ntitle = "x"\nnames = {latin = ["Sednaya"]}\ncoterms = {en = ["prison"]}\n'
    bad.write_text(base + '[prefilter]\ncontext = "Syria"\n', encoding="utf-8")
    with pytest.raises(TopicError, match=r"t.toml.*'prefilter.context' must be a list"):
        load_topic(bad)
    bad.write_text(base + 'prefilter = "yes"\n', encoding="utf-8")
    with pytest.raises(TopicError, match=r"t.toml.*'prefilter' must be a table"):
        load_topic(bad)
    bad.write_text(base + 'institution = "prison"\n', encoding="utf-8")
    with pytest.raises(TopicError, match=r"t.toml.*'institution' must be a table"):
        load_topic(bad)
    bad.write_text(base + '[institution]\nwords = "prison"\n', encoding="utf-8")
    with pytest.raises(TopicError, match=r"t.toml.*'institution.words' must be a list"):
        load_topic(bad)
    assert "سجن" in topic.institution_words and "de" in topic.institution_links
    bare = tmp_path / "bare.toml"
    bare.write_text(base, encoding="utf-8")
    plain = RelevanceFilter(load_topic(bare))  # a topic without the new tables: names decide, as before
    assert plain.prefilter("Damascus crematorium") is None and plain.prefilter("Sednaya") == "name"


# --- the institution's own name ("Sednaya prison", "سجن صيدنايا"): pieces written for these tests ------
@pytest.mark.parametrize(
    "text",
    [
        # one incidental negative cue beside the prison's full name: still about the prison
        "Sednaya prison draws pilgrims of grief: families come looking for the missing.",
        "La prison de Saydnaya attire des pèlerins du deuil : les familles cherchent leurs disparus.",
        "Das Gefängnis Sednaja zieht Pilger der Trauer an: Familien suchen ihre Verschwundenen.",
        "Sednaya Cezaevi'ne hacı gibi gelen aileler kayıplarını arıyor.",
        "عائلات تزور سجن صيدنايا كالحجاج بحثا عن المفقودين",
        # languages discovery brings in: Ukrainian (any apostrophe), Russian case forms, Spanish, Polish
        "Колишні в’язні тюрми Сайднайя розповіли про катування.",
        "Бывшие узники тюрьмы Сайднайя рассказали о пытках.",
        "Sobrevivientes de la prisión de Saydnaya denuncian torturas.",
        "Byli więźniowie więzienia Sajdnaja opowiadają o torturach.",
    ],
)
def test_the_institutions_name_outweighs_one_incidental_cue(relevance: RelevanceFilter, text: str) -> None:
    result = relevance.score("", text)
    assert relevance.is_relevant(result), f"{text!r}: {result}"
    assert "~institution" in result.terms, result


def test_an_institution_phrase_needs_the_words_joined(relevance: RelevanceFilter) -> None:
    # punctuation breaks the phrase: the town's name, then a sentence about the prison
    assert "~institution" not in relevance.score("", "Pilgrims reach Saidnaya. Prison visits are closed.").terms
    assert "~institution" in relevance.score("", "La prison militaire de Saydnaya").terms  # two link words
    assert "~institution" in relevance.score("", "Sednaja-Gefängnis").terms  # a hyphen joins
    # a passing "Sednaya prison" in a piece about another prison stays a passing mention
    passing = relevance.score("", "Adra prison, Adra detainees, Adra guards, and once Sednaya prison.")
    assert "~passing" in passing.terms and not relevance.is_relevant(passing), passing


def test_name_stems_are_matched_but_never_searched(tmp_path: Path) -> None:
    """``[names] stems`` (declined forms) count as the name for the filter and stay out of the crawl's
    searches (GDELT, Google News ask for ``names`` only)."""
    path = tmp_path / "t.toml"
    path.write_text(
        'id = "t"\ntitle = "T"\n[names]\nlatin = ["Sednaya"]\ncyrillic = ["Седная"]\nstems = ["Седна"]\n'
        '[coterms]\nru = ["тюрьм"]\n',
        encoding="utf-8",
    )
    topic = load_topic(path)
    assert topic.names == ("Sednaya", "Седная") and topic.name_stems == ("Седна",)
    assert "stems" not in topic.names_by_script
    assert RelevanceFilter(topic).score("", "в тюрьме в Седнае").score > 0
    plain = load_topic(Path(__file__).resolve().parent.parent / "stream" / "topics" / "sednaya.toml")
    assert not set(plain.name_stems) & set(plain.names)
