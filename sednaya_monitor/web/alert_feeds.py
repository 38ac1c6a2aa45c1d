"""The alert ledger (``indexer.alerting.ledger``) seen from the web: recent alerts and Atom feeds per watchlist."""

from __future__ import annotations

from indexer.alerting.atom import render_atom
from indexer.alerting.ledger import AlertLedger, LedgerAlert
from indexer.alerting.watchlists import Watchlist, WatchlistRepository
from sednaya_monitor.web.pages import AlertView


def alert_view(item: LedgerAlert) -> AlertView:
    alert = item.alert
    return AlertView(
        watchlist=alert.watchlist,
        story_id=alert.story_id,
        story_title=alert.story_title,
        at=item.created_at,
        article_title=alert.title,
        article_url=alert.url,
        lang=alert.lang,
        source=alert.source,
        matched_terms=alert.matched_terms,
    )


class LedgerAlertLog:
    """:class:`~sednaya_monitor.web.app.AlertLog` over an :class:`AlertLedger` and the watchlist repository."""

    def __init__(self, ledger: AlertLedger, watchlists: WatchlistRepository, public_url: str) -> None:
        self.ledger = ledger
        self.watchlists = watchlists
        self.public_url = public_url

    def recent(self, watchlist: str | None, limit: int) -> list[AlertView]:
        """Newest first; across every watchlist when ``watchlist`` is None. Unknown names give ``[]``."""
        names = [watchlist] if watchlist is not None else [w.name for w in self.watchlists.all()]
        items: list[LedgerAlert] = []
        for name in names:
            items.extend(self.ledger.recent_alerts(name, limit=limit))
        items.sort(key=lambda a: (a.created_at, a.id), reverse=True)
        return [alert_view(a) for a in items[:limit]]

    def atom(self, watchlist: Watchlist, limit: int) -> bytes:
        return render_atom(watchlist, self.ledger.recent_alerts(watchlist.name, limit=limit), self.public_url)
