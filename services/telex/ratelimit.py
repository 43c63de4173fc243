"""One rate limiter for telex: a token bucket.

The gateway asks it whether a client's message is within its rate (:meth:`TokenBucket.take`,
never waits); the notifier waits for its turn to call a receiver (:meth:`TokenBucket.wait`).
A bucket is a few floats with ``__slots__``: the gateway holds one per connection.
"""

from __future__ import annotations

import asyncio
import time


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; starts full."""

    __slots__ = ("burst", "last", "rate", "tokens")

    def __init__(self, rate: float, burst: int = 1) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.last = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def take(self) -> bool:
        """Spend one token; False when there is none (the caller is over its rate)."""
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def reserve(self) -> float:
        """Spend one token even if it is not there yet; seconds until it is.

        Tokens go into debt, so callers that reserve one after another are spaced ``1/rate``
        apart in the order they asked, without a lock.
        """
        self._refill()
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def wait(self) -> None:
        """Wait until one token is ours."""
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)
