"""telex configuration: one TOML file plus ``TELEX_*`` environment variables.

Precedence, lowest first: built-in defaults, the TOML file (``--config`` or ``TELEX_CONFIG``),
then environment variables. An environment variable names a section and a key joined by an
underscore, upper-cased: ``TELEX_KAFKA_BOOTSTRAP`` sets ``[kafka] bootstrap``,
``TELEX_HTTP_PORT`` sets ``[http] port``, ``TELEX_REPLAY_INTERVAL`` sets ``[replay] interval``.
A list of plain values is comma-separated (``TELEX_NOTIFIER_RETRY_SCHEDULE=5,300``); a list of
tables is a JSON list of objects (``TELEX_PROCESSOR_WATCH``, ``TELEX_SOURCES``).
:meth:`Config.to_environ` is the inverse: the variables that give a config back.

Every value is validated at start-up; :func:`load` raises :class:`ConfigError` whose message
names each bad value, where it came from, and what was expected. Values whose rules belong to a
stage (an HTML selector, a webhook secret) are checked by functions the caller passes in as
:class:`Checks`, so this module depends on no stage.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from telex.filters import Filter
from telex.timeparse import zone_for

ENV_PREFIX = "TELEX_"


@dataclass(frozen=True)
class Checks:
    """Checks of values whose rules a stage owns, passed in by whoever validates a config.

    Each takes the value and raises ``ValueError`` naming what is wrong. Give them to
    :func:`load`, or as ``context`` to ``model_validate`` of a section; without them such a
    value is only checked when the stage first uses it.
    """

    selector: Callable[[str], object] | None = None
    secret: Callable[[str], object] | None = None


def _checks(info: ValidationInfo) -> Checks:
    return info.context if isinstance(info.context, Checks) else Checks()


_SOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def _slug(value: str) -> str:
    """Check an operator-chosen id (sources, webhooks): it becomes a Kafka key and a label."""
    if not _SOURCE_ID.match(value):
        raise ValueError("must be 1-64 of a-z 0-9 . _ - and start with a letter or digit")
    return value


def _http_url(value: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    if _has_credentials(value):
        # A source's URL is on every update of the wire (source_url) and in API answers.
        raise ValueError("must not carry credentials (user:password@)")


def _has_credentials(value: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        return bool(parts.username or parts.password)
    except ValueError:
        return False


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(_Section):
    """How telex reaches Kafka."""

    bootstrap: str = Field(
        "", description="Bootstrap servers (host:port,...). Empty: start the embedded broker."
    )
    client_id: str = Field(
        "telex", description="Client id sent to Kafka (shows in broker logs and quotas)."
    )
    group_instance_id: str = Field(
        "",
        max_length=200,
        pattern=r"^[A-Za-z0-9._-]*$",
        description="Static consumer-group membership: a name of this process that stays the "
        "same across its restarts and that no other running process shares (e.g. the pod or "
        'host name and the role: "telex-processor-0"). A process restarted after a crash '
        "gets its partitions back at once instead of after the dead member's session "
        "timeout. The flip side: a stopped member keeps its partitions until the session "
        "timeout (it does not leave the group). Empty: dynamic membership.",
    )
    idempotence: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Idempotent producer. auto: tried at start-up, on where the broker can do "
        "it, off with one warning where it cannot (the embedded broker).",
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How clients talk to the brokers: SSL encrypts (and checks the brokers' "
        "certificates), SASL_* authenticates with username and password.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (with SASL_PLAINTEXT or SASL_SSL)."
    )
    username: str = Field("", description="SASL user name (with SASL_PLAINTEXT or SASL_SSL).")
    password: SecretStr = Field(
        SecretStr(""), description="SASL password; never logged nor shown by error messages."
    )
    ssl_cafile: str = Field(
        "",
        description="PEM file of the CA(s) that signed the brokers' certificates (with SSL or "
        "SASL_SSL); empty uses the system's trust store.",
    )
    ssl_certfile: str = Field(
        "", description="PEM client certificate, for brokers that authenticate clients by TLS."
    )
    ssl_keyfile: str = Field("", description="PEM private key of the client certificate.")
    ssl_key_password: SecretStr = Field(
        SecretStr(""), description="Password of the client key, if it is encrypted."
    )
    ssl_check_hostname: bool = Field(
        True, description="Check that a broker's certificate names the host connected to."
    )
    session_timeout_ms: int | None = Field(
        None,
        ge=1000,
        le=300_000,
        description="Consumer group session timeout; a member silent this long is replaced. "
        "Unset, chosen per broker: 1500 on the embedded broker, where a member killed and "
        "restarted stalls the group's work for one to two sessions (it has no static "
        "membership; raise it on a host so loaded that a process's event loop stalls for "
        "over a second); "
        "10000 on Kafka, where a restarted member with a group_instance_id gets its "
        "partitions back at once (Kafka refuses sessions under 6000 by default).",
    )
    heartbeat_interval_ms: int | None = Field(
        None,
        ge=100,
        le=60_000,
        description="Consumer heartbeat interval (capped at a third of the session timeout). "
        "Unset: 500 on the embedded broker (three beats per session), 3000 on Kafka.",
    )
    request_timeout_ms: int = Field(
        40_000,
        ge=1000,
        le=600_000,
        description="Kafka request timeout (kept above half the session timeout).",
    )
    commit_interval_ms: int | None = Field(
        None,
        ge=0,
        le=60_000,
        description="How often a consumer group member (processor, notifier) commits the "
        "offsets whose outputs are acknowledged; a hand-over commits at once. Each commit is "
        "a replicated write on the broker. Longer: fewer of them; after a crash, up to this "
        "much more is read again (and dropped as already done). 0: after every batch. Unset: "
        "1000 on Kafka; 0 on the embedded broker, which can lose its data (a commit made "
        "from memory after that would carry the old topics' offsets).",
    )
    send_blocked_after_s: float = Field(
        5.0,
        gt=0,
        description="A stage whose oldest unacknowledged send to Kafka has waited this long "
        "(or whose latest send failed) reports not ready on /readyz and "
        "telex_kafka_produce_blocked 1, until a send is acknowledged again. Below "
        "min.insync.replicas a send with acks=all waits: the client retries it.",
    )
    embedded_start_timeout_s: float = Field(
        20.0,
        gt=0,
        description="Seconds to wait for the broker (embedded or external) to answer at start-up.",
    )
    fetch_max_wait_ms: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Longest wait of a consumer's fetch (processor, notifier, gateway, poller's "
        "source list). Unset, it is chosen per broker: 20 on the embedded broker (found by "
        "asking it: its storage is memory-only), which answers a waiting fetch only at this "
        "deadline, so it is added latency at each hop; 500 (Kafka's own default) elsewhere, "
        "where a fetch returns as soon as data arrives and this only paces idle polling.",
    )
    # Broker restarts: how often a process checks that its topics still exist.
    topic_check_interval_s: float = Field(
        2.0,
        ge=0,
        description="Seconds between checks that this process's topics still exist; missing "
        "ones (an in-memory broker restarted, or someone deleted them) are created again and "
        "the services start over on them. 0 turns the check off.",
    )

    @property
    def embedded(self) -> bool:
        """True when telex must start its own broker."""
        return not self.bootstrap.strip()

    @model_validator(mode="after")
    def _check_security(self) -> KafkaConfig:
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl and not (self.username and self.password.get_secret_value()):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs username and password"
            )
        if not sasl and (self.username or self.password.get_secret_value()):
            raise ValueError(
                "username/password are set but security_protocol is "
                f"{self.security_protocol}: use SASL_PLAINTEXT or SASL_SSL"
            )
        files = {
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
        }
        given = [name for name, path in files.items() if path]
        if given and not tls:
            raise ValueError(
                f"{', '.join(given)} set but security_protocol is {self.security_protocol}: "
                "use SSL or SASL_SSL"
            )
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise ValueError("ssl_certfile and ssl_keyfile go together")
        if self.ssl_key_password.get_secret_value() and not self.ssl_keyfile:
            raise ValueError("ssl_key_password is set without ssl_keyfile")
        for name, path in files.items():
            if path and not os.access(path, os.R_OK):
                raise ValueError(f"{name} {path} does not exist or cannot be read")
        if self.embedded and self.security_protocol != "PLAINTEXT":
            raise ValueError(
                "the embedded broker speaks PLAINTEXT only: set bootstrap to use "
                f"{self.security_protocol}"
            )
        return self


class TopicsConfig(_Section):
    """Topic names and partition counts (created at start-up when missing)."""

    raw: str = Field(
        "telex.updates.raw", description="Raw updates from the pollers, key = source id."
    )
    wire: str = Field(
        "telex.updates", description="The wire: CloudEvents from the processors, key = source id."
    )
    dlq: str = Field(
        "telex.dlq",
        description="Dead letters: records that could not be processed, reason in headers.",
    )
    sources: str = Field("telex.sources", description="Compacted topic of source definitions.")
    sources_partitions: int = Field(
        12, ge=1, le=1024, description="Partitions of the sources topic: the unit pollers share."
    )
    # The wire mirrors the raw topic partition for partition (see processor), so one count
    # serves both.
    partitions: int = Field(
        3,
        ge=1,
        le=1024,
        description="Partitions of the raw topic and the wire (the processor's unit of scaling).",
    )
    replication_factor: int | None = Field(
        None,
        ge=1,
        le=16,
        description="Replication factor of topics telex creates; unset: 3, or the number of "
        "brokers of a smaller cluster (asked of the cluster at start-up).",
    )
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        le=16,
        description="min.insync.replicas of topics telex creates: how many replicas must have "
        "a record before it is acknowledged. Unset: 2 with 3 or more replicas, else 1.",
    )

    @model_validator(mode="after")
    def _check_isr(self) -> TopicsConfig:
        rf, isr = self.replication_factor, self.min_insync_replicas
        if rf is not None and isr is not None and isr > rf:
            raise ValueError(
                f"min_insync_replicas ({isr}) above replication_factor ({rf}): "
                "no record could ever be acknowledged"
            )
        return self


class HttpConfig(_Section):
    """The HTTP surface: API, WebSocket stream, dashboard, metrics."""

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 in a container).")
    port: int = Field(8000, ge=0, le=65535, description="Port to listen on; 0 picks a free one.")
    admin_tokens: tuple[str, ...] = Field(
        (),
        description="Bearer tokens the management APIs (/v1/sources, /v1/webhooks) require "
        "(comma-separated in the environment). Empty leaves them open: only for loopback.",
    )
    # Security: a bound on what one request may make the process hold.
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest request body the HTTP API accepts; larger ones get 413.",
    )

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("admin_tokens")
    @classmethod
    def _strong_tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any(len(token) < 16 for token in value):
            # Never echo the token itself: config errors end up in logs.
            raise ValueError("each admin token must be at least 16 characters")
        return value


class ReplayConfig(_Section):
    """The built-in replay source serving the seed live blog."""

    enabled: bool = Field(True, description="Start the replay source with `telex run`.")
    host: str = Field("127.0.0.1", description="Address the replay page listens on.")
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port.")
    interval: float = Field(
        3.0, ge=0, description="Seconds between revealed entries; 0 reveals all at once."
    )


class HtmlSelectors(_Section):
    """Per-source override of the generic HTML extractor: CSS selectors, or XPath when they
    start with ``/`` or ``./``. ``entry`` picks the entry blocks; the others apply inside one."""

    entry: str = Field(min_length=1)
    time: str | None = None
    title: str | None = None
    body: str | None = None

    @field_validator("entry", "time", "title", "body")
    @classmethod
    def _check_selector(cls, value: str | None, info: ValidationInfo) -> str | None:
        check = _checks(info).selector
        if value is not None and check is not None:
            check(value)
        return value


class JsonMapping(_Section):
    """Where a JSON API source keeps its entries: JMESPath expressions (jmespath.org).

    ``items`` selects the list of entries from the document; the others apply to one entry.
    """

    items: str = Field(min_length=1)
    id: str | None = None
    time: str | None = None
    title: str | None = None
    body: str | None = None
    url: str | None = None
    html: str | None = None

    @field_validator("items", "id", "time", "title", "body", "url", "html")
    @classmethod
    def _check_expression(cls, value: str | None) -> str | None:
        if value is not None:
            import jmespath
            from jmespath.exceptions import JMESPathError

            try:
                jmespath.compile(value)
            except JMESPathError as exc:
                raise ValueError(f"not a valid JMESPath expression: {exc}") from None
        return value


SourceKind = Literal["auto", "html", "feed", "rss", "atom", "jsonfeed", "json"]


class SourceConfig(_Section):
    """One polled source."""

    id: str = Field(description="Stable id: 1-64 of a-z 0-9 . _ -; the Kafka key of its updates.")
    url: str = Field(description="http:// or https:// URL of the page or feed.")
    kind: SourceKind = Field(
        "auto",
        description="auto detects from the response; html, feed (rss/atom), jsonfeed or json.",
    )
    interval: float | None = Field(None, gt=0, description="Seconds; default [poller] interval.")
    enabled: bool = True
    timezone: str | None = Field(
        None, description="Zone for times the page writes without one (IANA name or +03:00)."
    )
    report_deletions: bool = Field(
        True, description="Report entries that vanish from the page as deleted."
    )
    selectors: HtmlSelectors | None = None
    mapping: JsonMapping | None = None

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        return _slug(value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        _http_url(value)
        if len(value) > 2048:
            raise ValueError("must be at most 2048 characters")
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        if value is not None and zone_for(value) is None:
            raise ValueError("unknown time zone (use an IANA name such as Europe/London)")
        return value

    @model_validator(mode="after")
    def _check_kind(self) -> SourceConfig:
        if self.kind == "json" and self.mapping is None:
            raise ValueError("kind json needs a mapping (JMESPath expressions)")
        return self


class PollerConfig(_Section):
    """Polling behaviour shared by every source."""

    interval: float = Field(2.0, gt=0, description="Seconds between polls of one source.")
    timeout: float = Field(20.0, gt=0, description="Seconds before a fetch is abandoned.")
    max_body_bytes: int = Field(
        15 * 1024 * 1024,
        ge=1024,
        description="Largest response body read; longer ones are an error.",
    )
    user_agent: str = Field(
        "telex/0.1 (+https://github.com/telex-news/telex)",
        description="User-Agent sent to sources.",
    )
    # Poller: scheduling, politeness and the sources group.
    group_id: str = Field("telex-poller", description="Consumer group sharing the sources.")
    jitter: float = Field(0.1, ge=0, le=0.5, description="Interval jitter, as a fraction.")
    adaptive_min: float = Field(
        0.5, gt=0, le=1, description="Fastest interval while publishing, times the interval."
    )
    adaptive_max: float = Field(
        4.0, ge=1, le=100, description="Slowest interval once quiet, times the interval."
    )
    quiet_polls: int = Field(3, ge=1, description="Polls without news before slowing down.")
    backoff_max: float = Field(900.0, gt=0, description="Longest wait after errors, seconds.")
    max_wait: float = Field(
        3600.0, gt=0, description="Cap on waits a server asks for (Retry-After, max-age)."
    )
    per_host: int = Field(4, ge=1, le=256, description="Concurrent requests per host.")
    max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed per fetch.")
    allow_private: bool = Field(
        False, description="Allow private, loopback and link-local addresses (SSRF guard)."
    )
    allow_networks: tuple[str, ...] = Field(
        (), description="Networks allowed despite the SSRF guard, e.g. 127.0.0.0/8."
    )
    max_entries: int = Field(
        5000, ge=10, description="Entries remembered per source (content hashes)."
    )

    @field_validator("allow_networks", mode="before")
    @classmethod
    def _split_networks(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("allow_networks")
    @classmethod
    def _check_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP network (e.g. 10.0.0.0/8)") from None
        return value


# Processor -----------------------------------------------------------------------------------
_ENRICHERS = ("html", "language", "entities", "watch", "quotes", "tags", "sentiment")


class WatchTerm(_Section):
    """A name or term the newsroom watches for, with the other ways it is written."""

    name: str = Field(min_length=1, max_length=200)
    aliases: tuple[str, ...] = ()


class ProcessorConfig(_Section):
    """The enrich-and-dedup stage."""

    group_id: str = Field("telex-processor", description="Consumer group of the processors.")
    max_batch: int = Field(
        100,
        ge=1,
        le=100_000,
        description="Most raw records processed as one batch. Each event is produced as soon "
        "as it is enriched; a batch's offsets are committed (every [kafka] "
        "commit_interval_ms) once all its events are acknowledged, while the next batches "
        "are processed.",
    )
    enrichers: tuple[str, ...] = Field(
        _ENRICHERS, description="Built-in enrichers to run, in order."
    )
    plugins: tuple[str, ...] = Field(
        (), description="Extra enrichers, as 'package.module:factory' (factory(config))."
    )
    watch: tuple[WatchTerm, ...] = Field((), description="The watch list ([[processor.watch]]).")
    min_city_population: int = Field(100_000, ge=15_000, description="Cities in the gazetteer.")
    language_min_chars: int = Field(
        20, ge=1, description="Shorter texts get no language (too little to tell)."
    )
    language_min_confidence: float = Field(
        0.5, ge=0, le=1, description="Below this confidence the language is left null."
    )
    language_max_chars: int = Field(
        300, ge=20, description="Characters of the text the language detector reads."
    )
    max_tags: int = Field(12, ge=0, le=100, description="Most tags kept per update.")
    keyword_tags: int = Field(
        5, ge=0, le=50, description="Keyword tags drawn from the text itself, beyond entity tags."
    )
    dedup_max_entries: int = Field(
        100_000, ge=100, description="Update ids remembered per raw partition."
    )
    dedup_ttl_s: float = Field(
        7 * 86_400.0,
        gt=0,
        description="Event-time age after which an update id is forgotten: a re-send older "
        "than this is published again.",
    )
    restore_window_s: float = Field(
        7 * 86_400.0,
        gt=0,
        description="Wire history, by record time, read back to rebuild the dedup state and "
        "the story index of a newly assigned partition, where the broker can look offsets up "
        "by time; on one that cannot (the embedded broker) whole partitions are read.",
    )
    story_window_s: float = Field(
        6 * 3600.0, gt=0, description="Event-time window in which near-duplicates share a story."
    )
    story_threshold: float = Field(
        0.4,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity (MinHash of word pairs) from which two updates "
        "are near-duplicates of one story.",
    )
    story_min_words: int = Field(
        8, ge=1, description="Texts with fewer words are never linked to a story."
    )
    story_max_entries: int = Field(200_000, ge=100, description="Story index size, all partitions.")
    max_diff_chars: int = Field(4000, ge=100, description="Revision diffs are cut at this size.")

    @field_validator("enrichers")
    @classmethod
    def _check_enrichers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in value if name not in _ENRICHERS]
        if unknown:
            raise ValueError(f"unknown enricher(s) {unknown}; known: {', '.join(_ENRICHERS)}")
        return value


class ApiKeyConfig(_Section):
    """One API key of the gateway, optionally restricted to some sources."""

    name: str = Field(
        min_length=1, max_length=64, description="Who holds it (logged, never the key)."
    )
    key: str = Field(min_length=16, description="The secret itself: at least 16 characters.")
    sources: tuple[str, ...] | None = Field(
        None, description="Source ids this key may see; absent means every source."
    )


def _split_list(value: Any) -> Any:
    # Environment variables carry lists as "a,b,c".
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value


class GatewayConfig(_Section):
    """The fan-out stage: WebSocket, SSE and history, with auth and limits."""

    history_size: int = Field(
        1000,
        ge=0,
        le=1_000_000,
        description="Recent events kept in memory: backlog for new subscribers, resumes, history.",
    )
    send_queue_size: int = Field(
        1000, ge=1, le=1_000_000, description="Frames queued per connection before it is closed."
    )
    send_queue_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Bytes buffered per connection before it is closed as too slow (4008).",
    )
    backlog: int = Field(
        100, ge=0, description="Recent matching events sent to a subscriber that gives no cursor."
    )
    max_connections: int = Field(20_000, ge=1, description="Open WebSocket + SSE connections.")
    max_subscriptions: int = Field(32, ge=1, le=1024, description="Subscriptions per connection.")
    max_frame_bytes: int = Field(
        65_536, ge=256, description="Largest client frame; larger ones close the connection (1009)."
    )
    max_messages_per_second: float = Field(
        20.0, gt=0, description="Client messages per second before the connection is closed."
    )
    message_burst: int = Field(40, ge=1, description="Client messages allowed in a burst.")
    heartbeat_interval: float = Field(
        25.0, gt=0, description="Seconds between heartbeat frames (carry the current cursor)."
    )
    ping_interval: float = Field(20.0, gt=0, description="Seconds between protocol pings.")
    ping_timeout: float = Field(20.0, gt=0, description="Seconds to wait for a pong.")
    idle_timeout: float = Field(
        60.0, gt=0, description="Seconds a connection may stay without any subscription."
    )
    slow_close_grace: float = Field(
        5.0, gt=0, description="Seconds a too-slow connection gets to read its close frame."
    )
    max_replay_events: int = Field(
        1_000_000,
        ge=0,
        description="Events a cursor may be behind the head; older cursors get a resync answer.",
    )
    replay_concurrency: int = Field(8, ge=1, description="Replays reading Kafka at once.")
    fetch_max_wait_ms: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Longest wait of a wire fetch; unset, as [kafka] fetch_max_wait_ms.",
    )
    drain_batch: int = Field(1000, ge=1, description="Connections closed per drain step.")
    drain_interval: float = Field(0.2, ge=0, description="Seconds between drain steps.")
    anonymous: bool = Field(True, description="Allow clients without credentials.")
    api_keys: tuple[ApiKeyConfig, ...] = Field(
        (), description="API keys ([[gateway.api_keys]] or a JSON list), each may limit sources."
    )
    jwt_secret: str = Field("", description="HMAC secret for HS256/384/512 tokens.")
    jwt_public_key: str = Field("", description="PEM public key for RS/ES/PS/EdDSA tokens.")
    jwt_audience: str = Field("", description="Required `aud` claim of tokens, if set.")
    jwt_issuer: str = Field("", description="Required `iss` claim of tokens, if set.")
    allowed_origins: tuple[str, ...] = Field(
        (), description="Browser origins allowed to connect; empty allows any."
    )

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        return _split_list(value)


# Notifier ---------------------------------------------------------------------------------


def _comma_list(value: Any) -> Any:
    """Let an environment variable give a list as ``a,b,c``."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class WebhookConfig(_Section):
    """A webhook subscription declared in the config file (created or updated at start-up)."""

    name: str = Field(description="Stable name; the subscription id is derived from it.")
    url: str
    secret: str = Field(description="whsec_ + base64 of 24-64 bytes; give it to the receiver.")
    filter: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    rate_limit: float | None = Field(None, gt=0, le=10_000)
    max_in_flight: int | None = Field(None, ge=1, le=256)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        return _slug(value)

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        _http_url(value)
        return value

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: str, info: ValidationInfo) -> str:
        check = _checks(info).secret
        if check is not None:
            check(value)
        return value

    @field_validator("filter")
    @classmethod
    def _check_filter(cls, value: dict[str, Any]) -> dict[str, Any]:
        Filter.parse(value)  # FilterError is a ValueError naming the filter's field.
        return value


