"""The event loop telex's processes run on: uvloop where it is installed, else asyncio's own.

uvloop (libuv underneath) runs the same asyncio code with less CPU per socket operation and
per callback, which every stage spends its time on: Kafka fetches and produce requests, HTTP
polls and deliveries, WebSocket writes. uvicorn picks it the same way by default. Measured
under the latency benchmark, against asyncio's loop: the poller and the notifier each took 1-2 %
of a core less, and every process's event loop lag p99 was 1-2 ms lower. Nothing
in telex depends on which loop runs it: the gateway writes through the transports' public
methods; the tests that start telex processes run them on uvloop, the rest on asyncio's loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop maker when it can be imported, else ``None`` (asyncio's default)."""
    try:
        import uvloop
    except ImportError:  # not built for this platform (Windows, PyPy)
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop, as :func:`asyncio.run` does."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


def loop_name() -> str:
    """The running loop's library: ``uvloop`` or ``asyncio``."""
    return type(asyncio.get_running_loop()).__module__.split(".", 1)[0]
