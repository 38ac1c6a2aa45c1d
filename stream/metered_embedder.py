"""An ``Embedder`` that counts the CPU time of its model's calls (``sednaya_model_cpu_seconds_total``).

The model is most of the CPU an embedding process spends; what the pipeline costs beside it is the rest.
Counting the model's own CPU time inside the process (``time.thread_time`` of the calling thread around
each ``embed`` call) lets an operator read the model's share of a stage's CPU off ``/metrics``, and
``bench.distributed_load`` subtract it exactly instead of measuring the model again elsewhere.

Thread time, not wall time: a stage thread waiting for a core (another process, the clustering thread of
the same process) does not count. The model's BLAS threads are not counted either: with
``model_threads`` = 1 (the default) the model runs on the calling thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.embedding import Embedder
from stream.metrics import Counter


class MeteredEmbedder:
    """Wraps ``inner``; every ``embed`` call adds its thread CPU seconds to ``counter`` (labelled ``model``).

    Other attributes (``multilingual``, ``name``...) are the inner embedder's.
    """

    def __init__(self, inner: Embedder, counter: Counter, model: str) -> None:
        self.inner = inner
        self._counter = counter.labels(model=model)

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(self, texts: Sequence[str]) -> NDArray[np.float32]:
        start = time.thread_time()
        try:
            return self.inner.embed(texts)
        finally:
            self._counter.inc(time.thread_time() - start)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
