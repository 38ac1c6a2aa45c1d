"""Delivery of alerts and digests: webhook (JSON POST, HMAC-signed, retried) and e-mail (SMTP).

:class:`Deliverer` sends one message to one target and raises :class:`~indexer.errors.DeliveryError`
when it finally fails; the alert stage runs it off the pipeline's thread, records the outcome in the
ledger and counts it, so a failing target never holds up another target or the pipeline.

* Webhook: ``POST`` of the JSON body (``indexer.alerts.webhook_body``/``digest_body``, or the Slack
  forms) with ``Content-Type: application/json``, ``X-Sednaya-Signature: sha256=<hex HMAC-SHA256 of the
  body with the watchlist's secret>`` (when it has one) and ``X-Sednaya-Delivery: <payload id>``.
  Connection errors, timeouts, HTTP 408/425/429 and 5xx are retried up to ``settings.webhook_attempts``
  tries in all, waiting ``settings.webhook_backoff_s`` then doubling; other 4xx fail at once.
* E-mail: SMTP to ``settings.smtp_host:smtp_port``, STARTTLS when the server offers it and
  ``settings.smtp_starttls`` (certificate checked against the system CAs), login when ``smtp_user`` is
  set; a ``multipart/alternative`` message with a plain-text and an HTML part. Retried like webhooks on
  connection errors and 4xx SMTP replies.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from indexer.alerts import Alert, DigestStory, digest_body, slack_body, slack_digest_body, webhook_body
from indexer.errors import DeliveryError
from indexer.watchlists import Watchlist
from stream.settings import Settings

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Sednaya-Signature"
DELIVERY_HEADER = "X-Sednaya-Delivery"
WEBHOOK_TIMEOUT_S = 10.0  # per request; a receiver slower than this is treated as down and retried
SMTP_TIMEOUT_S = 30.0  # per SMTP conversation step (smtplib's socket timeout)
RETRYABLE_HTTP = frozenset({408, 425, 429})  # plus every 5xx: the receiver may recover
MAX_ERROR_BODY = 200  # characters of a failing response kept in the error message


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``body`` keyed with ``secret`` (UTF-8)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """Constant-time check of an ``X-Sednaya-Signature`` header (for receivers and tests)."""
    return hmac.compare_digest(sign(body, secret), header)


RetryHook = Callable[[str, int, DeliveryError], None]  # (channel, attempt that failed, error), before the next try


class Deliverer:
    """Sends one alert or digest to one target (``webhook:<url>`` or ``email:<addr>``).

    Args:
        settings: ``webhook_attempts``, ``webhook_backoff_s``, ``smtp_*`` and ``public_url`` are used.
        on_retry: called before every retry (the stage counts them).
        sleep: how to wait between tries (``time.sleep``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        on_retry: RetryHook | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = settings
        self.on_retry = on_retry
        self.sleep = sleep

    # --- what to send -----------------------------------------------------------------------------

    def send_alert(self, watchlist: Watchlist, alert: Alert, *, alert_id: str, target: str) -> int:
        """Deliver an instant alert; returns the attempts it took. Raises ``DeliveryError``."""
        channel, address = split_target(target)
        if channel == "webhook":
            payload = slack_body(alert) if watchlist.slack else webhook_body(alert, alert_id=alert_id)
            return self.post_json(address, payload, secret=watchlist.secret, delivery_id=alert_id)
        subject, plain, rich = render_alert_email(alert)
        return self.send_email(address, subject, plain, rich, message_key=alert_id)

    def send_digest(
        self, watchlist: Watchlist, groups: Sequence[DigestStory], *, digest_id: str, period: str, target: str
    ) -> int:
        """Deliver a digest; returns the attempts it took. Raises ``DeliveryError``."""
        channel, address = split_target(target)
        if channel == "webhook":
            payload = (
                slack_digest_body(watchlist.name, groups, period=period)
                if watchlist.slack
                else digest_body(watchlist.name, groups, digest_id=digest_id, period=period)
            )
            return self.post_json(address, payload, secret=watchlist.secret, delivery_id=digest_id)
        subject, plain, rich = render_digest_email(watchlist.name, groups, period=period, every=watchlist.every)
        return self.send_email(address, subject, plain, rich, message_key=digest_id)

    # --- webhook ------------------------------------------------------------------------------------

    def post_json(self, url: str, payload: dict[str, Any], *, secret: str, delivery_id: str) -> int:
        """POST ``payload`` as JSON to ``url`` with retries; returns the attempts it took."""
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": self.settings.user_agent,
            DELIVERY_HEADER: delivery_id,
        }
        if secret:
            headers[SIGNATURE_HEADER] = sign(body, secret)
        return self._with_retries("webhook", f"webhook {url}", lambda: _post_once(url, body, headers))

    # --- e-mail -------------------------------------------------------------------------------------

    def send_email(self, to: str, subject: str, plain: str, rich: str, *, message_key: str) -> int:
        """Send a plain-text + HTML message to ``to`` with retries; returns the attempts it took."""
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.settings.smtp_from
        msg["To"] = to
        msg["Date"] = formatdate(localtime=False)
        # domain from the sender: make_msgid would otherwise ask DNS for this host's FQDN on every message
        domain = self.settings.smtp_from.rpartition("@")[2] or "localhost"
        msg["Message-ID"] = make_msgid(idstring=hashlib.sha256(message_key.encode()).hexdigest()[:16], domain=domain)
        msg["X-Sednaya-Delivery"] = message_key
        msg.set_content(plain)
        msg.add_alternative(rich, subtype="html")
        return self._with_retries("email", f"e-mail {to}", lambda: self._smtp_once(msg, to))

    def _smtp_once(self, msg: EmailMessage, to: str) -> None:
        s = self.settings
        where = f"e-mail {to} via {s.smtp_host}:{s.smtp_port}"
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=SMTP_TIMEOUT_S) as smtp:
                smtp.ehlo()
                if s.smtp_starttls and smtp.has_extn("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                    smtp.ehlo()
                if s.smtp_user:
                    smtp.login(s.smtp_user, s.smtp_password)
                smtp.send_message(msg, from_addr=s.smtp_from, to_addrs=[to])
        except smtplib.SMTPResponseException as exc:
            transient = 400 <= exc.smtp_code < 500
            raise DeliveryError(where, f"SMTP {exc.smtp_code} {exc.smtp_error!r}", transient=transient) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            transient = all(400 <= c < 500 for c in codes)
            raise DeliveryError(where, f"recipient refused: {exc.recipients!r}", transient=transient) from exc
        except ssl.SSLError as exc:
            raise DeliveryError(where, f"STARTTLS failed: {exc}", transient=False) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(where, f"{type(exc).__name__}: {exc}") from exc

    # --- retries ------------------------------------------------------------------------------------

    def _with_retries(self, channel: str, what: str, once: Callable[[], None]) -> int:
        attempts = max(1, self.settings.webhook_attempts)
        delay = self.settings.webhook_backoff_s
        for attempt in range(1, attempts + 1):
            try:
                once()
            except DeliveryError as exc:
                if not exc.transient or attempt == attempts:
                    raise DeliveryError(
                        exc.target,
                        f"{exc.problem} (after {attempt} attempt(s))",
                        transient=exc.transient,
                        attempts=attempt,
                    ) from exc
                logger.info("delivery retry", extra={"target": what, "attempt": attempt, "error": exc.problem})
                if self.on_retry is not None:
                    self.on_retry(channel, attempt, exc)
                self.sleep(delay)
                delay *= 2
            else:
                return attempt
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def split_target(target: str) -> tuple[str, str]:
    """``"webhook:<url>"`` -> ``("webhook", url)``; ``"email:<addr>"`` -> ``("email", addr)``.

    Raises ``DeliveryError`` for any other prefix.
    """
    channel, sep, address = target.partition(":")
    if not sep or channel not in {"webhook", "email"} or not address:
        raise DeliveryError(target, "target must be 'webhook:<url>' or 'email:<address>'", transient=False)
    return channel, address


def _post_once(url: str, body: bytes, headers: dict[str, str]) -> None:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310  # http(s) only: checked by Watchlist.validate
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:  # noqa: S310  # same
            response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:MAX_ERROR_BODY].decode("utf-8", "replace")
        transient = exc.code in RETRYABLE_HTTP or exc.code >= 500
        raise DeliveryError(f"webhook {url}", f"HTTP {exc.code} {detail!r}", transient=transient) from exc
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"webhook {url}", f"{type(exc).__name__}: {reason}") from exc


