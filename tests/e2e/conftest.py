"""End-to-end fixtures: telex as separate processes on the session broker, a local newsroom
site the tests can edit, and headless Chromium (Debian's, driven by Playwright).

The gateway runs in its own process on a fixed port so a test can SIGKILL it and start a new
one in its place while the replay source, the poller and the processor keep producing.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from telex.config import Config, load
from telex.kafka.embedded import free_port
from telex.testing import TelexProcess
from tests.conftest import Broker, make_config
from tests.integration.site import Site, serve_site

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGE_DATE = "18 January 2024"
# Sources the tests write to: each test edits its own page, so tests do not depend on order.
DESKS = (
    "desk-order",
    "desk-filter",
    "desk-revise",
    "desk-watch",
    "desk-escape",
    "desk-older",
    "desk-resume",
    "desk-resync",
)

NETWORK_NOTICES = ("WebSocket connection to", "Failed to load resource")
# DOM conditions may take a few poll cycles of the pipeline to come true.
expect.set_options(timeout=20_000)


def live_page(entries: list[tuple[str, str, str]]) -> str:
    """A live page like a publisher's; ``entries`` are (anchor, "HH:MM", text), oldest first."""
    blocks = "".join(
        f'<article class="live-update" id="{anchor}"><span class="t">{time} GMT</span>'
        + "".join(f"<p>{p}</p>" for p in text.split("\n\n"))
        + "</article>"
        for anchor, time, text in reversed(entries)
    )
    return f"<html><body><h1>Live</h1><p>{PAGE_DATE}</p><section>{blocks}</section></body></html>"


@dataclass
class Desk:
    """One live page of the local site, polled as its own source."""

    site: Site
    source_id: str
    entries: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/{self.source_id}"

    def publish(self) -> None:
        self.site.set(self.path, live_page(self.entries))

    def add(self, anchor: str, time: str, text: str) -> None:
        self.entries.append((anchor, time, text))
        self.publish()

    def remove(self, anchor: str) -> None:
        self.entries = [e for e in self.entries if e[0] != anchor]
        self.publish()

    def edit(self, anchor: str, text: str) -> None:
        self.entries = [(a, t, text if a == anchor else x) for a, t, x in self.entries]
        self.publish()


@dataclass
class Stack:
    """The running telex processes and how to reach them."""

    config: Config
    logs: Path
    gateway_port: int
    desks: dict[str, Desk]
    procs: dict[str, TelexProcess] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def spawn(
        self,
        name: str,
        command: list[str],
        ready: str = "/readyz",
        port: int | None = None,
        **env: str,
    ) -> TelexProcess:
        config = load(None, {**self.config.to_environ(), **env})
        log = self.logs / f"{name}.log"
        self.procs[name] = TelexProcess(command, config, log=log, ready=ready, port=port).start()
        return self.procs[name]

    async def kill_gateway(self) -> None:
        """SIGKILL: no drain, no close frame; clients see the connection drop."""
        await self.procs.pop("gateway").kill()

    async def start_gateway(self, **env: str) -> None:
        """A gateway where the last one was (``env``: settings of its own)."""
        gateway = self.spawn("gateway", ["gateway"], port=self.gateway_port, **env)
        await gateway.wait_ready(timeout=30)


@pytest.fixture(scope="module")
async def site() -> AsyncIterator[Site]:
    async for served in serve_site(Site()):
        yield served


@pytest.fixture(scope="module")
async def stack(
    broker: Broker,
    site: Site,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    """replay, poller, processor and gateway as separate processes."""
    config = make_config(broker.bootstrap)
    logs = tmp_path_factory.mktemp("e2e")
    replay_port = free_port()
    desks = {name: Desk(site, name) for name in DESKS}
    for desk in desks.values():
        desk.add("opening", "08:00", f"The {desk.source_id} desk opens its live coverage.")
    replay_url = f"http://127.0.0.1:{replay_port}/live/lavrov-press-conference-2024"
    sources = [{"id": "replay", "url": replay_url}]
    sources += [{"id": d.source_id, "url": site.url(d.path)} for d in desks.values()]
    config = load(
        None,
        {
            **config.to_environ(),
            "TELEX_SOURCES": orjson.dumps(sources).decode(),
            "TELEX_POLLER_ALLOW_NETWORKS": "127.0.0.0/8",
            "TELEX_REPLAY_INTERVAL": "0.2",
            "TELEX_POLLER_INTERVAL": "0.3",
            "TELEX_LOG_FORMAT": "json",
        },
    )
    running = Stack(config, logs, free_port(), desks)
    running.spawn("replay", ["replay", "--port", str(replay_port)], ready="replaying")
    running.spawn("processor", ["processor"])
    running.spawn("poller", ["poller"])
    running.spawn("gateway", ["gateway"], port=running.gateway_port)
    try:
        for proc in running.procs.values():
            await proc.wait_ready(timeout=45)
        yield running
    finally:
        procs = list(running.procs.values())
        codes = await asyncio.gather(*(proc.stop(timeout=15) for proc in procs))
        for proc, code in zip(procs, codes, strict=True):
            assert code == 0, proc.log_text()[-4000:]


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    assert shutil.which(CHROMIUM), (
        "chromium missing: `make test` installs it (scripts/system-deps.sh)"
    )
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@dataclass
class Frames:
    """Every WebSocket frame the page received, by connection URL, in order."""

    by_url: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def events(self) -> list[dict[str, Any]]:
        return [f["event"] for _, f in self.by_url if f.get("type") == "event"]


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[tuple[Page, Frames, list[str]]]:
    """A fresh page, its WebSocket frames and its console errors."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    tab = await context.new_page()
    frames = Frames()
    errors: list[str] = []

    def on_websocket(ws: Any) -> None:
        frames.urls.append(ws.url)
        ws.on(
            "framereceived",
            lambda payload: frames.by_url.append((ws.url, orjson.loads(payload))),
        )

    tab.on("websocket", on_websocket)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: Any) -> None:
        # The browser's own network notices (a refused reconnect, the 404 of /v1/sources on a
        # gateway-only process) are expected; anything else logged as an error is a bug.
        if msg.type == "error" and not any(n in msg.text for n in NETWORK_NOTICES):
            errors.append(msg.text)

    tab.on("console", on_console)
    try:
        yield tab, frames, errors
    finally:
        await context.close()
