"""The watch over a component's sends: blocked while a send waits too long or the latest one
failed, ready again once a send is acknowledged; failures counted by error. A fake clock."""

from __future__ import annotations

import asyncio

from aiokafka.errors import NotEnoughReplicasError, ProducerClosed, RequestTimedOutError
from prometheus_client import REGISTRY

from telex.kafka.sends import FAILURE_HOLD_S, SendWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def settle() -> None:
    await asyncio.sleep(0)  # done callbacks run on the next turn of the loop


async def test_a_send_waiting_too_long_blocks_until_acknowledged() -> None:
    clock = Clock()
    watch = SendWatch("unit-wait", blocked_after_s=5.0, clock=clock)
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    watch.follow(watch.begin(), future)
    clock.now += 4.0
    assert watch.ready and watch.reason is None
    clock.now += 2.0
    assert not watch.ready
    assert watch.reason == "kafka: a send has waited 6 s for acknowledgement"
    assert sample("telex_kafka_produce_blocked", component="unit-wait") == 1.0
    assert sample("telex_kafka_produce_oldest_pending_seconds", component="unit-wait") == 6.0
    future.set_result(None)
    await settle()
    assert watch.ready and watch.reason is None
    assert sample("telex_kafka_produce_blocked", component="unit-wait") == 0.0
    assert sample("telex_kafka_produce_oldest_pending_seconds", component="unit-wait") == 0.0


async def test_a_failed_send_blocks_until_a_later_send_succeeds() -> None:
    clock = Clock()
    watch = SendWatch("unit-fail", blocked_after_s=5.0, clock=clock)
    earlier = watch.begin()
    failed = watch.begin()
    watch.end(failed, NotEnoughReplicasError())
    assert not watch.ready
    assert watch.reason == "kafka: the latest send failed (not_enough_replicas)"
    labels = {"component": "unit-fail", "error": "not_enough_replicas"}
    assert sample("telex_kafka_produce_errors_total", **labels) == 1.0
    watch.end(earlier, None)  # began before the failure: says nothing about now
    assert not watch.ready
    watch.end(watch.begin(), RequestTimedOutError())
    assert (
        sample("telex_kafka_produce_errors_total", component="unit-fail", error="request_timed_out")
        == 1.0
    )
    watch.end(watch.begin(), None)
    assert watch.ready and watch.reason is None


async def test_a_failure_nothing_follows_stops_counting_after_the_hold() -> None:
    clock = Clock()
    watch = SendWatch("unit-hold", blocked_after_s=5.0, clock=clock)
    watch.end(watch.begin(), NotEnoughReplicasError())
    clock.now += FAILURE_HOLD_S - 1
    assert not watch.ready
    clock.now += 2
    assert watch.ready


async def test_abandoned_sends_are_no_failures() -> None:
    clock = Clock()
    watch = SendWatch("unit-abandon", blocked_after_s=5.0, clock=clock)
    cancelled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    watch.follow(watch.begin(), cancelled)
    cancelled.cancel()
    watch.end(watch.begin(), ProducerClosed())
    watch.end(watch.begin(), asyncio.CancelledError())
    await settle()
    clock.now += 60
    assert watch.ready and watch.oldest_pending_s() == 0.0
    assert sample("telex_kafka_produce_errors_total", component="unit-abandon", error="other") == 0
