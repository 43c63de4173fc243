from __future__ import annotations

from pathlib import Path

import pytest

from telex.config import ConfigError, load


def test_defaults_start_the_embedded_broker_on_port_8000() -> None:
    config = load(None, {})
    assert config.kafka.embedded
    assert (config.http.host, config.http.port) == ("127.0.0.1", 8000)
    assert config.replay.interval == 3.0


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    file = tmp_path / "telex.toml"
    file.write_text(
        "[http]\nport = 9000\n[replay]\ninterval = 1.5\n"
        '[[sources]]\nid = "bbc-live"\nurl = "https://www.bbc.co.uk/news/live/x"\n'
    )
    config = load(file, {"TELEX_HTTP_PORT": "9100", "TELEX_KAFKA_BOOTSTRAP": "kafka:9092"})
    assert config.http.port == 9100
    assert config.replay.interval == 1.5
    assert config.kafka.bootstrap == "kafka:9092" and not config.kafka.embedded
    assert config.sources[0].id == "bbc-live"


def test_config_file_from_environment(tmp_path: Path) -> None:
    file = tmp_path / "t.toml"
    file.write_text("[gateway]\nhistory_size = 5\n")
    assert load(None, {"TELEX_CONFIG": str(file)}).gateway.history_size == 5


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TELEX_HTTP_PORT": "eighty"}, "http.port from TELEX_HTTP_PORT"),
        ({"TELEX_HTTP_PORT": "70000"}, "less than or equal to 65535"),
        ({"TELEX_REPLAY_INTERVAL": "-1"}, "replay.interval from TELEX_REPLAY_INTERVAL"),
        ({"TELEX_KAFKA_IDEMPOTENCE": "maybe"}, "kafka.idempotence"),
        ({"TELEX_HTTP_PROT": "1"}, "unknown environment variable(s) TELEX_HTTP_PROT"),
    ],
)
def test_bad_values_are_named_with_their_origin(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(None, environ)
    assert message in str(info.value)


def test_bad_file_values_name_the_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text('[[sources]]\nid = "Bad Id"\nurl = "ftp://x"\n[typo]\nx = 1\n')
    with pytest.raises(ConfigError) as info:
        load(file, {})
    text = str(info.value)
    assert "sources.0.id" in text and "sources.0.url" in text and "typo" in text
    assert str(file) in text


def test_broken_toml_is_reported(tmp_path: Path) -> None:
    file = tmp_path / "broken.toml"
    file.write_text("[http\nport=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(file, {})
    with pytest.raises(ConfigError, match="does not exist"):
        load(tmp_path / "missing.toml", {})


def test_outbound_ca_file_is_checked_and_added_to_the_public_authorities(tmp_path: Path) -> None:
    import trustme

    from telex.outbound import tls_context

    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError) as info:
        load(None, {"TELEX_OUTBOUND_CA_FILE": missing})
    assert "outbound.ca_file from TELEX_OUTBOUND_CA_FILE" in str(info.value)
    assert "does not exist" in str(info.value)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="not a PEM file of CA certificates"):
        load(None, {"TELEX_OUTBOUND_CA_FILE": str(junk)})
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    config = load(None, {"TELEX_OUTBOUND_CA_FILE": str(ca)})
    assert config.outbound.ca_file == str(ca)
    public = tls_context().cert_store_stats()["x509_ca"]
    assert public > 0
    assert tls_context(config.outbound.ca_file).cert_store_stats()["x509_ca"] == public + 1


def test_stage_checks_are_passed_in_and_name_the_bad_value(tmp_path: Path) -> None:
    from telex.config_checks import CONFIG_CHECKS

    file = tmp_path / "telex.toml"
    file.write_text(
        '[[sources]]\nid = "s"\nurl = "https://x.test/"\nselectors = { entry = "div[[" }\n'
        '[[notifier.webhooks]]\nname = "desk"\nurl = "https://hooks.example.com/"\n'
        'secret = "whsec_not-base64!"\n'
    )
    with pytest.raises(ConfigError) as refused:
        load(file, {}, CONFIG_CHECKS)
    assert "sources.0.selectors.entry" in str(refused.value)
    assert "notifier.webhooks.0.secret" in str(refused.value)


def test_config_imports_no_stage() -> None:
    source = (Path(__file__).parents[2] / "services/telex/config.py").read_text()
    for stage in ("poller", "processor", "gateway", "notifier"):
        assert f"telex.{stage}" not in source, stage