class NotifierConfig(_Section):
    """Webhook delivery: subscriptions, retries, dead letters, and which networks may be hit."""

    group_id: str = Field("telex-notifier", description="Consumer group of the notifiers.")
    topic_webhooks: str = Field("telex.webhooks", description="Compacted: the subscriptions.")
    topic_retry: str = Field("telex.webhooks.retry", description="Deliveries waiting to retry.")
    topic_dlq: str = Field("telex.webhooks.dlq", description="Deliveries that gave up.")
    topic_attempts: str = Field(
        "telex.webhooks.attempts", description="One record per delivery attempt."
    )
    retry_schedule: tuple[float, ...] = Field(
        (5.0, 300.0, 1800.0, 7200.0),
        description="Seconds to wait before each retry after the first, immediate, attempt; "
        "a delivery gives up after the last one.",
        max_length=50,
    )
    retry_jitter: float = Field(0.2, ge=0, le=1, description="Random +/- share of each delay.")
    retry_after_max: float = Field(
        3600.0, ge=0, description="Longest Retry-After (429/503) honoured, in seconds."
    )
    timeout: float = Field(15.0, gt=0, description="Seconds one HTTP attempt may take.")
    max_redirects: int = Field(
        3, ge=0, le=10, description="Redirects followed per delivery (each one SSRF-checked)."
    )
    max_in_flight: int = Field(
        4, ge=1, le=256, description="Concurrent requests to one subscription's endpoint."
    )
    max_queued: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Deliveries queued per endpoint before they spill to the retry topic.",
    )
    max_pending_retries: int = Field(
        20_000,
        ge=1,
        description="Retries read from the retry topic and held in memory until due (each "
        "holds its event body); beyond this the retry topic is paused.",
    )
    disable_after: float = Field(
        5 * 24 * 3600.0,
        gt=0,
        description="Seconds of continuous failure after which a subscription is disabled.",
    )
    rotation_grace: float = Field(
        24 * 3600.0, ge=0, description="Seconds an old secret keeps signing after a rotation."
    )
    allow_networks: tuple[str, ...] = Field(
        (),
        description="CIDRs that webhook targets may resolve to even though they are private, "
        "loopback or link-local (e.g. 127.0.0.0/8 for local receivers).",
    )
    attempts_kept: int = Field(
        200, ge=1, le=100_000, description="Recent attempts kept per subscription for the API."
    )
    webhooks: tuple[WebhookConfig, ...] = Field(
        (),
        description="Subscriptions declared in the config file ([[notifier.webhooks]]); "
        "created or brought up to date at start-up, never deleted (use the API for that).",
    )

    @field_validator("retry_schedule", "allow_networks", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return _comma_list(value)

    @field_validator("retry_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(delay < 0 for delay in value):
            raise ValueError("delays must be >= 0 seconds")
        return value

    @field_validator("allow_networks")
    @classmethod
    def _check_networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"{net!r} is not a network: {exc}") from None
        return value


class OutboundConfig(_Section):
    """HTTPS calls telex makes: the poller to sources, the notifier to webhook receivers."""

    ca_file: str = Field(
        "",
        description="PEM file of certificate authorities trusted for https sources and "
        "webhook receivers, besides the public ones (an internal CA). Certificates and host "
        "names are always verified.",
    )

    @field_validator("ca_file")
    @classmethod
    def _check_ca_file(cls, value: str) -> str:
        if not value:
            return value
        import ssl

        try:
            ssl.create_default_context(cafile=value)
        except FileNotFoundError:
            raise ValueError(f"{value} does not exist") from None
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"{value} is not a PEM file of CA certificates: {exc}") from None
        return value


