"""The article contract v1: JSON Schema, round trip, golden record, errors naming the field."""

import base64
import json
import math
import re
import struct
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given, settings

from stream.article import Article
from stream.errors import ContractError, UnsupportedSchemaError
from stream.story import Story, StoryEvent
from tests.strategies import articles

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((ROOT / "stream" / "schema" / "article.v1.json").read_text())
GOLDEN = Path(__file__).parent / "golden" / "contract" / "article.v1.json"


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@settings(max_examples=60)
@given(articles())
def test_round_trip_and_schema(article: Article) -> None:
    data = article.to_dict()
    jsonschema.validate(data, SCHEMA)
    assert Article.from_json(article.to_json()) == article


def test_golden_v1_record_still_decodes() -> None:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    jsonschema.validate(data, SCHEMA)
    article = Article.from_dict(data)
    assert article.schema == 1
    assert article.lang == "en"
    assert article.relevance is not None and "Sednaya" in article.relevance.terms
    assert article.to_dict() == data


def test_embedding_only_when_asked() -> None:
    article = Article.from_dict(json.loads(GOLDEN.read_text(encoding="utf-8"))).replace(embedding=(0.5, -0.5))
    assert "embedding" not in article.to_dict()
    assert Article.from_json(article.to_json(with_embedding=True)).embedding == (0.5, -0.5)


def test_future_schema_is_refused_clearly() -> None:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data["schema"] = 2
    with pytest.raises(UnsupportedSchemaError, match=r"schema 2 is not supported \(supported: \[1\]\)"):
        Article.from_dict(data)


@pytest.mark.parametrize("schema", [[], {}, "1", 1.5, True, None])
def test_a_schema_of_any_json_type_but_one_is_refused(schema: object) -> None:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data["schema"] = schema
    with pytest.raises(UnsupportedSchemaError, match=f"schema {re.escape(repr(schema))} is not supported"):
        Article.from_dict(data)


def test_a_lone_surrogate_is_a_contract_error_naming_the_field() -> None:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data["authors"] = ["ok", "bad \udc80"]
    with pytest.raises(ContractError, match=r"field 'authors\[1\]': invalid code point U\+DC80 \(lone surrogate\)"):
        Article.from_dict(data)
    raw = json.dumps(data).encode()  # the bus carries the escape: decoding makes the surrogate
    with pytest.raises(ContractError, match="invalid code point"):
        Article.from_json(raw)


def test_deep_json_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="nested too deep"):
        Article.from_json(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("url", None, "field 'url' is required"),
        ("channel", "email", "field 'channel' is 'email', expected one of"),
        ("published", "yesterday", "field 'published': 'yesterday' is not an ISO 8601"),
        ("backfill", "no", "field 'backfill': wrong type: expected boolean, got string"),
        ("url", 123, "field 'url': wrong type: expected string, got number"),
        ("title", ["a"], "field 'title': wrong type: expected string, got array"),
        ("authors", ["a", 1], r"field 'authors\[1\]': wrong type: expected string, got number"),
        ("published", 2017, "field 'published': wrong type: expected ISO 8601 string or null, got number"),
        ("story_role", "leader", "field 'story_role' is 'leader'"),
    ],
)
def test_errors_name_the_field(field: str, value: object, message: str) -> None:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data[field] = value
    with pytest.raises(ContractError, match=message) as info:
        Article.from_dict(data)
    assert data["id"] in str(info.value)


def test_invalid_json_is_a_contract_error() -> None:
    with pytest.raises(ContractError, match="not valid JSON"):
        Article.from_json(b"{not json")


def test_story_event_round_trip() -> None:
    story = Story.from_dict(
        {
            "id": "s1",
            "title": "t",
            "first_seen": "2017-05-15T16:05:00Z",
            "last_seen": "2017-05-16T10:00:00Z",
            "article_count": 3,
            "source_count": 2,
            "languages": ["en", "ar"],
        }
    )
    event = StoryEvent(kind="created", story=story, article_id="a" * 32, at=story.first_seen, backfill=True)
    assert StoryEvent.from_bytes(event.to_bytes()) == event


def test_compact_embedding_reads_back_as_the_same_floats() -> None:
    """The compact form (base64 of little-endian float32) decodes to exactly the floats the array form
    gives, and both forms validate against the schema."""
    golden = Article.from_dict(json.loads(GOLDEN.read_text(encoding="utf-8")))
    values = tuple(float(struct.unpack("<f", struct.pack("<f", x))[0]) for x in (0.1, -0.25, 3.0e-8, 1.0, -0.0))
    article = golden.replace(embedding=values)
    compact = article.to_dict(with_embedding=True, compact=True)
    assert isinstance(compact["embedding"], str)
    assert base64.b64decode(compact["embedding"]) == struct.pack("<5f", *values)
    jsonschema.validate(compact, SCHEMA)
    jsonschema.validate(article.to_dict(with_embedding=True), SCHEMA)
    for raw in (
        article.to_bytes(with_embedding=True, compact=True),
        article.to_json(with_embedding=True, compact=True),
    ):
        back = Article.from_json(raw)
        assert back == article
        assert back.embedding is not None and [math.copysign(1, x) for x in back.embedding][-1] == -1.0
    assert Article.from_json(article.to_bytes(with_embedding=True)) == article  # the array form as before


def test_floats_that_are_not_float32_stay_an_array() -> None:
    """No rounding: a vector that float32 cannot hold exactly (or a NaN) is written as the array."""
    golden = Article.from_dict(json.loads(GOLDEN.read_text(encoding="utf-8")))
    for values in ((0.1, 0.5), (0.5, float("nan")), (1e300,)):
        data = golden.replace(embedding=values).to_dict(with_embedding=True, compact=True)
        assert isinstance(data["embedding"], list) and len(data["embedding"]) == len(values)
    exact = golden.replace(embedding=(0.1, 0.5))
    assert Article.from_json(exact.to_bytes(with_embedding=True, compact=True)).embedding == (0.1, 0.5)


@pytest.mark.parametrize(
    ("value", "message"),
    [("not base64!", "not base64 of float32 values"), ("AAAAAAA=", "5 bytes, not a whole number")],
)
def test_a_bad_compact_embedding_is_a_contract_error_naming_the_field(value: str, message: str) -> None:
    data = json.loads(GOLDEN.read_text(encoding="utf-8"))
    data["embedding"] = value
    with pytest.raises(ContractError, match=f"field 'embedding': {message}"):
        Article.from_dict(data)
