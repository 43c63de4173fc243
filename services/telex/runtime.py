"""Start the parts of telex a process runs, in order, and stop them in reverse.

``telex run`` runs every role in one process; ``telex poller|processor|gateway`` run one role
each. Either way the process gets the same HTTP surface (health, readiness, metrics) and the
same shutdown: SIGINT/SIGTERM set a stop event, and everything started is stopped in reverse
order and awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import APIRouter

from telex.config import Config, SourceConfig
from telex.eventloop import loop_name
from telex.heap import settle
from telex.http import Component, create_app, server, warn_if_open
from telex.kafka import Clients, ensure_topics, required_topics
from telex.kafka.embedded import EmbeddedBroker
from telex.log import get_logger
from telex.looplag import LoopLagMonitor

# Each role's modules are imported when the role is started: a process running one role does
# not pay for the others' imports, a good part of a restarted process's start-up.
if TYPE_CHECKING:
    from telex.gateway.service import Gateway

log = get_logger(__name__)

ROLES = ("poller", "processor", "gateway", "notifier")
REPLAY_SOURCE_ID = "replay"


@dataclass
class Running:
    """What a started process exposes, for the banner and for tests."""

    bootstrap: str
    http_url: str | None = None
    replay_url: str | None = None
    components: dict[str, Component] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def serve_http(
    app: object, host: str, port: int, websocket: type[asyncio.Protocol] | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` until the context exits; yields the base URL.

    WebSocket upgrades go to ``websocket`` (the gateway's endpoint); without one they are
    answered 404.
    """
    if websocket is None:
        from telex.gateway.endpoint import Endpoints, Limits

        websocket = Endpoints(None, Limits()).protocol_class()
    srv = server(app, host, port, websocket)
    task = asyncio.create_task(srv.serve(), name=f"http:{port}")
    try:
        while not srv.started:
            if task.done():
                task.result()  # raises the bind error, for instance.
                raise RuntimeError(f"HTTP server on {host}:{port} stopped at start-up")
            await asyncio.sleep(0.02)
        bound = srv.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        srv.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _lifecycle(
    stack: contextlib.AsyncExitStack,
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
) -> None:
    stack.push_async_callback(stop)
    await start()


@contextlib.asynccontextmanager
async def started(
    config: Config, roles: tuple[str, ...] = ROLES, replay: bool = True
) -> AsyncIterator[Running]:
    """Start the broker (if embedded), topics, the replay source and ``roles``."""
    async with contextlib.AsyncExitStack() as stack:
        lag = LoopLagMonitor()
        await _lifecycle(stack, lag.start, lag.stop)
        if config.kafka.embedded:
            broker = EmbeddedBroker()
            await _lifecycle(
                stack,
                lambda: broker.start(config.kafka.embedded_start_timeout_s),
                broker.stop,
            )
            bootstrap = broker.bootstrap
            log.info(
                "kafka.embedded",
                bootstrap=bootstrap,
                note="in-memory broker; set TELEX_KAFKA_BOOTSTRAP for a real cluster",
            )
        else:
            bootstrap = config.kafka.bootstrap
        clients = await Clients.connect(config, bootstrap)
        specs = required_topics(config.topics)
        if "notifier" in roles:
            from telex.notifier.service import notifier_topics

            specs += notifier_topics(config)
        await ensure_topics(clients, specs)
        await clients.probe_time_index(config.topics.wire)
        running = Running(bootstrap=bootstrap)
        sources = list(config.sources)
        allow_origins: tuple[str, ...] = ()

        if replay and config.replay.enabled and "poller" in roles:
            from telex.replay.server import PAGE_PATH
            from telex.replay.server import create_app as create_replay_app

            replay_app = create_replay_app(config.replay.interval)
            base = await stack.enter_async_context(
                serve_http(replay_app, config.replay.host, config.replay.port)
            )
            running.replay_url = base + PAGE_PATH
            sources.append(SourceConfig(id=REPLAY_SOURCE_ID, url=running.replay_url))
            # The poller refuses loopback targets by default (SSRF); our own replay is fine.
            allow_origins = (base.removeprefix("http://"),)
            log.info("replay.started", url=running.replay_url, interval=config.replay.interval)

        routers: list[APIRouter] = []
        admin_routers: list[APIRouter] = []
        gateway: Gateway | None = None
        if "processor" in roles:
            from telex.processor.service import Processor

            processor = Processor(config, clients)
            await _lifecycle(stack, processor.start, processor.stop)
            running.components["processor"] = processor
        if "poller" in roles:
            from telex.poller.api import create_router as sources_router
            from telex.poller.service import Poller

            poller = Poller(config, clients, sources, allow_origins)
            await _lifecycle(stack, poller.start, poller.stop)
            running.components["poller"] = poller
            admin_routers.append(sources_router(poller.catalog, poller))
        if "gateway" in roles:
            from telex.gateway.service import Gateway

            gateway = Gateway(config, clients)
            await _lifecycle(stack, gateway.start, gateway.stop)
            running.components["gateway"] = gateway
            routers.append(gateway.router)
        if "notifier" in roles:
            from telex.notifier.api import WebhooksApi
            from telex.notifier.service import Notifier

            notifier = Notifier(config, clients)
            await _lifecycle(stack, notifier.start, notifier.stop)
            running.components["notifier"] = notifier
            admin_routers.append(WebhooksApi(notifier).router())

        # Armed only on a broker that may lose its data; started once the services have
        # registered how they start over, stopped before them.
        await _lifecycle(
            stack,
            lambda: clients.reset.start(
                specs, f"{config.topics.wire}.guard", config.kafka.topic_check_interval_s
            ),
            clients.reset.stop,
        )

        app = create_app(
            running.components,
            routers,
            dashboard="gateway" in roles,
            admin_routers=admin_routers,
            admin_tokens=config.http.admin_tokens,
            max_body_bytes=config.http.max_body_bytes,
        )
        if admin_routers:
            warn_if_open(config.http.host, config.http.admin_tokens, log)
        endpoint = gateway.endpoints.protocol_class() if gateway is not None else None
        running.http_url = await stack.enter_async_context(
            serve_http(app, config.http.host, config.http.port, endpoint)
        )
        if gateway is not None:
            # Runs before the HTTP server stops: clients are told to reconnect in paced batches
            # rather than all cut at once.
            stack.push_async_callback(gateway.drain)
        yield running
        log.info("telex.stopping")


def install_stop_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


async def serve_until_stopped(config: Config, roles: tuple[str, ...], replay: bool = True) -> None:
    """Run ``roles`` until SIGINT or SIGTERM, printing where to look."""
    stop = asyncio.Event()
    install_stop_handlers(stop)
    async with started(config, roles, replay) as running:
        url = running.http_url
        lines = [f"telex is running ({', '.join(roles)}) on Kafka {running.bootstrap}"]
        if "gateway" in roles:
            lines.append(f"  dashboard   {url}/")
            lines.append(f"  live stream {url.replace('http', 'ws', 1) if url else ''}/v1/stream")
        if "notifier" in roles:
            lines.append(f"  webhooks    {url}/v1/webhooks")
        lines.append(f"  metrics     {url}/metrics")
        if running.replay_url:
            lines.append(f"  replaying   {running.replay_url}")
        lines.append("Press Ctrl-C to stop.")
        print("\n".join(lines), file=sys.stdout, flush=True)
        # Here, not in started(): this process is telex's own. A test or an application that
        # embeds telex would have everything alive at that moment kept from the collector.
        settle()
        log.info("telex.started", http=url, roles=",".join(roles), loop=loop_name())
        await stop.wait()
    log.info("telex.stopped")
