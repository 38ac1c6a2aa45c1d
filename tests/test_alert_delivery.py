"""Delivery on loopback: a real HTTP receiver for webhooks and a real aiosmtpd server for e-mail."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from indexer.alerting.alerts import Alert, build_alert, group_digest
from indexer.alerting.delivery import SIGNATURE_HEADER, SIGNATURE_TOLERANCE_S, Deliverer, check_targets, sign, verify
from indexer.alerting.watchlists import Watchlist
from indexer.errors import DeliveryError, WatchlistError
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.wiring import channel_config, delivery_config
from stream.errors import SettingsError
from tests.alert_fixtures import SmtpServer, WebhookReceiver, allow_loopback, make_event
from tests.ports import free_port
from tests.store_fixtures import make_article

SettingsFactory = Callable[..., Settings]


@pytest.fixture
def settings_factory(settings_factory: SettingsFactory) -> SettingsFactory:
    """Loopback receivers: private targets allowed explicitly (the refusal is tested in test_alert_delivery)."""
    return allow_loopback(settings_factory)


def _alert(title: str = "Sednaya families search the cells", story_id: str = "story-1", **kw: Any) -> Alert:
    article = make_article(title=title, **kw)
    wl = Watchlist(name="w", query="Sednaya")
    event = make_event("created", article, story_id=story_id)
    return build_alert(event, wl, article, matched_terms=("Sednaya",), public_url="http://mon.example")


def _mail(settings: Settings, to: str) -> int:
    """Send an instant alert by e-mail to ``to`` through the real channel; returns the attempts."""
    wl = Watchlist(name="w", query="Sednaya", emails=(to,))
    return Deliverer(delivery_config(settings)).send_alert(wl, _alert(), alert_id="w/story-1", target=f"email:{to}")


def _fast(settings_factory: SettingsFactory, **kw: Any) -> Settings:
    return settings_factory(webhook_backoff_s=0.01, **kw)


@pytest.mark.timeout(60)
def test_webhook_500_twice_then_200_is_delivered_exactly_once(
    webhook: WebhookReceiver, settings_factory: SettingsFactory
) -> None:
    retries: list[int] = []
    deliverer = Deliverer(
        delivery_config(_fast(settings_factory)), on_retry=lambda channel, attempt, exc: retries.append(attempt)
    )
    wl = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,), secret="top-secret")
    webhook.fail_next(2, 500)
    attempts = deliverer.send_alert(wl, _alert(), alert_id="w/story-1", target=f"webhook:{webhook.url}")
    assert attempts == 3
    assert retries == [1, 2]
    assert [r.status for r in webhook.requests] == [500, 500, 200]
    (delivered,) = webhook.delivered
    assert delivered.json()["id"] == "w/story-1"
    assert delivered.headers["X-Sednaya-Delivery"] == "w/story-1"
    signature = delivered.headers[SIGNATURE_HEADER]
    assert verify(delivered.body, "top-secret", signature)
    assert not verify(delivered.body, "other-secret", signature)
    # every attempt carried the same signed body
    assert {r.body for r in webhook.requests} == {delivered.body}


def test_webhook_without_secret_is_unsigned_and_slack_format(
    webhook: WebhookReceiver, settings_factory: SettingsFactory
) -> None:
    deliverer = Deliverer(delivery_config(_fast(settings_factory)))
    wl = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,), slack=True)
    (target,) = wl.targets
    assert target == f"slack:{webhook.url}"  # the Slack channel of the registry
    deliverer.send_alert(wl, _alert(), alert_id="w/story-1", target=target)
    (request,) = webhook.delivered
    assert SIGNATURE_HEADER not in request.headers
    assert set(request.json()) == {"text", "blocks"}
    assert request.headers["Content-Type"].startswith("application/json")


def test_webhook_4xx_fails_at_once_naming_the_target(
    webhook: WebhookReceiver, settings_factory: SettingsFactory
) -> None:
    deliverer = Deliverer(delivery_config(_fast(settings_factory)))
    wl = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,))
    webhook.fail_next(5, 404)
    with pytest.raises(DeliveryError) as info:
        deliverer.send_alert(wl, _alert(), alert_id="w/s", target=f"webhook:{webhook.url}")
    assert len(webhook.requests) == 1
    assert not info.value.transient
    assert str(info.value).startswith(f"webhook {webhook.url}: HTTP 404")


@pytest.mark.timeout(60)
def test_webhook_that_never_recovers_fails_after_configured_attempts(
    webhook: WebhookReceiver, settings_factory: SettingsFactory
) -> None:
    deliverer = Deliverer(delivery_config(_fast(settings_factory, webhook_attempts=3)))
    wl = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,))
    webhook.fail_next(10, 503)
    with pytest.raises(DeliveryError, match=r"HTTP 503 .*\(after 3 attempt\(s\)\)") as info:
        deliverer.send_alert(wl, _alert(), alert_id="w/s", target=f"webhook:{webhook.url}")
    assert info.value.attempts == 3
    assert len(webhook.requests) == 3


@pytest.mark.timeout(60)
def test_webhook_connection_refused_is_transient(settings_factory: SettingsFactory) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    deliverer = Deliverer(delivery_config(_fast(settings_factory, webhook_attempts=2)))
    wl = Watchlist(name="w", query="Sednaya", webhooks=(url,))
    with pytest.raises(DeliveryError, match=f"webhook {url}: URLError") as info:
        deliverer.send_alert(wl, _alert(), alert_id="w/s", target=f"webhook:{url}")
    assert info.value.transient and info.value.attempts == 2


@pytest.mark.timeout(60)
def test_instant_email_has_plain_and_html_parts(smtp_server: SmtpServer, settings_factory: SettingsFactory) -> None:
    settings = settings_factory(smtp_port=smtp_server.port, smtp_from="monitor@test.example")
    deliverer = Deliverer(delivery_config(settings))
    wl = Watchlist(name="w", query="Sednaya", emails=("analyst@test.example",))
    alert = _alert(title="Sednaya <script>alert(1)</script> files")
    deliverer.send_alert(wl, alert, alert_id="w/story-1", target="email:analyst@test.example")
    (mail,) = smtp_server.wait_for(1)
    assert mail.rcpt_tos == ["analyst@test.example"]
    assert mail.mail_from == "monitor@test.example"
    assert not mail.tls
    msg = mail.message
    assert msg["Subject"].startswith("[w] New story: ")
    plain = msg.get_body(("plain",))
    rich = msg.get_body(("html",))
    assert plain is not None and rich is not None
    assert alert.link in plain.get_content()
    html = rich.get_content()
    assert "&lt;script&gt;" in html and "<script>" not in html


@pytest.mark.timeout(60)
def test_digest_email_groups_stories_with_source_counts(
    smtp_server: SmtpServer, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(smtp_port=smtp_server.port)
    deliverer = Deliverer(delivery_config(settings))
    wl = Watchlist(name="w", query="Sednaya", emails=("analyst@test.example",), mode="digest")
    entries = [
        _alert(title="Sednaya opened", story_id="s1", source="wire"),
        _alert(title="Copy one", story_id="s1", source="daily-one"),
        _alert(title="Copy two", story_id="s1", source="daily-one"),
        _alert(title="Saydnaya anniversary", story_id="s2", source="wire"),
    ]
    groups = group_digest(entries)
    deliverer.send_digest(wl, groups, digest_id="w/digest/1", period="today", target="email:analyst@test.example")
    (mail,) = smtp_server.wait_for(1)
    plain = mail.message.get_body(("plain",))
    rich = mail.message.get_body(("html",))
    assert plain is not None and rich is not None
    text = plain.get_content()
    assert "Sources: daily-one (2), wire (1)" in text
    assert "http://mon.example/stories/s1" in text and "http://mon.example/stories/s2" in text
    assert "daily-one (2), wire (1)" in rich.get_content()


@pytest.mark.timeout(60)
def test_email_uses_starttls_when_offered(smtp_tls_server: SmtpServer, settings_factory: SettingsFactory) -> None:
    settings = settings_factory(smtp_port=smtp_tls_server.port)
    _mail(settings, "a@test.example")
    (mail,) = smtp_tls_server.wait_for(1)
    assert mail.tls


@pytest.mark.timeout(60)
def test_email_refused_by_a_server_requiring_tls_when_starttls_is_off(
    smtp_tls_server: SmtpServer, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(smtp_port=smtp_tls_server.port, smtp_security="none", webhook_backoff_s=0.01)
    with pytest.raises(DeliveryError, match=f"e-mail a@test.example via 127.0.0.1:{smtp_tls_server.port}: SMTP 530"):
        _mail(settings, "a@test.example")
    assert smtp_tls_server.messages == []


# --- signed webhooks with a timestamp -------------------------------------------------------------------


def test_signature_carries_a_timestamp_and_a_replay_after_the_tolerance_is_refused(
    webhook: WebhookReceiver, settings_factory: SettingsFactory
) -> None:
    deliverer = Deliverer(delivery_config(_fast(settings_factory)))
    wl = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,), secret="top-secret")
    before = int(time.time())
    deliverer.send_alert(wl, _alert(), alert_id="w/story-1", target=f"webhook:{webhook.url}")
    (request,) = webhook.delivered
    header = request.headers[SIGNATURE_HEADER]
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", header)
    assert match is not None, header
    t = int(match.group(1))
    assert before <= t <= time.time()
    expected = hmac.new(b"top-secret", f"{t}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert match.group(2) == expected  # HMAC_SHA256(secret, f"{t}.{body}"), as docs/alerts.md says
    assert header == sign(request.body, "top-secret", timestamp=t)
    assert verify(request.body, "top-secret", header)
    # a captured request replayed later than the tolerance, a changed body or timestamp: refused
    assert not verify(request.body, "top-secret", header, now=t + SIGNATURE_TOLERANCE_S + 1)
    assert verify(request.body, "top-secret", header, now=t + SIGNATURE_TOLERANCE_S - 1)
    assert not verify(request.body + b" ", "top-secret", header)
    assert not verify(request.body, "top-secret", header.replace(f"t={t}", f"t={t + 60}"))
    assert not verify(request.body, "top-secret", "sha256=" + expected)


def test_the_documented_receiver_snippet_verifies_a_delivery(
    webhook: WebhookReceiver, settings_factory: SettingsFactory
) -> None:
    """The verification code in docs/alerts.md, run as a receiver would run it."""
    docs = (Path(__file__).resolve().parent.parent / "docs" / "alerts.md").read_text(encoding="utf-8")
    snippet = re.search(r"```python\n(# receiver-side verification.*?)```", docs, re.DOTALL)
    assert snippet is not None, "docs/alerts.md lost its receiver-side verification snippet"
    namespace: dict[str, Any] = {}
    exec(compile(snippet.group(1), "docs/alerts.md", "exec"), namespace)  # our own documentation
    check = namespace["verify_sednaya_signature"]
    Deliverer(delivery_config(_fast(settings_factory))).send_alert(
        Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,), secret="s3"),
        _alert(),
        alert_id="w/story-1",
        target=f"webhook:{webhook.url}",
    )
    (request,) = webhook.delivered
    assert check(request.body, request.headers[SIGNATURE_HEADER], "s3") is True
    assert check(request.body, request.headers[SIGNATURE_HEADER], "wrong") is False
    old = sign(request.body, "s3", timestamp=int(time.time()) - 3600)
    assert check(request.body, old, "s3") is False


# --- SMTP transport security --------------------------------------------------------------------------------


def test_smtp_security_must_be_known(data_dir: Path) -> None:
    with pytest.raises(SettingsError, match="setting 'smtp_security'='ssl': expected one of starttls, tls, none"):
        load_settings(environ={"SEDNAYA_MONITOR_SMTP_SECURITY": "ssl"}, overrides={"data_dir": data_dir})


@pytest.mark.timeout(60)
def test_smtp_refuses_to_log_in_without_tls(smtp_auth_server: SmtpServer, settings_factory: SettingsFactory) -> None:
    settings = _fast(settings_factory, smtp_port=smtp_auth_server.port, smtp_user="u", smtp_password="p")
    with pytest.raises(
        DeliveryError, match="does not offer STARTTLS: refusing to send the SMTP password in clear"
    ) as info:
        _mail(settings, "a@test.example")
    assert not info.value.transient and info.value.attempts == 1
    assert smtp_auth_server.logins == [] and smtp_auth_server.messages == []  # the password never left


@pytest.mark.timeout(60)
def test_smtp_security_none_allows_a_login_in_clear(
    smtp_auth_server: SmtpServer, settings_factory: SettingsFactory
) -> None:
    settings = _fast(
        settings_factory, smtp_port=smtp_auth_server.port, smtp_user="u", smtp_password="p", smtp_security="none"
    )
    _mail(settings, "a@test.example")
    (mail,) = smtp_auth_server.wait_for(1)
    assert smtp_auth_server.logins == [("u", "p", False)] and not mail.tls


@pytest.mark.timeout(60)
def test_smtp_logs_in_after_starttls(smtp_starttls_auth_server: SmtpServer, settings_factory: SettingsFactory) -> None:
    settings = _fast(settings_factory, smtp_port=smtp_starttls_auth_server.port, smtp_user="u", smtp_password="p")
    _mail(settings, "a@test.example")
    (mail,) = smtp_starttls_auth_server.wait_for(1)
    assert mail.tls and smtp_starttls_auth_server.logins == [("u", "p", True)]


@pytest.mark.timeout(60)
def test_smtp_implicit_tls(smtps_server: SmtpServer, settings_factory: SettingsFactory) -> None:
    settings = _fast(
        settings_factory, smtp_port=smtps_server.port, smtp_user="u", smtp_password="p", smtp_security="tls"
    )
    _mail(settings, "a@test.example")
    (mail,) = smtps_server.wait_for(1)
    assert mail.tls and smtps_server.logins == [("u", "p", True)]


# --- where webhooks may point -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:22/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://100.100.100.200/latest",
        "http://[fd00:ec2::254]/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost:9200/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
def test_private_and_metadata_webhook_targets_are_refused_at_save_and_at_delivery(
    url: str, webhook: WebhookReceiver, data_dir: Path
) -> None:
    strict = load_settings(environ={}, overrides={"data_dir": data_dir, "webhook_backoff_s": 0.01})
    assert not strict.alert_allow_private_targets  # the default
    wl = Watchlist(name="w", query="Sednaya", webhooks=(url,))
    with pytest.raises(WatchlistError, match="alert_allow_private_targets") as info:
        check_targets(wl, channel_config(strict))
    assert url in str(info.value) and "watchlist 'w'" in str(info.value)
    with pytest.raises(DeliveryError, match="alert_allow_private_targets") as refused:
        Deliverer(delivery_config(strict)).send_alert(wl, _alert(), alert_id="w/s", target=f"webhook:{url}")
    assert not refused.value.transient and refused.value.attempts == 1


def test_loopback_receiver_refused_by_default_allowed_by_setting_or_allowlist(
    webhook: WebhookReceiver, data_dir: Path
) -> None:
    def settings(**kw: Any) -> Settings:
        return load_settings(environ={}, overrides={"data_dir": data_dir, "webhook_backoff_s": 0.01, **kw})

    wl = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,))
    target = f"webhook:{webhook.url}"
    with pytest.raises(DeliveryError, match=r"127\.0\.0\.1 is a loopback address"):
        Deliverer(delivery_config(settings())).send_alert(wl, _alert(), alert_id="w/s", target=target)
    assert webhook.requests == []  # nothing was sent
    Deliverer(delivery_config(settings(alert_target_allowlist="10.0.0.0/8, 127.0.0.1/32"))).send_alert(
        wl, _alert(), alert_id="w/s", target=target
    )
    Deliverer(delivery_config(settings(alert_allow_private_targets=True))).send_alert(
        wl, _alert(), alert_id="w/s", target=target
    )
    assert len(webhook.delivered) == 2
    check_targets(Watchlist(name="p", query="x", webhooks=("https://hooks.example.org/x",)), channel_config(settings()))


def test_a_host_name_is_resolved_at_delivery(webhook: WebhookReceiver, data_dir: Path) -> None:
    """A name that passes the save-time check (not an IP, not a known local name) is resolved before
    sending; here the machine's own host name, which resolves to a non-public address."""
    host = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, 80, proto=socket.IPPROTO_TCP)}
    except OSError:
        pytest.skip(f"this machine's host name {host!r} does not resolve")
    if any(ipaddress.ip_address(str(a)).is_global for a in addresses):
        pytest.skip(f"{host!r} resolves to a public address here: {sorted(addresses)}")
    strict = load_settings(environ={}, overrides={"data_dir": data_dir})
    port = webhook.url.rsplit(":", 1)[1]
    url = f"http://{host}:{port}"
    wl = Watchlist(name="w", query="Sednaya", webhooks=(url,))
    check_targets(wl, channel_config(strict))  # at save: a name, not resolved
    with pytest.raises(DeliveryError, match=f"{re.escape(host)} resolves to"):
        Deliverer(delivery_config(strict)).send_alert(wl, _alert(), alert_id="w/s", target=f"webhook:{url}")
    assert webhook.requests == []


