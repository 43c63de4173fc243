"""Hostile input against running services (hypothesis; bounded and derandomized): WebSocket
frames to a live gateway, JSON bodies to the management API, and raw records through a live
processor. Each gets a clear answer (an error frame, a close code, a 4xx with an error body, a
dead letter) and the service keeps serving everyone else."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from telex.events import PoisonRecord, decode_raw
from telex.kafka.scan import partitions_of
from telex.processor.stage import Stage
from tests.conftest import Broker, make_config
from tests.fuzz.live import Live
from tests.integration.test_pipeline import produce_in_order

# The services running beside the tests (and the websockets client, for frame masks) use
# `random` while hypothesis generates examples; hypothesis warns about any such use.
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")

LIVE = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
FILTER_FIELDS = ["sources", "terms", "entities", "tags", "languages", "types", "colour"]
filters = (
    st.dictionaries(
        st.sampled_from(FILTER_FIELDS),
        st.lists(st.text(max_size=30) | st.sampled_from(["created", "a", ""]), max_size=4)
        | json_values,
        max_size=4,
    )
    | json_values
)


def ops() -> st.SearchStrategy[dict[str, Any]]:
    """Frames that look like the protocol, with hostile values."""
    return st.fixed_dictionaries(
        {"op": st.sampled_from(["subscribe", "unsubscribe", "ping", "publish", ""]) | json_values},
        optional={
            "id": st.text(max_size=80) | json_values,
            "filter": filters,
            "cursor": st.text(max_size=40)
            | st.sampled_from(["MDow", "MDowLDE6MCwyOjA", "OTk6OTk5OTk5OTk5OTk5"])
            | json_values,
            "backlog": st.integers(min_value=-5, max_value=10**12) | json_values,
            "extra": json_values,
        },
    )


frames = st.one_of(
    # json, not orjson: integers past 64 bits, NaN and escaped lone surrogates are hostile too.
    ops().map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=300),
    st.binary(max_size=300),
)

CONTROL = {"subscribed", "unsubscribed", "live", "resync", "event", "heartbeat", "pong", "error"}


@pytest.fixture(scope="module")
def live(broker: Broker) -> Iterator[Live]:
    """Gateway, poller and notifier in one process, as ``telex run`` has them."""
    config = make_config(broker.bootstrap, TELEX_POLLER_INTERVAL="3600")
    running = Live(config, ("poller", "notifier", "gateway")).start()
    try:
        yield running
    finally:
        running.stop()


def ws_url(live: Live) -> str:
    return live.http_url.replace("http", "ws", 1) + "/v1/stream?subscribe=none"


def until_pong(ws: ClientConnection) -> list[dict[str, Any]]:
    """Frames up to the pong answering our ping; every one a known kind."""
    got: list[dict[str, Any]] = []
    while True:
        frame = orjson.loads(ws.recv(timeout=10))
        assert frame["type"] in CONTROL, frame
        if frame["type"] == "error":
            assert frame["code"] and frame["error"], frame
        if frame["type"] == "pong":
            return got
        got.append(frame)


@LIVE
@given(frame=frames)
def test_websocket_frames_get_an_answer_and_the_gateway_keeps_serving(
    live: Live, frame: str | bytes
) -> None:
    with connect(ws_url(live), open_timeout=10) as ws:
        try:
            ws.send(frame)
            ws.send('{"op": "ping"}')
            until_pong(ws)
        except ConnectionClosed as closed:
            # Only a clean close, with a code that says why (policy, too big).
            assert closed.rcvd is not None and closed.rcvd.code in (1008, 1009), closed
    with connect(ws_url(live), open_timeout=10) as bystander:
        bystander.send('{"op": "ping"}')
        until_pong(bystander)


SOURCE_FIELDS = ["id", "url", "kind", "interval", "enabled", "timezone", "report_deletions"]
SOURCE_FIELDS += ["selectors", "mapping"]
WEBHOOK_FIELDS = ["url", "filter", "description", "rate_limit", "max_in_flight", "secret"]
WEBHOOK_FIELDS += ["grace_seconds", "webhook_id", "since_ms", "until_ms"]
field_values = (
    json_values
    | st.sampled_from(
        ["https://example.com/", "http://127.0.0.1/", "json", "feed", "Europe/London", "whsec_"]
    )
    | filters
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(SOURCE_FIELDS), field_values, max_size=6),
    st.dictionaries(st.sampled_from(WEBHOOK_FIELDS), field_values, max_size=6),
    json_values,
)
ROUTES = [
    ("POST", "/v1/sources"),
    ("PUT", "/v1/sources/{id}"),
    ("PATCH", "/v1/sources/fixed"),
    ("POST", "/v1/webhooks"),
    ("PATCH", "/v1/webhooks/{hook}"),
    ("POST", "/v1/webhooks/{hook}/rotate-secret"),
    ("POST", "/v1/webhooks/{hook}/replay"),
]


@pytest.fixture(scope="module")
def api(live: Live) -> Iterator[tuple[httpx.Client, str]]:
    with httpx.Client(base_url=live.http_url, timeout=20) as client:
        fixed = client.put("/v1/sources/fixed", json={"url": "https://example.com/"})
        assert fixed.status_code in (200, 201), fixed.text
        # A public address literal: nothing is resolved, and nothing is sent (no events).
        hook = client.post("/v1/webhooks", json={"url": "https://93.184.215.14/hook"})
        assert hook.status_code == 201, hook.text
        yield client, hook.json()["id"]


@LIVE
@given(
    route=st.sampled_from(ROUTES),
    body=bodies.map(lambda b: json.dumps(b).encode()) | st.binary(max_size=100),
    path_id=st.text(max_size=20) | st.sampled_from(["a", "fixed", "x" * 70]),
)
def test_api_bodies_get_2xx_or_a_4xx_that_says_why(
    api: tuple[httpx.Client, str], route: tuple[str, str], body: bytes, path_id: str
) -> None:
    client, hook = api
    method, template = route
    path = template.format(id=quote(path_id, safe="") or "e", hook=hook)
    response = client.request(
        method, path, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code < 500, (method, path, body, response.text)
    if response.status_code >= 400:
        answer = response.json()
        assert isinstance(answer, dict) and {"error", "errors", "detail"} & set(answer), answer
    assert client.get("/healthz").status_code == 200


# Raw records ----------------------------------------------------------------------------------

text_values = st.one_of(
    st.text(max_size=300),
    st.sampled_from(["", " ", "<script>x</script>", "\u202e\u0000\ud7ff", "10:46 GMT"]),
    st.integers(min_value=1, max_value=5000).map(lambda n: "<p>" * (n // 10) + "a" * n),
)
raw_records = st.fixed_dictionaries(
    {
        "v": st.just(1),
        "kind": st.sampled_from(["upsert", "delete"]),
        "id": st.text(min_size=1, max_size=40),
        "source_id": st.sampled_from(["src", "other"]) | st.text(min_size=1, max_size=20),
        "source_url": st.text(min_size=1, max_size=60),
        "entry_id": st.text(min_size=1, max_size=40),
        "content_hash": st.text(min_size=1, max_size=40),
        "text": text_values,
        "detected_ms": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    },
    optional={
        **{
            key: st.none() | text_values
            for key in ("url", "title", "html", "time_raw", "published", "page_date", "page_tz")
        },
        "produced_ms": json_values,
    },
)


@settings(LIVE, max_examples=200)
@given(raw=raw_records)
def test_well_formed_raw_records_with_hostile_values_are_processed(raw: dict[str, Any]) -> None:
    """Anything decode_raw lets through is processed without an exception (an exception would
    dead-letter a record that is not poison)."""
    stage = _stage()
    try:
        decoded = decode_raw(json.dumps(raw).encode())
    except PoisonRecord as exc:  # lone surrogates: not valid UTF-8 JSON, a clear reason
        assert exc.reason
        return
    result = stage.process(decoded, stage.new_state(), 1_700_000_000_000)
    if result.event is not None:
        assert result.event["data"]["source_id"] == raw["source_id"]
        orjson.dumps(result.event)


_STAGES: list[Stage] = []


def _stage() -> Stage:
    if not _STAGES:
        from telex.config import Config

        _STAGES.append(Stage(Config()))
    return _STAGES[0]


@pytest.fixture(scope="module")
def processor(broker: Broker) -> Iterator[Live]:
    config = make_config(broker.bootstrap)
    running = Live(config, ("processor",)).start()
    try:
        yield running
    finally:
        running.stop()


poison_or_not = st.one_of(
    raw_records.map(lambda r: json.dumps(r).encode()),
    st.binary(max_size=200),
    json_values.map(lambda v: json.dumps(v).encode()),
    raw_records.map(lambda r: json.dumps({**r, "v": 2}).encode()),
    raw_records.map(lambda r: json.dumps({**r, "detected_ms": str(r["detected_ms"])}).encode()),
    st.none(),
)


async def _read(bootstrap: str, topic: str, stop: bytes) -> list[Any]:
    """Records of ``topic`` from the start until one whose value contains ``stop``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out += records
            if any(stop in (r.value or b"") for r in out):
                return out
        raise AssertionError(f"{stop!r} never arrived on {topic}")
    finally:
        await consumer.stop()


