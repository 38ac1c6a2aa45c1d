"""TLS on loopback for the stand-ins, which speak plaintext only: a self-signed CA, a server certificate
for 127.0.0.1 signed by it, and a TLS-terminating TCP proxy in front of a plaintext server.

The proxy keeps the first bytes each client sent after the handshake (``received``), so a test can see
the request line and headers the client really sent (e.g. its ``Authorization``) over TLS.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import select
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

KEEP_BYTES = 4096  # first bytes of each connection kept for the test to read
PUMP_SLICE_S = 0.2


@dataclass(frozen=True)
class Certificates:
    ca: Path  # PEM of the CA (what a client trusts)
    cert: Path  # PEM of the server certificate (CN and SAN 127.0.0.1)
    key: Path  # its private key


def make_certificates(directory: Path) -> Certificates:
    """A fresh CA and a server certificate for 127.0.0.1 (valid one day)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sednaya-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    out = Certificates(ca=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out


@dataclass
class TlsProxy:
    """TLS on ``port`` (the certificate of ``certs``), plaintext to ``upstream`` (host, port).

    ``tls=False`` relays plaintext both ways (``certs`` unused): a recorder of what clients send.
    """

    certs: Certificates | None
    upstream: tuple[str, int]
    port: int = 0
    tls: bool = True
    received: list[bytes] = field(default_factory=list)
    handshake_failures: int = 0
    _sock: socket.socket | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> TlsProxy:
        if self.tls:
            assert self.certs is not None, "a TLS proxy needs certificates"
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.certs.cert, self.certs.key)
            self._context = context
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(32)
        sock.settimeout(PUMP_SLICE_S)
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        threading.Thread(target=self._accept, name="tls-proxy", daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(10)
        client: socket.socket = raw
        if self.tls:
            try:
                client = self._context.wrap_socket(raw, server_side=True)
            except (ssl.SSLError, OSError):
                self.handshake_failures += 1
                raw.close()
                return
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            client.close()
            return
        kept = bytearray()
        index = len(self.received)
        self.received.append(b"")
        try:
            client.setblocking(False)
            upstream.setblocking(False)
            while not self._stop.is_set():
                pending = isinstance(client, ssl.SSLSocket) and client.pending() > 0
                readable, _, _ = select.select([client, upstream], [], [], 0 if pending else PUMP_SLICE_S)
                if pending and client not in readable:
                    readable.append(client)
                for source in readable:
                    try:
                        data = source.recv(65536)
                    except (ssl.SSLWantReadError, BlockingIOError):
                        continue
                    if not data:
                        return
                    target = upstream if source is client else client
                    if source is client and len(kept) < KEEP_BYTES:
                        kept.extend(data[: KEEP_BYTES - len(kept)])
                        self.received[index] = bytes(kept)
                    target.setblocking(True)
                    target.sendall(data)
                    target.setblocking(False)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
