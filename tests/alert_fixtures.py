"""Alerting fixtures: a real webhook receiver and a real SMTP server, both on loopback.

- ``webhook``: an HTTP server on ``127.0.0.1:0`` (in a thread) that records every POST; tell it to
  answer the next N requests with a status (``fail_next(2, 500)``) to exercise retries. A delivery is a
  request it answered with 2xx.
- ``slow_webhook``: a second receiver that leaves every request unanswered until ``release()``.
- ``smtp_server``: an ``aiosmtpd`` SMTP server on a free loopback port collecting parsed messages.
- ``smtp_tls_server``: the same with STARTTLS offered, its self-signed certificate (for 127.0.0.1)
  trusted through ``SSL_CERT_FILE`` for the test.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tests.ports import free_port

WAIT_S = 15.0  # how long helpers wait for an expected delivery before failing the test


@dataclass
class WebhookRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Records POSTs; ``fail_next(n, status)`` makes the next ``n`` requests answer ``status``."""

    url: str = ""
    requests: list[WebhookRequest] = field(default_factory=list)
    _failures: list[int] = field(default_factory=list)
    _holds: int = 0
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, n: int, status: int = 500) -> None:
        with self._lock:
            self._failures.extend([status] * n)

    def hold_next(self, n: int) -> None:
        """The next ``n`` requests are read, then left unanswered until ``release()`` (status 0)."""
        with self._lock:
            self._holds += n
            self._released.clear()

    def release(self) -> None:
        self._released.set()

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> int:
        """The status to answer with (0 = hold the request unanswered until released)."""
        with self._lock:
            if self._holds:
                self._holds -= 1
                status = 0
            else:
                status = self._failures.pop(0) if self._failures else 200
            self.requests.append(WebhookRequest(path=path, headers=headers, body=body, status=status))
        if status == 0:
            self._released.wait(WAIT_S)
        return status

    def wait_for_requests(self, n: int, timeout_s: float = WAIT_S) -> None:
        """Wait until ``n`` requests arrived, answered or not."""
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < n:
            if time.monotonic() > deadline:
                pytest.fail(f"expected {n} webhook requests, got {len(self.requests)}")
            time.sleep(0.02)

    @property
    def delivered(self) -> list[WebhookRequest]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(self, n: int, timeout_s: float = WAIT_S) -> list[WebhookRequest]:
        """Wait until ``n`` deliveries arrived (fails the test otherwise); returns them."""
        deadline = time.monotonic() + timeout_s
        while len(self.delivered) < n:
            if time.monotonic() > deadline:
                pytest.fail(f"expected {n} webhook deliveries, got {len(self.delivered)}: {self.requests!r}")
            time.sleep(0.02)
        return self.delivered


def _handler_for(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            status = receiver.answer(self.path, dict(self.headers.items()), body)
            if status == 0:  # held: the client gave up or died; answer nothing
                self.close_connection = True
                return
            payload = b'{"ok": true}' if status < 300 else b'{"error": "told to fail"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # BaseHTTPRequestHandler's name
            return

    return Handler


@contextmanager
def serve_webhook() -> Iterator[WebhookReceiver]:
    """A receiver on ``127.0.0.1:0`` in a thread, stopped on exit."""
    receiver = WebhookReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(receiver))
    server.daemon_threads = True
    host, port = server.server_address[:2]
    receiver.url = f"http://{host!s}:{port}/hook"
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with serve_webhook() as receiver:
        yield receiver


@pytest.fixture
def slow_webhook() -> Iterator[WebhookReceiver]:
    """A second receiver that holds every request unanswered until released (a hung target)."""
    with serve_webhook() as receiver:
        receiver.hold_next(1000)
        yield receiver



@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool  # arrived over a STARTTLS-protected session


@dataclass
class SmtpServer:
    host: str
    port: int
    messages: list[ReceivedMail] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)  # (user, password, over TLS)
    implicit_tls: bool = False  # SMTPS: every session is TLS (aiosmtpd sets session.ssl for STARTTLS only)

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
        """aiosmtpd ``authenticator``: records every login attempt, accepts user ``u`` / password ``p``."""
        from aiosmtpd.smtp import AuthResult

        user = auth_data.login.decode()
        password = auth_data.password.decode()
        self.logins.append((user, password, session.ssl is not None or self.implicit_tls))
        return AuthResult(success=(user, password) == ("u", "p"))

    def wait_for(self, n: int, timeout_s: float = WAIT_S) -> list[ReceivedMail]:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < n:
            if time.monotonic() > deadline:
                pytest.fail(f"expected {n} e-mails, got {len(self.messages)}")
            time.sleep(0.02)
        return list(self.messages)


