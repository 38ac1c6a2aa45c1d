"""Cross-script name keys (stream.name_keys): one name's spellings in Latin, Cyrillic and Arabic script meet,
common words of cased scripts are not names, and the keys are the terms the name evidence counts."""

from __future__ import annotations

import unicodedata

import pytest

from stream.name_keys import KEY_PREFIX, arabic_keys, key, name_keys


@pytest.mark.parametrize(
    ("spellings", "arabic"),
    [
        (("Raqqa", "Rakka", "Ракка", "Раккой"), "الرقة"),
        (("Douma", "Duma", "Дума", "Думе"), "دوما"),
        (("Ghouta", "Guta", "Гута"), "الغوطة"),
        (("Koblenz", "Кобленц"), "كوبلنز"),
        (("Shaykhun", "Cheikhoun", "Şeyhun", "Шейхун"), "شيخون"),
    ],
)
def test_one_names_spellings_in_three_scripts_have_one_key(spellings: tuple[str, ...], arabic: str) -> None:
    keys = {key(word) for word in spellings} | {key(arabic, arabic=True)}
    assert len(keys) == 1 and "" not in keys, keys


@pytest.mark.parametrize(
    ("spellings", "arabic"),
    [
        # (word, the language of the article it is in): German, Spanish and Greek write the sound of خ otherwise
        ((("Khan", "en"), ("Chan", "de"), ("Jan", "es"), ("Han", "tr"), ("Хан", "ru"), ("Χαν", "el")), "خان"),
        ((("Shaykhun", "en"), ("Scheichun", "de"), ("Sheijun", "es"), ("Şeyhun", "tr")), "شيخون"),
        ((("Jarablus", "en"), ("Cerablus", "tr"), ("Джараблус", "ru")), "جرابلس"),
        ((("Douma", "fr"), ("Ντούμα", "el"), ("Дума", "uk")), "دوما"),
        ((("Idlib", "en"), ("Ιντλίμπ", "el"), ("Идлиб", "ru")), "إدلب"),
        ((("Chechnya", "en"), ("Czeczenia", "pl"), ("Tschetschenien", "de"), ("Чечня", "ru")), "الشيشان"),
    ],
)
def test_a_language_that_spells_a_sound_its_own_way_meets_the_others(
    spellings: tuple[tuple[str, str], ...], arabic: str
) -> None:
    keys = {key(word, lang=lang) for word, lang in spellings} | {key(arabic, arabic=True)}
    assert len(keys) == 1 and "" not in keys, keys


def test_respellings_follow_the_articles_language() -> None:
    assert key("Chan", lang="de") != key("Chan", lang="en")  # German ch is kh, English ch is not
    assert key("Tschetschenien", lang="de") == key("Chechnya", lang="en")  # German "tsch" is English "ch"
    assert key("Raqqa", lang="de") == key("Raqqa")  # a spelling without the language's own letters is unchanged
    assert key("Çavuşoğlu", lang="tr") == key("Чавушоглу")  # Turkish ç is ch, not the j of its c
    assert name_keys("", "Angriff auf Chan Scheichun", "DE") == name_keys("", "Angriff auf Chan Scheichun", "de")


def test_an_arabic_word_loses_its_article_clitics_and_final_ta_marbuta() -> None:
    bare = key("رقة", arabic=True)
    assert bare and all(key(word, arabic=True) == bare for word in ("الرقة", "والرقة", "بالرقة", "للرقة"))
    # a one-letter clitic without the article may also be the name's own first letter: both keys are kept
    assert key("دوما", arabic=True) in arabic_keys("بدوما")
    assert arabic_keys("كوبلنز")[0] == key("Koblenz")


def test_different_names_have_different_keys() -> None:
    names = ["Raqqa", "Douma", "Ghouta", "Koblenz", "Aleppo", "Idlib", "Latakia", "Damascus"]
    assert len({key(name) for name in names}) == len(names)


def test_names_are_capitalised_words_and_every_arabic_word_counts() -> None:
    found = name_keys("Convoy reaches Rakka", "the convoy left at dawn; وصلت القافلة إلى الرقة")
    assert found[KEY_PREFIX + key("Raqqa")] == 2  # the Latin and the Arabic spelling
    assert KEY_PREFIX + key("Convoy") in found  # a capitalised word is taken for a name (rarity weighs it)
    assert KEY_PREFIX + key("dawn") not in found  # a lower-case Latin word is not
    assert KEY_PREFIX + key("القافلة", arabic=True) in found  # Arabic has no capitals: every word is read
    assert all(k.startswith(KEY_PREFIX) for k in found)


def test_skeletons_too_short_to_tell_anything_are_no_keys() -> None:
    assert key("Aya") == "" and key("Ali") == ""  # one consonant or none: too common a sound
    assert name_keys("", "Ali and Omar met Aya") == {KEY_PREFIX + key("Omar"): 1}


def test_only_the_start_of_a_long_text_is_read() -> None:
    late = "x " * 1500 + "Raqqa"
    assert name_keys("", late) == {}


def test_a_name_after_a_hyphen_is_read() -> None:
    assert KEY_PREFIX + key("Raqqa") in name_keys("", "Clashes in al-Raqqa")
    found = name_keys("", "Удар по Хан-Шейхуну")
    assert KEY_PREFIX + key("Khan") in found and KEY_PREFIX + key("Shaykhun") in found


def test_decomposed_letters_and_arabic_diacritics_do_not_change_a_key() -> None:
    plain = name_keys("", "Han Şeyhun ve الرقة ودوما")
    assert name_keys("", unicodedata.normalize("NFD", "Han Şeyhun ve الرقّة ودُومَا")) == plain


def test_function_words_are_no_names_even_capitalised_or_arabic() -> None:
    # a sentence's first word is capitalised; Arabic has no capitals: both lists come from stopwords-iso
    assert name_keys("", "Nach dem Angriff auf Duma", "de") == {
        KEY_PREFIX + key("Angriff"): 1,
        KEY_PREFIX + key("Duma"): 1,
    }
    assert name_keys("", "Before Kabul", "en") == {KEY_PREFIX + key("Kabul"): 1}
    assert name_keys("", "قبل الهجوم على دوما", "ar") == name_keys("", "الهجوم دوما", "ar")
    assert KEY_PREFIX + key("قبل", arabic=True) not in name_keys("", "وقال قبل ذلك", "ar")
