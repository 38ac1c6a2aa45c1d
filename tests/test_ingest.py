import io
import json

import pytest

from stream.article import Article
from stream.errors import UnsupportedSchemaError
from stream.ingest import IngestError, article_from_record, iter_lines, parse_line, read_jsonl
from stream.language import detect_language
from stream.text import content_hash, without_lone_surrogates


def test_malformed_lines_name_line_and_field_and_the_rest_goes_through() -> None:
    lines = [
        json.dumps({"url": "https://a.example/1", "title": "One", "text": "Sednaya prison story text", "lang": "en"}),
        "{broken json",
        json.dumps({"url": "https://a.example/2", "text": "A text without its headline\nSecond line"}),
        json.dumps({"url": "not a url", "title": "x", "text": "y"}),
        "",
        json.dumps({"url": "https://a.example/3", "title": "Three", "text": "t", "published": "last week"}),
        json.dumps(
            {
                "url": "https://a.example/4?utm_source=x",
                "title": "Four",
                "text": "Text",
                "lang": "en",
                "published": "2017-05-15T10:00:00+02:00",
                "source": "src",
            }
        ),
    ]
    out = list(read_jsonl(lines))
    errors = [o for o in out if isinstance(o, IngestError)]
    good = [o for o in out if isinstance(o, Article)]
    assert [str(e).split(":")[0] for e in errors] == [
        "line 2",
        "line 4, field 'url'",
        "line 6, field 'published'",
    ]
    assert "not valid JSON" in str(errors[0])
    assert [a.url for a in good] == ["https://a.example/1", "https://a.example/2", "https://a.example/4?utm_source=x"]
    assert good[1].title == "A text without its headline"  # a record with only a text: its first line
    last = good[-1]
    assert last.canonical_url == "https://a.example/4" and last.source == "src" and last.channel == "import"
    assert last.published is not None and last.published.isoformat() == "2017-05-15T08:00:00+00:00"
    assert last.date_source == "feed" and good[0].date_source == "none"


def test_language_detected_when_missing() -> None:
    line = json.dumps(
        {
            "url": "https://a.example/ar",
            "title": "سجن صيدنايا",
            "text": "قالت منظمة العفو الدولية إن آلاف المعتقلين أعدموا في سجن صيدنايا العسكري قرب دمشق",
        }
    )
    (article,) = list(read_jsonl([line]))
    assert isinstance(article, Article) and article.lang == "ar"


def _errors(*lines: str | bytes) -> list[str]:
    return [str(o) for o in read_jsonl(list(lines)) if isinstance(o, IngestError)]


VALID = {"url": "https://a.example/ok", "title": "Title", "text": "Some text about the prison", "lang": "en"}


@pytest.mark.parametrize(
    ("line", "message", "kind"),
    [
        (
            b'{"url": "https://a.example/\xff", "title": "t", "text": "x"}',
            "line 1: not valid UTF-8 at byte 27",
            "not_utf8",
        ),
        ("[" * 10_000 + "]" * 10_000, "line 1: nested deeper than 16 levels", "too_deep"),
        ('{"a":' * 20 + "1" + "}" * 20, "line 1: nested deeper than 16 levels", "too_deep"),
        ('["a"]', "line 1: expected a JSON object, got array", "not_object"),
        ('{"url": NaN}', "line 1: not valid JSON: NaN is not a JSON number", "not_json"),
        (
            json.dumps({**VALID, "title": "a\ud800b"}),
            "line 1, field 'title': invalid code point U+D800 (lone surrogate)",
            "invalid_code_point",
        ),
        (
            json.dumps({**VALID, "schema": 99}),
            "line 1, field 'schema': schema 99 is not supported (supported: [1])",
            "unsupported_schema",
        ),
        (
            json.dumps({**VALID, "schema": True}),
            "line 1, field 'schema': schema True is not supported",
            "unsupported_schema",
        ),
        (json.dumps({**VALID, "url": 123}), "line 1, field 'url': wrong type: expected string, got number", "contract"),
        (
            json.dumps({**VALID, "title": ["a"]}),
            "line 1, field 'title': wrong type: expected string, got array",
            "contract",
        ),
        (json.dumps({**VALID, "lang": 5}), "line 1, field 'lang': wrong type: expected string, got number", "contract"),
        (
            json.dumps({**VALID, "authors": ["a", 5]}),
            "line 1, field 'authors': item 1: wrong type: expected string, got number",
            "contract",
        ),
        (
            json.dumps({**VALID, "title": "", "text": "  "}),
            "line 1, field 'text': fields 'title' and 'text' are both missing or empty: no article",
            "contract",
        ),
        (
            json.dumps({**VALID, "published": "next Tuesday-ish"}),
            "line 1, field 'published': 'next Tuesday-ish' is not a date",
            "contract",
        ),
        (
            json.dumps({**VALID, "published": "1024-05-01"}),
            "line 1, field 'published': '1024-05-01' reads as 1024-05-01, outside 1900-2100",
            "contract",
        ),
        (
            json.dumps({**VALID, "published": ["2024-12-09"]}),
            "line 1, field 'published': expected a date (string or Unix time), got array",
            "contract",
        ),
    ],
)
def test_each_bad_line_is_an_error_naming_line_field_and_reason(line: str | bytes, message: str, kind: str) -> None:
    (error,) = list(read_jsonl([line]))
    assert isinstance(error, IngestError)
    assert str(error).startswith(message), str(error)
    assert error.kind == kind


