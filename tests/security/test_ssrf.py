"""Server-side request forgery: sources (the poller) and webhook endpoints (the notifier) never
reach a private address, however it is spelled, whatever a DNS name resolves to, and wherever a
redirect points. Checked against the running services; a TCP listener on the targets counts
every connection that gets through (there must be none)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from telex.config import Config
from telex.runtime import serve_http, started
from tests.conftest import Broker

# Names a test resolver answers (patched into socket.getaddrinfo, which asyncio's resolver
# calls): an internal name, and a name with a public and a private address.
FAKE_DNS = {
    "newsroom-cms.internal.test": ["127.0.0.1"],
    "mixed.internal.test": ["93.184.215.14", "10.1.2.3"],
    "second-loopback.internal.test": ["127.0.0.2"],
}


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name in FAKE_DNS:
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, int(port or 0)))
                for address in FAKE_DNS[name]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class Listener:
    """A TCP server that counts connections and answers nothing useful."""

    def __init__(self) -> None:
        self.hits = 0
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def listening(host: str) -> AsyncIterator[Listener]:
    listener = Listener()
    server = await asyncio.start_server(listener._serve, host, 0)
    listener.port = server.sockets[0].getsockname()[1]
    try:
        yield listener
    finally:
        server.close()
        await server.wait_closed()


def hostile_urls(port: int) -> list[str]:
    """Ways to write an address that is not public, each aimed at ``port`` on loopback where
    the address can reach this machine at all."""
    hosts = [
        "2130706433",  # 127.0.0.1 in decimal
        "0177.0.0.1",  # octal
        "0x7f000001",  # hex
        "0x7f.1",  # hex, short form
        "127.1",  # short form
        "0.0.0.0",  # "this host": connects to loopback on Linux
        "[::]",
        "[::1]",
        "[::ffff:7f00:1]",  # IPv4-mapped, hex
        "[::ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",  # NAT64 of 127.0.0.1
        "[fe80::1]",
        "[fc00::1]",
        "169.254.169.254",  # cloud metadata
        "10.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "100.64.0.1",  # carrier-grade NAT
        "198.18.0.1",  # benchmarking
        "224.0.0.1",  # multicast
        "localhost",
        "LocalHost",
        "newsroom-cms.internal.test",
        "mixed.internal.test",
    ]
    return [f"http://{host}:{port}/x" for host in hosts]


async def test_webhook_endpoints_refuse_every_spelling_of_a_private_address(
    broker: Broker, config_factory: Callable[..., Config], fake_dns: None
) -> None:
    config = config_factory(broker.bootstrap)
    assert config.notifier.allow_networks == ()
    async with (
        listening("127.0.0.1") as target,
        started(config, roles=("notifier",), replay=False) as running,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as http,
    ):
        # A public address literal (nothing to resolve), later re-pointed: refused the same way.
        public = await http.post("/v1/webhooks", json={"url": "https://93.184.215.14/hook"})
        assert public.status_code == 201, public.text
        sub = public.json()["id"]
        for url in hostile_urls(target.port):
            for response in (
                await http.post("/v1/webhooks", json={"url": url}),
                await http.patch(f"/v1/webhooks/{sub}", json={"url": url}),
            ):
                assert response.status_code == 422, (url, response.text)
                assert response.json()["error"]["field"] == "url", url
                assert "allow_networks" in response.json()["error"]["message"], url
        # Credentials in the URL and other schemes are refused too.
        for url in (
            f"http://user:pw@93.184.215.14:{target.port}/x",
            "file:///etc/passwd",
            f"gopher://127.0.0.1:{target.port}/",
        ):
            response = await http.post("/v1/webhooks", json={"url": url})
            assert response.status_code == 422 and response.json()["error"]["field"] == "url"
        listed = (await http.get("/v1/webhooks")).json()["webhooks"]
        assert [(w["id"], w["url"]) for w in listed] == [(sub, "https://93.184.215.14/hook")]
        assert target.hits == 0


async def test_sources_at_private_addresses_are_never_fetched(
    broker: Broker, config_factory: Callable[..., Config], fake_dns: None
) -> None:
    config = config_factory(broker.bootstrap)
    assert not config.poller.allow_private and config.poller.allow_networks == ()
    async with (
        listening("127.0.0.1") as target,
        started(config, roles=("poller",), replay=False) as running,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as http,
    ):
        urls = hostile_urls(target.port)
        for n, url in enumerate(urls):
            created = await http.post("/v1/sources", json={"id": f"s{n}", "url": url})
            assert created.status_code == 201, (url, created.text)

        async def statuses() -> dict[str, Any]:
            listed = (await http.get("/v1/sources")).json()["sources"]
            return {s["url"]: s["status"] for s in listed}

        async with asyncio.timeout(30):
            while True:
                seen = await statuses()
                if all(s and s["polls"] >= 2 for s in seen.values()):
                    break
                await asyncio.sleep(0.2)
        for url, status in seen.items():
            assert status["last_error_reason"] == "refused_address", (url, status)
            assert status["updates_produced"] == 0
        assert target.hits == 0


async def test_redirects_to_private_addresses_are_not_followed(
    broker: Broker, config_factory: Callable[..., Config], fake_dns: None
) -> None:
    """The first hop is allowed (127.0.0.1/32 is, for this test); every redirect target is
    another loopback address in some spelling, and none is reached."""
    config = config_factory(
        broker.bootstrap,
        TELEX_POLLER_ALLOW_NETWORKS="127.0.0.1/32",
        TELEX_NOTIFIER_ALLOW_NETWORKS="127.0.0.1/32",
    )
    async with (
        listening("127.0.0.2") as second,
        listening("::1") as six,
        listening("127.0.0.1") as first,
    ):
        targets = [
            f"http://127.0.0.2:{second.port}/",
            f"http://2130706434:{second.port}/",  # 127.0.0.2 in decimal
            f"http://0x7f.0.0.2:{second.port}/",
            f"http://second-loopback.internal.test:{second.port}/",
            f"http://[::1]:{six.port}/",
            f"http://[::ffff:127.0.0.2]:{second.port}/",
            f"http://0.0.0.0:{first.port}/",
        ]

        async def redirector(scope: Any, receive: Any, send: Any) -> None:
            # /hop/<n> -> /to/<n> (a relative hop first), /to/<n> -> targets[n]
            path = scope["path"]
            n = int(path.rsplit("/", 1)[1])
            location = f"/to/{n}" if path.startswith("/hop/") else targets[n]
            await send(
                {
                    "type": "http.response.start",
                    "status": 302 if n % 2 else 307,
                    "headers": [(b"location", location.encode())],
                }
            )
            await send({"type": "http.response.body", "body": b""})

        async with (
            serve_http(redirector, "127.0.0.1", 0) as base,
            started(config, roles=("poller", "notifier"), replay=False) as running,
            httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as http,
        ):
            for n in range(len(targets)):
                created = await http.post(
                    "/v1/sources", json={"id": f"r{n}", "url": f"{base}/hop/{n}"}
                )
                assert created.status_code == 201
                hook = await http.post("/v1/webhooks", json={"url": f"{base}/hop/{n}"})
                assert hook.status_code == 201, hook.text
                tested = (await http.post(f"/v1/webhooks/{hook.json()['id']}/test")).json()
                assert tested["outcome"] == "refused", (targets[n], tested)
                assert "redirect" in tested["error"], tested

            async def polled() -> bool:
                listed = (await http.get("/v1/sources")).json()["sources"]
                return all(s["status"] and s["status"]["polls"] >= 2 for s in listed)

            async with asyncio.timeout(30):
                while not await polled():
                    await asyncio.sleep(0.2)
            for source in (await http.get("/v1/sources")).json()["sources"]:
                status = source["status"]
                assert status["last_error_reason"] == "refused_address", (source, status)
        assert second.hits == six.hits == first.hits == 0
