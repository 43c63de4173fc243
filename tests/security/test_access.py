"""Every route of the management API (taken from the running app's OpenAPI document, so a new
route is covered the day it is added) refuses requests without the admin token, with a
gateway credential, and with the token in the URL; refused writes change nothing."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import orjson

from telex.config import Config
from telex.runtime import started
from tests.conftest import Broker

ADMIN = "admin-token-0a1b2c3d4e5f6789"
SCREEN_KEY = "screen-key-0a1b2c3d4e5f6789"


async def test_every_management_route_requires_the_admin_token(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(
        broker.bootstrap,
        TELEX_HTTP_ADMIN_TOKENS=ADMIN,
        TELEX_GATEWAY_API_KEYS=orjson.dumps([{"name": "screen", "key": SCREEN_KEY}]).decode(),
        TELEX_NOTIFIER_ALLOW_NETWORKS="127.0.0.1/32",
    )
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with (
        started(config, roles=("poller", "notifier", "gateway"), replay=False) as running,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=20) as http,
    ):
        source = await http.post(
            "/v1/sources", json={"id": "s1", "url": "https://example.com/"}, headers=admin
        )
        assert source.status_code == 201
        hook = await http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/"}, headers=admin)
        assert hook.status_code == 201
        ids = {"source_id": "s1", "sub_id": hook.json()["id"]}

        spec = (await http.get("/openapi.json")).json()
        routes = [
            (method.upper(), path.format(**ids))
            for path, methods in spec["paths"].items()
            if path.startswith(("/v1/sources", "/v1/webhooks"))
            for method in methods
        ]
        assert len(routes) >= 15, routes  # sources: 5, webhooks: 12 today
        body = {"id": "s2", "url": "https://example.com/", "description": "x"}
        for method, path in routes:
            for headers, query in (
                ({}, ""),
                ({"Authorization": f"Basic {ADMIN}"}, ""),
                ({"Authorization": f"Bearer {ADMIN.upper()}"}, ""),
                ({"X-API-Key": SCREEN_KEY}, ""),
                ({"Authorization": f"Bearer {SCREEN_KEY}"}, ""),
                ({}, f"?token={ADMIN}"),
            ):
                kwargs = {"json": body} if method in ("POST", "PUT", "PATCH") else {}
                refused = await http.request(method, path + query, headers=headers, **kwargs)
                assert refused.status_code == 401, (method, path, headers, query)
                assert refused.headers["www-authenticate"] == "Bearer"
                assert ADMIN not in refused.text

        # Nothing changed.
        listed = (await http.get("/v1/sources", headers=admin)).json()["sources"]
        assert [s["id"] for s in listed] == ["s1"]
        webhooks = (await http.get("/v1/webhooks", headers=admin)).json()["webhooks"]
        assert [(w["id"], w["state"]) for w in webhooks] == [(ids["sub_id"], "active")]
        # The token with surrounding spaces is still the token (header values are trimmed).
        trimmed = await http.get("/v1/sources", headers={"Authorization": f"Bearer  {ADMIN}"})
        assert trimmed.status_code == 200
