import json

from stream.article import Article
from stream.ingest import IngestError, read_jsonl


def test_malformed_lines_name_line_and_field_and_the_rest_goes_through() -> None:
    lines = [
        json.dumps({"url": "https://a.example/1", "title": "One", "text": "Sednaya prison story text", "lang": "en"}),
        "{broken json",
        json.dumps({"url": "https://a.example/2", "text": "no title"}),
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
        "line 3, field 'title'",
        "line 4, field 'url'",
        "line 6, field 'published'",
    ]
    assert "not valid JSON" in str(errors[0])
    assert [a.url for a in good] == ["https://a.example/1", "https://a.example/4?utm_source=x"]
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
