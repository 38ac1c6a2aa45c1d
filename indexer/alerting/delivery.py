"""Delivery of alerts and digests to one target, with retries.

:class:`Deliverer` picks the target's channel from ``indexer.alerting.channels.CHANNELS`` by its kind
(``webhook:<url>``, ``slack:<url>``, ``email:<address>``), makes up to ``DeliveryConfig.webhook_attempts``
attempts (waiting ``webhook_backoff_s``, doubled each time) while the channel's
:class:`~indexer.errors.DeliveryError` is ``transient``, and raises the last error when it finally
fails. The alert stage runs it off the pipeline's thread, records the outcome in the ledger and counts
it, so a failing target never holds up another target or the pipeline.

The channels: ``indexer.alerting.channels.webhook`` (JSON POST signed ``t=…,v1=…``, target address checks),
``indexer.alerting.channels.slack`` (Slack's message format) and ``indexer.alerting.channels.email`` (SMTP with
STARTTLS or implicit TLS).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from indexer.alerting.alerts import Alert, DigestStory
from indexer.alerting.channels import CHANNELS, AlertChannel, ChannelConfig
from indexer.alerting.channels.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, SIGNATURE_TOLERANCE_S, sign, verify
from indexer.alerting.watchlists import Watchlist
from indexer.errors import DeliveryError, WatchlistError

logger = logging.getLogger(__name__)

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_TOLERANCE_S",
    "Deliverer",
    "DeliveryConfig",
    "check_targets",
    "sign",
    "split_target",
    "target_channel",
    "verify",
]

RetryHook = Callable[[str, int, DeliveryError], None]  # (channel, attempt that failed, error), before the next try


@dataclass(frozen=True, kw_only=True, slots=True)
class DeliveryConfig:
    """Retries (the settings of the same names) and what the channels use."""

    webhook_attempts: int  # tries per delivery (exponential backoff)
    webhook_backoff_s: float  # first retry delay, doubled each time
    channels: ChannelConfig


class Deliverer:
    """Sends one alert or digest to one target.

    Args:
        config: ``webhook_attempts``, ``webhook_backoff_s`` and what the channels use.
        on_retry: called before every retry (the stage counts them).
        sleep: how to wait between tries (``time.sleep``).
    """

    def __init__(
        self,
        config: DeliveryConfig,
        *,
        on_retry: RetryHook | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.on_retry = on_retry
        self.sleep = sleep
        self._channels: dict[str, AlertChannel] = {kind: factory(config.channels) for kind, factory in CHANNELS.items()}

    def channel(self, target: str) -> tuple[AlertChannel, str]:
        """The channel serving ``target`` and the address. Raises ``DeliveryError`` for an unknown kind."""
        kind, address = split_target(target)
        return self._channels[kind], address

    def send_alert(self, watchlist: Watchlist, alert: Alert, *, alert_id: str, target: str) -> int:
        """Deliver an instant alert; returns the attempts it took. Raises ``DeliveryError``."""
        channel, address = self.channel(target)
        return self._with_retries(
            channel.kind,
            target,
            lambda: channel.send_alert(watchlist, alert, alert_id=alert_id, address=address),
        )

    def send_digest(
        self, watchlist: Watchlist, groups: Sequence[DigestStory], *, digest_id: str, period: str, target: str
    ) -> int:
        """Deliver a digest; returns the attempts it took. Raises ``DeliveryError``."""
        channel, address = self.channel(target)
        return self._with_retries(
            channel.kind,
            target,
            lambda: channel.send_digest(watchlist, groups, digest_id=digest_id, period=period, address=address),
        )

    def _with_retries(self, channel: str, what: str, once: Callable[[], None]) -> int:
        attempts = max(1, self.config.webhook_attempts)
        delay = self.config.webhook_backoff_s
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
    """``"<kind>:<address>"`` -> ``(kind, address)`` for a kind of ``indexer.alerting.channels.CHANNELS``.

    Raises ``DeliveryError`` for any other kind.
    """
    kind, sep, address = target.partition(":")
    if not sep or kind not in CHANNELS or not address:
        kinds = ", ".join(f"'{k}:<address>'" for k in CHANNELS)
        raise DeliveryError(target, f"target must be one of {kinds}", transient=False)
    return kind, address


def target_channel(target: str) -> str:
    """The ``channel`` metrics label of ``target`` (its kind; ``unknown`` for a malformed one)."""
    kind = target.partition(":")[0]
    return kind if kind in CHANNELS else "unknown"


def check_targets(watchlist: Watchlist, config: ChannelConfig) -> None:
    """Save-time check of every target with its channel (e.g. webhooks to private addresses refused).

    Raises ``WatchlistError`` naming the watchlist, the target and why.
    """
    for target in watchlist.targets:
        kind, address = split_target(target)
        try:
            CHANNELS[kind](config).check(address)
        except WatchlistError as exc:
            raise WatchlistError(f"watchlist {watchlist.name!r}: {exc}") from exc
