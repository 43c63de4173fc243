"""Sources and webhook receivers served over https on loopback, with certificates from a test
certificate authority (made here with trustme): the right certificate is accepted once the CA
is configured (``[outbound] ca_file``), a wrong name or an unknown authority is refused with a
clear error per source and per webhook (log line, metric, status in the API), and the host
name is sent as SNI (seen by the server)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from standardwebhooks.webhooks import Webhook

from telex.config import Config
from telex.runtime import started
from tests.conftest import Broker, sample

from .test_notifier import notifier_env
from .webhook_receivers import produce, wire_event

LOOPBACK = "127.0.0.0/8,::1/128"  # "localhost" may resolve to either
FEED = b"""<?xml version="1.0"?>
<rss version="2.0"><channel><title>Secure live</title><link>https://localhost/</link>
<item><guid>tls-1</guid><title>First</title><description>Over TLS, verified.</description>
<pubDate>Thu, 18 Jan 2024 10:46:00 GMT</pubDate></item>
<item><guid>tls-2</guid><title>Second</title><description>Still verified.</description>
<pubDate>Thu, 18 Jan 2024 10:50:00 GMT</pubDate></item>
</channel></rss>"""


@dataclass
class TlsServer:
    """An HTTPS/1.1 server on 127.0.0.1 that records the SNI of every handshake and every
    request it could read, and answers each with ``body``."""

    body: bytes
    content_type: str
    port: int = 0
    sni: list[str | None] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"https://localhost:{self.port}{path}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")[1:]
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((headers, body))
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: "
                + self.content_type.encode()
                + b"\r\ncontent-length: "
                + str(len(self.body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + self.body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass  # the client refused our certificate and hung up
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(
    cert: trustme.LeafCert, body: bytes = b"", content_type: str = "text/plain"
) -> AsyncIterator[TlsServer]:
    server = TlsServer(body, content_type)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)

    def on_sni(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        server.sni.append(name)

    context.sni_callback = on_sni
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=context)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


@dataclass
class Pki:
    ca_file: Path
    good: trustme.LeafCert  # for "localhost", by the configured CA
    wrong_name: trustme.LeafCert  # by the configured CA, for another name
    unknown_ca: trustme.LeafCert  # for "localhost", by a CA telex does not know


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, stranger = trustme.CA(), trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return Pki(
        ca_file,
        ca.issue_cert("localhost"),
        ca.issue_cert("elsewhere.test"),
        stranger.issue_cert("localhost"),
    )


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields of one of telex's log lines."""
    found: dict[str, Any] = record.__dict__["fields"]
    return found


