"""Webhook channel: JSON ``POST``, signed with a timestamp.

Headers: ``Content-Type: application/json``, ``X-Sednaya-Delivery: <payload id>`` and, when the
watchlist has a secret, ``X-Sednaya-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
f"{t}.{body}")>``. The timestamp is signed with the body, so a captured request replayed later than
the receiver's tolerance (``SIGNATURE_TOLERANCE_S``, 5 minutes, as Stripe and Slack do) is refused by
:func:`verify`; every attempt is signed afresh. The URL is checked before every attempt
(``indexer.alerting.channels.targets``).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from indexer.alerting.alerts import Alert, DigestStory, digest_body, webhook_body
from indexer.alerting.channels.channel import ChannelConfig
from indexer.alerting.channels.targets import TargetRefused, check_url
from indexer.alerting.watchlists import Watchlist
from indexer.errors import DeliveryError, WatchlistError

SIGNATURE_HEADER = "X-Sednaya-Signature"
DELIVERY_HEADER = "X-Sednaya-Delivery"
SIGNATURE_TOLERANCE_S = 300  # receivers refuse a signature older (or newer) than this: replay window
WEBHOOK_TIMEOUT_S = 10.0  # per request; a receiver slower than this is treated as down and retried
RETRYABLE_HTTP = frozenset({408, 425, 429})  # plus every 5xx: the receiver may recover
MAX_ERROR_BODY = 200  # characters of a failing response kept in the error message


def sign(body: bytes, secret: str, *, timestamp: int) -> str:
    """``t=<timestamp>,v1=<hex>``: HMAC-SHA256 keyed with ``secret`` (UTF-8) of ``f"{timestamp}.".encode() + body``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(
    body: bytes, secret: str, header: str, *, tolerance_s: float = SIGNATURE_TOLERANCE_S, now: float | None = None
) -> bool:
    """Receiver-side check of an ``X-Sednaya-Signature`` header: a ``v1`` HMAC of ``t.body`` matches
    (constant-time) and ``t`` is within ``tolerance_s`` of ``now`` (default: the clock)."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = sign(body, secret, timestamp=timestamp).partition(",v1=")[2]
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))


class WebhookChannel:
    """``webhook:<http(s) URL>``: the ``sednaya.alert`` / ``sednaya.digest`` JSON bodies."""

    kind = "webhook"

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config

    def check(self, address: str) -> None:
        parts = urlsplit(address)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise WatchlistError(f"webhook {address!r} is not an http(s) URL")
        try:
            check_url(address, self.config, resolve=False)
        except TargetRefused as exc:
            raise WatchlistError(str(exc)) from exc

    def alert_body(self, watchlist: Watchlist, alert: Alert, alert_id: str) -> dict[str, Any]:
        return webhook_body(alert, alert_id=alert_id)

    def digest_body(
        self, watchlist: Watchlist, groups: Sequence[DigestStory], digest_id: str, period: str
    ) -> dict[str, Any]:
        return digest_body(watchlist.name, groups, digest_id=digest_id, period=period)

    def send_alert(self, watchlist: Watchlist, alert: Alert, *, alert_id: str, address: str) -> None:
        self.post(address, self.alert_body(watchlist, alert, alert_id), secret=watchlist.secret, delivery_id=alert_id)

    def send_digest(
        self, watchlist: Watchlist, groups: Sequence[DigestStory], *, digest_id: str, period: str, address: str
    ) -> None:
        body = self.digest_body(watchlist, groups, digest_id, period)
        self.post(address, body, secret=watchlist.secret, delivery_id=digest_id)

    def post(self, url: str, payload: dict[str, Any], *, secret: str, delivery_id: str) -> None:
        """One signed POST of ``payload`` as JSON. Raises ``DeliveryError`` (refused targets: not transient)."""
        where = f"webhook {url}"
        try:
            pinned = check_url(url, self.config, resolve=True)
        except TargetRefused as exc:
            raise DeliveryError(where, str(exc), transient=False) from exc
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": self.config.user_agent,
            DELIVERY_HEADER: delivery_id,
        }
        if secret:
            headers[SIGNATURE_HEADER] = sign(body, secret, timestamp=int(time.time()))
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310  # http(s) only: checked by check()
        try:
            with _opener(url, pinned).open(request, timeout=WEBHOOK_TIMEOUT_S) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:MAX_ERROR_BODY].decode("utf-8", "replace")
            transient = exc.code in RETRYABLE_HTTP or exc.code >= 500
            if 300 <= exc.code < 400:
                detail = f"redirect to {exc.headers.get('Location', '?')!r} not followed"
            raise DeliveryError(where, f"HTTP {exc.code} {detail!r}", transient=transient) from exc
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(where, f"{type(exc).__name__}: {reason}") from exc


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A ``3xx`` answer is an error: following it would skip the address check."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener(url: str, pinned: str | None) -> urllib.request.OpenerDirector:
    """urllib opener that follows no redirect and, given ``pinned``, connects to that address (the one
    ``check_url`` checked) whatever the host name resolves to now; TLS still verifies the host name.
    Not pinned when a proxy carries the request (the proxy connects)."""
    handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
    host = urlsplit(url).hostname or ""
    scheme = urlsplit(url).scheme
    proxied = scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(host)
    if pinned is not None and not proxied:
        handlers += [_PinnedHTTPHandler(pinned), _PinnedHTTPSHandler(pinned)]
    return urllib.request.build_opener(*handlers)


def _pin(connection_class: type[http.client.HTTPConnection], address: str) -> Any:
    def make(host: str, **kwargs: Any) -> http.client.HTTPConnection:
        connection = connection_class(host, **kwargs)

        def create_connection(target: tuple[str, int], *args: Any, **kw: Any) -> socket.socket:
            return socket.create_connection((address, target[1]), *args, **kw)

        connection._create_connection = create_connection  # type: ignore[attr-defined]  # http.client's hook
        return connection

    return make


class _PinnedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_pin(http.client.HTTPConnection, self.address), req)


class _PinnedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, address: str) -> None:
        self.tls = ssl.create_default_context()  # certificate and host name checked as urllib does
        super().__init__(context=self.tls)
        self.address = address

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_pin(http.client.HTTPSConnection, self.address), req, context=self.tls)
