"""Sources split across crawl processes by a stable hash of their id; each process its own crawl state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crawlers.crawl_context import CrawlContext
from crawlers.registry import load_registry
from crawlers.sharding import shard, shard_of
from sednaya_monitor.prometheus_metrics import PrometheusMetrics
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.wiring import crawl_config, make_raw_store
from stream.bus_embedded import EmbeddedBus
from stream.errors import SettingsError

REGISTRY = load_registry(Settings().sources_file)


def test_every_source_is_polled_by_exactly_one_of_the_shards() -> None:
    for count in (1, 2, 3, 5):
        shards = [shard(REGISTRY, i, count) for i in range(count)]
        ids = [s.id for part in shards for s in part]
        assert sorted(ids) == sorted(s.id for s in REGISTRY)
        assert all(part for part in shards), f"an empty shard of {count} over {len(REGISTRY)} sources"


def test_the_split_is_the_same_in_every_process() -> None:
    """SHA-256 of the id, not Python's salted ``hash``: another interpreter agrees."""
    code = (
        "from crawlers.sharding import shard_of; from crawlers.registry import load_registry; "
        "from sednaya_monitor.settings import Settings; "
        "print(','.join(str(shard_of(s.id, 3)) for s in load_registry(Settings().sources_file)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert other.stdout.strip() == ",".join(str(shard_of(s.id, 3)) for s in REGISTRY)


def test_bad_shard_settings_name_the_values() -> None:
    with pytest.raises(SettingsError, match="crawl_shard_index"):
        load_settings(environ={"SEDNAYA_MONITOR_CRAWL_SHARD_INDEX": "3", "SEDNAYA_MONITOR_CRAWL_SHARD_COUNT": "3"})
    with pytest.raises(ValueError, match="shard index 2 of 2"):
        shard(REGISTRY, 2, 2)


def test_a_crawl_process_polls_its_share_and_keeps_its_own_state(tmp_path: Path) -> None:
    contexts = []
    for index in range(2):
        settings = load_settings(
            environ={},
            overrides={"data_dir": tmp_path / f"crawl-{index}", "crawl_shard_index": index, "crawl_shard_count": 2},
        )
        bus = EmbeddedBus(tmp_path / "bus.sqlite3")
        contexts.append(
            CrawlContext(
                crawl_config(settings), bus, PrometheusMetrics(), raw=make_raw_store(settings), owns_bus=True
            )
        )
    polled = [{s.id for s in c.sources} for c in contexts]
    assert not polled[0] & polled[1]
    assert polled[0] | polled[1] == {s.id for s in REGISTRY}
    for index, context in enumerate(contexts):  # seen URLs and validators in the process's own directory
        assert context.seen.path.is_relative_to(tmp_path / f"crawl-{index}")
        context.close()
