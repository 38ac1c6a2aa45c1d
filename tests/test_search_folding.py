"""What folding keeps and what it drops, as a search on both stores sees it: digits as Arabic and Persian
newsrooms write them (٢٠١٧, ۱۳۹۶) are the digits 0-9 (an analyst typing 2017 finds the Arabic report that
wrote ٢٠١٧, and the other way round); the Cyrillic short i stays a letter, so a Russian word is found in its
other cases ("военная" finds "военной тюрьме")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from indexer.store import SearchRequest, SearchStore
from indexer.store_embedded import EmbeddedStore
from stream.text import fold
from stream.word_forms import FORMS_VERSION, document_forms, tokens
from tests.store_fixtures import make_article


def test_arabic_indic_and_persian_digits_fold_to_the_digits() -> None:
    assert fold("٢٠١٧ و۱۳۹۶ و١٣٬٠٠٠") == "2017 و1396 و13٬000"
    assert tokens("إعدام ١٣٬٠٠٠ معتقل عام ٢٠١٧") == tokens("اعدام 13٬000 معتقل عام 2017")


def test_a_year_written_in_arabic_indic_digits_is_found_by_its_digits(contract_store: SearchStore) -> None:
    indic = make_article(
        url="https://akhbar.example/2017/05/crematorium",
        lang="ar",
        title="واشنطن: محرقة في سجن صيدنايا",
        text="قالت الخارجية الأمريكية في أيار ٢٠١٧ إن السلطات بنت محرقة قرب السجن لإخفاء الجثث.",
    )
    western = make_article(
        url="https://akhbar.example/2015/report",
        lang="ar",
        title="تقرير عن سجن صيدنايا",
        text="وثق تقرير صدر عام 2015 شهادات معتقلين سابقين في السجن.",
    )
    assert contract_store.write_articles([indic, western]) == []
    assert [h.article.id for h in contract_store.search(SearchRequest(query="2017")).hits] == [indic.id]
    assert [h.article.id for h in contract_store.search(SearchRequest(query="٢٠١٥")).hits] == [western.id]


def test_the_cyrillic_short_i_is_kept_so_russian_words_stem_to_one_form() -> None:
    assert fold("Военный") == "военный" and fold("Ёлка") == "елка"
    words = tokens("военной военная военный заключенный заключённые тюремная тюремный")
    assert len(set(document_forms(words, "ru"))) == 3  # one form for each word in all its cases


def test_a_russian_word_is_found_in_its_other_cases(contract_store: SearchStore) -> None:
    report = make_article(
        url="https://vesti.example/2024/12/10/sednaya",
        lang="ru",
        title="Заключенные военной тюрьмы Сайеднайя",
        text="Бывшие заключённые военной тюрьмы рассказали о казнях и пытках в подземных камерах.",
    )
    assert contract_store.write_articles([report]) == []
    for query in ("военная", "военный", "заключенный", "тюрьма"):
        found = contract_store.search(SearchRequest(query=query, lang="ru")).hits
        assert [h.article.id for h in found] == [report.id], query


def test_an_embedded_store_indexed_by_older_folding_rules_rebuilds_its_text_index(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = EmbeddedStore(path)
    report = make_article(lang="ar", title="تقرير عن سجن صيدنايا", text="أعدم آلاف المعتقلين بين ٢٠١١ و٢٠١٥ في السجن.")
    assert store.write_articles([report]) == []
    store.close()
    with sqlite3.connect(path) as conn:  # as a store of the previous version left it: the digits unfolded
        assert conn.execute("SELECT value FROM meta WHERE key = 'forms'").fetchone() == (str(FORMS_VERSION),)
        conn.execute("UPDATE articles_fts SET body = replace(replace(body, '2011', '٢٠١١'), '2015', '٢٠١٥')")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'forms'")
    reopened = EmbeddedStore(path)
    assert [h.article.id for h in reopened.search(SearchRequest(query="2015")).hits] == [report.id]
    reopened.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'forms'").fetchone() == (str(FORMS_VERSION),)
