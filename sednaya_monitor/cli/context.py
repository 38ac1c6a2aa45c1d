"""What every command gets: the settings and lazily built collaborators (bus, store, metrics)."""

from __future__ import annotations

from indexer.store import SearchStore
from sednaya_monitor import wiring
from stream.bus import Bus
from stream.embedding import Embedder
from stream.metrics import Metrics
from stream.settings import Settings


class AppContext:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._bus: Bus | None = None
        self._store: SearchStore | None = None
        self._embedder: Embedder | None = None

    @property
    def bus(self) -> Bus:
        if self._bus is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._bus = wiring.make_bus(self.settings, self.metrics)
        return self._bus

    @property
    def store(self) -> SearchStore:
        if self._store is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._store = wiring.make_store(self.settings)
            self._store.ensure_ready()
        return self._store

    @property
    def embedder(self) -> Embedder:
        """The model of the settings (loaded on its first use, not here)."""
        if self._embedder is None:
            self._embedder = wiring.make_embedder(self.settings)
        return self._embedder

    def close(self) -> None:
        if self._bus is not None:
            self._bus.close()
            self._bus = None
        if self._store is not None:
            self._store.close()
            self._store = None