async def test_https_sources_are_verified_and_get_sni(
    broker: Broker,
    config_factory: Callable[..., Config],
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = config_factory(
        broker.bootstrap,
        TELEX_POLLER_ALLOW_NETWORKS=LOOPBACK,
        TELEX_OUTBOUND_CA_FILE=str(pki.ca_file),
    )
    assert config.outbound.ca_file == str(pki.ca_file)
    refused_before = sample("telex_poller_errors_total", reason="tls")
    caplog.set_level(logging.WARNING, logger="telex.poller.service")
    async with (
        serving(pki.good, FEED, "application/rss+xml") as good,
        serving(pki.wrong_name, FEED, "application/rss+xml") as wrong,
        serving(pki.unknown_ca, FEED, "application/rss+xml") as unknown,
        started(config, roles=("poller",), replay=False) as running,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as http,
    ):
        for name, server in (("good", good), ("wrong", wrong), ("unknown", unknown)):
            created = await http.post(
                "/v1/sources", json={"id": name, "url": server.url("/feed.xml")}
            )
            assert created.status_code == 201, created.text

        async def statuses() -> dict[str, Any]:
            listed = (await http.get("/v1/sources")).json()["sources"]
            return {s["id"]: s["status"] for s in listed}

        async with asyncio.timeout(60):
            while True:
                seen = await statuses()
                if all(s and s["polls"] >= 2 for s in seen.values()) and len(seen) == 3:
                    break
                await asyncio.sleep(0.2)

    assert seen["good"]["last_error"] is None and seen["good"]["updates_produced"] == 2
    assert len(good.requests) >= 2
    wrong_status, unknown_status = seen["wrong"], seen["unknown"]
    assert wrong_status["last_error_reason"] == unknown_status["last_error_reason"] == "tls"
    assert wrong_status["updates_produced"] == unknown_status["updates_produced"] == 0
    assert "localhost" in wrong_status["last_error"]
    assert "Hostname mismatch" in wrong_status["last_error"], wrong_status
    assert "localhost" in unknown_status["last_error"]
    assert "local issuer certificate" in unknown_status["last_error"], unknown_status
    # Refused before a byte of HTTP: the servers never read a request.
    assert wrong.requests == [] and unknown.requests == []
    # SNI names the host on every handshake, accepted or refused.
    for server in (good, wrong, unknown):
        assert server.sni and set(server.sni) == {"localhost"}, server.sni
    assert sample("telex_poller_errors_total", reason="tls") - refused_before >= 4
    logged = {
        fields(r)["source"]
        for r in caplog.records
        if r.getMessage() == "poll.failed" and fields(r)["reason"] == "tls"
    }
    assert logged == {"wrong", "unknown"}


async def test_https_webhooks_are_verified_and_get_sni(
    broker: Broker,
    config_factory: Callable[..., Config],
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    config = config_factory(
        broker.bootstrap,
        **notifier_env(
            TELEX_NOTIFIER_ALLOW_NETWORKS=LOOPBACK,
            TELEX_OUTBOUND_CA_FILE=str(pki.ca_file),
        ),
    )
    refused_before = sample("telex_notifier_attempts_total", outcome="tls_error")
    caplog.set_level(logging.WARNING, logger="telex.notifier.handoff")
    src = "src-" + uuid.uuid4().hex[:8]
    async with (
        serving(pki.good) as good,
        serving(pki.wrong_name) as wrong,
        serving(pki.unknown_ca) as unknown,
        started(config, roles=("notifier",), replay=False) as running,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=30) as http,
    ):
        subs: dict[str, dict[str, Any]] = {}
        for name, server in (("good", good), ("wrong", wrong), ("unknown", unknown)):
            created = await http.post(
                "/v1/webhooks",
                json={"url": server.url("/hook"), "filter": {"sources": [src]}},
            )
            assert created.status_code == 201, created.text
            subs[name] = created.json()

        tested = {
            name: (await http.post(f"/v1/webhooks/{sub['id']}/test")).json()
            for name, sub in subs.items()
        }
        assert tested["good"]["outcome"] == "success" and tested["good"]["status"] == 200
        for name, expected in (("wrong", "Hostname mismatch"), ("unknown", "local issuer")):
            assert tested[name]["outcome"] == "tls_error", tested[name]
            assert tested[name]["status"] is None
            assert "localhost" in tested[name]["error"] and expected in tested[name]["error"]

        # A real delivery: the receiver gets it signed; the others fail it on every attempt
        # and say so in their health.
        event = wire_event(src, "Delivered over verified TLS.")
        await produce(running.bootstrap, config.topics.wire, event)

        async def health(name: str) -> dict[str, Any]:
            got = (await http.get(f"/v1/webhooks/{subs[name]['id']}")).json()
            found: dict[str, Any] = got["health"] or {}  # none before a real attempt
            return found

        async with asyncio.timeout(60):
            while not (
                len(good.requests) >= 2
                and (await health("wrong")).get("consecutive_failures", 0) >= 1
                and (await health("unknown")).get("consecutive_failures", 0) >= 1
            ):
                await asyncio.sleep(0.1)
        for name, expected in (("wrong", "Hostname mismatch"), ("unknown", "local issuer")):
            state = await health(name)
            assert state["last_outcome"] == "tls_error", state
            assert "localhost" in state["last_error"] and expected in state["last_error"]
            assert state["last_success_ms"] is None
        assert (await health("good"))["last_outcome"] == "success"

    headers, body = good.requests[-1]
    assert Webhook(subs["good"]["secret"]).verify(body, headers)["id"] == event["id"]
    assert headers["host"] == f"localhost:{good.port}"
    assert wrong.requests == [] and unknown.requests == []
    for server in (good, wrong, unknown):
        assert server.sni and set(server.sni) == {"localhost"}, server.sni
    assert sample("telex_notifier_attempts_total", outcome="tls_error") - refused_before >= 4
    logged = {
        fields(r)["subscription"]
        for r in caplog.records
        if r.getMessage() == "notifier.tls_refused"
    }
    assert logged == {subs["wrong"]["id"], subs["unknown"]["id"]}
