"""Poll sources on a schedule and produce their new and changed entries to the raw topic.

At-least-once: an entry is remembered as sent only after the broker acknowledged it, and a
restarted poller sends what it sees again; the processor's dedup makes re-sends harmless.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from telex import metrics
from telex.bus import Bus, stop_quietly
from telex.config import Config, SourceConfig
from telex.events import RawUpdate, content_hash, encode, now_ms, update_id
from telex.log import get_logger
from telex.poller.extract import Entry, ExtractError, Page, extract_html

log = get_logger(__name__)


class FetchError(Exception):
    """A poll that did not yield a document."""


@dataclass
class SourceState:
    """What the poller knows about one source between polls."""

    config: SourceConfig
    etag: str | None = None
    last_modified: str | None = None
    sent: dict[str, str] = field(default_factory=dict)  # entry id -> content hash
    last_error: str | None = None
    polls: int = 0


async def fetch(
    client: httpx.AsyncClient, state: SourceState, max_bytes: int
) -> tuple[bytes, str] | None:
    """GET a source conditionally; ``None`` when it has not changed (304).

    Returns the body and the final URL (after redirects). The body is read in chunks so that
    an endless or oversized response is cut off at ``max_bytes`` instead of filling memory.
    """
    headers = {}
    if state.etag:
        headers["If-None-Match"] = state.etag
    if state.last_modified:
        headers["If-Modified-Since"] = state.last_modified
    async with client.stream("GET", state.config.url, headers=headers) as response:
        if response.status_code == 304:
            return None
        if response.status_code >= 400:
            raise FetchError(f"HTTP {response.status_code}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"body larger than {max_bytes} bytes")
            chunks.append(chunk)
        state.etag = response.headers.get("etag")
        state.last_modified = response.headers.get("last-modified")
        return b"".join(chunks), str(response.url)


def raw_update(source: SourceConfig, page: Page, entry: Entry, digest: str) -> RawUpdate:
    """The raw record for one entry of a page."""
    return {
        "v": 1,
        "kind": "upsert",
        "id": update_id(source.id, entry.entry_id),
        "source_id": source.id,
        "source_url": source.url,
        "entry_id": entry.entry_id,
        "url": entry.url,
        "title": entry.title,
        "text": entry.text,
        "html": entry.html,
        "time_raw": entry.time_raw,
        "published": entry.published,
        "page_date": page.page_date.isoformat() if page.page_date else None,
        "page_tz": page.page_tz,
        "content_hash": digest,
        "detected_ms": now_ms(),
    }


class Poller:
    """Polls every configured source in its own task."""

    def __init__(self, config: Config, bus: Bus, sources: list[SourceConfig]) -> None:
        self.config = config
        self.bus = bus
        self.states = {s.id: SourceState(s) for s in sources}
        self._producer: AIOKafkaProducer | None = None
        self._client: httpx.AsyncClient | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def ready(self) -> bool:
        """True once the producer is connected."""
        return self._producer is not None

    async def start(self) -> None:
        """Connect to Kafka and start one polling task per source."""
        poller = self.config.poller
        self._client = httpx.AsyncClient(
            timeout=poller.timeout,
            follow_redirects=True,
            max_redirects=5,
            headers={"User-Agent": poller.user_agent},
        )
        producer = self.bus.producer()
        await producer.start()
        self._producer = producer
        for state in self.states.values():
            self._tasks.append(
                asyncio.create_task(self._poll_loop(state), name=f"poll:{state.config.id}")
            )
        metrics.SOURCES.set(len(self.states))
        log.info("poller.started", sources=len(self.states))

    async def stop(self) -> None:
        """Cancel the polling tasks and close the clients."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await stop_quietly(self._producer)
        self._producer = None
        if self._client is not None:
            await self._client.aclose()
        metrics.SOURCES.set(0)

    async def _poll_loop(self, state: SourceState) -> None:
        interval = state.config.interval or self.config.poller.interval
        # Spread the first polls so that many sources do not start in one burst.
        await asyncio.sleep(random.uniform(0, min(interval, 1.0) / 4))
        while True:
            try:
                await self.poll_once(state)
            except Exception:
                # A bug must not silently end polling of a source: log it and keep the schedule.
                log.exception("poll.crashed", source=state.config.id)
            await asyncio.sleep(interval * random.uniform(0.9, 1.1))

    async def poll_once(self, state: SourceState) -> int:
        """Poll one source once; return the number of updates produced. Never raises."""
        assert self._client is not None and self._producer is not None
        source = state.config
        state.polls += 1
        try:
            fetched = await fetch(self._client, state, self.config.poller.max_body_bytes)
            if fetched is None:
                metrics.POLLS.labels("not_modified").inc()
                return 0
            body, final_url = fetched
            page = await asyncio.to_thread(extract_html, body, final_url)
            sent = await self._produce_changes(state, page)
        except (httpx.HTTPError, FetchError, ExtractError, KafkaError) as exc:
            metrics.POLLS.labels("error").inc()
            if state.last_error != str(exc):
                log.warning("poll.failed", source=source.id, error=str(exc))
            state.last_error = str(exc)
            return 0
        metrics.POLLS.labels("ok").inc()
        if state.last_error is not None:
            log.info("poll.recovered", source=source.id)
            state.last_error = None
        if sent:
            log.info("poll.produced", source=source.id, updates=sent, entries=len(page.entries))
        return sent

    async def _produce_changes(self, state: SourceState, page: Page) -> int:
        assert self._producer is not None
        pending: list[tuple[str, str, bool, Any]] = []
        # Oldest first on the topic, whatever order the page shows (pages are usually newest
        # first; the stable sort keeps that reversed order for entries without a time).
        for entry in sorted(reversed(page.entries), key=lambda e: e.published or ""):
            digest = content_hash(entry.title, entry.text)
            known = state.sent.get(entry.entry_id)
            if known == digest:
                continue
            record = raw_update(state.config, page, entry, digest)
            record["produced_ms"] = now_ms()
            future = await self._producer.send(
                self.config.topics.raw, encode(record), key=state.config.id.encode()
            )
            pending.append((entry.entry_id, digest, known is not None, future))
        for entry_id, digest, changed, future in pending:
            await future  # raises on failure: the entry stays unsent and is retried next poll.
            state.sent[entry_id] = digest
            metrics.ENTRIES_PRODUCED.labels("changed" if changed else "new").inc()
        return len(pending)
