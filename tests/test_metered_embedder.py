"""The model's CPU time on /metrics (``stream.metered_embedder``): counted around the real default model's
calls, in the composition root's embedder when the process has metrics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from sednaya_monitor import wiring
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import load_settings
from stream.embedding_use import UniversalSentenceEncoder
from stream.errors import EmbeddingError
from stream.metered_embedder import MeteredEmbedder

TEXTS = [
    "Families waited at the prison gates for news of relatives held there for years.",
    "Les familles attendaient devant la prison des nouvelles de leurs proches.",
    "Die Familien warteten am Gefängnistor auf Nachrichten von ihren Angehörigen.",
]


def _model_seconds(metrics: PrometheusMetrics, model: str) -> float:
    value = metrics.registry.get_sample_value("sednaya_model_cpu_seconds_total", {"model": model})
    return 0.0 if value is None else value


def test_the_composition_root_counts_the_models_cpu_time_when_given_metrics(tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={"data_dir": tmp_path})
    metrics = PrometheusMetrics(CollectorRegistry())
    embedder = wiring.make_embedder(settings, metrics)
    assert isinstance(embedder, MeteredEmbedder) and isinstance(embedder.inner, UniversalSentenceEncoder)
    assert embedder.multilingual is True and embedder.dim == 512  # the inner model's attributes
    embedder.embed(TEXTS[:1])  # loads the model: that CPU counts too
    loaded = _model_seconds(metrics, settings.model_name)
    assert loaded > 0
    start = time.thread_time()
    vectors = embedder.embed(TEXTS * 20)
    spent = time.thread_time() - start
    counted = _model_seconds(metrics, settings.model_name) - loaded
    assert vectors.shape == (60, 512) and vectors.dtype == np.float32
    # this thread's CPU inside the inner call: all but the wrapper's own few microseconds of the outer call
    assert 0.9 * spent <= counted <= spent
    np.testing.assert_allclose(vectors[:3], embedder.inner.embed(TEXTS), atol=1e-6)  # the vectors are the model's


def test_without_metrics_the_embedder_is_the_model_itself(tmp_path: Path) -> None:
    settings = load_settings(environ={}, overrides={"data_dir": tmp_path})
    assert isinstance(wiring.make_embedder(settings), UniversalSentenceEncoder)


class _Failing:
    dim = 4

    def embed(self, texts: object) -> object:
        sum(i * i for i in range(200_000))  # some CPU before the failure
        raise EmbeddingError("model 'failing' failed on a batch of 1 texts: boom")


def test_a_failing_call_is_counted_and_its_error_passes_unchanged() -> None:
    metrics = PrometheusMetrics(CollectorRegistry())
    embedder = MeteredEmbedder(_Failing(), metrics.model_seconds, "failing")  # type: ignore[arg-type]
    with pytest.raises(EmbeddingError, match="'failing'"):
        embedder.embed(["x"])
    assert _model_seconds(metrics, "failing") > 0
