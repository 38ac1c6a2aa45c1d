"""Digits as Arabic and Persian newsrooms write them (٢٠١٧, ۱۳۹۶) are the digits 0-9 to a search, on both
stores: an analyst typing 2017 finds the Arabic report that wrote ٢٠١٧, and the other way round."""

from __future__ import annotations

from indexer.store import SearchRequest, SearchStore
from stream.text import fold
from stream.word_forms import tokens
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
