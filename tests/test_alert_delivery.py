"""Delivery on loopback: a real HTTP receiver for webhooks and a real aiosmtpd server for e-mail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from indexer.alerts import Alert, build_alert, group_digest
from indexer.delivery import SIGNATURE_HEADER, Deliverer, sign, verify
from indexer.errors import DeliveryError
from indexer.watchlists import Watchlist
from stream.settings import Settings
from tests.alert_fixtures import allow_loopback, SmtpServer, WebhookReceiver, free_port, make_event
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


def _fast(settings_factory: SettingsFactory, **kw: Any) -> Settings:
    return settings_factory(webhook_backoff_s=0.01, **kw)


@pytest.mark.timeout(60)
def test_webhook_500_twice_then_200_is_delivered_exactly_once(
    webhook: WebhookReceiver, settings_factory: SettingsFactory
) -> None:
    retries: list[int] = []
    deliverer = Deliverer(_fast(settings_factory), on_retry=lambda channel, attempt, exc: retries.append(attempt))
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
    assert signature == sign(delivered.body, "top-secret")
    assert verify(delivered.body, "top-secret", signature)
    assert not verify(delivered.body, "other-secret", signature)
    # every attempt carried the same signed body
    assert {r.body for r in webhook.requests} == {delivered.body}


def test_webhook_without_secret_is_unsigned_and_slack_format(
    webhook: WebhookReceiver, settings_factory: SettingsFactory
) -> None:
    deliverer = Deliverer(_fast(settings_factory))
    wl = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,), slack=True)
    deliverer.send_alert(wl, _alert(), alert_id="w/story-1", target=f"webhook:{webhook.url}")
    (request,) = webhook.delivered
    assert SIGNATURE_HEADER not in request.headers
    assert set(request.json()) == {"text", "blocks"}
    assert request.headers["Content-Type"].startswith("application/json")


def test_webhook_4xx_fails_at_once_naming_the_target(
    webhook: WebhookReceiver, settings_factory: SettingsFactory
) -> None:
    deliverer = Deliverer(_fast(settings_factory))
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
    deliverer = Deliverer(_fast(settings_factory, webhook_attempts=3))
    wl = Watchlist(name="w", query="Sednaya", webhooks=(webhook.url,))
    webhook.fail_next(10, 503)
    with pytest.raises(DeliveryError, match=r"HTTP 503 .*\(after 3 attempt\(s\)\)") as info:
        deliverer.send_alert(wl, _alert(), alert_id="w/s", target=f"webhook:{webhook.url}")
    assert info.value.attempts == 3
    assert len(webhook.requests) == 3


@pytest.mark.timeout(60)
def test_webhook_connection_refused_is_transient(settings_factory: SettingsFactory) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    deliverer = Deliverer(_fast(settings_factory, webhook_attempts=2))
    wl = Watchlist(name="w", query="Sednaya", webhooks=(url,))
    with pytest.raises(DeliveryError, match=f"webhook {url}: URLError") as info:
        deliverer.send_alert(wl, _alert(), alert_id="w/s", target=f"webhook:{url}")
    assert info.value.transient and info.value.attempts == 2


@pytest.mark.timeout(60)
def test_instant_email_has_plain_and_html_parts(smtp_server: SmtpServer, settings_factory: SettingsFactory) -> None:
    settings = settings_factory(smtp_port=smtp_server.port, smtp_from="monitor@test.example")
    deliverer = Deliverer(settings)
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
    deliverer = Deliverer(settings)
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
    Deliverer(settings).send_email("a@test.example", "subject", "plain", "<p>html</p>", message_key="k")
    (mail,) = smtp_tls_server.wait_for(1)
    assert mail.tls


@pytest.mark.timeout(60)
def test_email_refused_by_a_server_requiring_tls_when_starttls_is_off(
    smtp_tls_server: SmtpServer, settings_factory: SettingsFactory
) -> None:
    settings = settings_factory(smtp_port=smtp_tls_server.port, smtp_starttls=False, webhook_backoff_s=0.01)
    with pytest.raises(DeliveryError, match=f"e-mail a@test.example via 127.0.0.1:{smtp_tls_server.port}: SMTP 530"):
        Deliverer(settings).send_email("a@test.example", "subject", "plain", "<p>html</p>", message_key="k")
    assert smtp_tls_server.messages == []
