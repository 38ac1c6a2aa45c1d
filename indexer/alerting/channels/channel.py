"""The ``AlertChannel`` port: how one kind of target is checked and sent to (no retries: one attempt).

A target is stored as ``<kind>:<address>`` (``webhook:https://...``, ``slack:https://hooks.slack.com/...``,
``email:desk@example.org``); the kind picks the channel from ``indexer.alerting.channels.CHANNELS``.
:class:`indexer.alerting.delivery.Deliverer` wraps every attempt with retries and backoff.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from indexer.alerting.alerts import Alert, DigestStory
    from indexer.alerting.watchlists import Watchlist
    from stream.settings import Settings


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


ChannelFactory = Callable[["Settings"], AlertChannel]
