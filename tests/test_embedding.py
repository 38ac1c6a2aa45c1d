"""The embedding port: the real bundled model, shapes, normalisation, errors naming the model, text window."""

from __future__ import annotations

import numpy as np
import pytest

from stream.embed_text import BODY_WINDOW_CHARS, embed_text
from stream.embedding import DEFAULT_MODEL, SentenceTransformerEmbedder, l2_normalise, resolve_model
from stream.errors import EmbeddingError


def test_vectors_have_one_shape_and_unit_length(minilm: SentenceTransformerEmbedder) -> None:
    vectors = minilm.embed(["Detainees were hanged at the prison.", "A regatta was held in the harbour.", ""])
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, minilm.dim) == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_input_gives_an_empty_matrix(minilm: SentenceTransformerEmbedder) -> None:
    assert minilm.embed([]).shape == (0, 384)


def test_related_texts_are_closer_than_unrelated_ones(minilm: SentenceTransformerEmbedder) -> None:
    a, b, c = minilm.embed(
        [
            "The US says Syria built a crematorium at Sednaya prison.",
            "Washington accuses Damascus of burning bodies in a crematorium at the Sednaya jail.",
            "The football club signed a new goalkeeper for next season.",
        ]
    )
    assert float(a @ b) > 0.6 > float(a @ c)


def test_batches_give_the_same_vectors_as_one_call(minilm: SentenceTransformerEmbedder) -> None:
    texts = [f"Report number {i} about the prison and its detainees." for i in range(5)]
    small = SentenceTransformerEmbedder(DEFAULT_MODEL, batch_size=2)
    small._model, small._dim = minilm.model, minilm.dim  # share the loaded weights, test the batching
    assert np.allclose(small.embed(texts), minilm.embed(texts), atol=1e-5)


def test_the_default_model_resolves_to_the_bundled_copy_and_others_pass_through() -> None:
    assert resolve_model(DEFAULT_MODEL).endswith("model")
    assert resolve_model("paraphrase-multilingual-MiniLM-L12-v2") == "paraphrase-multilingual-MiniLM-L12-v2"


def test_a_missing_model_raises_naming_it(tmp_path: object) -> None:
    missing = f"{tmp_path}/no-such-model"
    with pytest.raises(EmbeddingError, match="no-such-model"):
        SentenceTransformerEmbedder(missing).embed(["text"])


def test_batch_size_must_be_positive() -> None:
    with pytest.raises(EmbeddingError, match="batch_size=0"):
        SentenceTransformerEmbedder("some-model", batch_size=0)


def test_l2_normalise_leaves_zero_rows_alone() -> None:
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    assert np.allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_embed_text_is_title_then_a_body_window_cut_at_a_sentence() -> None:
    body = "First sentence here. " * 60
    text = embed_text("A headline", body)
    assert text.startswith("A headline. First sentence here.")
    assert len(text) <= len("A headline. ") + BODY_WINDOW_CHARS
    assert text.endswith(".")


def test_embed_text_does_not_repeat_a_title_the_body_starts_with() -> None:
    assert embed_text("Prison opened", "Prison opened. Families searched the cells.") == (
        "Prison opened. Families searched the cells."
    )
    assert embed_text("", "Only a body.") == "Only a body."
    assert embed_text("Only a title", "") == "Only a title"
    assert embed_text("T", "Body text.", body_chars=0) == "T"
