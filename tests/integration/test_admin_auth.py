"""The management APIs (/v1/sources, /v1/webhooks) require an admin token when one is set."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from telex.config import Config
from telex.runtime import started
from telex.testing import run_telex
from tests.conftest import Broker

TOKEN = "s3cret-admin-token-0123456789"


async def test_management_apis_refuse_missing_and_wrong_tokens(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    tokens = f"other-token-abcdefghij,{TOKEN}"
    config = config_factory(broker.bootstrap, TELEX_HTTP_ADMIN_TOKENS=tokens)
    async with (
        started(config, roles=("poller", "notifier", "gateway"), replay=False) as running,
        httpx.AsyncClient(base_url=running.http_url or "", timeout=10) as client,
    ):
        for path in ("/v1/sources", "/v1/webhooks"):
            missing = await client.get(path)
            assert missing.status_code == 401
            assert missing.headers["www-authenticate"] == "Bearer"
            wrong = await client.get(path, headers={"Authorization": "Bearer not-the-token"})
            assert wrong.status_code == 401
            assert TOKEN not in wrong.text
            ok = await client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert ok.status_code == 200, ok.text
            by_key = await client.get(path, headers={"X-API-Key": TOKEN})
            assert by_key.status_code == 200
        # Writes are guarded too, and health, metrics and the dashboard stay public.
        created = await client.post("/v1/sources", json={"id": "x", "url": "https://example.com/"})
        assert created.status_code == 401
        for public in ("/healthz", "/metrics", "/"):
            assert (await client.get(public)).status_code == 200

        # The CLI sends the configured token.
        cli = config_factory(broker.bootstrap, TELEX_HTTP_ADMIN_TOKENS=TOKEN)
        code, out, err = await run_telex(
            "webhooks", "--url", running.http_url or "", "list", config=cli
        )
        assert code == 0, err
        assert "webhooks" in out or out.strip().startswith("[")


@pytest.mark.parametrize("value", ["short", "ok-token-but-then,x"])
def test_weak_admin_tokens_are_refused_without_echoing_them(
    config_factory: Callable[..., Config], value: str
) -> None:
    from telex.config import ConfigError

    with pytest.raises(ConfigError) as info:
        config_factory("", TELEX_HTTP_ADMIN_TOKENS=value)
    assert "at least 16 characters" in str(info.value)
    assert value not in str(info.value)
