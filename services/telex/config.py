"""telex configuration: one TOML file plus ``TELEX_*`` environment variables.

Precedence, lowest first: built-in defaults, the TOML file (``--config`` or ``TELEX_CONFIG``),
then environment variables. An environment variable names a section and a key joined by an
underscore, upper-cased: ``TELEX_KAFKA_BOOTSTRAP`` sets ``[kafka] bootstrap``,
``TELEX_HTTP_PORT`` sets ``[http] port``, ``TELEX_REPLAY_INTERVAL`` sets ``[replay] interval``.

Every value is validated at start-up; :func:`load` raises :class:`ConfigError` whose message
names each bad value, where it came from, and what was expected.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_PREFIX = "TELEX_"
_SOURCE_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KafkaConfig(_Section):
    """How telex reaches Kafka."""

    bootstrap: str = Field(
        "", description="Bootstrap servers (host:port,...). Empty: start the embedded broker."
    )
    client_id: str = "telex"
    idempotence: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Idempotent producer. auto: on for an external cluster, off for the "
        "embedded broker, which cannot do it.",
    )
    session_timeout_ms: int = Field(10_000, ge=1000, le=300_000)
    heartbeat_interval_ms: int = Field(3_000, ge=100, le=60_000)
    request_timeout_ms: int = Field(40_000, ge=1000, le=600_000)
    embedded_start_timeout_s: float = Field(20.0, gt=0)

    @property
    def embedded(self) -> bool:
        """True when telex must start its own broker."""
        return not self.bootstrap.strip()


class TopicsConfig(_Section):
    """Topic names and partition counts (created at start-up when missing)."""

    raw: str = "telex.updates.raw"
    wire: str = "telex.updates"
    dlq: str = "telex.dlq"
    # The wire mirrors the raw topic partition for partition (see processor), so one count
    # serves both.
    partitions: int = Field(3, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1, le=16)


class HttpConfig(_Section):
    """The HTTP surface: API, WebSocket stream, dashboard, metrics."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)


class ReplayConfig(_Section):
    """The built-in replay source serving the seed live blog."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(0, ge=0, le=65535, description="0 picks a free port.")
    interval: float = Field(
        3.0, ge=0, description="Seconds between revealed entries; 0 reveals all at once."
    )


class SourceConfig(_Section):
    """One polled source."""

    id: str
    url: str
    kind: Literal["html"] = "html"
    interval: float | None = Field(None, gt=0)

    @field_validator("id")
    @classmethod
    def _check_id(cls, value: str) -> str:
        if not _SOURCE_ID.match(value):
            raise ValueError("must be 1-64 of a-z 0-9 . _ - and start with a letter or digit")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


class PollerConfig(_Section):
    """Polling behaviour shared by every source."""

    interval: float = Field(2.0, gt=0, description="Seconds between polls of one source.")
    timeout: float = Field(20.0, gt=0)
    max_body_bytes: int = Field(15 * 1024 * 1024, ge=1024)
    user_agent: str = "telex/0.1 (+https://github.com/telex-news/telex)"


class ProcessorConfig(_Section):
    """The enrich-and-dedup stage."""

    group_id: str = "telex-processor"
    max_batch: int = Field(500, ge=1, le=100_000)


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
    fetch_max_wait_ms: int = Field(
        50,
        ge=1,
        le=10_000,
        description="Longest wait of a wire fetch; bounds added latency on brokers that do "
        "not answer a waiting fetch as soon as data arrives (the embedded one).",
    )
    drain_batch: int = Field(1000, ge=1, description="Connections closed per drain step.")
    drain_interval: float = Field(0.2, ge=0, description="Seconds between drain steps.")
    anonymous: bool = Field(True, description="Allow clients without credentials.")
    api_keys: tuple[ApiKeyConfig, ...] = ()
    jwt_secret: str = Field("", description="HMAC secret for HS256/384/512 tokens.")
    jwt_public_key: str = Field("", description="PEM public key for RS/ES/PS/EdDSA tokens.")
    jwt_audience: str = ""
    jwt_issuer: str = ""
    allowed_origins: tuple[str, ...] = Field(
        (), description="Browser origins allowed to connect; empty allows any."
    )

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("api_keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        # From the environment: a JSON list, e.g. [{"name":"wall","key":"...","sources":["a"]}].
        if isinstance(value, str):
            import json

            try:
                return json.loads(value) if value.strip() else ()
            except ValueError as exc:
                raise ValueError(f"api_keys must be a JSON list of objects: {exc}") from None
        return value


class LogConfig(_Section):
    """Logging."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = "auto"


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
    log: LogConfig = LogConfig()
    sources: tuple[SourceConfig, ...] = ()


class ConfigError(Exception):
    """A configuration value is missing, unknown or invalid."""


def _sections() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for name, field in Config.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, _Section):
            sections[name] = annotation
    return sections


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Map ``TELEX_SECTION_KEY`` variables onto ``{section: {key: value}}``.

    Returns the overrides and, for error messages, the variable each dotted path came from.
    Unknown ``TELEX_*`` variables are an error rather than silently ignored: a typo in a
    deployment manifest should stop the service, not run it with a default.
    """
    overrides: dict[str, dict[str, str]] = {}
    origin: dict[str, str] = {}
    sections = _sections()
    unknown: list[str] = []
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var == ENV_PREFIX + "CONFIG":
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        for section, model in sections.items():
            if rest.startswith(section + "_") and rest[len(section) + 1 :] in model.model_fields:
                key = rest[len(section) + 1 :]
                overrides.setdefault(section, {})[key] = value
                origin[f"{section}.{key}"] = var
                break
        else:
            unknown.append(var)
    if unknown:
        known = ", ".join(
            f"{ENV_PREFIX}{s.upper()}_{k.upper()}"
            for s, m in sections.items()
            for k in m.model_fields
        )
        raise ConfigError(
            f"unknown environment variable(s) {', '.join(sorted(unknown))}; known: {known}"
        )
    return overrides, origin


def _format_errors(exc: ValidationError, origin: Mapping[str, str], file: str | None) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(p) for p in err["loc"])
        where = origin.get(path) or (f"file {file}" if file else "defaults")
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"  {path} from {where}: {err['msg']}{shown}")
    return "invalid configuration:\n" + "\n".join(lines)


def load(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Config:
    """Load and validate the configuration from a TOML file and the environment."""
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
        current = data.get(section, {})
        if not isinstance(current, dict):
            raise ConfigError(f"config file {file}: [{section}] must be a table")
        data[section] = {**current, **values}
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin, file)) from exc