# --- e-mail rendering (pure) ------------------------------------------------------------------------


def render_alert_email(alert: Alert) -> tuple[str, str, str]:
    """``(subject, plain text, HTML)`` of an instant alert."""
    published = alert.published.date().isoformat() if alert.published else "date unknown"
    terms = ", ".join(alert.matched_terms) or "-"
    subject = f"[{alert.watchlist}] New story: {_one_line(alert.story_title)}"
    plain = (
        f"New story for watchlist {alert.watchlist}\n\n"
        f"{alert.story_title}\n{alert.link}\n\n"
        f"First article: {alert.title}\n"
        f"Source: {alert.source} | Language: {alert.lang} | Published: {published}\n"
        f"{alert.url}\n\n"
        f"Matched: {terms}\n"
    )
    e = html.escape
    rich = (
        "<!DOCTYPE html><html><body>"
        f"<p>New story for watchlist <b>{e(alert.watchlist)}</b></p>"
        f'<h2><a href="{e(alert.link)}">{e(alert.story_title)}</a></h2>'
        f'<p>First article: <a href="{e(alert.url)}" dir="auto">{e(alert.title)}</a><br>'
        f"Source: {e(alert.source)} | Language: {e(alert.lang)} | Published: {e(published)}</p>"
        f"<p>Matched: {e(terms)}</p>"
        "</body></html>"
    )
    return subject, plain, rich