class LogConfig(_Section):
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    format: Literal["auto", "json", "text"] = Field(
        "auto", description="auto: text on a terminal, JSON lines otherwise."
    )


class Config(BaseModel):
    """The whole telex configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kafka: KafkaConfig = KafkaConfig()
    topics: TopicsConfig = TopicsConfig()
    http: HttpConfig = HttpConfig()
    replay: ReplayConfig = ReplayConfig()
    poller: PollerConfig = PollerConfig()
    processor: ProcessorConfig = ProcessorConfig()
    gateway: GatewayConfig = GatewayConfig()
    notifier: NotifierConfig = NotifierConfig()
    outbound: OutboundConfig = OutboundConfig()
    log: LogConfig = LogConfig()
    sources: tuple[SourceConfig, ...] = ()

    def to_environ(self) -> dict[str, str]:
        """The ``TELEX_*`` variables from which :func:`load` (with no file) gives this config
        back: one for each value that differs from its default.

        Secrets are in clear in it: it is for a child process's environment, never for a log.
        Raises ``ValueError`` naming the variable (never the value) when a value has no
        environment form: ``None`` in place of a default, or a list item that is empty, holds
        a comma or starts or ends with white space.
        """
        environ: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            section = _section_model(field.annotation)
            if section is None:
                if value != field.get_default(call_default_factory=True):
                    environ[_env_name(name)] = _env_text(field.annotation, value, _env_name(name))
                continue
            for key, sub in section.model_fields.items():
                item = getattr(value, key)
                if item != sub.get_default(call_default_factory=True):
                    var = _env_name(name, key)
                    environ[var] = _env_text(sub.annotation, item, var)
        return environ


class ConfigError(Exception):
    """A configuration value is missing, unknown or invalid."""


def _section_model(annotation: Any) -> type[_Section] | None:
    if isinstance(annotation, type) and issubclass(annotation, _Section):
        return annotation
    return None


def _env_name(*path: str) -> str:
    return ENV_PREFIX + "_".join(path).upper()


EnvForm = Literal["text", "list", "json"]


def _env_form(annotation: Any) -> EnvForm:
    """How a value of this type is written in one environment variable."""
    origin = get_origin(annotation)
    if origin is dict or annotation is dict or _section_model(annotation) is not None:
        return "json"
    if origin in (tuple, list):
        item = get_args(annotation)[0]
        return "json" if isinstance(item, type) and issubclass(item, BaseModel) else "list"
    return "text"


def _env_value(annotation: Any, text: str, var: str, path: str) -> Any:
    """An environment variable's text as the value :func:`load` validates."""
    form = _env_form(annotation)
    if form == "list":
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if form == "json":
        try:
            return json.loads(text) if text.strip() else ()
        except ValueError as exc:
            # Not the text itself: it may hold secrets (webhook secrets, API keys).
            raise ConfigError(
                f"{path} from {var}: must be JSON (a list of tables is a JSON list of "
                f"objects): {exc}"
            ) from None
    return text


