"""Notifier parts that need no broker: signing, SSRF rules, schedule, offsets, config."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import ssl
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import ClientTimeout
from aiokafka import TopicPartition
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from telex.config import ConfigError, load
from telex.config_checks import CONFIG_CHECKS
from telex.kafka.commits import AckTracker
from telex.notifier.delivery import headers_for
from telex.notifier.schedule import next_delay
from telex.notifier.signing import SecretError, new_secret, secret_key, sign, webhook_id
from telex.outbound import retry_after_seconds as parse_retry_after
from telex.ssrf import (
    AddressPolicy,
    Resolver,
    TargetRefused,
    blocked_reason,
    check_url_syntax,
    guarded_session,
)


def test_signature_verifies_with_the_reference_library() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_") and len(secret_key(secret)) == 32
    body = b'{"id":"e_1","type":"telex.update.created"}'
    headers = headers_for([secret], "msg_abc", body)
    assert Webhook(secret).verify(body, headers) == {"id": "e_1", "type": "telex.update.created"}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, headers)
    stale = headers_for([secret], "msg_abc", body, timestamp=int(time.time()) - 3600)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, stale)


def test_rotation_signs_with_every_live_secret() -> None:
    old, new = new_secret(), new_secret()
    value = sign([new, old], "msg_x", 1_700_000_000, b"{}")
    assert len(value.split(" ")) == 2 and all(v.startswith("v1,") for v in value.split(" "))
    headers = headers_for([new, old], "msg_x", b"{}")
    for secret in (old, new):
        assert Webhook(secret).verify(b"{}", headers) == {}


def test_webhook_id_is_stable_per_event_and_subscription() -> None:
    assert webhook_id("e_1", "wh_a") == webhook_id("e_1", "wh_a")
    assert webhook_id("e_1", "wh_a") != webhook_id("e_1", "wh_b")
    assert webhook_id("e_1", "wh_a") != webhook_id("e_2", "wh_a")


@pytest.mark.parametrize("bad", ["nope", "whsec_!!!", "whsec_" + "QUJD", "whsec_" + "A" * 200])
def test_bad_secrets_are_refused(bad: str) -> None:
    with pytest.raises(SecretError):
        secret_key(bad)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("100.64.0.1", "private (NAT)"),
        ("64:ff9b::a00:1", "private (NAT)"),
        ("::ffff:10.0.0.1", "private"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("8.8.8.8", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_classification(address: str, reason: str | None) -> None:
    assert blocked_reason(ipaddress.ip_address(address)) == reason


def test_allowed_networks_are_exact() -> None:
    policy = AddressPolicy(["127.0.0.1/32", "10.0.0.0/8"])
    policy.check_address(ipaddress.ip_address("127.0.0.1"))
    policy.check_address(ipaddress.ip_address("10.9.9.9"))
    with pytest.raises(TargetRefused, match=r"127\.0\.0\.2, a loopback"):
        policy.check_address(ipaddress.ip_address("127.0.0.2"))


@pytest.mark.parametrize(
    "url", ["ftp://example.org/", "http:///nohost", "http://user:pw@example.org/", "nonsense"]
)
def test_url_syntax_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_url_syntax(url)


async def test_names_are_checked_after_resolution() -> None:
    with pytest.raises(TargetRefused, match="loopback"):
        await AddressPolicy().check_url("http://localhost:8080/hook")
    await AddressPolicy(["127.0.0.0/8", "::1/128"]).check_url("http://localhost:8080/hook")
    with pytest.raises(TargetRefused, match="does not resolve"):
        await AddressPolicy().check_url("http://no-such-host.invalid/")


def test_retry_after_parsing() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_schedule_jitter_and_retry_after_bounds() -> None:
    settings = load(
        None,
        {
            "TELEX_NOTIFIER_RETRY_SCHEDULE": "5,300",
            "TELEX_NOTIFIER_RETRY_JITTER": "0.2",
            "TELEX_NOTIFIER_RETRY_AFTER_MAX": "600",
        },
    ).notifier
    rng = random.Random(1)
    delays = [next_delay(settings, 0, None, rng) for _ in range(200)]
    assert all(d is not None and 4.0 <= d <= 6.0 for d in delays)
    assert len({round(d or 0, 3) for d in delays}) > 100  # really jittered
    # Retry-After lengthens the wait up to the bound, never shortens it below the schedule.
    assert next_delay(settings, 0, 60, rng) == 60
    assert next_delay(settings, 0, 99_999, rng) == 600
    assert (next_delay(settings, 1, 1, rng) or 0) >= 240
    assert next_delay(settings, 2, None, rng) is None


def test_default_schedule_is_alert_shaped() -> None:
    settings = load(None, {}).notifier
    assert settings.retry_schedule == (5.0, 300.0, 1800.0, 7200.0)
    assert settings.allow_networks == ()


def test_bad_notifier_config_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"notifier\.allow_networks"):
        load(None, {"TELEX_NOTIFIER_ALLOW_NETWORKS": "10.0.0.0/8,not-a-net"})
    with pytest.raises(ConfigError, match=r"notifier\.retry_schedule"):
        load(None, {"TELEX_NOTIFIER_RETRY_SCHEDULE": "5,-1"})


def test_offsets_commit_below_the_oldest_unfinished_delivery() -> None:
    tracker = AckTracker()
    tp = TopicPartition("t", 0)
    tracker.assign(tp)
    tracker.add(tp, 0, 0)
    first = tracker.add(tp, 1, 2)
    second = tracker.add(tp, 2, 1)
    assert tracker.commits() == {tp: 1}
    second()
    first()
    assert tracker.commits() == {tp: 1}  # offset 1 still has a delivery in flight
    first()
    assert tracker.commits() == {tp: 3}
    tracker.committed({tp: 3})
    assert tracker.commits() == {}
    # After a revoke, late releases of the old assignment change nothing.
    late = tracker.add(tp, 3, 1)
    tracker.forget(tp)
    late()
    assert tracker.commits() == {} and not tracker.owned(tp)


class FixedResolver(Resolver):
    """A name server with one answer for every name."""

    def __init__(self, addresses: list[str]) -> None:
        super().__init__()
        self.answer = [ipaddress.ip_address(a) for a in addresses]

    async def resolve(
        self, host: str, port: int
    ) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        return self.answer


@pytest.mark.parametrize(
    ("answer", "allowed", "connects"),
    [
        (["127.0.0.1"], ["127.0.0.1/32"], True),
        # Every address counts: one refused address refuses the name.
        (["127.0.0.1", "10.255.255.1"], ["127.0.0.1/32"], False),
        # Nothing listens on 127.0.0.2 at that port: the next checked address is tried.
        (["127.0.0.2", "127.0.0.1"], ["127.0.0.0/8"], True),
    ],
)
async def test_connections_go_to_the_checked_addresses(
    answer: list[str], allowed: list[str], connects: bool
) -> None:
    hits: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(writer.get_extra_info("sockname")[0])
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    policy = AddressPolicy(allowed, resolver=FixedResolver(answer))
    client = guarded_session(
        policy, ssl.create_default_context(), limit=1, keepalive_s=1, timeout=ClientTimeout(5)
    )
    try:
        if connects:
            # The server hangs up at once: only where the connection went matters here.
            with pytest.raises(aiohttp.ClientError):
                await client.get(f"http://receiver.example:{port}/")
            async with asyncio.timeout(5):
                while not hits:
                    await asyncio.sleep(0.01)
        else:
            with pytest.raises(TargetRefused, match=r"10\.255\.255\.1, a private"):
                await client.get(f"http://receiver.example:{port}/")
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
    # (aiohttp may try a GET that was hung up on once more: where it went is what counts.)
    assert set(hits) == ({"127.0.0.1"} if connects else set())


async def test_a_url_naming_an_address_is_checked_by_the_client_itself() -> None:
    # aiohttp connects to an address in a URL without asking a resolver: the session's own
    # check refuses it, whoever calls it.
    client = guarded_session(
        AddressPolicy(["127.0.0.1/32"]),
        ssl.create_default_context(),
        limit=1,
        keepalive_s=1,
        timeout=ClientTimeout(5),
    )
    try:
        with pytest.raises(TargetRefused, match=r"127\.0\.0\.2, a loopback"):
            await client.get("http://127.0.0.2:9/")
        with pytest.raises(TargetRefused, match=r"::1, a loopback"):
            await client.get("http://[::1]:9/")
    finally:
        await client.close()


async def test_resolved_addresses_are_cached_and_still_checked() -> None:
    cache = Resolver(ttl=60)
    loopback = AddressPolicy(["127.0.0.0/8", "::1/128"], resolver=cache)
    first = await loopback.check_url("http://localhost:8080/")
    assert [str(a) for a in cache.get("localhost", 8080) or []] == first
    assert await loopback.check_url("http://localhost:8080/x") == first
    # A caller with stricter rules is refused from the cache too.
    with pytest.raises(TargetRefused, match="loopback"):
        await AddressPolicy(resolver=cache).check_url("http://localhost:8080/")
    expired = Resolver(ttl=0)
    expired.put("localhost", 8080, [ipaddress.ip_address(a) for a in first])
    assert expired.get("localhost", 8080) is None


def test_declared_webhooks_are_validated_without_echoing_secrets(tmp_path: Path) -> None:
    bad = "whsec_" + "QUJD"
    file = tmp_path / "telex.toml"
    file.write_text(
        f"""
[[notifier.webhooks]]
name = "nato-desk"
url = "https://alerts.example.org/telex"
secret = "{bad}"
filter = {{ terms = ["NATO"], types = ["bogus"] }}
"""
    )
    with pytest.raises(ConfigError) as info:
        load(file, {}, CONFIG_CHECKS)
    message = str(info.value)
    assert "notifier.webhooks.0.secret" in message and "notifier.webhooks.0.filter" in message
    assert bad not in message
    good = new_secret()
    file.write_text(
        f"""
[[notifier.webhooks]]
name = "nato-desk"
url = "https://alerts.example.org/telex"
secret = "{good}"
filter = {{ terms = ["NATO"] }}
"""
    )
    declared = load(file, {}, CONFIG_CHECKS).notifier.webhooks
    assert [(w.name, w.secret, w.filter) for w in declared] == [
        ("nato-desk", good, {"terms": ["NATO"]})
    ]
