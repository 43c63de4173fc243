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
    "Source polls by outcome (ok, not_modified, error).",
    ["outcome"],
)
ENTRIES_PRODUCED = Counter(
    "telex_poller_updates_produced_total",
    "Raw updates produced to the raw topic, by kind (new, changed, deleted).",
    ["kind"],
)
SOURCES = Gauge("telex_poller_sources", "Sources this poller process is polling.")

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

# Notifier
WEBHOOK_ATTEMPTS = Counter(
    "telex_notifier_attempts_total",
    "Webhook delivery attempts by outcome (success, http_error, gone, timeout, "
    "connection_error, refused).",
    ["outcome"],
)
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "telex_notifier_attempt_duration_seconds",
    "Time one webhook delivery attempt took, redirects included.",
    buckets=_LATENCY_BUCKETS,
)
WEBHOOK_RETRIES = Counter(
    "telex_notifier_retries_scheduled_total",
    "Deliveries written to the retry topic, by reason (failure, overflow, replay).",
    ["reason"],
)
WEBHOOK_DEAD_LETTERS = Counter(
    "telex_notifier_dead_letters_total",
    "Deliveries written to the webhook dead-letter topic, by reason (exhausted, gone, "
    "refused, paused, disabled).",
    ["reason"],
)
WEBHOOK_DISABLED = Counter(
    "telex_notifier_subscriptions_disabled_total",
    "Subscriptions disabled by the notifier, by reason (gone, failing).",
    ["reason"],
)
WEBHOOK_SKIPPED = Counter(
    "telex_notifier_duplicates_skipped_total",
    "Deliveries not attempted again because the attempts log shows them done (after a restart "
    "or a repeated replay).",
)
WEBHOOK_PENDING_RETRIES = Gauge(
    "telex_notifier_pending_retries", "Retries read from the retry topic and not yet due."
)
WEBHOOK_SUBSCRIPTIONS = Gauge(
    "telex_notifier_subscriptions",
    "Webhook subscriptions by state (active, paused, disabled).",
    ["state"],
)
WEBHOOK_QUEUED = Gauge(
    "telex_notifier_queued_deliveries", "Deliveries waiting in per-endpoint queues."
)
