from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from telex import metrics
from telex.filters import Filter, Matcher
from telex.gateway.cursor import CursorError, decode_cursor, encode_cursor
from telex.gateway.hub import Conn, Hub


class Closed:
    """A transport that keeps what is written to it (nothing is ever sent) and its closes."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def buffered(self) -> int:
        return sum(len(d) for d in self.written)

    def close(self, code: int, reason: str) -> None:
        self.codes.append(code)


def event(n: int, source: str = "a") -> dict[str, Any]:
    return {"type": "telex.update.created", "id": f"e{n}", "data": {"source_id": source, "n": n}}


def publish(hub: Hub, *events: dict[str, Any], partition: int = 0) -> None:
    entries = []
    for ev in events:
        offset = hub.read_positions.get(partition, 0)
        entries.append(hub.make_entry(partition, offset, ev, orjson.dumps(ev), 0))
    hub.publish(entries)
    hub.settle()


def received(conn: Conn) -> list[dict[str, Any]]:
    assert isinstance(conn.transport, Closed)
    frames = []
    for frame in _frames(b"".join(conn.transport.written)):
        frames.append(orjson.loads(frame))
    conn.transport.written.clear()
    return frames


def _frames(data: bytes) -> list[bytes]:
    """The payloads of unmasked WebSocket frames, back to back."""
    out = []
    while data:
        size = data[1] & 0x7F
        head = 2 if size < 126 else 4 if size == 126 else 10
        if size >= 126:
            size = int.from_bytes(data[2:head], "big")
        out.append(data[head : head + size])
        data = data[head + size :]
    return out


def conn(hub: Hub, **subs: Filter) -> Conn:
    c = Conn("ws", limit=1 << 20, transport=Closed())
    hub.attach(c)
    c.subs = dict(subs)
    hub.go_live(c)
    return c


def test_cursor_round_trip_and_errors() -> None:
    positions = {0: 12, 1: 0, 2: 7}
    assert decode_cursor(encode_cursor(positions)) == positions
    for bad in ("!!!not-base64", base64.urlsafe_b64encode(b"0:x").decode(), ""):
        with pytest.raises(CursorError):
            decode_cursor(bad)
    with pytest.raises(CursorError):
        decode_cursor(base64.urlsafe_b64encode(b"0:-5").decode())


def test_each_distinct_filter_is_evaluated_once_per_event(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    original = Matcher.matches

    def counting(self: Matcher, ev: Any) -> bool:
        calls.append(self.filter.key)
        return original(self, ev)

    monkeypatch.setattr(Matcher, "matches", counting)
    hub = Hub(history_size=10)
    hub.set_partitions({0: 0})
    only_a = Filter.parse({"sources": ["a"]})
    same_a = [conn(hub, default=only_a) for _ in range(50)]
    everything = [conn(hub, default=Filter()) for _ in range(50)]
    publish(hub, event(1, "a"), event(2, "b"))
    assert len(calls) == 2  # one filter, two events; the empty filter needs no evaluation
    assert all([f["event"]["id"] for f in received(c)] == ["e1"] for c in same_a)
    assert all([f["event"]["id"] for f in received(c)] == ["e1", "e2"] for c in everything)


def test_union_of_subscriptions_delivers_each_event_once_in_order() -> None:
    hub = Hub(history_size=10)
    hub.set_partitions({0: 0})
    c = conn(hub, a=Filter.parse({"sources": ["a"]}), b=Filter.parse({"sources": ["b"]}))
    alsoall = conn(hub, x=Filter(), y=Filter.parse({"sources": ["a"]}))
    publish(hub, event(1, "a"), event(2, "b"), event(3, "c"))
    assert [f["event"]["id"] for f in received(c)] == ["e1", "e2"]
    assert [f["event"]["id"] for f in received(alsoall)] == ["e1", "e2", "e3"]
    # Every frame carries the cursor after its event.
    hub.go_offline(c)
    publish(hub, event(4, "a"))
    assert received(c) == []


def test_ring_coverage_follows_eviction() -> None:
    hub = Hub(history_size=2)
    hub.set_partitions({0: 0, 1: 0})
    publish(hub, event(1), event(2), event(3), partition=0)
    publish(hub, event(4), partition=1)
    assert hub.ring.floor == {0: 2, 1: 0}
    assert not hub.ring.covers({0: 1, 1: 0})
    assert hub.ring.covers({0: 2, 1: 0})
    assert [e.event["id"] for e in hub.ring.since({0: 2, 1: 0})] == ["e3", "e4"]


def test_slow_connection_is_closed_and_others_unaffected() -> None:
    hub = Hub(history_size=0)
    hub.set_partitions({0: 0})
    slow = Conn("ws", limit=300, transport=Closed())
    hub.attach(slow)
    slow.subs = {"default": Filter()}
    hub.go_live(slow)
    fast = conn(hub, default=Filter())
    before = metrics.GATEWAY_SLOW.labels("ws")._value.get()
    for n in range(10):
        publish(hub, event(n))
        received(fast)
    assert slow.slow and not fast.slow
    assert isinstance(slow.session, Closed) and slow.session.codes == [4008]
    assert metrics.GATEWAY_SLOW.labels("ws")._value.get() == before + 1
    assert slow not in hub.groups[Filter().key].members
