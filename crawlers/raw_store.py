"""Raw HTML kept by content hash: ``<data_dir>/raw/<hash[:2]>/<hash>.html.gz``.

The hash is the article's ``content_sha256`` (hash of its normalised text), so the page an article
came from can be found from the article alone. Writes are atomic (temporary file + rename) and
idempotent (an existing file is kept).

:class:`RawCopies` is the port the crawlers write to and ``serve`` reads from; :class:`RawStore` (this
module, the embedded default) keeps the files in the data directory, ``crawlers.raw_store_s3`` in
S3-compatible object storage (``raw_store = "s3://bucket/prefix"``), so every ``serve`` replica on any
host reads the copies a crawl process on another host kept. The composition root picks one
(``sednaya_monitor.wiring.make_raw_store``).
"""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path
from typing import Protocol

RAW_DIR = "raw"


def raw_key(content_sha256: str) -> str:
    """The copy's relative name: ``<hash[:2]>/<hash>.html.gz`` (a directory or key prefix of 256 fans)."""
    return f"{content_sha256[:2]}/{content_sha256}.html.gz"


class RawCopies(Protocol):
    """Where raw pages are kept by content hash; gzip at rest, bytes as downloaded in and out."""

    def put(self, content_sha256: str, body: bytes) -> object:
        """Keep ``body`` under the hash (idempotent: an existing copy is kept)."""
        ...

    def get(self, content_sha256: str) -> bytes | None:
        """The page bytes, or None when nothing is kept under the hash."""
        ...

    def has(self, content_sha256: str) -> bool: ...


class RawStore:
    """:class:`RawCopies` in ``<data_dir>/raw`` (the embedded default)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / RAW_DIR

    def path_for(self, content_sha256: str) -> Path:
        return self.root / raw_key(content_sha256)

    def has(self, content_sha256: str) -> bool:
        return self.path_for(content_sha256).is_file()

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