@settings(LIVE, max_examples=3)
@given(values=st.lists(poison_or_not, min_size=10, max_size=40))
def test_poison_goes_to_the_dead_letters_and_nothing_else_does(
    processor: Live, values: list[bytes | None]
) -> None:
    """Records of one partition, then a good one: once it is on the wire, every record before
    it was handled, and exactly the poison ones are dead letters, each with its reason."""
    config = processor.config
    bootstrap = config.kafka.bootstrap
    marker = uuid.uuid4().hex
    sentinel = {
        "v": 1, "kind": "upsert", "id": f"u_{marker}", "source_id": "src",
        "source_url": "https://example.com/", "entry_id": marker, "content_hash": marker,
        "text": f"Sentinel {marker}.", "detected_ms": 1,
    }  # fmt: skip
    poison = []
    for value in values:
        try:
            decode_raw(value)
        except PoisonRecord:
            poison.append(value)
    dead_before = processor.call(_read_all(bootstrap, config.topics.dlq))
    processor.call(
        produce_in_order(
            bootstrap,
            config.topics.raw,
            [(b"fuzz", v) for v in [*values, orjson.dumps(sentinel)]],
        )
    )
    processor.call(_read(bootstrap, config.topics.wire, marker.encode()))
    dead = processor.call(_read_all(bootstrap, config.topics.dlq))[len(dead_before) :]
    reasons = [dict(r.headers)["telex-reason"].decode() for r in dead]
    assert not [r for r in reasons if r.startswith("processing failed")], reasons
    assert [r.value for r in dead] == poison
    assert all(reasons)
    ready = httpx.get(processor.http_url + "/readyz", timeout=10)
    assert ready.status_code == 200, ready.text


async def _read_all(bootstrap: str, topic: str) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        batch = await consumer.getmany(timeout_ms=1000)
        while batch:
            for records in batch.values():
                out += records
            batch = await consumer.getmany(timeout_ms=300)
        return sorted(out, key=lambda r: (r.partition, r.offset))
    finally:
        await consumer.stop()
