"""The token bucket the gateway (client messages) and the notifier (deliveries) share, on a
fake clock."""

from __future__ import annotations

import pytest

from telex import ratelimit
from telex.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(ratelimit.time, "monotonic", fake)
    return fake


def test_take_allows_the_burst_then_the_rate(clock: Clock) -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.4  # 0.8 of a token
    assert not bucket.take()
    clock.now += 0.1
    assert bucket.take() and not bucket.take()
    clock.now += 60  # a long pause saves up no more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_reserve_spaces_callers_in_the_order_they_asked(clock: Clock) -> None:
    bucket = TokenBucket(rate=10.0)
    assert [round(bucket.reserve(), 6) for _ in range(4)] == [0.0, 0.1, 0.2, 0.3]
    clock.now += 0.3  # three of the reserved tokens came due; the next is 0.1 s out
    assert round(bucket.reserve(), 6) == 0.1
    clock.now += 10
    assert bucket.reserve() == 0.0
    bucket.rate = 4.0  # the notifier applies a subscription's changed rate_limit
    assert bucket.reserve() == 0.25


async def test_wait_returns_at_once_with_a_token(clock: Clock) -> None:
    bucket = TokenBucket(rate=1000.0)
    await bucket.wait()
    assert bucket.tokens == 0.0
