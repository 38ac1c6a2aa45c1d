from pathlib import Path

import pytest

from sednaya_monitor.settings import MAX_NAME_WEIGHT, Settings, load_settings
from stream.errors import SettingsError, TopicError
from stream.text import fold, normalize_arabic
from stream.topic import load_topic


def test_defaults_are_embedded() -> None:
    s = load_settings(environ={})
    assert s.bus == "embedded" and s.store == "embedded"
    assert s.topic_raw == "articles.raw.v1" and s.dlq(s.topic_raw) == "articles.raw.v1.dlq"


def test_precedence_defaults_file_env_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('batch_size = 10\nmodel_name = "from-file"\ncluster_window_days = 3\n')
    env = {"SEDNAYA_MONITOR_BATCH_SIZE": "20", "SEDNAYA_MONITOR_DISCOVERY": "false"}
    s = load_settings(cfg, environ=env, overrides={"batch_size": 30})
    assert s.batch_size == 30  # flag beats env
    assert s.discovery is False  # env beats default
    assert s.model_name == "from-file" and s.cluster_window_days == 3  # file beats default


def test_a_value_the_settings_refuse_names_where_it_came_from(tmp_path: Path) -> None:
    """Settings' own checks (ranges, choices) name the file key, variable or flag that gave the value."""
    with pytest.raises(SettingsError, match=r"^SEDNAYA_MONITOR_LOCK_WAIT_S: setting 'lock_wait_s'=-1.0"):
        load_settings(environ={"SEDNAYA_MONITOR_LOCK_WAIT_S": "-1"})
    cfg = tmp_path / "c.toml"
    cfg.write_text("serve_workers = 0\n")
    with pytest.raises(SettingsError, match=r"c\.toml:serve_workers: setting 'serve_workers'=0"):
        load_settings(cfg, environ={})
    with pytest.raises(SettingsError, match=r"^--workers: setting 'serve_workers'=0: must be at least 1"):
        load_settings(environ={}, overrides={"serve_workers": 0}, flag_names={"serve_workers": "--workers"})
    with pytest.raises(SettingsError, match=r"^--batch-size: setting 'batch_size'=0"):
        load_settings(environ={}, overrides={"batch_size": 0})