def _env_scalar(value: Any, var: str) -> str:
    if value is None:
        raise ValueError(f"{var}: None has no environment form")
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _env_text(annotation: Any, value: Any, var: str) -> str:
    """The inverse of :func:`_env_value`."""
    form = _env_form(annotation)
    if form == "json":
        plain = (
            [item.model_dump(exclude_defaults=True) for item in value]
            if isinstance(value, tuple)
            else value
        )
        return json.dumps(plain, default=_json_secret, separators=(",", ":"))
    if form == "list":
        items = [_env_scalar(item, var) for item in value]
        if any(not item or "," in item or item != item.strip() for item in items):
            raise ValueError(
                f"{var}: an item that is empty, holds a comma or starts or ends with white "
                "space has no environment form"
            )
        return ",".join(items)
    return _env_scalar(value, var)


def _json_secret(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    raise TypeError(f"{type(value).__name__} has no JSON form")


def _sections() -> dict[str, type[_Section]]:
    sections: dict[str, type[_Section]] = {}
    for name, field in Config.model_fields.items():
        model = _section_model(field.annotation)
        if model is not None:
            sections[name] = model
    return sections


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Map ``TELEX_SECTION_KEY`` variables onto ``{section: {key: value}}``, and
    ``TELEX_SOURCES`` (the table arrays outside any section) onto ``{"sources": [...]}``.

    Returns the overrides and, for error messages, the variable each dotted path came from.
    Unknown ``TELEX_*`` variables are an error rather than silently ignored: a typo in a
    deployment manifest should stop the service, not run it with a default.
    """
    overrides: dict[str, Any] = {}
    origin: dict[str, str] = {}
    sections = _sections()
    arrays = {
        name: field.annotation
        for name, field in Config.model_fields.items()
        if _section_model(field.annotation) is None
    }
    unknown: list[str] = []
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        if rest in arrays:
            overrides[rest] = _env_value(arrays[rest], value, var, rest)
            origin[rest] = var
            continue
        for section, model in sections.items():
            key = rest[len(section) + 1 :]
            if rest.startswith(section + "_") and key in model.model_fields:
                annotation = model.model_fields[key].annotation
                path = f"{section}.{key}"
                overrides.setdefault(section, {})[key] = _env_value(annotation, value, var, path)
                origin[path] = var
                break
        else:
            unknown.append(var)
    if unknown:
        known = ", ".join(
            [_env_name(s, k) for s, m in sections.items() for k in m.model_fields]
            + [_env_name(name) for name in arrays]
        )
        raise ConfigError(
            f"unknown environment variable(s) {', '.join(sorted(unknown))}; known: {known}"
        )
    return overrides, origin


def _origin_of(path: str, origin: Mapping[str, str]) -> str | None:
    """The variable a value came from: the one that set it or a table or list holding it."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        found = origin.get(".".join(parts[:end]))
        if found:
            return found
    return None


def _format_errors(exc: ValidationError, origin: Mapping[str, str], file: str | None) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        where = _origin_of(path, origin) or (f"file {file}" if file else "defaults")
        value = err.get("input")
        # Never echo a secret (webhook secrets) into a terminal or a log.
        hidden = isinstance(value, dict) or any(
            w in path for w in ("secret", "token", "key", "password")
        )
        hidden = hidden or (isinstance(value, str) and _has_credentials(value))
        shown = "" if hidden else f" (got {value!r})"
        lines.append(f"  {path} from {where}: {err['msg']}{shown}")
    return "invalid configuration:\n" + "\n".join(lines)


def load(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    checks: Checks | None = None,
) -> Config:
    """Load and validate the configuration from a TOML file and the environment.

    ``checks`` validate the values a stage owns (see :class:`Checks`); the command line gives
    them all, so a bad selector or secret stops ``telex`` at start-up.
    """
    env = os.environ if environ is None else environ
    file = str(path) if path is not None else env.get(ENV_PREFIX + "CONFIG") or None
    data: dict[str, Any] = {}
    if file:
        try:
            data = tomllib.loads(Path(file).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {file} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from exc
    overrides, origin = _env_overrides(env)
    for section, values in overrides.items():
        if not isinstance(values, dict):  # a table array: the variable replaces the file's
            data[section] = values
            continue
        current = data.get(section, {})
        if not isinstance(current, dict):
            raise ConfigError(f"config file {file}: [{section}] must be a table")
        data[section] = {**current, **values}
    try:
        return Config.model_validate(data, context=checks)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin, file)) from exc
