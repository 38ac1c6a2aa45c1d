"""E-mail channel: ``email:<address>`` over SMTP, a ``multipart/alternative`` message (plain + HTML).

Transport security is the ``smtp_security`` setting (``ChannelConfig``):

* ``"starttls"`` (default): STARTTLS when the server offers it (certificate checked against the
  system CAs, or ``SSL_CERT_FILE``); when it does not, a message is still sent to a relay that needs no
  login, but the stage **refuses to log in** (``smtp_user`` set): the password never goes in clear;
* ``"tls"``: implicit TLS from the first byte (SMTPS, usually port 465);
* ``"none"``: plain SMTP, login allowed in clear (a relay on the same host only).

SMTP 4xx replies and connection errors are transient (retried), 5xx and TLS failures are not.
"""

from __future__ import annotations

import hashlib
import html
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from indexer.alerting.alerts import Alert, DigestStory, digest_marker
from indexer.alerting.channels.channel import ChannelConfig
from indexer.alerting.watchlists import EMAIL_RE, Watchlist
from indexer.errors import DeliveryError, WatchlistError

SMTP_TIMEOUT_S = 30.0  # per SMTP conversation step (smtplib's socket timeout)


class EmailChannel:
    kind = "email"

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config

    def check(self, address: str) -> None:
        if not EMAIL_RE.match(address):
            raise WatchlistError(f"e-mail address {address!r} is not of the form name@host")

    def send_alert(self, watchlist: Watchlist, alert: Alert, *, alert_id: str, address: str) -> None:
        subject, plain, rich = render_alert_email(alert)
        self.send(address, subject, plain, rich, message_key=alert_id)

    def send_digest(
        self, watchlist: Watchlist, groups: Sequence[DigestStory], *, digest_id: str, period: str, address: str
    ) -> None:
        subject, plain, rich = render_digest_email(watchlist.name, groups, period=period, every=watchlist.every)
        self.send(address, subject, plain, rich, message_key=digest_id)

    def send(self, to: str, subject: str, plain: str, rich: str, *, message_key: str) -> None:
        """One attempt at sending a plain-text + HTML message to ``to``. Raises ``DeliveryError``."""
        s = self.config
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = s.smtp_from
        msg["To"] = to
        msg["Date"] = formatdate(localtime=False)
        # domain from the sender: make_msgid would otherwise ask DNS for this host's FQDN on every message
        domain = s.smtp_from.rpartition("@")[2] or "localhost"
        msg["Message-ID"] = make_msgid(idstring=hashlib.sha256(message_key.encode()).hexdigest()[:16], domain=domain)
        msg["X-Sednaya-Delivery"] = message_key
        msg.set_content(plain)
        msg.add_alternative(rich, subtype="html")
        where = f"e-mail {to} via {s.smtp_host}:{s.smtp_port}"
        try:
            self._converse(msg, to, where)
        except DeliveryError:
            raise
        except smtplib.SMTPResponseException as exc:
            transient = 400 <= exc.smtp_code < 500
            raise DeliveryError(where, f"SMTP {exc.smtp_code} {exc.smtp_error!r}", transient=transient) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            transient = all(400 <= c < 500 for c in codes)
            raise DeliveryError(where, f"recipient refused: {exc.recipients!r}", transient=transient) from exc
        except ssl.SSLError as exc:
            raise DeliveryError(where, f"TLS failed ({s.smtp_security}): {exc}", transient=False) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(where, f"{type(exc).__name__}: {exc}") from exc

    def _converse(self, msg: EmailMessage, to: str, where: str) -> None:
        s = self.config
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.smtp_security == "tls":
            smtp = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=SMTP_TIMEOUT_S, context=context)
        else:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=SMTP_TIMEOUT_S)
        with smtp:
            smtp.ehlo()
            encrypted = s.smtp_security == "tls"
            if s.smtp_security == "starttls" and smtp.has_extn("starttls"):
                smtp.starttls(context=context)
                smtp.ehlo()
                encrypted = True
            if s.smtp_user:
                if not encrypted and s.smtp_security != "none":
                    raise DeliveryError(
                        where,
                        "the server does not offer STARTTLS: refusing to send the SMTP password in clear "
                        '(smtp_security = "tls" for implicit TLS, or "none" to allow it)',
                        transient=False,
                    )
                smtp.login(s.smtp_user, s.smtp_password)
            smtp.send_message(msg, from_addr=s.smtp_from, to_addrs=[to])


# --- e-mail rendering (pure) ------------------------------------------------------------------------


def render_alert_email(alert: Alert) -> tuple[str, str, str]:
    """``(subject, plain text, HTML)`` of an instant alert."""
    published = alert.published.date().isoformat() if alert.published else "date unknown"
    terms = ", ".join(alert.matched_terms) or "-"
    subject = f"[{alert.watchlist}] New story: {_one_line(alert.story_title)}"
    plain = (
        f"New story for watchlist {alert.watchlist}\n\n"
        f"{alert.story_title}\n{alert.link}\n\n"
        f"Matching article: {alert.title}\n"
        f"Source: {alert.source} | Language: {alert.lang} | Published: {published}\n"
        f"{alert.url}\n\n"
        f"Matched: {terms}\n"
    )
    e = html.escape
    rich = (
        "<!DOCTYPE html><html><body>"
        f"<p>New story for watchlist <b>{e(alert.watchlist)}</b></p>"
        f'<h2><a href="{e(alert.link)}">{e(alert.story_title)}</a></h2>'
        f'<p>Matching article: <a href="{e(alert.url)}" dir="auto">{e(alert.title)}</a><br>'
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
    unconfirmed = sum(1 for g in groups if g.unconfirmed and not g.new)
    older = sum(1 for g in groups if g.older and not g.new)
    updated = len(groups) - new - unconfirmed - older
    subject = f"[{watchlist}] {every} digest: {new} new, {updated} updated stories"
    if unconfirmed:
        subject += f", {unconfirmed} unconfirmed"
    if older:
        subject += f", {older} with older coverage"
    lines = [f"Digest for watchlist {watchlist} ({period})", ""]
    e = html.escape
    parts = [f"<!DOCTYPE html><html><body><h1>Digest for watchlist {e(watchlist)} ({e(period)})</h1>"]
    for g in groups:
        sources = ", ".join(f"{s} ({n})" for s, n in g.source_counts)
        marker = digest_marker(g)
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
