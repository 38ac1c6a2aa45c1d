"""A real S3-API server on loopback: moto in server mode (``moto_server``), as a separate process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.ports import free_port

S3_START_TIMEOUT_S = 30.0
S3_KEY = "test-key"  # moto accepts any credentials; these only have to be present
S3_SECRET = "test-secret"


@dataclass(frozen=True)
class S3Server:
    url: str
    log: Path

    def settings_overrides(self, bucket: str) -> dict[str, str]:
        """Settings keys that point the raw-copy storage at ``bucket`` on this server."""
        return {
            "raw_store": f"s3://{bucket}/raw",
            "s3_endpoint_url": self.url,
            "s3_access_key_id": S3_KEY,
            "s3_secret_access_key": S3_SECRET,
        }


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/", timeout=2) as response:  # loopback only
            return bool(response.status == 200)
    except urllib.error.HTTPError:
        return True  # it answers
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    root = tmp_path_factory.mktemp("moto")
    port = free_port()
    log = root / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # fixed argv, no shell
            [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + S3_START_TIMEOUT_S
    while not _ready(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"moto_server did not start on {url}:\n{log.read_text(errors='replace')}")
        time.sleep(0.1)
    try:
        yield S3Server(url=url, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
