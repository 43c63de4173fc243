"""Every Prometheus metric telex exports, in one place so the catalogue cannot drift.

Conventions: ``telex_`` prefix, base units (seconds, bytes), ``_total`` for counters, label
values from small fixed sets (never a URL, an id or free text).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

# Poller
POLLS = Counter(
    "telex_poller_polls_total",
    "Source polls by outcome (ok, not_modified, unchanged, error).",
    ["outcome"],
)
ENTRIES_PRODUCED = Counter(
    "telex_poller_updates_produced_total",
    "Raw updates produced to the raw topic, by kind (new, changed, deleted).",
    ["kind"],
)
SOURCES = Gauge("telex_poller_sources", "Sources this poller process is polling.")
# Poller: politeness, errors and per-source status (issue 3). The per-source gauges carry the
# source id: bounded by the number of configured sources, and removed when a source leaves
# this poller (deleted, or handed to another poller by a rebalance).
POLL_ERRORS = Counter(
    "telex_poller_errors_total",
    "Failed polls by reason (timeout, connect, dns, refused_address, too_large, redirects, "
    "rate_limited, http_4xx, http_5xx, http_other, protocol, bad_url, extract, kafka, bug).",
    ["reason"],
)
FETCH_SECONDS = Histogram(
    "telex_poller_fetch_duration_seconds",
    "Time to fetch one source (all redirects), successful or not.",
    buckets=_LATENCY_BUCKETS,
)
EXTRACT_SECONDS = Histogram(
    "telex_poller_extract_duration_seconds",
    "Time to extract the entries of one fetched document.",
    buckets=_LATENCY_BUCKETS,
)
SOURCE_LAST_POLL = Gauge(
    "telex_poller_source_last_poll_timestamp_seconds", "When a source was last polled.", ["source"]
)
SOURCE_LAST_SUCCESS = Gauge(
    "telex_poller_source_last_success_timestamp_seconds",
    "When a poll of a source last succeeded (200 or 304).",
    ["source"],
)
SOURCE_NEXT_POLL = Gauge(
    "telex_poller_source_next_poll_timestamp_seconds", "When a source is polled next.", ["source"]
)
SOURCE_ERRORS = Gauge(
    "telex_poller_source_consecutive_errors",
    "Failed polls of a source in a row (0 when healthy).",
    ["source"],
)
SOURCE_BACKOFF = Gauge(
    "telex_poller_source_backoff_seconds",
    "Current error backoff of a source (0 when healthy).",
    ["source"],
)
SOURCE_ENTRIES = Gauge(
    "telex_poller_source_entries_seen",
    "Distinct entries this poller knows of a source.",
    ["source"],
)
SOURCE_INTERVAL = Gauge(
    "telex_poller_source_interval_seconds",
    "Current adaptive polling interval of a source.",
    ["source"],
)
PER_SOURCE_GAUGES = (
    SOURCE_LAST_POLL,
    SOURCE_LAST_SUCCESS,
    SOURCE_NEXT_POLL,
    SOURCE_ERRORS,
    SOURCE_BACKOFF,
    SOURCE_ENTRIES,
    SOURCE_INTERVAL,
)

# Processor
RAW_CONSUMED = Counter("telex_processor_records_consumed_total", "Raw records consumed.")
EVENTS_PRODUCED = Counter(
    "telex_processor_events_produced_total", "Events produced to the wire, by type.", ["type"]
)
DUPLICATES = Counter(
    "telex_processor_duplicates_dropped_total", "Raw updates dropped as exact duplicates."
)
DLQ = Counter(
    "telex_dlq_records_total", "Records sent to the dead-letter topic, by stage.", ["stage"]
)

# Gateway
CONNECTIONS = Gauge("telex_gateway_connections", "Open WebSocket connections.")
WIRE_CONSUMED = Counter("telex_gateway_events_consumed_total", "Wire events read by this gateway.")
DELIVERED = Counter(
    "telex_gateway_frames_sent_total",
    "Event frames written to subscribers, by transport.",
    ["transport"],
)
SLOW_DISCONNECTS = Counter(
    "telex_gateway_slow_disconnects_total", "Connections closed because they could not keep up."
)
END_TO_END = Histogram(
    "telex_end_to_end_latency_seconds",
    "Time from an update first seen by the poller to its frame sent by the gateway.",
    buckets=_LATENCY_BUCKETS,
)
