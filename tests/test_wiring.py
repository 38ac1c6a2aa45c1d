"""The composition root builds each component's config object from the application settings: the
field names are the settings' names, and every value is the setting's (sednaya_monitor/wiring.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sednaya_monitor import wiring
from sednaya_monitor.settings import Settings, load_settings

BUILDERS: dict[str, Callable[[Settings], Any]] = {
    "crawl": wiring.crawl_config,
    "s3": wiring.s3_config,
    "elastic": wiring.elastic_config,
    "channels": wiring.channel_config,
    "delivery": wiring.delivery_config,
    "alert": wiring.alert_config,
    "assign": wiring.assign_config,
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose values differ from the defaults, so a config that took a default would show."""
    return load_settings(
        environ={},
        overrides={
            "data_dir": tmp_path,
            "store": "https://es.example:9200",
            "raw_store": "s3://bucket/raw",
            "s3_region": "eu-west-3",
            "es_prefix": "wired",
            "es_username": "elastic",
            "es_password": "pw",
            "smtp_port": 2525,
            "smtp_security": "tls",
            "webhook_attempts": 7,
            "alert_target_allowlist": "10.0.0.0/8",
            "alert_max_age_s": 60.0,
            "crawl_retry_times": 5,
            "crawl_shard_count": 3,
            "crawl_shard_index": 2,
            "merge_every": 9,
            "model_languages": "en, de",
            "cluster_threshold": 0.31,
            "date_bonus_stories": 3.5,
            "related_date_bonus_articles": 6.0,
            "topic_raw": "raw.v9",
        },
    )


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_a_config_carries_the_settings_of_its_field_names(name: str, settings: Settings) -> None:
    config = BUILDERS[name](settings)
    assert dataclasses.is_dataclass(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, dataclasses.fields(config)[0].name, None)
    known = {f.name for f in dataclasses.fields(Settings)}
    for field in dataclasses.fields(config):
        if field.name in known:
            assert getattr(config, field.name) == getattr(settings, field.name), f"{name}.{field.name}"


def test_nested_configs_and_the_clustering_thresholds(settings: Settings) -> None:
    alert = wiring.alert_config(settings)
    assert alert.delivery == wiring.delivery_config(settings)
    assert alert.delivery.channels == wiring.channel_config(settings)
    assert (alert.delivery.webhook_attempts, alert.delivery.channels.smtp_port) == (7, 2525)
    assign = wiring.assign_config(settings)
    assert assign.cluster == wiring.cluster_params(settings)
    assert (assign.cluster.threshold, assign.merge_every, assign.topic_raw) == (0.31, 9, "raw.v9")
    assert (assign.cluster.date_bonus_stories, assign.cluster.related_date_bonus_articles) == (3.5, 6.0)
    assert wiring.crawl_config(settings).crawl_shard_index == 2
    assert wiring.elastic_config(settings).es_prefix == "wired"


def test_settings_slice_names_a_field_the_settings_lack(settings: Settings) -> None:
    @dataclasses.dataclass(frozen=True)
    class Unknown:
        no_such_setting: int

    with pytest.raises(AttributeError, match="no_such_setting"):
        wiring.settings_slice(Unknown, settings)


THRESHOLDS = (
    "cluster_threshold",
    "cluster_warmup_threshold",
    "merge_threshold",
    "merge_warmup_threshold",
    "related_threshold",
    "related_warmup_threshold",
    "date_bonus",
    "related_date_bonus",
    "unconfirmed_margin",
    "same_language_margin",
    "same_language_merge_margin",
    "word_evidence_weight",
    "name_evidence_weight",
)


@pytest.mark.parametrize(
    ("model", "calibration"),
    [
        ("use-multilingual-v3", "use-multilingual-v3"),
        ("multilingual-e5-small", "multilingual-e5-small"),
        ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2"),
        ("/models/some-other-sentence-transformer", "all-MiniLM-L6-v2"),  # unknown: MiniLM's raw cosines
    ],
)
def test_thresholds_left_empty_come_from_the_models_calibration(model: str, calibration: str) -> None:
    settings = load_settings(environ={}, overrides={"model_name": model})
    assert all(getattr(settings, name) is None for name in THRESHOLDS)  # nothing set: the model decides
    expected = wiring.MODEL_CALIBRATIONS[calibration]
    params = wiring.cluster_params(settings)
    assert (
        params.threshold,
        params.warmup_threshold,
        params.merge_threshold,
        params.warmup_merge_threshold,
        params.related_threshold,
        params.related_warmup_threshold,
        params.date_bonus,
        params.related_date_bonus,
        params.unconfirmed_margin,
        params.same_language_margin,
        params.same_language_merge_margin,
        params.word_evidence_weight,
        params.name_evidence_weight,
    ) == tuple(expected[name] for name in THRESHOLDS)
    assert wiring.calibrated(settings).cluster_threshold == expected["cluster_threshold"]


def test_the_default_model_ships_the_calibration_the_docs_state() -> None:
    """The values chosen by the benches and written in docs/clustering.md (a recalibration changes both)."""
    params = wiring.cluster_params(load_settings(environ={}))
    assert (params.threshold, params.warmup_threshold, params.merge_threshold, params.warmup_merge_threshold) == (
        0.3,
        0.7,
        0.35,
        0.8,
    )
    assert (params.related_threshold, params.related_warmup_threshold, params.related_date_bonus) == (0.25, 1.01, 0.1)
    assert (params.date_bonus, params.unconfirmed_margin) == (0.2, 0.1)
    assert (params.same_language_margin, params.same_language_merge_margin, params.word_evidence_weight) == (
        0.25,
        0.4,
        0.3,
    )
    assert params.name_evidence_weight == 1.0


def test_a_threshold_set_by_the_operator_wins_over_the_calibration() -> None:
    settings = load_settings(
        environ={"SEDNAYA_MONITOR_MERGE_THRESHOLD": "0.5"},
        overrides={"model_name": "multilingual-e5-small", "cluster_threshold": 0.4},
    )
    params = wiring.cluster_params(settings)
    e5 = wiring.MODEL_CALIBRATIONS["multilingual-e5-small"]
    assert (params.threshold, params.merge_threshold) == (0.4, 0.5)
    assert params.warmup_threshold == e5["cluster_warmup_threshold"]  # the others stay the model's


def test_every_registered_model_has_a_complete_calibration() -> None:
    for name, kind in wiring.EMBEDDERS.items():
        assert set(wiring.MODEL_CALIBRATIONS[kind.calibration]) == set(THRESHOLDS), name
