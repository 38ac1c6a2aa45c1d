"""Raw HTML kept by content hash: ``<data_dir>/raw/<hash[:2]>/<hash>.html.gz``.

The hash is the article's ``content_sha256`` (hash of its normalised text), so the page an article
came from can be found from the article alone. Writes are atomic (temporary file + rename) and
idempotent (an existing file is kept).
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

RAW_DIR = "raw"


class RawStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / RAW_DIR

    def path_for(self, content_sha256: str) -> Path:
        return self.root / content_sha256[:2] / f"{content_sha256}.html.gz"

    def put(self, content_sha256: str, body: bytes) -> Path:
        """Store ``body`` (the page bytes as downloaded) under ``content_sha256``; returns the file path."""
        path = self.path_for(content_sha256)
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(gzip.compress(body, mtime=0))
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def get(self, content_sha256: str) -> bytes | None:
        """The stored page bytes, or None when nothing is stored under the hash."""
        path = self.path_for(content_sha256)
        if not path.exists():
            return None
        return gzip.decompress(path.read_bytes())
