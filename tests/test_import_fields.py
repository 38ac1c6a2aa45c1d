"""Imported fields as exporters write them (stream.import_fields, stream.ingest): a record is not lost
over the format of a date, the case of a language code or a null author list."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from stream.article import Article
from stream.import_fields import language_hint, published_at, script_agrees
from stream.ingest import IngestError, article_language, read_jsonl

NOON = datetime(2024, 12, 8, 11, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-12-08T11:00:00Z", NOON),
        ("2024-12-08T14:00:00+03:00", NOON),
        ("Sun, 08 Dec 2024 12:00:00 +0100", NOON),  # RFC 2822, as RSS writes it
        ("Sun, 08 Dec 2024 11:00:00 GMT", NOON),
        ("08 Dec 2024 11:00 UT", NOON),
        (1733655600, NOON),  # a Unix time in seconds
        (1733655600000, NOON),  # ... and in milliseconds
        ("1733655600", NOON),
        (1733655600.0, NOON),
        ("2024-12-08T11:00:00 GMT", NOON),
        ("2024-12-8", datetime(2024, 12, 8, tzinfo=UTC)),
        ("December 8, 2024", datetime(2024, 12, 8, tzinfo=UTC)),
        ("8 décembre 2024", datetime(2024, 12, 8, tzinfo=UTC)),
        ("8. Dezember 2024", datetime(2024, 12, 8, tzinfo=UTC)),
        ("8 Aralık 2024", datetime(2024, 12, 8, tzinfo=UTC)),
        ("8 декабря 2024", datetime(2024, 12, 8, tzinfo=UTC)),
        ("٨ كانون الأول ٢٠٢٤", datetime(2024, 12, 8, tzinfo=UTC)),
        (None, None),
        ("", None),
        ("   ", None),
    ],
)
def test_dates_as_exporters_write_them(value: object, expected: datetime | None) -> None:
    assert published_at(value) == expected


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("soon", "is not a date"),
        ("2024", "is not a date"),  # a year alone: a day would be made up
        ("December 2024", "is not a date"),
        ("0001-01-01T00:00:00Z", "outside 1900-2100"),
        ("9999-12-31", "outside 1900-2100"),
        (-99999999999999, "is not a date"),  # no time a computer reads
        (-3000000000, "outside 1900-2100"),  # 1874
        (True, "got boolean"),
        ({"date": "2024-12-08"}, "got object"),
    ],
)
def test_a_value_that_is_no_date_is_an_error_naming_it(value: object, error: str) -> None:
    with pytest.raises((ValueError, TypeError), match=error):
        published_at(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("en", "en"),
        ("EN", "en"),
        (" fr ", "fr"),
        ("en-US", "en"),
        ("ar_SY", "ar"),
        ("zh-Hant", "zh"),
        ("eng", "en"),
        ("ara", "ar"),
        ("fre", "fr"),
        ("deu", "de"),
        ("tur", "tr"),
        ("", None),
        ("und", None),
        ("english", None),
        (None, None),
    ],
)
def test_language_codes_as_exporters_write_them(value: str | None, expected: str | None) -> None:
    assert language_hint(value) == expected


ARABIC = "عائلات المعتقلين تبحث عن ذويها في سجن صيدنايا قرب دمشق بعد فتح أبوابه"
RUSSIAN = "Семьи заключённых ищут родственников в тюрьме Сайеднайя под Дамаском"
ENGLISH = "Families of detainees search for their relatives at Sednaya prison near Damascus"


def test_a_language_field_in_another_script_than_the_text_is_only_a_hint() -> None:
    assert script_agrees("ar", ARABIC) and script_agrees("fa", ARABIC) and not script_agrees("en", ARABIC)
    assert script_agrees("uk", RUSSIAN) and not script_agrees("de", RUSSIAN)
    assert script_agrees("en", "2024 12 08")  # no letters: nothing to disagree with
    assert article_language("", ARABIC, "en") == "ar"  # the exporter's default language, wrong here
    assert article_language("", ENGLISH, "EN-gb") == "en"
    assert article_language("", ENGLISH, "fr") == "fr"  # the same script: the field is trusted
    assert article_language("", ENGLISH, None) == "en"
    assert article_language("", ARABIC, "xx") == "ar"


def _one(record: dict[str, object]) -> Article:
    (out,) = list(read_jsonl([json.dumps(record, ensure_ascii=False)]))
    assert isinstance(out, Article), str(out)
    return out


def test_an_ingested_record_keeps_what_its_exporter_wrote_in_its_own_way() -> None:
    article = _one(
        {
            "url": "https://news.example/ar/1",
            "title": "",
            "text": ARABIC + "\nفقرة ثانية.",
            "lang": "ara",
            "published": "Sun, 08 Dec 2024 12:00:00 +0100",
            "authors": None,
        }
    )
    assert (article.lang, article.published, article.authors) == ("ar", NOON, ())
    assert article.title == ARABIC  # only a text: its first line is the title
    headline = _one({"url": "https://news.example/en/2", "title": ENGLISH, "authors": ["A. Writer", None, " "]})
    assert headline.text == ENGLISH and headline.authors == ("A. Writer",)  # only a headline: kept as the text
    long_line = "word " * 80
    derived = _one({"url": "https://news.example/en/3", "text": long_line})
    assert len(derived.title) <= 202 and derived.title.endswith("…")


def test_the_date_an_importer_gives_is_an_error_only_when_it_is_no_date() -> None:
    (out,) = list(read_jsonl([json.dumps({"url": "https://a.example/x", "title": "t", "published": "soon"})]))
    assert isinstance(out, IngestError) and out.field == "published" and "'soon' is not a date" in str(out)


def test_html_in_an_imported_record_is_read_as_its_text() -> None:
    article = _one(
        {
            "url": "https://news.example/ar/9",
            "title": "<b>شهادات</b> من سجن صيدنايا",
            "text": f"<p>{ARABIC}</p><p>شهادة &amp; ثانية<br/>سطر</p><script>track();</script>",
        }
    )
    assert article.title == "شهادات من سجن صيدنايا"
    assert article.text == f"{ARABIC}\nشهادة & ثانية\nسطر"
    assert article.lang == "ar"
    plain = _one({"url": "https://news.example/en/9", "title": "Prices < costs", "text": "a < b and c > d"})
    assert plain.text == "a < b and c > d"  # no markup: left as it is
