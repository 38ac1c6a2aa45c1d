"""Shared fixtures. Area fixtures live in their own modules, listed in ``pytest_plugins``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from sednaya_monitor.settings import ENV_PREFIX, Settings, load_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Hypothesis fails an example that takes over 200 ms: a timing check, which a busy moment of a shared 2-core
# machine can trip. The properties here are about values; speed is measured by bench/. (A CI run of session 20
# lost tests/test_strategies.py::test_articles_are_articles on a loaded machine, unreported: see the libcst
# filter in pyproject.toml; it did not recur in 3,000 examples, nor under load, so the deadline is the likely
# cause, not a proven one.)
hypothesis_settings.register_profile("sednaya-monitor", deadline=None)
hypothesis_settings.load_profile("sednaya-monitor")

pytest_plugins: list[str] = [
    "tests.broker_fixtures",
    "tests.alert_fixtures",
    "tests.store_fixtures",
    "tests.web_fixtures",
    "tests.model_fixtures",
    "tests.crawl_fixtures",
    "tests.distributed_fixtures",
]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SEDNAYA_MONITOR_* variable from the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


# The warm-up hold (settings.warmup_hold_s) keeps the story events of a fresh state's first articles back
# until the topic's centre is known; most tests watch a handful of articles and the events each one causes,
# so they run without it. tests/test_warmup_hold.py runs it, as shipped and with short limits.
NO_HOLD = {"warmup_hold_s": 0.0}


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    """Embedded-mode settings writing under the test's temporary directory."""
    return load_settings(environ={}, overrides={"data_dir": data_dir, **NO_HOLD})


@pytest.fixture
def settings_factory(data_dir: Path) -> Iterator[object]:
    def make(**overrides: object) -> Settings:
        return load_settings(environ={}, overrides={"data_dir": data_dir, **NO_HOLD, **overrides})

    yield make
