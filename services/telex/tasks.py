"""Background tasks a service owns: cancelled and awaited on shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel every task (``None`` is skipped), then wait until each one has finished.

    All are cancelled before any is awaited, so they wind down together. A task's own
    ``CancelledError`` is absorbed; any other exception it ends with propagates.
    """
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    for task in live:
        with contextlib.suppress(asyncio.CancelledError):
            await task
