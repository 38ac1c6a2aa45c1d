"""The ways a sentence-transformers model can run (``settings.embed_backend``), in a module with no imports, so
that the settings check a value against the names the embedding adapters use without loading numpy: ``torch``
(sentence-transformers itself) and the ONNX Runtime backends of ``stream.embedding_onnx``."""

ONNX_BACKENDS = ("onnx", "onnx-int8")  # float32, and int8 weights (stream/embedding_onnx.py)
EMBED_BACKENDS = ("torch", *ONNX_BACKENDS)
