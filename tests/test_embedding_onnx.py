"""The ONNX backends of the sentence-transformers adapter, on the bundled all-MiniLM-L6-v2: a real export into
a temporary folder (once for this module: about 5 s), vectors against the torch backend's, the tokenizer
against sentence-transformers' own, the cached export reused, and errors that name the model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from sednaya_monitor.settings import Settings
from sednaya_monitor.wiring import MODEL_CACHE_DIR, make_embedder
from stream.embedding import DEFAULT_MODEL, SentenceTransformerEmbedder, resolve_model
from stream.embedding_onnx import FLOAT_FILE, INT8_FILE, META_FILE, OnnxSentenceModel, ensure_export, export_dir
from stream.errors import EmbeddingError, SettingsError

TEXTS = [
    "Relatives queued outside the courthouse hoping for a list of names.",
    "The committee published a report on forced disappearances last spring.",
    "A new bakery opened on the corner and sold out of bread by noon.",
    "Satellite images show fresh construction beside the northern wing of the jail.",
    "Rain is expected over the coast through the weekend.",
    "Former prisoners described overcrowded cells and little food in interviews this week. " * 12,  # > 256 tokens
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def onnx_float(cache: Path) -> SentenceTransformerEmbedder:
    model = SentenceTransformerEmbedder(DEFAULT_MODEL, batch_size=4, backend="onnx", cache_dir=cache, threads=1)
    assert model.dim == 384
    return model


@pytest.fixture(scope="module")
def onnx_int8(cache: Path, onnx_float: SentenceTransformerEmbedder) -> SentenceTransformerEmbedder:
    _ = onnx_float.dim  # the float export first: the int8 one quantises it
    model = SentenceTransformerEmbedder(DEFAULT_MODEL, batch_size=4, backend="onnx-int8", cache_dir=cache, threads=1)
    assert model.dim == 384
    return model


@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_vectors_are_unit_float32_rows_close_to_torch(
    backend: str,
    onnx_float: SentenceTransformerEmbedder,
    onnx_int8: SentenceTransformerEmbedder,
    minilm: SentenceTransformerEmbedder,
) -> None:
    model = onnx_float if backend == "onnx" else onnx_int8
    vectors = model.embed(TEXTS)
    assert vectors.dtype == np.float32
    assert vectors.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(vectors * minilm.embed(TEXTS), axis=1)
    floor = 0.9999 if backend == "onnx" else 0.99
    assert cosines.min() >= floor, cosines


def test_a_vector_depends_on_its_text_alone(
    onnx_float: SentenceTransformerEmbedder, onnx_int8: SentenceTransformerEmbedder
) -> None:
    # one text per ONNX Runtime run: the int8 activations' scale is this text's, whatever it is embedded with
    for model in (onnx_float, onnx_int8):
        whole = model.embed(TEXTS)
        one_by_one = np.vstack([model.embed([t]) for t in reversed(TEXTS)])[::-1]
        assert np.array_equal(whole, one_by_one)


def test_padded_batches_of_the_exported_graph_match_single_texts(onnx_float: SentenceTransformerEmbedder) -> None:
    ours: OnnxSentenceModel = onnx_float.model
    assert np.allclose(ours.encode(TEXTS, batch_size=4), ours.encode(TEXTS), atol=1e-5)


def test_the_export_tokenizes_like_sentence_transformers(
    onnx_float: SentenceTransformerEmbedder, minilm: SentenceTransformerEmbedder
) -> None:
    ours: OnnxSentenceModel = onnx_float.model
    theirs = minilm.model.preprocess(TEXTS)
    encodings = ours.tokenizer.encode_batch(TEXTS)
    assert [e.ids for e in encodings] == theirs["input_ids"].tolist()  # same truncation (256) and padding
    assert [e.attention_mask for e in encodings] == theirs["attention_mask"].tolist()


def test_the_export_is_made_once_and_reused(cache: Path, onnx_int8: SentenceTransformerEmbedder) -> None:
    folder = export_dir(cache, DEFAULT_MODEL, resolve_model(DEFAULT_MODEL))
    assert {FLOAT_FILE, INT8_FILE, META_FILE} <= {p.name for p in folder.iterdir()}
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = SentenceTransformerEmbedder(DEFAULT_MODEL, backend="onnx-int8", cache_dir=cache, threads=1)
    assert np.allclose(again.embed(TEXTS[:2]), onnx_int8.embed(TEXTS[:2]), atol=1e-6)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    assert not [p for p in cache.iterdir() if p.name.startswith(".export-")]  # no work folder left behind


def test_the_service_wires_the_backend_with_its_cache_under_the_data_dir(tmp_path: Path) -> None:
    model = make_embedder(
        Settings(model_name=DEFAULT_MODEL, embed_backend="onnx-int8", data_dir=tmp_path, model_threads=1)
    )
    assert isinstance(model, SentenceTransformerEmbedder)
    assert (model.backend, model.cache_dir, model.threads) == ("onnx-int8", tmp_path / MODEL_CACHE_DIR, 1)


def test_a_model_that_is_not_sentence_transformers_refuses_the_onnx_backend(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="use-multilingual-v3"):
        make_embedder(Settings(model_name="use-multilingual-v3", embed_backend="onnx", data_dir=tmp_path))


def test_unknown_backend_setting_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"'embed_backend'='tflite': expected one of torch, onnx, onnx-int8"):
        Settings(embed_backend="tflite")


def test_a_missing_model_fails_its_export_naming_it(tmp_path: Path) -> None:
    missing = f"{tmp_path}/no-such-model"
    with pytest.raises(EmbeddingError, match="no-such-model"):
        SentenceTransformerEmbedder(missing, backend="onnx", cache_dir=tmp_path / "models").embed(["text"])


def test_a_missing_package_is_named_with_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra [onnx] were not installed
    with pytest.raises(EmbeddingError, match=r"'all-MiniLM-L6-v2'.*'onnxruntime'"):
        ensure_export(DEFAULT_MODEL, resolve_model(DEFAULT_MODEL), "onnx-int8", tmp_path)


def test_a_corrupt_export_is_reported_naming_the_model(cache: Path, tmp_path: Path) -> None:
    source = export_dir(cache, DEFAULT_MODEL, resolve_model(DEFAULT_MODEL))
    _ = SentenceTransformerEmbedder(DEFAULT_MODEL, backend="onnx", cache_dir=cache).dim  # made by the fixtures
    copy = export_dir(tmp_path, DEFAULT_MODEL, resolve_model(DEFAULT_MODEL))
    copy.mkdir()
    for name in (META_FILE, "tokenizer.json"):
        (copy / name).write_bytes((source / name).read_bytes())
    (copy / FLOAT_FILE).write_bytes(b"not an onnx graph")
    with pytest.raises(EmbeddingError, match="all-MiniLM-L6-v2"):
        SentenceTransformerEmbedder(DEFAULT_MODEL, backend="onnx", cache_dir=tmp_path).embed(["text"])


def test_backend_arguments_are_checked_naming_the_model() -> None:
    with pytest.raises(EmbeddingError, match=r"'m1'.*'tflite'"):
        SentenceTransformerEmbedder("m1", backend="tflite")
    with pytest.raises(EmbeddingError, match=r"'m2'.*cache_dir"):
        SentenceTransformerEmbedder("m2", backend="onnx")
