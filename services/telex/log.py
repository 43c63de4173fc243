"""Structured logging: one event per line, key=value on a terminal, JSON otherwise.

Call sites log an event name plus fields::

    log = get_logger(__name__)
    log.info("poll.ok", source="replay", entries=3)
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

import orjson

_RESERVED = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class _Logger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose keyword arguments become structured fields."""

    def _fields(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        passthrough: dict[str, Any] = {
            k: kwargs.pop(k) for k in ("exc_info", "stack_info", "stacklevel") if k in kwargs
        }
        fields = dict(kwargs)
        kwargs.clear()
        kwargs.update(passthrough)
        kwargs["extra"] = {"fields": fields}
        return kwargs

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(msg, *args, **self._fields(kwargs))

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info(msg, *args, **self._fields(kwargs))

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.logger.warning(msg, *args, **self._fields(kwargs))

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self.logger.error(msg, *args, **self._fields(kwargs))

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self.logger.error(msg, *args, **self._fields(kwargs))


def get_logger(name: str) -> _Logger:
    """Return a structured logger for module ``name``."""
    return _Logger(logging.getLogger(name), {})


def _fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    fields = getattr(record, "fields", None)
    if isinstance(fields, Mapping):
        return fields
    # Records from third-party libraries carry their own extras as attributes.
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED and k != "color_message"}


_LINE_KEYS = frozenset(("ts", "level", "logger", "event", "exc"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in _fields_of(record).items():
            # A field named like one of the line's own keys ("event", "level", ...) must not
            # overwrite it: it is kept with a trailing underscore.
            out[f"{key}_" if key in _LINE_KEYS else key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time level event key=value ...`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        parts = [f"{ts} {record.levelname.lower():<7} {record.getMessage()}"]
        for key, value in _fields_of(record).items():
            text = str(value)
            if not text or any(c in text for c in ' "='):
                text = orjson.dumps(text).decode()
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Install the telex log format on the root logger (idempotent)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt at ERROR/WARNING; keep them but not the chatter.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    # Per-request and per-connection chatter: telex logs and counts what matters itself.
    # websockets logs every handshake line at debug, credentials included (`telex tail`'s
    # ?token= or X-API-Key): never below warning.
    for name in ("uvicorn", "uvicorn.error", "aiohttp", "httpx", "httpcore", "websockets"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    # Access logs are per request; the metrics count requests instead.
    logging.getLogger("uvicorn.access").disabled = True
