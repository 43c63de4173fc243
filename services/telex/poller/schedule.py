"""When to poll a source next.

* adaptive: the interval halves (down to ``adaptive_min`` x the source interval) while the
  source publishes, and grows by half (up to ``adaptive_max`` x) once it has been quiet for
  ``quiet_polls`` polls;
* polite: never sooner than the server asked (Cache-Control max-age, ``<ttl>``, Retry-After),
  capped by ``max_wait`` so that a bad header cannot park a source for days;
* failing sources back off exponentially up to ``backoff_max`` and keep being polled: the
  state is visible (``backoff``, ``consecutive_errors``), never a silent stop.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from telex.config import PollerConfig


@dataclass
class Cadence:
    """The polling rhythm of one source."""

    base: float
    config: PollerConfig
    current: float = 0.0
    quiet: int = 0
    consecutive_errors: int = 0
    backoff: float = 0.0
    rand: Callable[[float, float], float] = random.uniform

    def __post_init__(self) -> None:
        self.current = self.current or self.base

    @property
    def fastest(self) -> float:
        """The shortest interval while the source publishes."""
        return self.base * self.config.adaptive_min

    @property
    def slowest(self) -> float:
        """The longest interval once the source has gone quiet."""
        return self.base * self.config.adaptive_max

    def _jittered(self, seconds: float) -> float:
        j = self.config.jitter
        return seconds * self.rand(1 - j, 1 + j) if j else seconds

    def _honour(self, delay: float, asked: float | None) -> float:
        if asked is None:
            return delay
        return max(delay, min(asked, self.config.max_wait))

    def after_success(self, changed: bool, asked: float | None = None) -> float:
        """Seconds until the next poll after a poll that worked; ``changed`` if it had news."""
        self.consecutive_errors = 0
        self.backoff = 0.0
        if changed:
            self.quiet = 0
            self.current = max(self.fastest, self.current / 2)
        else:
            self.quiet += 1
            if self.quiet >= self.config.quiet_polls:
                self.current = min(self.slowest, self.current * 1.5)
        return self._honour(self._jittered(self.current), asked)

    def after_error(self, retry_after: float | None = None) -> float:
        """Seconds until the next poll after a failure: exponential backoff, never a stop."""
        self.consecutive_errors += 1
        exponent = min(self.consecutive_errors - 1, 30)
        self.backoff = min(self.config.backoff_max, max(self.current, self.base) * 2**exponent)
        return self._honour(self._jittered(self.backoff), retry_after)

    def first_delay(self) -> float:
        """A random offset for the first poll, so many sources do not start in one burst."""
        return self.rand(0.0, min(self.base, 10.0))
