"""When to try a failed delivery again.

* the ``retry_schedule`` lists the delays between attempts; past its end the delivery is
  dead-lettered;
* each delay gets +/- ``retry_jitter`` of itself, so that receivers that failed together are
  not all retried in the same second;
* a receiver's ``Retry-After`` can lengthen the wait, up to ``retry_after_max``, but never
  shorten it below the schedule.
"""

from __future__ import annotations

import random

from telex.config import NotifierConfig


def next_delay(
    settings: NotifierConfig, step: int, retry_after: float | None, rng: random.Random
) -> float | None:
    """Seconds until the next attempt, or ``None`` when the schedule is exhausted.

    The schedule's delay gets +/- ``retry_jitter`` of itself. A receiver's ``Retry-After`` can
    lengthen the wait (up to ``retry_after_max``) but never shorten it below the schedule.
    """
    if step >= len(settings.retry_schedule):
        return None
    base = settings.retry_schedule[step]
    delay = base * (1 + rng.uniform(-settings.retry_jitter, settings.retry_jitter))
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.retry_after_max))
    return max(0.0, delay)
