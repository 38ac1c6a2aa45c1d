"""An on-disk cache of benchmark embeddings, so re-runs of bench.clustering_* skip the model.

Kept outside the repository (``~/.cache/sednaya-monitor/bench-embeddings.sqlite3``, or
``--cache``), keyed by the model name and the SHA-256 of the embedded text. Not a benchmark itself.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from stream.embedding import Embedder

DEFAULT_CACHE = Path.home() / ".cache" / "sednaya-monitor" / "bench-embeddings.sqlite3"
CHUNK = 256  # texts embedded (and committed) at a time, so an interrupted run keeps its work


class CachedEmbedder:
    """Wraps an ``Embedder``; vectors of texts seen before come from the cache."""

    def __init__(self, inner: Embedder, model_name: str, path: Path = DEFAULT_CACHE) -> None:
        self.inner = inner
        self.model_name = model_name
        # ``model_languages = "auto"`` reads this flag: a cached multilingual model stays multilingual.
        self.multilingual = bool(getattr(inner, "multilingual", False))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
        self.computed = 0

    @property
    def dim(self) -> int:
        return self.inner.dim

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.model_name}\x00{text}".encode()).hexdigest()

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        keys = [self._key(t) for t in texts]
        found: dict[str, NDArray[np.float32]] = {}
        for i in range(0, len(keys), 500):
            part = keys[i : i + 500]
            marks = ",".join("?" * len(part))
            for key, raw in self._db.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", part):
                found[key] = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in found}.items())
        for i in range(0, len(missing), CHUNK):
            chunk = missing[i : i + CHUNK]
            vecs = self.inner.embed([t for _, t in chunk])
            self._db.executemany(
                "INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)",
                [(k, np.asarray(v, dtype="<f4").tobytes()) for (k, _), v in zip(chunk, vecs, strict=True)],
            )
            self._db.commit()
            self.computed += len(chunk)
            for (k, _), v in zip(chunk, vecs, strict=True):
                found[k] = v
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[k] for k in keys]).astype(np.float32)


def main() -> None:
    """Not a benchmark: report what the cache holds (``bench.all`` runs every module of bench/)."""
    if not DEFAULT_CACHE.exists():
        print(f"embedding cache {DEFAULT_CACHE}: empty (the clustering benchmarks fill it)")
        return
    with sqlite3.connect(DEFAULT_CACHE) as db:
        count = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    print(f"embedding cache {DEFAULT_CACHE}: {count} vectors")


if __name__ == "__main__":
    main()