def test_command_flags_go_through_the_loader_and_win_over_a_bad_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--wait``, ``--port``, ``--host``, ``--workers`` are settings loaded with the rest (one function):
    a flag given makes a bad variable for the same setting harmless, and a bad flag is named."""
    import click

    from sednaya_monitor.cli.app_context import Flags, settings_from_flags
    from sednaya_monitor.cli.commands_serve import SERVE_FLAGS
    from sednaya_monitor.cli.locking import WAIT_FLAG

    monkeypatch.setenv("SEDNAYA_MONITOR_LOCK_WAIT_S", "soon")
    monkeypatch.setenv("SEDNAYA_MONITOR_SERVE_PORT", "http")
    s = settings_from_flags(Flags(), {"lock_wait_s": 2.5, "serve_port": 0}, {**WAIT_FLAG, **SERVE_FLAGS})
    assert s.lock_wait_s == 2.5 and s.serve_port == 0
    with pytest.raises(click.UsageError, match=r"^--port='http': invalid literal"):
        settings_from_flags(Flags(), {"lock_wait_s": 1.0, "serve_port": "http"}, {**WAIT_FLAG, **SERVE_FLAGS})
    with pytest.raises(click.UsageError, match=r"SEDNAYA_MONITOR_LOCK_WAIT_S='soon'"):
        settings_from_flags(Flags(), {"serve_port": 0}, SERVE_FLAGS)


def test_bad_env_value_names_variable_and_value() -> None:
    with pytest.raises(SettingsError, match=r"SEDNAYA_MONITOR_BATCH_SIZE='many'"):
        load_settings(environ={"SEDNAYA_MONITOR_BATCH_SIZE": "many"})
    with pytest.raises(SettingsError, match=r"SEDNAYA_MONITOR_BUS='kafka://kafka:x'.*integer port"):
        load_settings(environ={"SEDNAYA_MONITOR_BUS": "kafka://kafka:x"})
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(environ={"SEDNAYA_MONITOR_NOPE": "1"})


def test_missing_and_bad_config_file_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "absent.toml", environ={})
    bad = tmp_path / "bad.toml"
    bad.write_text("threshold = [")
    with pytest.raises(SettingsError, match=r"bad\.toml.*not valid TOML"):
        load_settings(bad, environ={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'red'\n")
    with pytest.raises(SettingsError, match="unknown key 'colour'"):
        load_settings(unknown, environ={})


def test_kafka_bootstrap_list() -> None:
    s = Settings(bus="kafka://k1:9092,k2:9093")
    assert s.kafka_bootstrap() == ["k1:9092", "k2:9093"]


def test_kafka_client_knobs_reach_the_clients_config() -> None:
    from sednaya_monitor.wiring import kafka_config

    config = kafka_config(
        load_settings(
            environ={"SEDNAYA_MONITOR_KAFKA_COMPRESSION": "none", "SEDNAYA_MONITOR_KAFKA_LINGER_MS": "20"},
            overrides={"bus": "kafka://k1:9092", "kafka_fetch_min_bytes": "4096"},
        )
    )
    assert (config.compression, config.linger_ms, config.fetch_min_bytes) == (None, 20, 4096)
    assert kafka_config(Settings(bus="kafka://k1:9092")).compression == "lz4"
    with pytest.raises(SettingsError, match=r"'kafka_compression'='zstd': expected one of lz4, gzip, none"):
        Settings(kafka_compression="zstd")
    with pytest.raises(SettingsError, match=r"'kafka_linger_ms'=-1: must be 0 or more"):
        Settings(kafka_linger_ms=-1)


@pytest.mark.parametrize("name", ["anchor_weight", "date_bonus", "word_evidence_weight", "same_language_margin"])
def test_the_weights_and_margins_of_clustering_are_between_0_and_1(name: str) -> None:
    # clustering bounds what a story can still add by summing them (stream.clustering.assign, Reach): a negative
    # weight would make that bound too low and skip a story that could win
    for bad in ("-0.1", "nan", "1.5"):
        with pytest.raises(SettingsError, match=rf"setting '{name}'=.*must be between 0 and 1"):
            load_settings(environ={f"SEDNAYA_MONITOR_{name.upper()}": bad})
    assert getattr(load_settings(environ={f"SEDNAYA_MONITOR_{name.upper()}": "0.2"}), name) == 0.2


def test_the_name_evidence_weight_is_between_0_and_its_largest() -> None:
    # a name cosine is small (names are a few of an article's words), so its weight may pass 1, up to a bound
    for bad in ("-0.1", "nan", str(MAX_NAME_WEIGHT + 0.5)):
        with pytest.raises(SettingsError, match=r"setting 'name_evidence_weight'=.*must be between 0 and 3"):
            load_settings(environ={"SEDNAYA_MONITOR_NAME_EVIDENCE_WEIGHT": bad})
    assert load_settings(environ={"SEDNAYA_MONITOR_NAME_EVIDENCE_WEIGHT": "1.5"}).name_evidence_weight == 1.5


@pytest.mark.parametrize("name", ["date_bonus_stories", "related_date_bonus_articles"])
def test_the_counts_that_share_out_date_bonuses_are_0_or_at_least_1(name: str) -> None:
    # the article's own story (the older story's own article) counts 1: below it every bonus would be cut
    for bad in ("0.5", "-1", "nan", "inf"):
        with pytest.raises(SettingsError, match=rf"SEDNAYA_MONITOR_{name.upper()}: setting '{name}'=.*at least 1"):
            load_settings(environ={f"SEDNAYA_MONITOR_{name.upper()}": bad})
    for good in ("0", "1", "2.5"):
        assert getattr(load_settings(environ={f"SEDNAYA_MONITOR_{name.upper()}": good}), name) == float(good)


def test_topic_file_has_every_script() -> None:
    topic = load_topic(Settings().topic_file)
    assert {"latin", "arabic", "cyrillic", "hebrew"} <= set(topic.names_by_script)
    assert "Saydnaya" in topic.names and "صيدنايا" in topic.names
    assert any(c == "monastery" for c in topic.negative)
    assert any(n == "17,723" for n in topic.anchor_numbers)


def test_topic_errors_name_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "t.toml"
    bad.write_text('id = "x"\ntitle = "x"\nnames = {latin = "Sednaya"}\ncoterms = {}\n')
    with pytest.raises(TopicError, match=r"t.toml.*'names.latin' must be a list"):
        load_topic(bad)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("صيدنايا", "صیدنایا"),
        ("إعدام", "اعدام"),
        ("محكمة", "محكمه"),
        ("مستشفى", "مستشفي"),
        ("صـيـدنايا", "صيدنايا"),
        ("Saydnaya", "SAYDNAYA"),
        ("Gefängnis", "gefangnis"),
        ("İdam", "idam"),
    ],
)
def test_fold_equates_spelling_variants(a: str, b: str) -> None:
    assert fold(a) == fold(b)
    assert fold(fold(a)) == fold(a)
    assert normalize_arabic(normalize_arabic(a)) == normalize_arabic(a)


@pytest.mark.parametrize(
    "name", ["related_threshold", "related_warmup_threshold", "merge_threshold", "merge_warmup_threshold"]
)
def test_a_link_threshold_at_or_below_zero_is_refused_and_above_one_turns_it_off(name: str) -> None:
    with pytest.raises(SettingsError, match=rf"^SEDNAYA_MONITOR_{name.upper()}: setting {name!r}=0.0: must be above 0"):
        load_settings(environ={f"SEDNAYA_MONITOR_{name.upper()}": "0"})
    with pytest.raises(SettingsError, match=rf"setting {name!r}=-0.2: must be above 0"):
        load_settings(environ={}, overrides={name: -0.2})
    assert getattr(load_settings(environ={}, overrides={name: 1.01}), name) == 1.01
