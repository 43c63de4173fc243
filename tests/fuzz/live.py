"""A real telex (``started``: uvicorn, the real services) in a thread of its own, for property
tests: hypothesis runs synchronous test functions, so the servers get their own event loop and
the tests talk to them over real sockets."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from telex.config import Config
from telex.runtime import Running, started

T = TypeVar("T")


class Live:
    """``roles`` of telex on 127.0.0.1, started by :meth:`start`, stopped by :meth:`stop`."""

    def __init__(
        self,
        config: Config,
        roles: tuple[str, ...],
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    ) -> None:
        self.config = config
        self.roles = roles
        self.loop_factory = loop_factory
        self.running: Running | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-telex", daemon=True)

    @property
    def http_url(self) -> str:
        assert self.running is not None and self.running.http_url is not None
        return self.running.http_url

    def start(self, timeout: float = 60) -> Live:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("telex did not start")
        if self._failed is not None:
            raise self._failed
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The servers' event loop."""
        assert self._loop is not None
        return self._loop

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run ``coro`` on the servers' loop and return its result."""
        assert self._loop is not None
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self.loop_factory) as runner:
                runner.run(self._main())
        except BaseException as exc:  # reported to start()
            self._failed = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with started(self.config, self.roles, replay=False) as running:
            self.running = running
            self._ready.set()
            await self._stop.wait()
