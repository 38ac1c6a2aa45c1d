"""The ``AlertChannel`` port: how one kind of target is checked and sent to (no retries: one attempt).

A target is stored as ``<kind>:<address>`` (``webhook:https://...``, ``slack:https://hooks.slack.com/...``,
``email:desk@example.org``); the kind picks the channel from ``indexer.alerting.channels.CHANNELS``.
:class:`indexer.alerting.delivery.Deliverer` wraps every attempt with retries and backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from indexer.alerting.alerts import Alert, DigestStory
    from indexer.alerting.watchlists import Watchlist


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelConfig:
    """What the channels use (the settings of the same names, each documented beside its default in
    ``Settings``): the HTTP User-Agent, the SMTP relay, and which private targets are allowed."""

    user_agent: str
    smtp_host: str
    smtp_port: int
    smtp_user: str
    smtp_password: str
    smtp_from: str
    smtp_security: str  # starttls | tls | none
    alert_allow_private_targets: bool
    alert_target_allowlist: str  # comma-separated hosts, IPs or CIDRs


class AlertChannel(Protocol):
    """One kind of target. Errors are ``DeliveryError`` (``transient`` says whether to retry)."""

    kind: str  # the target prefix it serves; also the ``channel`` label of sednaya_alerts_total

    def check(self, address: str) -> None:
        """Refuse an address at save time. Raises ``WatchlistError`` naming the address and why."""

    def send_alert(self, watchlist: Watchlist, alert: Alert, *, alert_id: str, address: str) -> None:
        """One attempt at delivering an instant alert. Raises ``DeliveryError``."""

    def send_digest(
        self, watchlist: Watchlist, groups: Sequence[DigestStory], *, digest_id: str, period: str, address: str
    ) -> None:
        """One attempt at delivering a digest. Raises ``DeliveryError``."""


ChannelFactory = Callable[[ChannelConfig], AlertChannel]
