"""``stream.text.clean_text``: the Unicode hygiene the page applies to what it shows (and ingest may reuse)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stream.text import clean_text, fold


def test_bidi_overrides_and_isolates_are_removed() -> None:
    assert clean_text("Sednaya \u202egnp.exe\u202c") == "Sednaya gnp.exe"
    assert clean_text("a\u202ab\u202bc\u202dd\u2066e\u2067f\u2068g\u2069") == "abcdefg"


def test_zero_width_and_control_characters_are_removed() -> None:
    assert clean_text("zero\u200bwidth") == "zerowidth"
    assert fold(clean_text("zero\u200bwidth")) == fold("zerowidth")
    assert clean_text("a\u2060b\ufeffc\u00add\u180ee") == "abcde"
    assert clean_text("nul\x00 esc\x1b bell\x07 del\x7f c1\x85") == "nul esc bell del c1"


def test_meaningful_characters_are_kept() -> None:
    persian = "می\u200cخواهم"  # ZWNJ is part of Persian spelling
    assert clean_text(persian) == persian
    emoji = "👩\u200d💻"
    assert clean_text(emoji) == emoji
    marks = "\u200fصيدنايا\u200e (Sednaya)"  # RLM/LRM only nudge neutral characters
    assert clean_text(marks) == marks
    assert clean_text("line one\nline two\ttab\r\n") == "line one\nline two\ttab\r\n"
    assert clean_text("سجن صيدنايا العسكري") == "سجن صيدنايا العسكري"


@given(st.text())
def test_idempotent_and_never_longer(text: str) -> None:
    once = clean_text(text)
    assert clean_text(once) == once
    assert len(once) <= len(text)
    assert not any(ch in once for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200b\x00")