def test_the_connection_goes_to_the_checked_address_not_a_second_resolution(
    webhook: WebhookReceiver, data_dir: Path
) -> None:
    """DNS rebinding: the delivery connects to the address ``check_url`` checked. Here the URL's host name
    does not resolve at all (``.invalid``), and the request still reaches the pinned loopback address,
    with the URL's host in the ``Host`` header."""
    from indexer.alerting.channels.webhook import _opener

    port = webhook.url.rsplit(":", 1)[1].split("/", 1)[0]
    url = f"http://rebind.sednaya.invalid:{port}/hook"
    with _opener(url, "127.0.0.1").open(urllib.request.Request(url, data=b"{}", method="POST"), timeout=10) as r:
        assert r.status == 200
    (request,) = webhook.delivered
    assert request.headers["Host"] == f"rebind.sednaya.invalid:{port}"


def test_a_resolved_and_allowlisted_name_is_delivered_pinned(webhook: WebhookReceiver, data_dir: Path) -> None:
    host = socket.gethostname()
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, 80, proto=socket.IPPROTO_TCP)}
    except OSError:
        pytest.skip(f"this machine's host name {host!r} does not resolve")
    if addresses != {"127.0.0.1"}:
        pytest.skip(f"{host!r} resolves to {sorted(addresses)} here, not to the receiver's 127.0.0.1")
    port = webhook.url.rsplit(":", 1)[1].split("/", 1)[0]
    url = f"http://{host}:{port}/hook"
    settings = load_settings(environ={}, overrides={"data_dir": data_dir, "alert_target_allowlist": "127.0.0.0/8"})
    wl = Watchlist(name="w", query="Sednaya", webhooks=(url,))
    check_targets(wl, channel_config(settings))
    Deliverer(delivery_config(settings)).send_alert(wl, _alert(), alert_id="w/s", target=f"webhook:{url}")
    (request,) = webhook.delivered
    assert request.headers["Host"] == f"{host}:{port}"


def test_a_redirect_is_not_followed(webhook: WebhookReceiver, settings_factory: SettingsFactory) -> None:
    """A 3xx could send the POST (or a GET) to an internal address the check never saw."""
    wl = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,))
    webhook.fail_next(1, 302)
    with pytest.raises(DeliveryError, match=r"HTTP 302 .*not followed") as info:
        Deliverer(delivery_config(_fast(settings_factory))).send_alert(
            wl, _alert(), alert_id="w/s", target=f"webhook:{webhook.url}"
        )
    assert not info.value.transient and len(webhook.requests) == 1
