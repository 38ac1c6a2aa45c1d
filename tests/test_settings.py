from pathlib import Path

import pytest

from stream.errors import SettingsError, TopicError
from stream.settings import Settings, load_settings
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
