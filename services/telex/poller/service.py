"""Poll sources on a schedule and produce their new, changed and vanished entries to the raw topic.

Which sources this process polls is decided by Kafka: the compacted sources topic is read
through a consumer group, and a poller polls exactly the sources whose partitions it is
assigned. Adding a poller process takes over part of the partitions; one that stops hands them
back at the next rebalance. On assignment a poller reads its partitions from the beginning,
keeping the last definition per source.

At-least-once: an entry is remembered as sent only after the broker acknowledged it, and a
poller that takes over a source sends what it sees again; the processor's dedup makes re-sends
harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from telex import metrics
from telex.config import Config, SourceConfig
from telex.events import RawUpdate, content_hash, encode, now_ms, update_id
from telex.kafka import Batch, Clients, GroupConsumer, Producer, stop_quietly
from telex.log import get_logger
from telex.outbound import tls_context
from telex.poller.documents import extract_document
from telex.poller.extract import ExtractError, Page, PageEntry
from telex.poller.fetch import Fetcher, FetchError
from telex.poller.identity import carry_derived_ids
from telex.poller.schedule import Cadence
from telex.poller.sources import SourceCatalog, SourceError, decode_source, publish
from telex.ssrf import AddressPolicy
from telex.tasks import cancel_and_wait

log = get_logger(__name__)

_MAX_PARKED = 10_000


@dataclass
class SourceState:
    """What the poller knows about one source between polls."""

    config: SourceConfig
    cadence: Cadence
    etag: str | None = None
    last_modified: str | None = None
    body_digest: bytes | None = None  # of the last document read, for servers without ETags
    sent: dict[str, str] = field(default_factory=dict)  # entry id -> content hash
    last_page: dict[str, PageEntry] = field(default_factory=dict)  # entries of the last page
    last_page_order: list[str] = field(default_factory=list)
    polls: int = 0
    last_poll_ms: int | None = None
    last_success_ms: int | None = None
    last_error: str | None = None
    last_error_reason: str | None = None
    last_error_ms: int | None = None
    next_poll_ms: int | None = None
    last_status: int | None = None
    updates_produced: int = 0

    def status(self) -> dict[str, Any]:
        """The state an operator needs, as JSON."""
        return {
            "polls": self.polls,
            "last_poll_ms": self.last_poll_ms,
            "last_success_ms": self.last_success_ms,
            "last_error": self.last_error,
            "last_error_reason": self.last_error_reason,
            "last_error_ms": self.last_error_ms,
            "next_poll_ms": self.next_poll_ms,
            "last_http_status": self.last_status,
            "entries_seen": len(self.sent),
            "updates_produced": self.updates_produced,
            "interval_s": round(self.cadence.current, 3),
            "consecutive_errors": self.cadence.consecutive_errors,
            "backoff_s": round(self.cadence.backoff, 3),
            "state": "backoff" if self.cadence.consecutive_errors else "ok",
        }


def raw_update(
    source: SourceConfig, page: Page, entry: PageEntry, digest: str, kind: str = "upsert"
) -> RawUpdate:
    """The raw record for one entry of a page (``kind="delete"`` carries its last content)."""
    return {
        "v": 1,
        "kind": "delete" if kind == "delete" else "upsert",
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
        "published_zone": entry.zone_from,
        "published_tz": entry.zone,
        "page_date": page.page_date.isoformat() if page.page_date else None,
        "page_tz": page.page_tz,
        "content_hash": digest,
        "detected_ms": now_ms(),
    }


def oldest_first(entries: list[PageEntry]) -> list[PageEntry]:
    """Entries in the order they go on the topic: oldest first, whatever order the page shows.

    Pages are usually newest first; the stable sort keeps that reversed order for entries
    without a time and for entries of the same time. Times are compared as instants, not as
    strings: ``iso_utc`` writes milliseconds only when there are some, and "10:46:00Z" sorts
    after "10:46:00.250Z" as text (found by bench/soak.py: a source's order broke on the wire).
    """

    def key(entry: PageEntry) -> str:
        published = entry.published or ""
        if published.endswith("Z") and "." not in published:
            return published[:-1] + ".000Z"
        return published

    return sorted(reversed(entries), key=key)


def vanished(previous: list[str], current: set[str]) -> list[str]:
    """Entries of the previous page missing from the current one, *inside* its window.

    Pages show a window of entries (the latest N, or the first N): one that drops off an end
    of the window has scrolled away, not been deleted. Only an entry missing between two
    entries that are still there is reported, whichever way the page is ordered.
    """
    kept = [i for i, entry_id in enumerate(previous) if entry_id in current]
    if len(kept) < 2:
        return []
    first, last = kept[0], kept[-1]
    return [e for e in previous[first + 1 : last] if e not in current]


class Poller:
    """Polls the sources of its share of the sources topic, each in its own task."""

    def __init__(
        self,
        config: Config,
        clients: Clients,
        sources: list[SourceConfig] | None = None,
        allow_origins: tuple[str, ...] = (),
    ) -> None:
        self.config = config
        self.clients = clients
        self.declared = list(sources or [])
        self.policy = AddressPolicy(
            config.poller.allow_networks,
            allow_private=config.poller.allow_private,
            origins=allow_origins,
            hint="[poller] allow_networks (or set allow_private)",
        )
        self.states: dict[str, SourceState] = {}
        self.catalog = SourceCatalog(clients)
        self._group: GroupConsumer | None = None
        self._producer: Producer | None = None
        self._fetcher: Fetcher | None = None
        self._partition_of: dict[str, int] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        # States of sources revoked by a rebalance, kept in case they come back.
        self._parked: dict[str, SourceState] = {}
        self._assigned = False
        self.sends = clients.watch("poller")
        clients.reset.on_reset(self._start_over)

    @property
    def ready(self) -> bool:
        """True once connected, in the group, and the catalogue is loaded; false while sends
        to Kafka fail or wait (``not_ready_reason`` says which)."""
        loaded = self._producer is not None and self._assigned and self.catalog.ready
        return loaded and self.sends.ready

    @property
    def not_ready_reason(self) -> str | None:
        """Why the poller is blocked on Kafka, if it is."""
        return self.sends.reason

    async def start(self) -> None:
        """Publish the declared sources, join the pollers' group and load the catalogue."""
        # Loading the trust store takes tens of milliseconds of CPU: not on the event loop.
        tls = await asyncio.to_thread(tls_context, self.config.outbound.ca_file)
        self._fetcher = Fetcher(self.config.poller, self.policy, tls)
        producer = self.clients.producer_for("poller")
        await producer.start()
        self._producer = producer
        if self.declared:
            # Sources declared in the config are (re)published at every start: the config
            # file is the source of truth for them.
            await publish(producer, self.config.topics.sources, self.declared)
        await self.catalog.start()
        self._group = GroupConsumer(
            self.clients,
            [self.config.topics.sources],
            self.config.poller.group_id,
            self._definitions,
            name="poller-sources",
            on_assigned=self._assigned_partitions,
            on_revoked=self._revoked_partitions,
            # Each owner rebuilds its sources from the whole (compacted) partition.
            reread_on_assign=True,
            max_records=1000,
        )
        await self._group.start()
        log.info("poller.started", declared=len(self.declared))

    async def stop(self) -> None:
        """Stop polling, leave the group and close the clients."""
        await self.release(None)
        # Leaving the group promptly is what hands our sources to another poller.
        if self._group is not None:
            await self._group.stop()
            self._group = None
        await self.catalog.stop()
        await stop_quietly(self._producer)
        self._producer = None
        if self._fetcher is not None:
            await self._fetcher.aclose()
            self._fetcher = None
        metrics.SOURCES.set(0)

    async def _assigned_partitions(self, assigned: list[TopicPartition]) -> None:
        self._assigned = True
        log.info("poller.assigned", partitions=",".join(str(tp.partition) for tp in assigned))

    async def _revoked_partitions(self, revoked: list[TopicPartition]) -> None:
        await self.release({tp.partition for tp in revoked})

    async def _start_over(self) -> None:
        """The broker lost its data: write the sources back and send again, at each source's
        next poll, every entry its page shows.

        What the raw topic and the wire held is gone, and so is anything produced between the
        broker's restart and now (it acknowledges records for topics it no longer has).
        Entries still on the sources' pages are what can be saved; the processor, which
        forgets its dedup state at the same moment, turns them into a new wire, and the
        notifier's delivery log keeps receivers from getting them twice.
        """
        for state in [*self.states.values(), *self._parked.values()]:
            state.sent.clear()
            state.etag = state.last_modified = None
            state.body_digest = None
        sources = dict(self.catalog.sources)
        for declared in self.declared:
            sources.setdefault(declared.id, declared)
        if self._producer is not None and sources:
            try:
                await publish(self._producer, self.config.topics.sources, list(sources.values()))
            except KafkaError as exc:
                log.warning("poller.sources.republish_failed", error=repr(exc))
        log.warning("poller.started_over", sources=len(sources), resending=len(self.states))

    async def _definitions(self, batch: Batch) -> None:
        """Poll the sources defined (or again) in ``batch``; stop those deleted or disabled."""
        latest: dict[str, tuple[int, bytes | None]] = {}
        for tp, records in batch.items():
            for record in records:
                if record.key is not None:
                    latest[record.key.decode("utf-8", "replace")] = (tp.partition, record.value)
        for source_id, (partition, value) in latest.items():
            try:
                source = decode_source(value)
            except SourceError as exc:
                log.warning("poller.source.invalid", source=source_id, error=str(exc))
                continue
            if source is None or not source.enabled:
                await self._drop(source_id)
            else:
                self._run(source, partition)

    def _run(self, source: SourceConfig, partition: int) -> None:
        """Poll ``source`` (again, if its definition changed)."""
        state = self.states.get(source.id)
        if state is None:
            # A source this process polled before a rebalance keeps what it knew (validators,
            # sent hashes): the common case of a rebalance that gives most partitions back
            # then re-sends nothing.
            state = self._parked.pop(source.id, None)
            if state is not None:
                self.states[source.id] = state
        if state is not None and state.config == source and source.id in self._tasks:
            return
        base = source.interval or self.config.poller.interval
        if state is None:
            state = SourceState(source, Cadence(base, self.config.poller))
            self.states[source.id] = state
        else:
            if state.config.url != source.url:
                state.etag = state.last_modified = None
            state.config = source
            state.cadence = Cadence(base, self.config.poller)
            old = self._tasks.pop(source.id, None)
            if old is not None:
                old.cancel()
        self._partition_of[source.id] = partition
        self._tasks[source.id] = asyncio.create_task(
            self._poll_loop(state), name=f"poll:{source.id}"
        )
        metrics.SOURCES.set(len(self._tasks))

    async def _drop(self, source_id: str, park: bool = False) -> None:
        task = self._tasks.pop(source_id, None)
        state = self.states.pop(source_id, None)
        if park and state is not None:
            self._parked[source_id] = state
            while len(self._parked) > _MAX_PARKED:
                self._parked.pop(next(iter(self._parked)))
        elif not park:
            self._parked.pop(source_id, None)
        self._partition_of.pop(source_id, None)
        await cancel_and_wait(task)
        for gauge in metrics.PER_SOURCE_GAUGES:
            with contextlib.suppress(KeyError):
                gauge.remove(source_id)
        metrics.SOURCES.set(len(self._tasks))

    async def release(self, partitions: set[int] | None) -> None:
        """Stop polling the sources of ``partitions`` (all of them for ``None``)."""
        doomed = [
            source_id
            for source_id, partition in self._partition_of.items()
            if partitions is None or partition in partitions
        ]
        for source_id in doomed:
            await self._drop(source_id, park=partitions is not None)
        if doomed:
            log.info("poller.released", sources=len(doomed))

    async def _poll_loop(self, state: SourceState) -> None:
        await asyncio.sleep(state.cadence.first_delay())
        while True:
            try:
                await self.poll_once(state)
            except Exception:
                # A bug must not silently end polling of a source: log it and keep going.
                log.exception("poll.crashed", source=state.config.id)
                metrics.POLL_ERRORS.labels("bug").inc()
                state.next_poll_ms = now_ms() + int(state.cadence.after_error() * 1000)
            delay = max(0.0, ((state.next_poll_ms or 0) - now_ms()) / 1000)
            await asyncio.sleep(delay)

    def _schedule(self, state: SourceState, delay: float) -> None:
        source_id = state.config.id
        state.next_poll_ms = now_ms() + int(delay * 1000)
        metrics.SOURCE_NEXT_POLL.labels(source_id).set(state.next_poll_ms / 1000)
        metrics.SOURCE_ERRORS.labels(source_id).set(state.cadence.consecutive_errors)
        metrics.SOURCE_BACKOFF.labels(source_id).set(state.cadence.backoff)
        metrics.SOURCE_INTERVAL.labels(source_id).set(state.cadence.current)
        metrics.SOURCE_ENTRIES.labels(source_id).set(len(state.sent))

    async def poll_once(self, state: SourceState) -> int:
        """Poll one source once; return the number of updates produced. Never raises for a
        bad source: the error is recorded in its state and metrics, and it is scheduled again."""
        assert self._fetcher is not None and self._producer is not None
        source = state.config
        generation = self.clients.reset.generation
        state.polls += 1
        state.last_poll_ms = now_ms()
        metrics.SOURCE_LAST_POLL.labels(source.id).set(state.last_poll_ms / 1000)
        started = time.perf_counter()
        try:
            try:
                fetched = await self._fetcher.fetch(source.url, state.etag, state.last_modified)
            finally:
                metrics.FETCH_SECONDS.observe(time.perf_counter() - started)
            state.last_status = fetched.status
            if fetched.not_modified:
                metrics.POLLS.labels("not_modified").inc()
                self._succeeded(state)
                self._schedule(state, state.cadence.after_success(False, fetched.fresh_for))
                return 0
            assert fetched.body is not None
            digest = hashlib.blake2b(fetched.body, digest_size=16).digest()
            if digest == state.body_digest and state.sent:
                # The same bytes as last time from a server without validators: nothing to
                # extract (the costly part), exactly as if it had answered 304.
                metrics.POLLS.labels("unchanged").inc()
                state.etag, state.last_modified = fetched.etag, fetched.last_modified
                self._succeeded(state)
                self._schedule(state, state.cadence.after_success(False, fetched.fresh_for))
                return 0
            began = time.perf_counter()
            page = await asyncio.to_thread(
                extract_document,
                fetched.body,
                fetched.url,
                kind=source.kind,
                content_type=fetched.content_type,
                tz=source.timezone,
                selectors=source.selectors,
                mapping=source.mapping,
            )
            metrics.EXTRACT_SECONDS.observe(time.perf_counter() - began)
            for warning in page.warnings[:5]:
                log.info("poll.extract_warning", source=source.id, warning=warning)
            if not page.entries and page.kind == "html":
                # An empty feed is a feed with nothing yet; a page with no entries is most
                # likely one the extractor cannot read, which an operator should hear about.
                raise ExtractError("no entries found in the page")
            sent = await self._produce_changes(state, page)
        except (FetchError, ExtractError, KafkaError) as exc:
            reason = (
                exc.reason
                if isinstance(exc, FetchError)
                else "extract"
                if isinstance(exc, ExtractError)
                else "kafka"
            )
            retry_after = exc.retry_after if isinstance(exc, FetchError) else None
            self._failed(state, reason, str(exc) or type(exc).__name__)
            self._schedule(state, state.cadence.after_error(retry_after))
            return 0
        # Validators are kept only once the document was read and its entries acknowledged:
        # otherwise a 304 would hide the failed document from the next poll. (Nor when the
        # topics were lost meanwhile: the next poll must read the document again.)
        if generation == self.clients.reset.generation:
            state.etag, state.last_modified = fetched.etag, fetched.last_modified
            state.body_digest = digest
        metrics.POLLS.labels("ok").inc()
        self._succeeded(state)
        asked = max((s for s in (fetched.fresh_for, page.ttl) if s is not None), default=None)
        self._schedule(state, state.cadence.after_success(sent > 0, asked))
        if sent:
            log.info("poll.produced", source=source.id, updates=sent, entries=len(page.entries))
        return sent

    def _succeeded(self, state: SourceState) -> None:
        state.last_success_ms = now_ms()
        metrics.SOURCE_LAST_SUCCESS.labels(state.config.id).set(state.last_success_ms / 1000)
        if state.last_error is not None:
            log.info("poll.recovered", source=state.config.id, after=state.last_error)
            state.last_error = state.last_error_reason = None

    def _failed(self, state: SourceState, reason: str, message: str) -> None:
        metrics.POLLS.labels("error").inc()
        metrics.POLL_ERRORS.labels(reason).inc()
        if state.last_error != message:
            log.warning("poll.failed", source=state.config.id, reason=reason, error=message)
        state.last_error, state.last_error_reason = message, reason
        state.last_error_ms = now_ms()

    async def _send_deletions(
        self, state: SourceState, page: Page, seen: set[str]
    ) -> list[tuple[str, str | None, str, Any]]:
        """Send a delete for each entry sent before that the page no longer has."""
        assert self._producer is not None
        source = state.config
        pending: list[tuple[str, str | None, str, Any]] = []
        for entry_id in vanished(state.last_page_order, seen):
            last = state.last_page.get(entry_id)
            last_hash = state.sent.get(entry_id)
            if last is None or last_hash is None:
                continue
            record = raw_update(source, page, last, last_hash, kind="delete")
            record["produced_ms"] = now_ms()
            future = await self._producer.send(
                self.config.topics.raw, encode(record), key=source.id.encode()
            )
            pending.append((entry_id, None, "deleted", future))
        return pending

    async def _produce_changes(self, state: SourceState, page: Page) -> int:
        assert self._producer is not None
        source = state.config
        # Until the broker's topics are checked (after an outage) or the services have started
        # over on new ones: what went out now could be acknowledged and lost, or overtake what
        # must be sent again first.
        self.clients.reset.check()
        generation = self.clients.reset.generation
        pending: list[tuple[str, str | None, str, Any]] = []
        entries = carry_derived_ids(state.last_page, page.entries)
        seen: dict[str, PageEntry] = {}
        for entry in entries:
            seen.setdefault(entry.entry_id, entry)  # pinned boxes repeat entries: first wins.
        for entry in oldest_first(list(seen.values())):
            digest = content_hash(entry.title, entry.text)
            known = state.sent.get(entry.entry_id)
            if known == digest:
                continue
            record = raw_update(source, page, entry, digest)
            record["produced_ms"] = now_ms()
            metrics.HOP_SECONDS.labels("poller").observe(
                (record["produced_ms"] - record["detected_ms"]) / 1000
            )
            future = await self._producer.send(
                self.config.topics.raw, encode(record), key=source.id.encode()
            )
            pending.append((entry.entry_id, digest, "changed" if known else "new", future))
        order = list(seen)
        if source.report_deletions:
            pending.extend(await self._send_deletions(state, page, set(seen)))
        for i, (entry_id, maybe_digest, kind, future) in enumerate(pending):
            try:
                await future  # raises on failure: the entry stays unsent, retried next poll.
            except KafkaError:
                # The later sends fail the same way (or are re-sent harmlessly): collect their
                # outcome so asyncio does not report "exception was never retrieved" for each.
                for *_, rest in pending[i + 1 :]:
                    rest.add_done_callback(lambda f: f.cancelled() or f.exception())
                raise
            if generation != self.clients.reset.generation:
                continue  # acknowledged by a broker that has since lost it: send it again.
            if maybe_digest is None:
                state.sent.pop(entry_id, None)
            else:
                state.sent[entry_id] = maybe_digest
            metrics.ENTRIES_PRODUCED.labels(kind).inc()
            # One line per update at debug level: `grep <update id>` traces it through stages.
            log.debug("update.produced", update=update_id(source.id, entry_id), kind=kind)
        while len(state.sent) > self.config.poller.max_entries:
            state.sent.pop(next(iter(state.sent)))  # the oldest remembered entry
        state.last_page = seen
        state.last_page_order = order
        state.updates_produced += len(pending)
        return len(pending)

    def owned(self) -> dict[str, dict[str, Any]]:
        """Status of every source this process polls, by id."""
        return {source_id: state.status() for source_id, state in self.states.items()}
