"""JSON of bus records and stored documents, fast: orjson where it writes and reads the same JSON values
as the standard library, the standard library where it does not.

An article on ``articles.clustered`` carries its 512-float embedding as a JSON list: with the standard
library, encoding and decoding it cost about 0.7 ms per article, most of the pipeline's JSON time;
orjson does both about 10x faster (docs/benchmarks.md, ``pipeline_cost``). The two differ on the edges,
where this module keeps the standard library's behaviour:

- non-finite floats: orjson writes ``null`` (json writes ``NaN``/``Infinity``): callers say whether
  their floats are finite (``finite=False`` takes the standard library);
- lone surrogates in strings, integers beyond 64 bits: orjson refuses them (json writes them);
- on reading, text that is not an object (``[[[...`` nested too deep, a bare string) goes to the
  standard library, and so does anything orjson refuses (``NaN``, a lone ``\\ud800`` escape, invalid
  JSON): its errors are the ones callers already handle.

The compact output (no spaces after ``,`` and ``:``) decodes to the same values as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any, *, finite: bool = True) -> bytes:
    """UTF-8 JSON of ``value``; ``finite=False`` when a float in it may be NaN or infinite.

    Raises:
        UnicodeEncodeError: a string holds a lone surrogate (as ``json.dumps(...).encode()`` does).
        TypeError, ValueError: ``value`` is not JSON-serialisable (from the standard library).
    """
    if finite:
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:
            pass  # a lone surrogate, a big integer, a non-str key: the standard library decides
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def dumps_text(value: Any, *, finite: bool = True) -> str:
    """:func:`dumps` as ``str``."""
    if finite:
        try:
            return orjson.dumps(value).decode("utf-8")
        except orjson.JSONEncodeError:
            pass
    return json.dumps(value, ensure_ascii=False)


def loads(raw: str | bytes) -> Any:
    """The value of JSON text ``raw``; raises what ``json.loads`` raises for text it refuses.

    An integer beyond 64 bits is read as a float (orjson): no field of the contracts holds one.
    """
    if raw[:1] not in _OBJECT_START:  # the records are objects; anything else keeps json's own verdict
        return json.loads(raw)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


_OBJECT_START = (b"{", "{")


def loads_any(raw: str | bytes) -> Any:
    """The value of JSON text ``raw`` written by this program (any top-level type; no edge cases expected),
    read by orjson, else by the standard library."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)
