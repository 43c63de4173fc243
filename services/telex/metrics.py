"""Every Prometheus metric telex exports, in one place so the catalogue cannot drift.

Conventions: ``telex_`` prefix, base units (seconds, bytes), ``_total`` for counters, label
values from small fixed sets (never a URL, an id or free text).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

# Where an update's time goes, hop by hop. The hops follow the stamps each update carries
# (poller saw it, raw record produced, processor consumed it, wire record produced, gateway
# received it, frame written; notifier received it, webhook acknowledged): each hop is the time
# between two consecutive stamps, observed by the process that takes the second one, so the
# hops of one path add up to its end-to-end time. Buckets for milliseconds, with a tail for
# backlogs.
_HOP_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
HOP_SECONDS = Histogram(
    "telex_pipeline_hop_seconds",
    "Time an update spent in one hop of the pipeline, by hop: poller (saw -> raw produced), "
    "raw_topic (-> processor consumed), processor (-> wire produced), wire_gateway (-> gateway "
    "received), fanout (-> frame written), wire_notifier (-> notifier received), webhook "
    "(-> first attempt acknowledged).",
    ["hop"],
    buckets=_HOP_BUCKETS,
)
LOOP_LAG = Histogram(
    "telex_event_loop_lag_seconds",
    "How late the event loop ran a timer: time it was blocked by callbacks and CPU work.",
    buckets=_HOP_BUCKETS,
)

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
# Poller: politeness, errors and per-source status. The per-source gauges carry the
# source id: bounded by the number of configured sources, and removed when a source leaves
# this poller (deleted, or handed to another poller by a rebalance).
POLL_ERRORS = Counter(
    "telex_poller_errors_total",
    "Failed polls by reason (timeout, connect, tls, dns, refused_address, too_large, redirects, "
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

# Processor: enrichment, dedup, state, lag
_ENRICH_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25,
)  # fmt: skip
ENRICH_SECONDS = Histogram(
    "telex_processor_enrich_seconds",
    "Time one enricher spent on one update, by enricher.",
    ["enricher"],
    buckets=_ENRICH_BUCKETS,
)
ENRICH_FAILURES = Counter(
    "telex_processor_enrich_failures_total",
    "Updates whose field an enricher failed to fill (the field is left empty), by enricher.",
    ["enricher"],
)
DEDUP_OUTCOMES = Counter(
    "telex_processor_dedup_outcomes_total",
    "Raw updates by dedup outcome (new, duplicate, revision, story_linked, deleted).",
    ["outcome"],
)
CONSUMER_LAG = Gauge(
    "telex_processor_consumer_lag_records",
    "Records of the raw topic not yet processed, by partition (from the fetch high watermark).",
    ["partition"],
)
STATE_ENTRIES = Gauge(
    "telex_processor_state_entries",
    "Entries held in memory by the processor, by store (dedup, stories).",
    ["store"],
)
STATE_EVICTIONS = Counter(
    "telex_processor_state_evictions_total",
    "Entries dropped from processor state, by store and reason (ttl, size).",
    ["store", "reason"],
)
RESTORE_SECONDS = Histogram(
    "telex_processor_restore_seconds",
    "Time to rebuild the state of newly assigned partitions from the wire.",
    buckets=_LATENCY_BUCKETS,
)

# Gateway
WIRE_CONSUMED = Counter("telex_gateway_events_consumed_total", "Wire events read by this gateway.")
DELIVERED = Counter(
    "telex_gateway_frames_sent_total",
    "Event frames written to subscribers, by transport.",
    ["transport"],
)
END_TO_END = Histogram(
    "telex_end_to_end_latency_seconds",
    "Time from an update seen by the poller (its detected_ms) to its frames written by the "
    "gateway.",
    buckets=_LATENCY_BUCKETS,
)

# Gateway (subscriptions, fan-out, replay)
GATEWAY_CONNECTIONS = Gauge(
    "telex_gateway_connections", "Open gateway connections, by transport.", ["transport"]
)
SUBSCRIPTIONS = Gauge("telex_gateway_subscriptions", "Active subscriptions on all connections.")
GATEWAY_BYTES = Counter("telex_gateway_sent_bytes_total", "Bytes of event frames written.")
GATEWAY_SLOW = Counter(
    "telex_gateway_slow_disconnects_total",
    "Connections closed as too slow (send queue over its byte limit), by transport.",
    ["transport"],
)
REPLAYED = Counter(
    "telex_gateway_replayed_events_total",
    "Events sent to resuming clients from a cursor, by where they came from (memory, kafka).",
    ["source"],
)
RESYNCS = Counter(
    "telex_gateway_resyncs_total", "Cursors too old (or ahead) to replay: clients told to resync."
)
GATEWAY_LATENCY = Histogram(
    "telex_gateway_delivery_latency_seconds",
    "Time from an event's timestamp on the wire to its frames written to every subscriber.",
    buckets=_LATENCY_BUCKETS,
)
REFUSED = Counter(
    "telex_gateway_refused_total",
    "Connections refused, by reason (unauthorized, forbidden_origin, limit, draining, "
    "bad_handshake).",
    ["reason"],
)
CLIENT_ERRORS = Counter(
    "telex_gateway_client_errors_total",
    "Client frames answered with an error frame, by error code.",
    ["code"],
)
CLOSES = Counter(
    "telex_gateway_closes_total",
    "Connections closed by the gateway, by reason (flood, idle, drain, bad_request, "
    "ping_timeout; hostile frames: protocol_error, invalid_data, too_big).",
    ["reason"],
)
# Notifier
WEBHOOK_ATTEMPTS = Counter(
    "telex_notifier_attempts_total",
    "Webhook delivery attempts by outcome (success, http_error, gone, timeout, "
    "connection_error, tls_error, refused).",
    ["outcome"],
)
WEBHOOK_ATTEMPT_DURATION = Histogram(
    "telex_notifier_attempt_duration_seconds",
    "Time one webhook delivery attempt took, redirects included.",
    buckets=_LATENCY_BUCKETS,
)
WEBHOOK_RETRIES = Counter(
    "telex_notifier_retries_scheduled_total",
    "Deliveries written to the retry topic, by reason (failure, overflow, replay, recreated).",
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

# The reset signal of a memory-only broker (telex.kafka.reset)
TOPICS_RECREATED = Counter(
    "telex_kafka_topics_recreated_total",
    "Times this process found its topics gone from the broker and created them again (an "
    "in-memory broker restarted, or topics were deleted): what was on them is lost.",
)

# Sends to Kafka, per producing component (poller, processor, notifier): telex.kafka.sends
PRODUCE_ERRORS = Counter(
    "telex_kafka_produce_errors_total",
    "Sends to Kafka that failed, by component and error (not_enough_replicas, "
    "not_enough_replicas_after_append, timeout, request_timed_out, no_leader, connection, "
    "other). With the idempotent producer the client retries replication errors itself, so a "
    "missing quorum shows as telex_kafka_produce_blocked rather than here.",
    ["component", "error"],
)
PRODUCE_BLOCKED = Gauge(
    "telex_kafka_produce_blocked",
    "1 while a component's sends to Kafka are failing or waiting (latest send failed, or the "
    "oldest unacknowledged one waited longer than [kafka] send_blocked_after_s): the "
    "component reports not ready on /readyz meanwhile.",
    ["component"],
)
PRODUCE_OLDEST_PENDING = Gauge(
    "telex_kafka_produce_oldest_pending_seconds",
    "Age of a component's oldest send to Kafka not acknowledged yet (0 when none waits).",
    ["component"],
)
