"""Secrets (webhook signing secrets, admin tokens, API keys, the JWT key and tokens) never
appear in the service logs, at the most verbose level an operator can set, and a webhook
secret is returned by the API exactly once: in the answer that created it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import websockets
from aiokafka import AIOKafkaProducer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from telex import log as telex_log
from telex.config import Config, ConfigError, load
from telex.notifier.signing import new_secret
from telex.runtime import started
from tests.conftest import Broker
from tests.integration.gateway_helpers import recv_type, wait_for
from tests.integration.webhook_receivers import produce, receiving, wire_event

ADMIN = "admin-token-5f0c1e7d9a2b4c6e8f"
KEY = "screen-key-7d2e9c4b1a0f3e5d"
JWT_KEY = "jwt-signing-key-3c9e1f5a7b2d4e6f8091"


@contextlib.contextmanager
def service_logs() -> Iterator[io.StringIO]:
    """Everything logged, as telex formats it (JSON lines) at level debug."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    names = (
        "aiokafka", "uvicorn", "uvicorn.error", "uvicorn.access", "aiohttp", "httpx", "httpcore",
        "websockets",
    )  # fmt: skip
    levels = {n: (logging.getLogger(n).level, logging.getLogger(n).disabled) for n in names}
    telex_log.configure("debug", "json")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(telex_log.JsonFormatter())
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.handlers[:], root.level = saved
        for name, (level, disabled) in levels.items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).disabled = disabled


def _verified(deliveries: list[Any], *secrets: str) -> int:
    """How many (delivery, secret) pairs verify: each delivery counts once per secret."""
    count = 0
    for delivery in deliveries:
        for secret in secrets:
            with contextlib.suppress(WebhookVerificationError):
                count += bool(Webhook(secret).verify(delivery.body, delivery.headers))
    return count


async def until_ready(call: Callable[..., Any], headers: dict[str, str]) -> None:
    """Wait for /readyz. The gateway is ready once a fetch has told it every wire partition's
    end: on an empty wire that fetch is held for the broker's fetch wait."""
    async with asyncio.timeout(30):
        while (await call("GET", "/readyz", headers=headers)).status_code != 200:
            await asyncio.sleep(0.1)