def test_schema_one_is_accepted_on_an_import_line() -> None:
    (article,) = list(read_jsonl([json.dumps({**VALID, "schema": 1})]))
    assert isinstance(article, Article)


def test_lines_split_on_newline_only_and_a_bom_and_crlf_are_tolerated() -> None:
    first = "\ufeff" + json.dumps({**VALID, "url": "https://a.example/1"}) + "\r\n"
    second = json.dumps({**VALID, "url": "https://a.example/2", "title": "one\u2028two\rthree"}, ensure_ascii=False)
    lines = list(iter_lines(io.BytesIO((first + second).encode("utf-8"))))
    assert [line.number for line in lines] == [1, 2]
    parsed = [parse_line(line) for line in lines]
    assert all(isinstance(p, Article) for p in parsed), parsed
    assert isinstance(parsed[1], Article) and parsed[1].title == "one two three"


def test_an_over_long_line_is_cut_and_the_next_line_is_read_whole() -> None:
    long_line = json.dumps({**VALID, "text": "x" * 10_000})
    data = (long_line + "\n" + json.dumps(VALID) + "\n").encode()
    lines = list(iter_lines(io.BytesIO(data), max_line_bytes=1000))
    shapes = [(line.number, line.truncated, len(line.raw)) for line in lines]
    assert shapes == [(1, True, 1000), (2, False, len(json.dumps(VALID)))]
    error = parse_line(lines[0], max_line_bytes=1000)
    assert isinstance(error, IngestError) and error.kind == "too_long"
    assert str(error) == "line 1: line is longer than 1000 bytes (first 1000 kept)"
    assert isinstance(parse_line(lines[1], max_line_bytes=1000), Article)
    # exactly at the limit (without its newline) is still a line
    exact = json.dumps({**VALID, "text": "y" * 100})
    (line,) = list(iter_lines(io.BytesIO(exact.encode()), max_line_bytes=len(exact)))
    assert not line.truncated and isinstance(parse_line(line, max_line_bytes=len(exact)), Article)


def test_lone_surrogates_never_crash_language_detection_or_hashing() -> None:
    text = "Amnesty International said thousands of detainees were hanged at Sednaya \ud800 prison."
    assert detect_language(text) == "en"
    assert detect_language("\udfff" * 50, hint="fr") == detect_language("\ufffd" * 50, hint="fr")
    assert content_hash(text) != content_hash(text.replace("\ud800", "\ud801"))
    assert content_hash("plain text") == content_hash("plain  text")
    assert without_lone_surrogates("a\ud800b") == "a\ufffdb"


def test_article_from_record_refuses_an_unsupported_schema_itself() -> None:
    with pytest.raises(UnsupportedSchemaError, match=r"schema 2 is not supported \(supported: \[1\]\)"):
        article_from_record({**VALID, "schema": 2})
    assert article_from_record({**VALID, "schema": 1}).schema == 1


def _crawl_letter(payload: object, kind: str = "article") -> str:
    """A line as crawlers.dead_letter.DeadLetterFile writes it."""
    return json.dumps(
        {
            "at": "2026-12-07T09:00:00+00:00",
            "stage": "crawl",
            "kind": kind,
            "url": "https://wing.example.net/a",
            "source": "wing",
            "reason": "KafkaTimeoutError",
            "error_class": "BusError",
            "payload": payload,
        }
    )


def test_a_crawl_dead_letter_line_is_the_article_it_holds() -> None:
    from tests.store_fixtures import make_article

    crawled = make_article(url="https://wing.example.net/a", channel="feed", date_source="jsonld")
    (article,) = list(read_jsonl([_crawl_letter(crawled.to_dict())]))
    assert article == crawled  # as crawled: channel, dates, relevance, id
    (marked,) = list(read_jsonl([_crawl_letter(crawled.to_dict())], backfill=True))
    assert isinstance(marked, Article) and marked.backfill and marked.replace(backfill=False) == crawled


def test_a_crawl_dead_letter_without_an_article_is_refused_naming_why() -> None:
    broken = {"schema": 1, "id": "abc", "url": "https://wing.example.net/a"}
    assert _errors(_crawl_letter("{[", kind="search_response"), _crawl_letter(broken), _crawl_letter(7)) == [
        (
            "line 1, field 'kind': crawl dead letter of kind 'search_response' holds no article "
            "(only 'article' letters can be ingested)"
        ),
        "line 2, field 'payload': crawl dead letter: article abc: field 'channel' is required (missing or null)",
        "line 3, field 'payload': crawl dead letter: article must be a JSON object, got int",
    ]
    # an import record that merely has a "stage" field is still an import record
    (article,) = list(read_jsonl([json.dumps({**VALID, "stage": "crawl"})]))
    assert isinstance(article, Article) and article.channel == "import"