class _Collect:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # aiosmtpd hook name
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.server.messages.append(
            ReceivedMail(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                tls=session.ssl is not None or self.server.implicit_tls,
            )
        )
        return "250 Message accepted for delivery"


def _start(server: SmtpServer, **kwargs: Any) -> Controller:
    controller = Controller(_Collect(server), hostname=server.host, port=server.port, **kwargs)
    controller.start()
    return controller


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(host="127.0.0.1", port=free_port())
    controller = _start(server)
    try:
        yield server
    finally:
        controller.stop()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (IP SAN) and its key, written as PEM."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "smtp-cert.pem"
    key_path = directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@pytest.fixture
def smtp_tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """An SMTP server offering STARTTLS; its certificate is the trusted CA for this test."""
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    server = SmtpServer(host="127.0.0.1", port=free_port())
    controller = _start(server, tls_context=context, require_starttls=True)
    try:
        yield server
    finally:
        controller.stop()


def _trusted_context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return context


@pytest.fixture
def smtp_auth_server() -> Iterator[SmtpServer]:
    """AUTH offered over a plain connection (no STARTTLS): a server a password must never be sent to."""
    server = SmtpServer(host="127.0.0.1", port=free_port())
    controller = _start(server, authenticator=server.authenticate, auth_require_tls=False)
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def smtp_starttls_auth_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """STARTTLS offered, AUTH only after it (aiosmtpd's default ``auth_require_tls``)."""
    context = _trusted_context(tmp_path, monkeypatch)
    server = SmtpServer(host="127.0.0.1", port=free_port())
    controller = _start(server, tls_context=context, authenticator=server.authenticate)
    try:
        yield server
    finally:
        controller.stop()


@pytest.fixture
def smtps_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """Implicit TLS (SMTPS, as on port 465) with AUTH."""
    context = _trusted_context(tmp_path, monkeypatch)
    server = SmtpServer(host="127.0.0.1", port=free_port(), implicit_tls=True)
    # auth_require_tls looks at STARTTLS only; this connection is TLS from the first byte
    controller = _start(server, ssl_context=context, authenticator=server.authenticate, auth_require_tls=False)
    try:
        yield server
    finally:
        controller.stop()


def make_event(
    kind: str,
    article: Any,
    *,
    story_id: str,
    first_article_id: str | None = None,
    title: str | None = None,
    backfill: bool = False,
    article_count: int = 1,
    entered_at: dt.datetime | None = None,
    first_seen: dt.datetime | None = None,
    merged_ids: tuple[str, ...] = (),
    languages: tuple[str, ...] | None = None,
    related_story: str | None = None,
    near_story: str | None = None,
) -> Any:
    """A ``StoryEvent`` of ``kind`` caused by ``article`` (an ``Article``) on story ``story_id``; the story
    began at ``first_seen`` (default: the article's publication)."""
    from stream.story import Story, StoryEvent

    at = dt.datetime.now(dt.UTC)
    story = Story(
        id=story_id,
        title=title if title is not None else article.title,
        first_seen=first_seen or article.published or at,
        last_seen=article.published or at,
        article_count=article_count,
        source_count=1,
        languages=languages or (article.lang,),
        sources=(article.source,),
        first_article_id=first_article_id or article.id,
    )
    return StoryEvent(
        kind=kind,  # type: ignore[arg-type]  # tests pass the literal
        story=story,
        article_id=article.id,
        at=at,
        backfill=backfill,
        entered_at=entered_at or at,
        merged_ids=merged_ids,
        extra={
            **({"related_story": related_story} if related_story else {}),
            **({"near_story": near_story} if near_story else {}),
        },
    )


def allow_loopback(settings_factory: Any) -> Any:
    """``settings_factory`` with ``alert_allow_private_targets=True``: the receivers here listen on
    127.0.0.1, which the service refuses by default (tests/test_alert_delivery.py proves the refusal)."""

    def make(**overrides: Any) -> Any:
        return settings_factory(**{"alert_allow_private_targets": True, **overrides})

    return make
