"""Slack channel: ``slack:<incoming-webhook URL>``, Slack's ``{"text", "blocks"}`` message format,
over the webhook channel's transport (same URL checks, signature header when the watchlist has a secret)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from indexer.alerting.alerts import Alert, DigestStory, slack_body, slack_digest_body
from indexer.alerting.channels.webhook import WebhookChannel
from indexer.alerting.watchlists import Watchlist


class SlackChannel(WebhookChannel):
    kind = "slack"

    def alert_body(self, watchlist: Watchlist, alert: Alert, alert_id: str) -> dict[str, Any]:
        return slack_body(alert)

    def digest_body(
        self, watchlist: Watchlist, groups: Sequence[DigestStory], digest_id: str, period: str
    ) -> dict[str, Any]:
        return slack_digest_body(watchlist.name, groups, period=period)
