"""Near-duplicates: exact text hash, MinHash LSH for syndicated copies with small edits, persistence, window."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stream.near_duplicate import (
    MIN_TOKENS,
    NearDuplicateIndex,
    duplicate_text,
    shingles,
    signature,
    signature_bytes,
    signature_from_bytes,
)
from tests.story_corpus import crematorium_copies, crematorium_original, syrian_denial, unrelated_regatta


def _sig(title: str, text: str):  # type: ignore[no-untyped-def]
    return signature(duplicate_text(title, text))


def test_syndicated_copies_with_small_edits_point_at_the_first_copy() -> None:
    original = crematorium_original()
    index = NearDuplicateIndex(0.8)
    index.add(original.id, original.content_sha256, _sig(original.title, original.text), original.fetched_at)
    for copy in crematorium_copies():
        match = index.find(copy.content_sha256, _sig(copy.title, copy.text))
        assert match is not None, copy.url
        assert match.original_id == original.id
        assert match.kind == "minhash" and match.similarity >= 0.8


def test_the_same_normalised_text_is_an_exact_copy() -> None:
    original = crematorium_original()
    index = NearDuplicateIndex(0.8)
    index.add(original.id, original.content_sha256, None, original.fetched_at)
    match = index.find(original.content_sha256, None)
    assert match is not None and match.kind == "hash" and match.similarity == 1.0


def test_other_articles_on_the_same_subject_are_not_copies() -> None:
    original = crematorium_original()
    index = NearDuplicateIndex(0.8)
    index.add(original.id, original.content_sha256, _sig(original.title, original.text), original.fetched_at)
    for other in (syrian_denial(), unrelated_regatta()):
        assert index.find(other.content_sha256, _sig(other.title, other.text)) is None


def test_short_texts_are_not_shingled() -> None:
    assert shingles("too short to shingle") == set()
    assert signature("word " * (MIN_TOKENS - 1)) is None
    assert len(shingles(" ".join(f"w{i}" for i in range(MIN_TOKENS)))) == MIN_TOKENS - 2


def test_signatures_survive_a_round_trip_through_bytes() -> None:
    mh = _sig("title", crematorium_original().text)
    assert mh is not None
    back = signature_from_bytes(signature_bytes(mh))
    assert back.jaccard(mh) == 1.0
    with pytest.raises(ValueError, match="expected 128"):
        signature_from_bytes(b"\x00" * 16)


def test_originals_leave_the_index_after_the_window() -> None:
    original = crematorium_original()
    later = unrelated_regatta()
    index = NearDuplicateIndex(0.8, window_days=30)
    index.add(original.id, original.content_sha256, _sig(original.title, original.text), original.fetched_at)
    index.add(later.id, later.content_sha256, None, original.fetched_at + timedelta(days=31))
    assert len(index) == 1
    copy = crematorium_copies()[0]
    assert index.find(copy.content_sha256, _sig(copy.title, copy.text)) is None


def test_the_threshold_must_be_a_jaccard() -> None:
    with pytest.raises(ValueError, match=r"1\.5"):
        NearDuplicateIndex(1.5)
