"""Oversized request bodies and frames: refused with a clear answer before anything holds them,
and the process keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import orjson
import websockets

from telex.config import Config
from telex.runtime import started
from tests.conftest import Broker
from tests.integration.gateway_helpers import close_code, recv_type

LIMIT = 64 * 1024


async def chunked(size: int) -> AsyncIterator[bytes]:
    """A JSON object of ``size`` bytes sent without Content-Length (chunked)."""
    yield b'{"description": "'
    for _ in range(size // 8192):
        yield b"x" * 8192
    yield b'"}'


async def test_every_write_endpoint_refuses_oversized_bodies(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(
        broker.bootstrap,
        TELEX_HTTP_MAX_BODY_BYTES=str(LIMIT),
        TELEX_NOTIFIER_ALLOW_NETWORKS="127.0.0.1/32",
    )
    async with (
        started(config, roles=("poller", "notifier", "gateway"), replay=False) as running,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as http,
    ):
        created = await http.post("/v1/sources", json={"id": "s1", "url": "https://example.com/"})
        assert created.status_code == 201, created.text
        hook = await http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"})
        assert hook.status_code == 201, hook.text
        sub = hook.json()["id"]
        writes = [
            ("POST", "/v1/sources"),
            ("PUT", "/v1/sources/s1"),
            ("PATCH", "/v1/sources/s1"),
            ("POST", "/v1/webhooks"),
            ("PATCH", f"/v1/webhooks/{sub}"),
            ("POST", f"/v1/webhooks/{sub}/rotate-secret"),
            ("POST", f"/v1/webhooks/{sub}/replay"),
            ("POST", f"/v1/webhooks/{sub}/pause"),
            ("POST", f"/v1/webhooks/{sub}/test"),
            ("DELETE", f"/v1/webhooks/{sub}"),
        ]
        big = orjson.dumps({"id": "s2", "url": "https://example.com/", "pad": "x" * LIMIT})
        for method, path in writes:
            declared = await http.request(
                method, path, content=big, headers={"content-type": "application/json"}
            )
            assert declared.status_code == 413, (method, path, declared.text)
            assert declared.json()["code"] == "too_large"
            streamed = await http.request(method, path, content=chunked(4 * LIMIT))
            assert streamed.status_code == 413, (method, path, streamed.text)
        # Nothing was changed by the refused requests, and the API still works.
        listed = (await http.get("/v1/sources")).json()
        assert [s["id"] for s in listed["sources"]] == ["s1"]
        assert (await http.get(f"/v1/webhooks/{sub}")).json()["state"] == "active"
        # Just under the limit: an ordinary validation answer, not 413 and never 5xx.
        near = orjson.dumps({"id": "s2", "url": "https://example.com/" + "x" * (LIMIT - 200)})
        answer = await http.post(
            "/v1/sources", content=near, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "url"
        assert (await http.get("/healthz")).status_code == 200

        # WebSocket: a frame over [gateway] max_frame_bytes (text or binary) closes that
        # connection with 1009; another connection is served throughout.
        ws_url = (running.http_url or "").replace("http", "ws", 1) + "/v1/stream?subscribe=none"
        frame_limit = config.gateway.max_frame_bytes
        async with websockets.connect(ws_url) as bystander:
            for frame in ("x" * (frame_limit + 1), b"\x00" * (frame_limit * 4)):
                async with websockets.connect(ws_url, max_size=None) as ws:
                    await ws.send(frame)
                    assert await close_code(ws) == 1009
                await bystander.send('{"op": "ping"}')
                assert (await recv_type(bystander, "pong"))["cursor"]
