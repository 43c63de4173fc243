from __future__ import annotations

from pathlib import Path

import pytest

from telex.config import Config, ConfigError, load
from telex.config_checks import CONFIG_CHECKS


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


def _everything_set(tmp_path: Path) -> Config:
    """A config that differs from the defaults in every kind of value: nested sections,
    lists of values and of tables, secrets, optional numbers, floats, booleans."""
    file = tmp_path / "telex.toml"
    file.write_text(
        '[kafka]\nbootstrap = "k1:9092,k2:9092"\nsecurity_protocol = "SASL_PLAINTEXT"\n'
        'sasl_mechanism = "SCRAM-SHA-512"\nusername = "newsroom"\n'
        'password = "pa ss,word=1\\"x"\nsession_timeout_ms = 6000\nssl_check_hostname = false\n'
        '[topics]\nraw = "a.raw"\npartitions = 6\nreplication_factor = 3\n'
        '[http]\nport = 0\nadmin_tokens = ["admin-token-0123456789", "second-token-abcdefgh"]\n'
        "[replay]\ninterval = 0.1\nenabled = false\n"
        '[poller]\nallow_networks = ["127.0.0.0/8", "::1/128"]\nuser_agent = " spaced, agent "\n'
        '[processor]\nenrichers = ["html", "watch"]\nplugins = ["pkg.mod:factory"]\n'
        "story_threshold = 0.35\n"
        '[[processor.watch]]\nname = "NATO"\naliases = ["North Atlantic Treaty Organization"]\n'
        '[[processor.watch]]\nname = "Lavrov"\n'
        '[gateway]\njwt_secret = "jwt-secret-of-32-characters-long!"\n'
        'allowed_origins = ["https://desk.example", "http://[::1]:8000"]\n'
        '[[gateway.api_keys]]\nname = "wall"\nkey = "wall-key-0123456789"\nsources = ["bbc"]\n'
        '[[gateway.api_keys]]\nname = "all"\nkey = "all-key-0123456789ab"\n'
        "[notifier]\nretry_schedule = [0.1, 2.5, 3600]\n"
        '[[notifier.webhooks]]\nname = "desk"\nurl = "https://hooks.example.com/t"\n'
        f'secret = "{SECRET}"\nfilter = {{ sources = ["bbc"], terms = ["NATO"] }}\n'
        "rate_limit = 2.5\n"
        '[log]\nlevel = "debug"\nformat = "json"\n'
        '[[sources]]\nid = "bbc"\nurl = "https://www.bbc.co.uk/news/live/x"\nkind = "html"\n'
        'interval = 1.5\ntimezone = "Europe/London"\n'
        'selectors = { entry = "article", time = "time" }\n'
        '[[sources]]\nid = "api"\nurl = "https://api.example/live"\nkind = "json"\n'
        'enabled = false\nmapping = { items = "data.items", id = "uid" }\n'
    )
    return load(file, {}, CONFIG_CHECKS)


SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_to_environ_gives_back_every_value(tmp_path: Path) -> None:
    config = _everything_set(tmp_path)
    environ = config.to_environ()
    assert load(None, environ, CONFIG_CHECKS) == config
    assert environ["TELEX_KAFKA_PASSWORD"] == 'pa ss,word=1"x'  # the child needs it in clear
    assert environ["TELEX_NOTIFIER_RETRY_SCHEDULE"] == "0.1,2.5,3600.0"
    assert set(environ) >= {"TELEX_PROCESSOR_WATCH", "TELEX_GATEWAY_API_KEYS", "TELEX_SOURCES"}
    # Only what differs from a default: a default config needs no variable at all.
    assert Config().to_environ() == {}
    assert load(None, {}) == Config()


def test_environment_sets_lists_of_tables_and_names_their_variable() -> None:
    watch = '[{"name": "NATO", "aliases": ["OTAN"]}]'
    sources = '[{"id": "bbc", "url": "https://www.bbc.co.uk/live"}]'
    environ = {"TELEX_PROCESSOR_WATCH": watch, "TELEX_SOURCES": sources}
    config = load(None, {**environ, "TELEX_PROCESSOR_ENRICHERS": "html, language"})
    assert config.processor.enrichers == ("html", "language")
    assert config.processor.watch[0].aliases == ("OTAN",)
    assert config.sources[0].id == "bbc"
    with pytest.raises(ConfigError) as bad_item:
        load(None, {"TELEX_SOURCES": '[{"id": "Bad Id", "url": "https://x.test/"}]'})
    assert "sources.0.id from TELEX_SOURCES" in str(bad_item.value)
    hidden = '[{"name": "desk", "url": "https://h.test/", "secret": "whsec_leak'
    with pytest.raises(ConfigError) as not_json:
        load(None, {"TELEX_NOTIFIER_WEBHOOKS": hidden})
    assert "notifier.webhooks from TELEX_NOTIFIER_WEBHOOKS: must be JSON" in str(not_json.value)
    assert "whsec_leak" not in str(not_json.value)


def test_values_without_an_environment_form_are_refused_without_echoing_them() -> None:
    token = "token,with-a-comma-0123"
    config = Config.model_validate({"http": {"admin_tokens": [token]}})
    with pytest.raises(ValueError, match="TELEX_HTTP_ADMIN_TOKENS") as info:
        config.to_environ()
    assert token not in str(info.value)
    spaced = Config.model_validate({"processor": {"plugins": [" pkg.mod:factory"]}})
    with pytest.raises(ValueError, match="TELEX_PROCESSOR_PLUGINS"):
        spaced.to_environ()
