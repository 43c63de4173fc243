"""A three-broker Apache Kafka cluster (KRaft, combined controller+broker nodes) on loopback,
run from the jars that ``scripts/kafka-provision.sh`` fetched, for the tests and for a developer.

Each node listens on four ports of 127.0.0.1: PLAINTEXT (clients and replication), CONTROLLER
(the KRaft quorum), SASL_PLAINTEXT with SCRAM-SHA-256/512 (users written at format time) and
SSL with PEM certificates from a test CA (:mod:`tests.tls`). Topics default to replication
factor 3 and ``min.insync.replicas=2``. The ``test`` profile (the default) starts fast (the
JVM's C1 compiler only) and runs the log cleaner every half second on segments that roll every
two seconds, so compaction can be watched within a test; the ``bench`` profile runs the JVM
as Kafka's start scripts do (full compiler, 1 GB heap, G1) and Kafka's own segment and cleaner
timings, as a production broker does, for benchmarks (the test profile's brokers spend about
twice the CPU per request).

Nodes can be stopped (SIGTERM, controlled shutdown), killed (SIGKILL) and started again on
the same ports and data. Every JVM is started in its own process group with a parent-death
signal, and killed at interpreter exit: no broker outlives the test session.

Run one for ``telex run --bootstrap``::

    .venv/bin/python -m tests.kafka_cluster        # or scripts/kafka-cluster.sh
    .venv/bin/python -m tests.kafka_cluster --profile bench
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from telex.kafka.embedded import free_port
from tests.tls import TestCA

ROOT = Path(__file__).resolve().parent.parent
POM = ROOT / "scripts" / "kafka" / "pom.xml"
PROVISION = ROOT / "scripts" / "kafka-provision.sh"

# Small heap, one GC thread and the C1 compiler only: a node starts in a few seconds on two
# shared cores and three of them fit beside the rest of the suite.
JVM_FLAGS = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Xshare:auto",
    "-Djava.awt.headless=true",
)
# For benchmarks: the JVM as Kafka's own start scripts run a broker (kafka-server-start.sh's
# heap, kafka-run-class.sh's performance options): the full (C2) compiler, which compiles for its
# first minute under load and then spends half the CPU per request, and G1 aiming at 20 ms
# pauses. Under bench/latency.py the serial collector of the test profile paused each node about
# 20 times a run (median 12 ms); G1 pauses it about 7 times (median 14 ms).
BENCH_JVM_FLAGS = (
    "-Xms1g",
    "-Xmx1g",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Xshare:auto",
    "-Djava.awt.headless=true",
)
SCRAM_USERS = {
    "telex-256": ("SCRAM-SHA-256", "s3cret-256"),
    "telex-512": ("SCRAM-SHA-512", "s3cret-512"),
}
STARTED = "Kafka Server started"
_PR_SET_PDEATHSIG = 1
_live: set[subprocess.Popen[bytes]] = set()


def kafka_version() -> str:
    """The Kafka version the pom pins (the one docker-compose.yml must run too)."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    assert found, f"no <kafka.version> in {POM}"
    return found.group(1)