def render_digest_email(
    watchlist: str, groups: Sequence[DigestStory], *, period: str, every: str = "daily"
) -> tuple[str, str, str]:
    """``(subject, plain text, HTML)`` of a digest: one section per story with its source counts.

    ``period`` is shown in the body ("2024-12-09 10:00 UTC to ..."), ``every`` (hourly/daily) in the subject.
    """
    new = sum(1 for g in groups if g.new)
    subject = f"[{watchlist}] {every} digest: {new} new, {len(groups) - new} updated stories"
    lines = [f"Digest for watchlist {watchlist} ({period})", ""]
    e = html.escape
    parts = [f"<!DOCTYPE html><html><body><h1>Digest for watchlist {e(watchlist)} ({e(period)})</h1>"]
    for g in groups:
        sources = ", ".join(f"{s} ({n})" for s, n in g.source_counts)
        marker = "NEW" if g.new else "UPDATED"
        lines += [f"{marker}: {g.title}", g.link, f"Sources: {sources}", f"Languages: {', '.join(g.languages)}"]
        parts.append(
            f'<h2>{marker.lower()}: <a href="{e(g.link)}" dir="auto">{e(g.title)}</a></h2>'
            f"<p>Sources: {e(sources)}<br>Languages: {e(', '.join(g.languages))}</p><ul>"
        )
        for a in g.entries:
            published = a.published.date().isoformat() if a.published else "date unknown"
            lines.append(f"  - {a.title} ({a.source}, {a.lang}, {published}) {a.url}")
            parts.append(
                f'<li><a href="{e(a.url)}" dir="auto">{e(a.title)}</a> '
                f"({e(a.source)}, {e(a.lang)}, {e(published)})</li>"
            )
        lines.append("")
        parts.append("</ul>")
    parts.append("</body></html>")
    return subject, "\n".join(lines), "".join(parts)


def _one_line(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
