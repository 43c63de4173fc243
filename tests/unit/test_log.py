"""Structured log lines: one JSON object per line, fields never overwrite the line's own keys."""

from __future__ import annotations

import logging

import orjson

from telex.log import JsonFormatter, get_logger


def test_a_field_named_like_a_line_key_does_not_replace_it() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("telex.test_log")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        get_logger("telex.test_log").info("update.delivered", event="e_1", level="x", attempt=2)
    finally:
        logger.removeHandler(handler)
    line = orjson.loads(JsonFormatter().format(records[0]))
    assert line["event"] == "update.delivered" and line["level"] == "info"
    assert line["event_"] == "e_1" and line["level_"] == "x" and line["attempt"] == 2