def kafka_lib() -> Path:
    """The folder of the broker's jars, provisioned first if this checkout has none yet."""
    done = subprocess.run([str(PROVISION), "--print"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"cannot provision Apache Kafka: {done.stderr.strip()}")
    return Path(done.stdout.strip().splitlines()[-1])


def cluster_id() -> str:
    """A random cluster id as ``kafka-storage random-uuid`` makes them: never one starting with
    ``-``, which the storage tool would read as an option (one id in 64 did)."""
    while True:
        made = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not made.startswith("-"):
            return made


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the test process dies without its clean-up
    # (SIGKILL, a crashed interpreter) the kernel kills the JVM too.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _kill_all() -> None:
    for proc in list(_live):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        _live.discard(proc)


atexit.register(_kill_all)


class PortTaken(RuntimeError):
    """A node could not bind one of its ports."""


@dataclass
class Node:
    """One combined controller+broker process and its fixed ports and folders."""

    node_id: int
    home: Path
    plaintext: int = field(default_factory=free_port)
    controller: int = field(default_factory=free_port)
    scram: int = field(default_factory=free_port)
    ssl: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.home / "server.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def started_count(self) -> int:
        """How many times the log says this node finished starting."""
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count(STARTED)


# What a newsroom runs: every partition on all three, a write needs two copies; telex creates
# its topics itself, so an accidental auto-created one would hide a bug. docker-compose.yml's
# brokers say the same (tests/ops/test_deploy.py compares them).
NODES = 3
DURABILITY: dict[str, int | str] = {
    "default.replication.factor": 3,
    "min.insync.replicas": 2,
    "offsets.topic.replication.factor": 3,
    "transaction.state.log.replication.factor": 3,
    "transaction.state.log.min.isr": 2,
    "auto.create.topics.enable": "false",
}

# Compaction a test can watch: segments roll every 2 s (the active one is never cleaned), any
# dirt is worth cleaning, tombstones go 1 s after a clean. Rolling every partition's segment
# every 2 s costs the brokers CPU, so the benchmark profile keeps Kafka's defaults.
WATCHABLE_COMPACTION: dict[str, int | float] = {
    "log.roll.ms": 2000,
    "log.cleaner.backoff.ms": 500,
    "log.cleaner.min.cleanable.ratio": 0.01,
    "log.cleaner.delete.retention.ms": 1000,
    "log.cleaner.min.compaction.lag.ms": 0,
}
PROFILES = ("test", "bench")


class KafkaCluster:
    """``size`` combined KRaft nodes on 127.0.0.1 under ``root`` (a fresh folder).

    ``profile`` "test" starts fast and makes compaction visible within seconds; "bench" runs
    the JVM's full compiler and Kafka's own segment and cleaner timings, as a production
    broker does (the durability settings are the same in both).
    """

    def __init__(self, root: Path, size: int = NODES, profile: str = "test") -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}: one of {', '.join(PROFILES)}")
        self.root = root
        self.profile = profile
        self.lib = kafka_lib()
        self.cluster_id = cluster_id()
        self.nodes = [Node(n, root / f"node{n}") for n in range(1, size + 1)]
        self.tls = TestCA(root / "tls")
        self.server_pem = self.tls.issue("broker", ["127.0.0.1", "localhost"])
        self.client_pem = self.tls.issue("telex-client", [], client=True)
        self.scram_users = dict(SCRAM_USERS)

    # Where clients connect.
    @property
    def bootstrap(self) -> str:
        """PLAINTEXT bootstrap list of every node."""
        return ",".join(f"127.0.0.1:{n.plaintext}" for n in self.nodes)

    @property
    def scram_bootstrap(self) -> str:
        """SASL_PLAINTEXT (SCRAM-SHA-256/512) bootstrap list; users in ``scram_users``."""
        return ",".join(f"127.0.0.1:{n.scram}" for n in self.nodes)

    @property
    def ssl_bootstrap(self) -> str:
        """SSL bootstrap list; the broker certificate is for 127.0.0.1 and localhost, signed by
        ``tls.ca_file``; a client certificate is asked for but not required."""
        return ",".join(f"127.0.0.1:{n.ssl}" for n in self.nodes)

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    # Lifecycle.
    def _java(self, main: str, *args: str, node: Node) -> list[str]:
        return [
            "java",
            *(JVM_FLAGS if self.profile == "test" else BENCH_JVM_FLAGS),
            f"-Dlog4j2.configurationFile={node.home / 'log4j2.properties'}",
            "-cp",
            f"{self.lib}/*",
            main,
            *args,
        ]

    def _write_config(self, node: Node) -> Path:
        node.home.mkdir(parents=True, exist_ok=True)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller}" for n in self.nodes)
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        props = {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://127.0.0.1:{node.plaintext},"
            f"CONTROLLER://127.0.0.1:{node.controller},"
            f"SASL_PLAINTEXT://127.0.0.1:{node.scram},SSL://127.0.0.1:{node.ssl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.plaintext},"
            f"SASL_PLAINTEXT://127.0.0.1:{node.scram},SSL://127.0.0.1:{node.ssl}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
            "SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": node.home / "data",
            **DURABILITY,
            # Fewer internal partitions than the defaults (50): created faster on two cores.
            "offsets.topic.num.partitions": 6,
            "transaction.state.log.num.partitions": 6,
            "group.initial.rebalance.delay.ms": 0,
            # The tests run consumer groups with session timeouts of 2-6 s (default floor: 6 s).
            "group.min.session.timeout.ms": 1000,
            **(WATCHABLE_COMPACTION if self.profile == "test" else {}),
            "log.cleaner.dedupe.buffer.size": 8 * 1024 * 1024,
            "log.cleaner.threads": 1,
            # Faster failure detection than the defaults (9 s / 18 s), for the fault tests.
            "broker.session.timeout.ms": 6000,
            "broker.heartbeat.interval.ms": 1000,
            "replica.lag.time.max.ms": 10000,
            # SCRAM on its own listener (the broker only checks passwords there).
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": jaas,
            "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": jaas,
            # TLS with PEM files, no keystore tooling.
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": self.server_pem,
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": self.tls.ca_file,
            "ssl.client.auth": "requested",
            "num.network.threads": 2,
            "num.io.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
            "background.threads": 4,
        }
        path = node.home / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (node.home / "log4j2.properties").write_text(
            "status = warn\n"
            "appender.file.type = File\n"
            "appender.file.name = FILE\n"
            f"appender.file.fileName = {node.log}\n"
            "appender.file.layout.type = PatternLayout\n"
            "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
            "rootLogger.level = INFO\n"
            "rootLogger.appenderRef.file.ref = FILE\n"
            # The per-request state-change chatter of the controller drowns the rest.
            "logger.state.name = state.change.logger\n"
            "logger.state.level = WARN\n"
        )
        return path

    def format(self) -> None:
        """Write every node's configuration and format its log folder (cluster id, SCRAM
        users), the nodes in parallel."""
        scram = [
            arg
            for user, (mechanism, password) in self.scram_users.items()
            for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")
        ]
        procs = []
        for node in self.nodes:
            config = self._write_config(node)
            cmd = self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                self.cluster_id,
                "-c",
                str(config),
                *scram,
                node=node,
            )
            procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        for proc in procs:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise RuntimeError(f"kafka-storage format failed: {out.decode()[-2000:]}")

    def start_node(self, node_id: int) -> None:
        """Start one node (on its ports and data); :meth:`wait_started` waits for it."""
        node = self.node(node_id)
        assert not node.running, f"node {node_id} is already running"
        config = node.home / "server.properties"
        with (node.home / "stdout.log").open("ab") as out:
            node.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(config), node=node),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        node.starts += 1
        _live.add(node.proc)

    def stop_node(self, node_id: int, timeout: float = 60) -> None:
        """SIGTERM: a controlled shutdown (leadership moved away first), then wait."""
        self._end(self.node(node_id), signal.SIGTERM, timeout)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL: the node vanishes mid-flight, no controlled shutdown."""
        self._end(self.node(node_id), signal.SIGKILL, 30)

    def _end(self, node: Node, sig: signal.Signals, timeout: float) -> None:
        proc, node.proc = node.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        _live.discard(proc)

    def wait_started(self, node_id: int, timeout: float = 120) -> None:
        """Until the node's log says it started (this time round), or raise with its tail."""
        node = self.node(node_id)
        deadline = time.monotonic() + timeout
        while node.started_count() < node.starts:
            if not node.running:
                tail = self.log_tail(node_id)
                if "Address already in use" in tail:
                    raise PortTaken(f"kafka node {node_id}: a port was taken: {tail}")
                raise RuntimeError(f"kafka node {node_id} exited: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"kafka node {node_id} did not start: {self.log_tail(node_id)}")
            time.sleep(0.1)

    def record_batches(self, topic: str, partition: int, node_id: int = 1) -> list[str]:
        """The record batch headers of a partition's segments on one node's disk, as Kafka's
        own DumpLogSegments prints them (producer id, epoch, sequence of each batch)."""
        folder = self.node(node_id).home / "data" / f"{topic}-{partition}"
        files = sorted(str(p) for p in folder.glob("*.log"))
        if not files:
            return []
        done = subprocess.run(
            [
                "java",
                *JVM_FLAGS,
                "-cp",
                f"{self.lib}/*",
                "kafka.tools.DumpLogSegments",
                "--files",
                ",".join(files),
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return [line for line in done.stdout.splitlines() if line.startswith("baseOffset:")]

    def log_tail(self, node_id: int, lines: int = 15) -> str:
        node = self.node(node_id)
        text = ""
        for path in (node.log, node.home / "stdout.log"):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return text or "(no log)"

    def start(self) -> None:
        """Format and start every node and wait until each has started."""
        self.format()
        for attempt in range(3):
            for node in self.nodes:
                self.start_node(node.node_id)
            try:
                for node in self.nodes:
                    self.wait_started(node.node_id)
                return
            except PortTaken:
                if attempt == 2:
                    raise
                self._new_ports()

    def _new_ports(self) -> None:
        """Stop every node and move all of them to other free ports (a port picked as free was
        taken by another process before the JVM bound it)."""
        self.stop()
        for node in self.nodes:
            node.plaintext, node.controller, node.scram, node.ssl = (free_port() for _ in "pcss")
        for node in self.nodes:
            self._write_config(node)

    def stop(self) -> None:
        """Stop every node (SIGTERM, SIGKILL after a while); no JVM is left running."""
        # Controlled shutdowns one at a time need a quorum to the end; a cluster being torn
        # down has no data worth a controlled shutdown, so all go at once.
        for node in self.nodes:
            if node.proc is not None and node.running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(node.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for node in self.nodes:
            proc = node.proc
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            _live.discard(proc)
            node.proc = None

    # Async helpers for the tests: the waits run in a thread, the event loop stays free.
    async def astart(self) -> None:
        """:meth:`start` without blocking the event loop, then wait for all brokers.

        The JVMs are started from this (the main) thread: the parent-death signal fires when
        the thread that started a process ends, and worker threads may end before the session.
        """
        await asyncio.to_thread(self.format)
        for attempt in range(3):
            for node in self.nodes:
                self.start_node(node.node_id)
            try:
                for node in self.nodes:
                    await asyncio.to_thread(self.wait_started, node.node_id)
                break
            except PortTaken:
                if attempt == 2:
                    raise
                await asyncio.to_thread(self._new_ports)
        await self.wait_brokers(len(self.nodes))

    async def restart_node(self, node_id: int, *, kill: bool = False) -> None:
        """Kill or stop one node, start it again and wait until it has started."""
        if kill:
            self.kill_node(node_id)
        else:
            await asyncio.to_thread(self.stop_node, node_id)
        self.start_node(node_id)
        await asyncio.to_thread(self.wait_started, node_id)

    async def heal(self) -> None:
        """Start every node that is not running and wait until all are brokers again (a test
        that stops nodes calls this before it ends, so the next finds the whole cluster)."""
        down = [n.node_id for n in self.nodes if not n.running]
        for node_id in down:
            self.kill_node(node_id)  # reaps a process that died on its own
            self.start_node(node_id)
        for node_id in down:
            await asyncio.to_thread(self.wait_started, node_id)
        await self.wait_brokers(len(self.nodes))

    @contextlib.asynccontextmanager
    async def admin(self) -> AsyncIterator[AIOKafkaAdminClient]:
        client = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        await client.start()
        try:
            yield client
        finally:
            await client.close()

    async def wait_brokers(self, count: int, timeout: float = 60) -> None:
        """Until the cluster's metadata lists ``count`` live brokers."""
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(KafkaError, OSError):
                    async with self.admin() as admin:
                        described = await admin.describe_cluster()
                        if len(described["brokers"]) >= count:
                            return
                await asyncio.sleep(0.2)

    async def partitions(self, topic: str) -> list[dict[str, Any]]:
        """The topic's partitions as the cluster describes them (leader, replicas, isr)."""
        async with self.admin() as admin:
            described = await admin.describe_topics([topic])
        parts: list[dict[str, Any]] = described[0]["partitions"]
        return sorted(parts, key=lambda p: p["partition"])

    async def leader_of(self, topic: str, partition: int = 0) -> int:
        """The node id leading ``topic``'s ``partition`` now (-1 when none)."""
        for part in await self.partitions(topic):
            if part["partition"] == partition:
                leader: int = part["leader"]
                return leader
        raise KeyError(f"{topic} has no partition {partition}")

    async def wait_in_sync(self, topic: str, timeout: float = 120) -> None:
        """Until every partition of ``topic`` has all nodes in its ISR again."""
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(KafkaError, OSError):
                    parts = await self.partitions(topic)
                    if parts and all(len(p["isr"]) == len(self.nodes) for p in parts):
                        return
                await asyncio.sleep(0.25)


@contextlib.contextmanager
def running_cluster(
    root: Path | None = None, size: int = NODES, profile: str = "test"
) -> Iterator[KafkaCluster]:
    """A started cluster under ``root`` (a temporary folder by default), stopped on exit."""
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="telex-kafka-")))
        cluster = KafkaCluster(root, size, profile)
        stack.callback(cluster.stop)
        cluster.start()
        yield cluster


def main(argv: list[str] | None = None) -> int:
    """Run a cluster in the foreground until Ctrl-C; print how to point telex at it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=NODES)
    parser.add_argument("--dir", type=Path, help="keep data and logs here (default: a temp dir)")
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="test",
        help="test: fast start, compaction within seconds; bench: the JVM's full compiler and "
        "Kafka's own segment timings, for benchmarks (default: test)",
    )
    args = parser.parse_args(argv)
    if args.dir is not None:
        if args.dir.exists():
            shutil.rmtree(args.dir)
        args.dir.mkdir(parents=True)
    began = time.monotonic()
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with running_cluster(args.dir, args.nodes, args.profile) as cluster:
        print(
            f"Apache Kafka {kafka_version()}: {len(cluster.nodes)} nodes started in "
            f"{time.monotonic() - began:.1f}s (logs and data in {cluster.root})\n"
            f"  PLAINTEXT  {cluster.bootstrap}\n"
            f"  SCRAM      {cluster.scram_bootstrap}  users: "
            + ", ".join(f"{u}/{p} ({m})" for u, (m, p) in cluster.scram_users.items())
            + f"\n  SSL        {cluster.ssl_bootstrap}  CA: {cluster.tls.ca_file}\n\n"
            f"  .venv/bin/telex run --bootstrap {cluster.bootstrap}\n"
            "  (with TELEX_TOPICS_REPLICATION_FACTOR=3)   Ctrl-C stops the cluster.",
            flush=True,
        )
        while not stop and all(n.running for n in cluster.nodes):
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
