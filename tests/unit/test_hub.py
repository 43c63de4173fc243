from __future__ import annotations

import base64

import pytest

from telex import metrics
from telex.gateway.hub import CursorError, Frame, Hub, decode_cursor, encode_cursor


def frame(n: int) -> Frame:
    return Frame(f'{{"n":{n}}}', encode_cursor({0: n + 1}))


def test_cursor_round_trip_and_errors() -> None:
    positions = {0: 12, 1: 0, 2: 7}
    assert decode_cursor(encode_cursor(positions)) == positions
    with pytest.raises(CursorError):
        decode_cursor("!!!not-base64")
    with pytest.raises(CursorError):
        decode_cursor(base64.urlsafe_b64encode(b"0:x").decode())
    with pytest.raises(CursorError):
        decode_cursor(base64.urlsafe_b64encode(b"0:-5").decode())


def test_new_subscriber_gets_history_then_live_once() -> None:
    hub = Hub(history_size=3, queue_size=10)
    hub.publish([frame(n) for n in range(5)])
    subscriber, backlog = hub.subscribe()
    assert [f.text for f in backlog] == ['{"n":2}', '{"n":3}', '{"n":4}']
    hub.publish([frame(5)])
    assert subscriber.queue.get_nowait().text == '{"n":5}'
    assert subscriber.queue.empty()


def test_slow_subscriber_is_marked_and_others_unaffected() -> None:
    hub = Hub(history_size=0, queue_size=2)
    slow, _ = hub.subscribe()
    fast, _ = hub.subscribe()
    before = metrics.SLOW_DISCONNECTS._value.get()
    for n in range(3):
        hub.publish([frame(n)])
        fast.queue.get_nowait()
    assert slow.slow and not fast.slow
    assert metrics.SLOW_DISCONNECTS._value.get() == before + 1
    assert slow.queue.qsize() == 2  # nothing more queued once marked
