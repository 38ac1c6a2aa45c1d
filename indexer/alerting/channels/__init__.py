"""Alert channels, one module each, picked by the target's kind (``<kind>:<address>``).

Adding a channel is one module implementing :class:`~indexer.alerting.channels.channel.AlertChannel` and one line
in :data:`CHANNELS`. The kind a configured address gets follows its scheme: ``http(s)://`` URLs are
``webhook`` (or ``slack`` for a watchlist sending Slack's format), ``mailto:``/bare addresses ``email``
(``indexer.alerting.watchlists.Watchlist.targets``).
"""

from __future__ import annotations

from indexer.alerting.channels.channel import AlertChannel, ChannelConfig, ChannelFactory
from indexer.alerting.channels.email import EmailChannel
from indexer.alerting.channels.slack import SlackChannel
from indexer.alerting.channels.webhook import WebhookChannel

CHANNELS: dict[str, ChannelFactory] = {
    "webhook": WebhookChannel,
    "slack": SlackChannel,
    "email": EmailChannel,
}

__all__ = ["CHANNELS", "AlertChannel", "ChannelConfig", "ChannelFactory"]
