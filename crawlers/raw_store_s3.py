"""Raw HTML copies in S3-compatible object storage (``raw_store = "s3://bucket/prefix"``).

Same layout and encoding as the embedded ``<data_dir>/raw`` (``crawlers.raw_store.raw_key``: gzip,
``<prefix>/<hash[:2]>/<hash>.html.gz``), so a directory of copies can be synced to a bucket as it is.
Any crawl process writes and any ``serve`` replica reads, on any host: nothing shared on disk.

A write is conditional (``If-None-Match: *``): the first copy kept under a hash stays, as on disk (an
object store that ignores the condition keeps the last one, with the same text). The bucket is created
on first use when it is missing (an operator may create it beforehand with its own policies).
Unreachable storage raises ``UnavailableError`` naming the endpoint; a refused request ``RawStoreError``.
"""

from __future__ import annotations

import gzip
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from crawlers.errors import RawStoreError
from crawlers.raw_store import raw_key
from stream.errors import UnavailableError

CONNECT_TIMEOUT_S = 5.0  # a storage endpoint that does not answer in this is down (the caller backs off)
READ_TIMEOUT_S = 30.0  # one page is at most a few MB
MAX_ATTEMPTS = 3  # botocore's own retries (standard mode) before the error reaches the caller
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}


def parse_raw_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> (``bucket``, ``some/prefix/``); the prefix may be empty."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise RawStoreError(f"raw store {url!r}: expected 'embedded' or s3://bucket[/prefix]")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


@dataclass(frozen=True, kw_only=True, slots=True)
class S3Config:
    """Where the bucket is and how to sign in (the ``raw_store`` and ``s3_*`` settings)."""

    raw_store: str  # s3://bucket[/prefix]
    s3_endpoint_url: str  # empty = AWS S3 in s3_region
    s3_region: str
    s3_access_key_id: str  # empty = boto3's own credential chain
    s3_secret_access_key: str


class S3RawStore:
    """:class:`crawlers.raw_store.RawCopies` on an S3-API bucket (boto3)."""

    def __init__(self, config: S3Config, *, client: Any | None = None) -> None:
        self.url = config.raw_store
        self.bucket, self.prefix = parse_raw_url(config.raw_store)
        self.endpoint = config.s3_endpoint_url or f"s3 ({config.s3_region})"
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3",
                endpoint_url=config.s3_endpoint_url or None,
                region_name=config.s3_region,
                aws_access_key_id=config.s3_access_key_id or None,
                aws_secret_access_key=config.s3_secret_access_key or None,
                config=Config(
                    connect_timeout=CONNECT_TIMEOUT_S,
                    read_timeout=READ_TIMEOUT_S,
                    retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
                    s3={"addressing_style": "path"},  # MinIO, Ceph and loopback servers have no bucket DNS names
                ),
            )
        self.client: Any = client  # a boto3 S3 client (no type stubs installed)
        self._bucket_ready = False
        self._lock = threading.Lock()

    def key_for(self, content_sha256: str) -> str:
        return self.prefix + raw_key(content_sha256)

    def _fail(self, what: str, exc: Exception) -> Exception:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            return RawStoreError(f"raw store {self.url} ({self.endpoint}): {what}: {exc}")
        return UnavailableError(f"raw store {self.url} ({self.endpoint}): {what}: {exc}")

    def _ensure_bucket(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._bucket_ready:
            return
        with self._lock:
            if self._bucket_ready:
                return
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _code(exc) not in _MISSING:
                    raise self._fail(f"bucket {self.bucket!r}", exc) from exc
                try:
                    self.client.create_bucket(Bucket=self.bucket)
                except ClientError as again:
                    if _code(again) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise self._fail(f"create bucket {self.bucket!r}", again) from again
            except BotoCoreError as exc:
                raise self._fail(f"bucket {self.bucket!r}", exc) from exc
            self._bucket_ready = True

    def put(self, content_sha256: str, body: bytes) -> str:
        """Keep ``body`` under the hash; returns the object key."""
        from botocore.exceptions import BotoCoreError, ClientError

        self._ensure_bucket()
        key = self.key_for(content_sha256)
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=gzip.compress(body, mtime=0),
                ContentType="text/html",
                ContentEncoding="gzip",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if _code(exc) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise self._fail(f"put {key!r}", exc) from exc
        except BotoCoreError as exc:
            raise self._fail(f"put {key!r}", exc) from exc
        return key

    def get(self, content_sha256: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key_for(content_sha256)
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=key)
            data: bytes = found["Body"].read()
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise self._fail(f"get {key!r}", exc) from exc
        except BotoCoreError as exc:
            raise self._fail(f"get {key!r}", exc) from exc
        return gzip.decompress(data)

    def has(self, content_sha256: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        key = self.key_for(content_sha256)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return False
            raise self._fail(f"head {key!r}", exc) from exc
        except BotoCoreError as exc:
            raise self._fail(f"head {key!r}", exc) from exc
        return True


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
