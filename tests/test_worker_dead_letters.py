"""The worker counts a dead letter once the bus took it, and commits only then."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from stream.bus import Record
from stream.bus_embedded import EmbeddedBus
from stream.errors import BusError
from stream.worker import PermanentError, StageWorker

TOPIC = "articles.raw.v1"


class _FlushFailsOnce:
    """The real embedded bus whose next flush fails (a broker that refused the dead letter)."""

    def __init__(self, bus: EmbeddedBus) -> None:
        self._bus = bus
        self.fail_next = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._bus, name)

    def publish(self, topic: str, key: str, value: bytes, headers: Mapping[str, str] | None = None) -> None:
        self._bus.publish(topic, key, value, headers)

    def flush(self, timeout_s: float | None = None) -> None:
        if self.fail_next:
            self.fail_next = False
            raise BusError(f"1 records not delivered: topic {TOPIC + '.dlq'!r} key 'k1': the broker refused it")
        self._bus.flush(timeout_s)


class _Refuses:
    name = "refuses"

    def handle(self, records: Sequence[Record]) -> list[BaseException | None]:
        return [PermanentError(f"{r.key}: not an article") for r in records]


def test_a_dead_letter_is_counted_once_the_bus_took_it(tmp_path: Path) -> None:
    real = EmbeddedBus(tmp_path / "bus.sqlite3")
    real.ensure_topics([TOPIC])
    real.publish(TOPIC, "k1", b"{")
    real.flush()
    bus = _FlushFailsOnce(real)
    metrics = PrometheusMetrics()
    worker = StageWorker(bus, TOPIC, "refuses", _Refuses(), metrics=metrics)  # type: ignore[arg-type]

    def counted() -> float | None:
        return metrics.registry.get_sample_value(
            "sednaya_dead_letters_total", {"stage": "refuses", "reason": "PermanentError"}
        )

    bus.fail_next = True
    with pytest.raises(BusError, match="not delivered"):
        worker.run_once()
    assert counted() is None  # not on the bus: not counted, not committed
    assert worker.consumer.lag() == {0: 1}
    worker.close()
    worker = StageWorker(bus, TOPIC, "refuses", _Refuses(), metrics=metrics)  # type: ignore[arg-type]
    assert worker.run_once() == 1  # the record comes again (the next process)
    assert counted() == 1
    assert (
        metrics.registry.get_sample_value("sednaya_articles_total", {"stage": "refuses", "status": "dead_lettered"})
        == 1
    )
    assert worker.consumer.lag() == {0: 0}
    worker.close()
    real.close()
