"""The soak benchmark's own checkers: a gap, a repeat or a stray event must show, or its
``--check`` would pass a broken pipeline."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import orjson

from ..conftest import ROOT


def _soak() -> ModuleType:
    sys.path.insert(0, str(ROOT / "bench"))
    spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


soak = _soak()


def frame(source: int, seq: int, cursor: str = "MDox") -> bytes:
    event = {
        "id": "e",
        "data": {
            "source_id": soak.source_id(source),
            "entry_id": soak.entry_id(source, seq, 1_000),
            "timings": {"detected_ms": 1_100, "produced_ms": 1_100, "processed_ms": 1_200},
        },
    }
    return (
        b'{"type":"event","cursor":"' + cursor.encode() + b'","event":' + orjson.dumps(event) + b"}"
    )


def test_subscriber_counts_gaps_repeats_strays_and_the_missing_tail() -> None:
    subs = soak.Subscribers(1, "start", [[0, 1]])
    sub = subs.subs[0]
    for source, seq in [(0, 0), (0, 1), (0, 1), (0, 3), (1, 0), (2, 0)]:
        sub._frame(frame(source, seq, cursor=f"c{seq}"), 2_000.0)
    report = subs.report([5, 2, 1])
    # Source 0: seq 2 skipped and 4 never came; source 1: seq 1 never came.
    assert report["lost"] == 3 and report["subscribers_with_loss"] == 1
    assert report["duplicates"] == 1 and report["unexpected"] == 1
    assert report["expected"] == 7 and report["received"] == 6
    assert sub.cursor == "c0"  # the last frame's cursor
    detected = report["latency"]["detected"][0]
    assert detected == {900: 4}  # the in-order, first-time deliveries: 2000 - 1100 ms


def test_receivers_count_loss_and_repeats_in_any_order() -> None:
    receivers = soak.Receivers(2)
    head = b"POST /hook HTTP/1.1\r\nwebhook-id: msg_1\r\n\r\n"
    for index, seq in [(0, 2), (0, 0), (0, 2), (1, 0)]:
        body = frame(0, seq).split(b'"event":', 1)[1][:-1]
        receivers.on_post(index, head.replace(b"msg_1", f"msg_{seq}".encode()), body)
    receivers.on_post(1, head, b"not json")
    report = receivers.report([3], [[0], [0]])
    assert report["lost"] == 1 + 2 and report["receivers_with_loss"] == 2
    assert report["duplicates"] == 1 and report["redeliveries"] == 1
    assert report["bad_bodies"] == 1 and report["expected"] == 6


def test_check_fails_on_each_kind_of_problem() -> None:
    clean = {
        "published": 10,
        "drained_s": 1.0,
        "subscribers": {"lost": 0, "with_loss": 0, "duplicates": 0, "unexpected": 0, "resyncs": 0},
        "receivers": {
            "lost": 0, "receivers_with_loss": 0, "duplicates": 0, "unexpected": 0, "bad_bodies": 0,
        },
        "services": {"dead_letters": 0, "notifier_dead_letters": 0},
    }  # fmt: skip
    assert soak.problems(clean) == []
    for part, key in [
        ("subscribers", "lost"),
        ("subscribers", "duplicates"),
        ("subscribers", "resyncs"),
        ("receivers", "lost"),
        ("receivers", "duplicates"),
        ("services", "dead_letters"),
    ]:
        broken = orjson.loads(orjson.dumps(clean))
        broken[part][key] = 1
        assert soak.problems(broken), (part, key)
    assert soak.problems({**clean, "drained_s": None})