async def test_secrets_are_never_logged_nor_returned_twice(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(
        broker.bootstrap,
        TELEX_HTTP_ADMIN_TOKENS=ADMIN,
        TELEX_GATEWAY_API_KEYS=orjson.dumps([{"name": "screen", "key": KEY}]).decode(),
        TELEX_GATEWAY_JWT_SECRET=JWT_KEY,
        TELEX_GATEWAY_ANONYMOUS="false",
        TELEX_NOTIFIER_ALLOW_NETWORKS="127.0.0.1/32",
    )
    token = jwt.encode({"sub": "wall", "exp": int(time.time()) + 60}, JWT_KEY)
    forged = jwt.encode({"sub": "wall", "exp": int(time.time()) + 60}, "x" * 40)
    own_secret, stored_secret = new_secret(), new_secret()
    bad_secret = "whsec_" + "QUJD" * 4  # 12 bytes: too short, refused
    answers: list[tuple[str, str]] = []  # (what, response text)
    admin = {"Authorization": f"Bearer {ADMIN}"}

    with service_logs() as logs:
        async with (
            receiving() as receiver,
            started(config, roles=("poller", "notifier", "gateway"), replay=False) as running,
            httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as http,
        ):

            async def call(method: str, path: str, **kwargs: Any) -> httpx.Response:
                response = await http.request(method, path, **kwargs)
                answers.append((f"{method} {path}", response.text))
                return response

            # Management API: wrong realm, a near miss, and a token in the URL are refused.
            for headers, query in (
                ({"Authorization": f"Bearer {ADMIN[:-1]}"}, ""),
                ({"X-API-Key": KEY}, ""),
                ({}, f"?token={ADMIN}"),
            ):
                refused = await call("GET", f"/v1/webhooks{query}", headers=headers)
                assert refused.status_code == 401
            created = await call(
                "POST", "/v1/webhooks", json={"url": receiver.url, "filter": {}}, headers=admin
            )
            assert created.status_code == 201
            sub = created.json()
            first_secret = sub["secret"]
            mine = await call(
                "POST", "/v1/webhooks", json={"url": receiver.url, "secret": own_secret},
                headers=admin,
            )  # fmt: skip
            assert mine.status_code == 201 and mine.json()["secret"] == own_secret
            bad = await call(
                "POST", "/v1/webhooks", json={"url": receiver.url, "secret": bad_secret},
                headers=admin,
            )  # fmt: skip
            assert bad.status_code == 422 and bad.json()["error"]["field"] == "secret"
            patched = await call(
                "PATCH", f"/v1/webhooks/{sub['id']}", json={"secret": new_secret()}, headers=admin
            )
            assert patched.status_code == 422

            # A delivery, signed with the secret; a rotation; a test event with both.
            await produce(broker.bootstrap, config.topics.wire, wire_event("src", "Signed."))
            deliveries = await receiver.wait_for(2)  # one per subscription
            assert _verified(deliveries, first_secret, own_secret) == 2
            rotated = await call(
                "POST", f"/v1/webhooks/{sub['id']}/rotate-secret", json={}, headers=admin
            )
            second_secret = rotated.json()["secret"]
            assert second_secret not in (first_secret, own_secret)
            tested = await call("POST", f"/v1/webhooks/{sub['id']}/test", headers=admin)
            assert tested.json()["outcome"] == "success"
            await until_ready(call, admin)
            for method, path in (
                ("GET", "/v1/webhooks"),
                ("GET", f"/v1/webhooks/{sub['id']}"),
                ("GET", f"/v1/webhooks/{mine.json()['id']}"),
                ("PATCH", f"/v1/webhooks/{sub['id']}"),
                ("POST", f"/v1/webhooks/{sub['id']}/pause"),
                ("POST", f"/v1/webhooks/{sub['id']}/resume"),
                ("GET", f"/v1/webhooks/{sub['id']}/attempts"),
                ("GET", f"/v1/webhooks/{sub['id']}/dead-letters"),
                ("GET", "/v1/sources"),
                ("GET", "/metrics"),
                ("GET", "/readyz"),
                ("GET", "/openapi.json"),
            ):
                body = {"description": "desk"} if method == "PATCH" else None
                answer = await call(method, path, json=body, headers=admin)
                assert answer.status_code == 200, (path, answer.text)

            # A subscription record on the topic that does not validate is reported without
            # its contents (it carries a secret).
            bad_record = {"id": "wh_broken", "secrets": [{"secret": stored_secret}]}
            kafka = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
            await kafka.start()
            try:
                await kafka.send_and_wait(
                    config.notifier.topic_webhooks, orjson.dumps(bad_record), key=b"wh_broken"
                )
            finally:
                await kafka.stop()
            await wait_for(lambda: "notifier.subscriptions.bad_record" in logs.getvalue())

            # The gateway: a key and a token that work, a forged and a wrong one that do not.
            ws_url = (running.http_url or "").replace("http", "ws", 1) + "/v1/stream?backlog=0"
            for url, headers in (
                (f"{ws_url}&token={token}", {}),
                (ws_url, {"X-API-Key": KEY}),
                (ws_url, {"Authorization": f"Bearer {token}"}),
            ):
                async with websockets.connect(url, additional_headers=headers) as ws:
                    await ws.send('{"op": "ping"}')
                    await recv_type(ws, "pong")
            for query in (f"token={forged}", f"token={KEY[:-1]}", f"token={ADMIN}"):
                assert (await call("GET", f"/v1/updates?{query}")).status_code == 401

    # Each webhook secret was returned once, by the call that made it, and never again.
    for secret, where in (
        (first_secret, "POST /v1/webhooks"),
        (own_secret, "POST /v1/webhooks"),
        (second_secret, f"POST /v1/webhooks/{sub['id']}/rotate-secret"),
    ):
        shown = [what for what, text in answers if secret in text]
        assert shown == [where], (where, shown)
    assert not any("whsec_" in text for what, text in answers if "secret" not in text), answers
    for what, text in answers:
        for secret in (ADMIN, KEY, JWT_KEY, token, bad_secret, stored_secret):
            assert secret not in text, (what, secret)
    # And none of them, nor the tokens, is in the logs.
    text = logs.getvalue()
    assert "notifier.subscriptions.bad_record" in text and "secrets.0.created_ms" in text
    assert '"level":"debug"' in text  # the capture saw the most verbose level
    for secret in (
        ADMIN, KEY, JWT_KEY, first_secret, second_secret, own_secret, bad_secret, stored_secret,
    ):  # fmt: skip
        # Not even a part: pydantic, for one, shows the end of a long value it cuts.
        for start in range(len(secret) - 12):
            assert secret[start : start + 12] not in text, secret
    for signed in (token, forged):
        assert signed.rsplit(".", 1)[1] not in text


async def test_credentials_in_urls_are_refused_without_echoing_them(
    broker: Broker, config_factory: Callable[..., Config], tmp_path: Path
) -> None:
    """A source URL reaches every subscriber (``source_url`` of each update) and every API
    answer, so credentials in it are refused, by the API and in the config file, and the
    refusal does not repeat them."""
    password = "feed-password-9f8e7d6c"
    url = f"https://editor:{password}@feeds.example.com/live.xml"
    config_file = tmp_path / "telex.toml"
    await asyncio.to_thread(
        config_file.write_text,
        f'[[sources]]\nid = "paywalled"\nurl = "{url}"\n\n'
        f'[[notifier.webhooks]]\nname = "desk"\nurl = "{url}"\nsecret = "{new_secret()}"\n',
    )
    with pytest.raises(ConfigError) as refused:
        load(config_file, {})
    assert "sources.0.url" in str(refused.value) and "credentials" in str(refused.value)
    assert "notifier.webhooks.0.url" in str(refused.value)
    assert password not in str(refused.value)

    config = config_factory(broker.bootstrap)
    async with (
        started(config, roles=("poller", "notifier"), replay=False) as running,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as http,
    ):
        created = await http.post("/v1/sources", json={"id": "paywalled", "url": url})
        assert created.status_code == 422
        assert created.json()["errors"][0]["field"] == "url"
        replaced = await http.put("/v1/sources/paywalled", json={"url": url})
        assert replaced.status_code == 422
        hook = await http.post("/v1/webhooks", json={"url": url})
        assert hook.status_code == 422 and hook.json()["error"]["field"] == "url"
        for answer in (created, replaced, hook):
            assert password not in answer.text
        assert (await http.get("/v1/sources")).json()["sources"] == []
