"""Consumer lag as the broker sees it, for every consumer group of the pipeline.

A consumer that reports its own lag after each batch stops reporting when it dies, and its gauge
freezes at its last value (often 0): exactly when the lag matters. Here the lag is computed from the
broker instead: each group's committed offsets (OffsetFetch) against each partition's end offset, for
every group of ``sednaya_monitor.topology.consumer_groups``, by every stage process
(:class:`LagExporter`, every ``settings.lag_interval_s``) and by ``sednaya-monitor lag``. A dead or
stuck group then shows its lag growing in the ``/metrics`` of any process still alive, so
``SednayaConsumerLagGrowing`` can fire (it takes the max over the processes that report it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings
from sednaya_monitor.topology import consumer_groups
from stream.bus import Bus, BusAdmin, GroupLag

logger = logging.getLogger(__name__)

STOP_WAIT_S = 2.0  # how long stop() waits for a round in progress


def read_lag(bus: Bus, settings: Settings) -> list[GroupLag]:
    """Every pipeline group's lag per partition (raises ``BusError`` when the broker cannot be asked)."""
    if not isinstance(bus, BusAdmin):
        raise TypeError(f"bus {type(bus).__name__} cannot report group lag")
    return bus.group_lag(consumer_groups(settings))


def export_lag(metrics: PrometheusMetrics, rows: list[GroupLag]) -> None:
    """Set ``sednaya_bus_consumer_lag_records{topic, group, partition}`` from ``rows``."""
    for row in rows:
        metrics.bus_lag.labels(topic=row.topic, group=row.group, partition=str(row.partition)).set(row.lag)


class LagExporter:
    """A daemon thread that exports every pipeline group's lag every ``settings.lag_interval_s``.

    ``open_bus`` builds the bus it asks (its own client: the admin requests must not hold up the
    stage's producer). A failure is logged once per outage (with a count when it ends) and retried
    on the next round; the gauges keep their last values meanwhile.
    """

    def __init__(self, settings: Settings, metrics: PrometheusMetrics, open_bus: Callable[[], Bus]) -> None:
        self.settings = settings
        self.metrics = metrics
        self.open_bus = open_bus
        self.stop_event = threading.Event()
        self.rounds = 0  # successful exports (tests wait on it)
        self._failures = 0
        self._thread: threading.Thread | None = None
        self._bus: Bus | None = None

    def start(self) -> LagExporter:
        if self.settings.lag_interval_s <= 0:
            return self
        self._thread = threading.Thread(target=self._run, name="lag-exporter", daemon=True)
        self._thread.start()
        return self

    def export_once(self) -> None:
        if self._bus is None:
            self._bus = self.open_bus()
        export_lag(self.metrics, read_lag(self._bus, self.settings))
        self.rounds += 1

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.export_once()
            except Exception as exc:  # noqa: BLE001  # telemetry: never stops the stage, said once per outage
                self._failures += 1
                if self._failures == 1:
                    logger.warning("consumer lag unavailable", extra={"error": f"{type(exc).__name__}: {exc}"})
            else:
                if self._failures:
                    logger.info("consumer lag available again", extra={"failed_rounds": self._failures})
                    self._failures = 0
            self.stop_event.wait(self.settings.lag_interval_s)

    def stop(self) -> None:
        """Stop the thread; a round waiting on a broker that is down (admin requests of up to 30 s) is not
        waited for beyond ``STOP_WAIT_S``: the thread is a daemon, and its client is closed by another daemon thread
        once the round gives up, so a SIGTERM is not held up by telemetry."""
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout=STOP_WAIT_S)
            if self._thread.is_alive():
                logger.info("lag exporter still waiting on the broker: not waited for")
                round_in_progress = self._thread

                def close_after_round() -> None:  # its client is closed once the round gives up: none lingers
                    round_in_progress.join()
                    self._close_bus()

                threading.Thread(target=close_after_round, name="lag-exporter-close", daemon=True).start()
                self._thread = None
                return
            self._thread = None
        self._close_bus()

    def _close_bus(self) -> None:
        if self._bus is not None:
            try:
                self._bus.close()
            except Exception:  # closing a client of a broker that is gone
                logger.debug("lag exporter bus close failed", exc_info=True)
            self._bus = None
