"""The notifier on the real broker, delivering to real HTTP receivers on 127.0.0.1.

Signatures are checked with the independent ``standardwebhooks`` library, never telex's own.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from telex.config import Config, WebhookConfig, load
from telex.notifier.declared import declared_id
from telex.notifier.service import Notifier
from telex.notifier.signing import new_secret
from telex.runtime import started
from telex.testing import TelexProcess, run_telex
from tests.conftest import Broker

from ..conftest import make_config, sample, schema_validator
from .test_pipeline import read_topic, wait_for
from .webhook_receivers import Received, produce, receiving, wire_event


def notifier_env(**extra: Any) -> dict[str, Any]:
    """Settings giving a test its own notifier topics and group and a fast retry schedule."""
    n = uuid.uuid4().hex[:8]
    env: dict[str, Any] = {
        "TELEX_NOTIFIER_GROUP_ID": f"n{n}-notifier",
        "TELEX_NOTIFIER_TOPIC_WEBHOOKS": f"n{n}.webhooks",
        "TELEX_NOTIFIER_TOPIC_RETRY": f"n{n}.webhooks.retry",
        "TELEX_NOTIFIER_TOPIC_DLQ": f"n{n}.webhooks.dlq",
        "TELEX_NOTIFIER_TOPIC_ATTEMPTS": f"n{n}.webhooks.attempts",
        "TELEX_NOTIFIER_RETRY_SCHEDULE": "0.05,0.05,0.05",
        "TELEX_NOTIFIER_RETRY_JITTER": "0.2",
        "TELEX_NOTIFIER_ALLOW_NETWORKS": "127.0.0.1/32",
        "TELEX_NOTIFIER_TIMEOUT": "20",
        "TELEX_NOTIFIER_MAX_IN_FLIGHT": "2",
        # Small queues, so that bursts overflow to the retry topic and park there (tested too).
        "TELEX_NOTIFIER_MAX_QUEUED": "5",
    }
    env.update(extra)
    return env


@dataclass
class Env:
    config: Config
    bootstrap: str
    http: httpx.AsyncClient
    notifier: Notifier

    async def subscribe(self, url: str, **body: Any) -> dict[str, Any]:
        response = await self.http.post("/v1/webhooks", json={"url": url, **body})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def send(self, *events: dict[str, Any]) -> None:
        await produce(self.bootstrap, self.config.topics.wire, *events)

    async def attempts(self, sub_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/v1/webhooks/{sub_id}/attempts")
        assert response.status_code == 200
        found: list[dict[str, Any]] = response.json()["attempts"]
        return found

    async def wait_attempts(self, sub_id: str, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(30):
            while len(found := await self.attempts(sub_id)) < count:
                await asyncio.sleep(0.05)
        return found


@pytest.fixture(scope="module")
async def env(broker: Broker) -> AsyncIterator[Env]:
    config = make_config(broker.bootstrap, **notifier_env())
    async with started(config, roles=("notifier",)) as running:
        assert running.http_url is not None
        notifier = running.components["notifier"]
        assert isinstance(notifier, Notifier)
        async with httpx.AsyncClient(base_url=running.http_url, timeout=30) as http:
            yield Env(config, running.bootstrap, http, notifier)


def verify(secret: str, request: Received) -> Any:
    """The payload, if the independent library accepts the signature."""
    return Webhook(secret).verify(request.body, request.headers)


def source() -> str:
    return "src-" + uuid.uuid4().hex[:8]


def source_beside(src: str, config: Config) -> str:
    """Another source whose events share ``src``'s wire partition (the producer's default
    partitioner, as the processor keys the wire by source)."""
    partitions = list(range(config.topics.partitions))
    partitioner = DefaultPartitioner()
    wanted = partitioner(src.encode(), partitions, partitions)
    while partitioner((other := source()).encode(), partitions, partitions) != wanted:
        pass
    return other


async def test_matching_events_arrive_signed_and_others_do_not(env: Env) -> None:
    src = source()
    async with receiving() as receiver:
        sub = await env.subscribe(receiver.url, filter={"sources": [src], "terms": ["NATO"]})
        assert sub["secret"].startswith("whsec_")
        assert sub["state"] == "active"
        other = wire_event(src, "Lavrov spoke about grain exports.")
        match = wire_event(src, "Lavrov said NATO was escalating.")
        elsewhere = wire_event(source_beside(src, env.config), "NATO summit opens.")
        last = wire_event(src, "Stoltenberg: NATO stands ready.")
        await env.send(other, match, elsewhere, last)
        requests = list(await receiver.wait_for(2))

        payloads = [verify(sub["secret"], r) for r in requests]
        assert sorted(p["id"] for p in payloads) == sorted([match["id"], last["id"]])
        by_id = {p["id"]: p for p in payloads}
        assert by_id[match["id"]] == match  # the CloudEvent itself is the body
        for r in requests:
            assert r.headers["content-type"] == "application/json"
            assert r.headers["host"] == receiver.url.split("/")[2]
            assert r.headers["webhook-id"].startswith("msg_")
        # A tampered body or another secret fails verification.
        with pytest.raises(WebhookVerificationError):
            Webhook(sub["secret"]).verify(requests[0].body + b" ", requests[0].headers)
        attempts = await env.wait_attempts(sub["id"], 2)
        assert {a["outcome"] for a in attempts} == {"success"}
        assert all(a["status"] == 200 and a["latency_ms"] >= 0 for a in attempts)
        # Nothing else arrives: the non-matching events were never delivered. They share a
        # partition with a later match, which they would have come before.
        sentinel = wire_event(src, "NATO: the last word.")
        await env.send(sentinel)
        arrived = await receiver.wait_for(3)
        assert verify(sub["secret"], arrived[2])["id"] == sentinel["id"]
        assert len(receiver.requests) == 3  # the two matches and the last word

    # What the notifier put on Kafka matches the published schemas.
    attempt_schema = schema_validator("webhook-attempt.schema.json")
    for record in await read_topic(env.bootstrap, env.config.notifier.topic_attempts):
        attempt_schema.validate(orjson.loads(record.value))
    subscription_schema = schema_validator("webhook-subscription.schema.json")
    stored = await read_topic(env.bootstrap, env.config.notifier.topic_webhooks)
    assert any(r.key == sub["id"].encode() for r in stored)
    for record in stored:
        if record.value is not None:
            subscription_schema.validate(orjson.loads(record.value))


async def test_receiver_failing_three_times_gets_same_webhook_id_on_fourth(env: Env) -> None:
    async def flaky(n: int, _: Received) -> tuple[int, dict[str, str]]:
        return (500, {}) if n <= 3 else (204, {})

    src = source()
    before = sample("telex_notifier_attempts_total", outcome="http_error")
    async with receiving(flaky) as receiver:
        sub = await env.subscribe(receiver.url, filter={"sources": [src]})
        event = wire_event(src, "Air raid alert in Kyiv.")
        await env.send(event)
        requests = await receiver.wait_for(4)
        ids = {r.headers["webhook-id"] for r in requests}
        assert len(ids) == 1
        for r in requests:
            assert verify(sub["secret"], r)["id"] == event["id"]
        attempts = await env.wait_attempts(sub["id"], 4)
        assert [a["attempt"] for a in attempts] == [4, 3, 2, 1]  # newest first
        assert [a["outcome"] for a in attempts] == ["success"] + ["http_error"] * 3
        assert [a["next"] for a in attempts] == ["delivered"] + ["retry"] * 3
        failed = await env.http.get(
            f"/v1/webhooks/{sub['id']}/attempts",
            params={"outcome": "http_error", "webhook_id": requests[0].headers["webhook-id"]},
        )
        assert [a["attempt"] for a in failed.json()["attempts"]] == [3, 2, 1]
        assert sample("telex_notifier_attempts_total", outcome="http_error") >= before + 3
        await asyncio.sleep(0.3)
        assert len(receiver.requests) == 4
        got = (await env.http.get(f"/v1/webhooks/{sub['id']}")).json()
        assert got["health"]["failing_since_ms"] is None
        assert got["health"]["consecutive_failures"] == 0


async def test_always_failing_ends_in_dead_letters_and_replay_redelivers(env: Env) -> None:
    healthy = False

    async def broken(_: int, __: Received) -> tuple[int, dict[str, str]]:
        return (200, {}) if healthy else (502, {})

    src = source()
    async with receiving(broken) as receiver:
        sub = await env.subscribe(receiver.url, filter={"sources": [src]})
        event = wire_event(src, "Power cut across the region.")
        await env.send(event)
        # 1 attempt + 3 retries, then the dead-letter topic.
        await receiver.wait_for(4)
        webhook_id = receiver.requests[0].headers["webhook-id"]
        await wait_for(
            lambda: any(
                a["next"] == "dead" for a in env.notifier.attempts.recent.get(sub["id"], ())
            )
        )
        dlq = await read_topic(env.bootstrap, env.config.notifier.topic_dlq)
        mine = [r for r in dlq if dict(r.headers)["telex-subscription"] == sub["id"].encode()]
        assert len(mine) == 1
        headers = dict(mine[0].headers)
        assert headers["webhook-id"] == webhook_id.encode()
        assert headers["telex-reason"] == b"exhausted"
        assert headers["telex-last-status"] == b"502"
        assert orjson.loads(mine[0].value) == event
        listed = (await env.http.get(f"/v1/webhooks/{sub['id']}/dead-letters")).json()
        assert [d["webhook_id"] for d in listed["dead_letters"]] == [webhook_id]
        assert listed["dead_letters"][0]["attempts"] == 4

        healthy = True
        response = await env.http.post(
            f"/v1/webhooks/{sub['id']}/replay", json={"webhook_id": webhook_id}
        )
        assert response.status_code == 202, response.text
        assert response.json()["replayed"] == 1
        requests = await receiver.wait_for(5)
        assert requests[4].headers["webhook-id"] == webhook_id
        assert verify(sub["secret"], requests[4])["id"] == event["id"]

        # Replay by time range finds it too; an unknown id is a 404 naming the field.
        response = await env.http.post(
            f"/v1/webhooks/{sub['id']}/replay", json={"since_ms": 0, "until_ms": 2**53}
        )
        assert response.json()["webhook_ids"] == [webhook_id]
        await receiver.wait_for(6)
        response = await env.http.post(
            f"/v1/webhooks/{sub['id']}/replay", json={"webhook_id": "msg_nope"}
        )
        assert response.status_code == 404
        assert response.json()["error"]["field"] == "webhook_id"


async def test_410_disables_and_later_events_are_kept_for_replay(env: Env) -> None:
    gone = True

    async def answer(_: int, __: Received) -> tuple[int, dict[str, str]]:
        return (410, {}) if gone else (200, {})

    src = source()
    async with receiving(answer) as receiver:
        sub = await env.subscribe(receiver.url, filter={"sources": [src]})
        await env.send(wire_event(src, "First update."))
        await receiver.wait_for(1)

        async def state() -> dict[str, Any]:
            found: dict[str, Any] = (await env.http.get(f"/v1/webhooks/{sub['id']}")).json()
            return found

        async with asyncio.timeout(30):
            while (got := await state())["state"] != "disabled":
                await asyncio.sleep(0.05)
        assert "410" in got["state_reason"]
        assert sample("telex_notifier_subscriptions", state="disabled") >= 1
        later = wire_event(src, "Second update, while disabled.")
        await env.send(later)
        async with asyncio.timeout(30):
            while True:
                dead = (await env.http.get(f"/v1/webhooks/{sub['id']}/dead-letters")).json()
                reasons = {d["event_id"]: d["reason"] for d in dead["dead_letters"]}
                if later["id"] in reasons:
                    break
                await asyncio.sleep(0.1)
        assert reasons[later["id"]] == "disabled"
        assert len(receiver.requests) == 1  # never retried, never called while disabled

        refused = await env.http.post(f"/v1/webhooks/{sub['id']}/replay", json={"since_ms": 0})
        assert refused.status_code == 409 and refused.json()["error"]["field"] == "state"
        gone = False
        resumed = (await env.http.post(f"/v1/webhooks/{sub['id']}/resume")).json()
        assert resumed["state"] == "active"
        response = await env.http.post(f"/v1/webhooks/{sub['id']}/replay", json={"since_ms": 0})
        assert response.json()["replayed"] == 2
        requests = await receiver.wait_for(3)
        delivered = {verify(sub["secret"], r)["id"] for r in requests[1:]}
        assert later["id"] in delivered


async def test_retry_after_is_honoured(env: Env) -> None:
    async def busy(n: int, _: Received) -> tuple[int, dict[str, str]]:
        return (429, {"retry-after": "1"}) if n == 1 else (200, {})

    src = source()
    async with receiving(busy) as receiver:
        await env.subscribe(receiver.url, filter={"sources": [src]})
        await env.send(wire_event(src, "Rate limited receiver."))
        first, second = await receiver.wait_for(2)
        # The schedule says 0.05 s; the receiver asked for 1 s and got at least that.
        assert second.at - first.at >= 0.95
        assert first.headers["webhook-id"] == second.headers["webhook-id"]


async def test_slow_receiver_does_not_delay_a_fast_one(env: Env) -> None:
    release = asyncio.Event()

    async def stuck(_: int, __: Received) -> tuple[int, dict[str, str]]:
        await release.wait()
        return 200, {}

    src = source()
    overflowed = sample("telex_notifier_retries_scheduled_total", reason="overflow")
    events = [wire_event(src, f"Update number {i}.") for i in range(20)]
    async with receiving(stuck) as slow, receiving() as fast:
        await env.subscribe(slow.url, filter={"sources": [src]})
        await env.subscribe(fast.url, filter={"sources": [src]})
        await env.send(*events)
        # Every event reaches the fast receiver while the slow one has not answered once.
        await fast.wait_for(20)
        assert len(slow.requests) <= env.config.notifier.max_in_flight
        assert {orjson.loads(r.body)["id"] for r in fast.requests} == {e["id"] for e in events}
        release.set()
        await slow.wait_for(20)
        assert len({r.headers["webhook-id"] for r in slow.requests}) == 20
        # What did not fit the slow endpoint's queue waited on the retry topic, lost nothing.
        assert (
            sample("telex_notifier_retries_scheduled_total", reason="overflow") >= overflowed + 10
        )


async def test_redirect_to_a_refused_address_is_not_followed(env: Env) -> None:
    async with receiving() as target:
        port = target.url.split(":")[2].split("/")[0]

        async def redirect(_: int, __: Received) -> tuple[int, dict[str, str]]:
            # 127.0.0.2 is loopback too, but only 127.0.0.1/32 is allowed in this config.
            return 307, {"location": f"http://127.0.0.2:{port}/hook"}

        src = source()
        async with receiving(redirect) as receiver:
            sub = await env.subscribe(receiver.url, filter={"sources": [src]})
            await env.send(wire_event(src, "Redirected."))
            attempts = await env.wait_attempts(sub["id"], 1)
            assert attempts[0]["outcome"] == "refused"
            assert "127.0.0.2" in attempts[0]["error"] and "loopback" in attempts[0]["error"]
            assert attempts[0]["next"] == "dead"
            assert len(receiver.requests) == 1
        assert target.requests == []


async def test_subscription_api_validates_and_manages(env: Env) -> None:
    http = env.http
    bad = await http.post("/v1/webhooks", json={"filter": {}})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "url"
    bad = await http.post("/v1/webhooks", json={"url": "ftp://x.example/"})
    assert bad.json()["error"]["field"] == "url"
    bad = await http.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/", "filter": {"types": ["exploded"]}}
    )
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "filter"
    assert "types" in bad.json()["error"]["message"]
    bad = await http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/", "rate_limit": -1})
    assert bad.json()["error"]["field"] == "rate_limit"
    bad = await http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/", "colour": "red"})
    assert bad.json()["error"]["field"] == "colour"
    bad = await http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/", "secret": "nope"})
    assert bad.json()["error"]["field"] == "secret"

    async with receiving() as receiver:
        sub = await env.subscribe(receiver.url, description="desk", filter={"terms": ["x"]})
        sub_id = sub["id"]
        listed = (await http.get("/v1/webhooks")).json()["webhooks"]
        assert sub_id in {w["id"] for w in listed}
        assert all("secret" not in w for w in listed)

        patched = await http.patch(f"/v1/webhooks/{sub_id}", json={"filter": {"tags": ["uk"]}})
        assert patched.json()["filter"] == {"tags": ["uk"]}
        assert patched.json()["description"] == "desk"
        bad = await http.patch(f"/v1/webhooks/{sub_id}", json={"url": "http://10.1.2.3/"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "url"

        assert (await http.post(f"/v1/webhooks/{sub_id}/pause")).json()["state"] == "paused"
        assert (await http.post(f"/v1/webhooks/{sub_id}/resume")).json()["state"] == "active"

        # Rotation: both the old and the new secret verify deliveries during the grace period.
        rotated = (await http.post(f"/v1/webhooks/{sub_id}/rotate-secret", json={})).json()
        assert rotated["secret"] != sub["secret"]
        tested = (await http.post(f"/v1/webhooks/{sub_id}/test")).json()
        assert tested["outcome"] == "success" and tested["status"] == 200
        request = receiver.requests[-1]
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        assert verify(sub["secret"], request)["type"] == "telex.webhook.test"
        assert verify(rotated["secret"], request)["type"] == "telex.webhook.test"
        attempts = await env.wait_attempts(sub_id, 1)
        assert attempts[0]["webhook_id"] == tested["webhook_id"] and attempts[0]["test"]

        # With no grace the old secret stops signing at once.
        again = (
            await http.post(f"/v1/webhooks/{sub_id}/rotate-secret", json={"grace_seconds": 0})
        ).json()
        await http.post(f"/v1/webhooks/{sub_id}/test")
        request = receiver.requests[-1]
        assert len(request.headers["webhook-signature"].split(" ")) == 1
        assert verify(again["secret"], request)
        with pytest.raises(WebhookVerificationError):
            verify(rotated["secret"], request)

        assert (await http.delete(f"/v1/webhooks/{sub_id}")).status_code == 204
        # Its endpoint (workers and connection pool) goes away with it.
        await wait_for(lambda: sub_id not in env.notifier.endpoints)
        missing = await http.get(f"/v1/webhooks/{sub_id}")
        assert missing.status_code == 404 and missing.json()["error"]["field"] == "id"


async def test_default_config_refuses_private_targets(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    env = notifier_env()
    del env["TELEX_NOTIFIER_ALLOW_NETWORKS"]
    config = config_factory(broker.bootstrap, **env)
    assert config.notifier.allow_networks == ()
    async with (
        started(config, roles=("notifier",)) as running,
        httpx.AsyncClient(base_url=str(running.http_url)) as http,
    ):
        for url, kind in (
            ("http://127.0.0.1:8080/hook", "loopback"),
            ("http://localhost/hook", "loopback"),
            ("http://[::1]/hook", "loopback"),
            ("http://10.0.0.7/hook", "private"),
            ("http://192.168.1.1/hook", "private"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://[::ffff:127.0.0.1]/hook", "loopback"),
            ("http://100.64.0.1/hook", "private"),
        ):
            response = await http.post("/v1/webhooks", json={"url": url})
            assert response.status_code == 422, url
            error = response.json()["error"]
            assert error["field"] == "url"
            assert kind in error["message"], (url, error)
            assert "allow_networks" in error["message"]


async def test_continuous_failure_disables_and_resume_resets(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(
        broker.bootstrap,
        **notifier_env(
            TELEX_NOTIFIER_RETRY_SCHEDULE="0.2,0.2,0.2,0.2,0.2,0.2,0.2,0.2",
            TELEX_NOTIFIER_DISABLE_AFTER="0.5",
        ),
    )
    healthy = False

    async def answer(_: int, __: Received) -> tuple[int, dict[str, str]]:
        return (200, {}) if healthy else (500, {})

    src = source()
    async with (
        started(config, roles=("notifier",)) as running,
        httpx.AsyncClient(base_url=str(running.http_url)) as http,
        receiving(answer) as receiver,
    ):
        notifier = running.components["notifier"]
        assert isinstance(notifier, Notifier)
        e = Env(config, running.bootstrap, http, notifier)
        sub = await e.subscribe(receiver.url, filter={"sources": [src]})
        await e.send(wire_event(src, "Failing for a while."))
        async with asyncio.timeout(30):
            while (got := (await http.get(f"/v1/webhooks/{sub['id']}")).json())[
                "state"
            ] != "disabled":
                await asyncio.sleep(0.05)
        assert got["state_reason"].startswith("failing continuously since")
        assert got["health"]["consecutive_failures"] >= 2
        # Disabled before the schedule ran out: fewer attempts than the schedule allows.
        assert 2 <= len(receiver.requests) < 9
        attempts = await e.wait_attempts(sub["id"], len(receiver.requests))
        assert attempts[0]["next"] == "dead"

        healthy = True
        assert (await http.post(f"/v1/webhooks/{sub['id']}/resume")).json()["state"] == "active"
        # Counted before sending: on a cluster the delivery can land before the send's ack.
        before = len(receiver.requests)
        await e.send(wire_event(src, "Back again."))
        await receiver.wait_for(before + 1)
        async with asyncio.timeout(30):
            while (await http.get(f"/v1/webhooks/{sub['id']}")).json()["health"][
                "failing_since_ms"
            ] is not None:
                await asyncio.sleep(0.05)


async def test_killed_notifier_delivers_pending_retries_after_restart(
    broker: Broker, tmp_path: Path
) -> None:
    n = uuid.uuid4().hex[:8]
    config = load(
        None,
        {
            **notifier_env(TELEX_NOTIFIER_RETRY_SCHEDULE="3"),
            "TELEX_KAFKA_BOOTSTRAP": broker.bootstrap,
            "TELEX_KAFKA_IDEMPOTENCE": "off",
            "TELEX_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "TELEX_KAFKA_HEARTBEAT_INTERVAL_MS": "500",
            "TELEX_TOPICS_RAW": f"k{n}.raw",
            "TELEX_TOPICS_WIRE": f"k{n}.wire",
            "TELEX_TOPICS_DLQ": f"k{n}.dlq",
        },
    )
    notifier = TelexProcess("notifier", config, log=tmp_path / "notifier.log")

    async def answer(n: int, _: Received) -> tuple[int, dict[str, str]]:
        return (503, {}) if n == 1 else (200, {})

    src = source()
    notifier.start()
    try:
        await notifier.wait_ready(timeout=60)
        async with (
            receiving(answer) as receiver,
            httpx.AsyncClient(base_url=notifier.url) as http,
        ):
            created = await http.post(
                "/v1/webhooks", json={"url": receiver.url, "filter": {"sources": [src]}}
            )
            sub = created.json()
            event = wire_event(src, "Delivered despite a crash.")
            await produce(broker.bootstrap, config.topics.wire, event)
            await receiver.wait_for(1)
            # Once attempt 1 is logged its retry is on the retry topic: kill the process now,
            # well before the retry is due.
            async with asyncio.timeout(30):
                while not (await http.get(f"/v1/webhooks/{sub['id']}/attempts")).json()["attempts"]:
                    await asyncio.sleep(0.02)
            await notifier.kill()
            assert len(receiver.requests) == 1

            notifier.start()
            await notifier.wait_ready(timeout=60)
            requests = await receiver.wait_for(2, timeout=60)
            assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
            assert verify(sub["secret"], requests[1])["id"] == event["id"]
            # The wire record read again is not re-sent: it would come before a later event
            # of its source (one partition, read in order).
            sentinel = wire_event(src, "The last word.")
            await produce(broker.bootstrap, config.topics.wire, sentinel)
            requests = await receiver.wait_for(3, timeout=60)
            assert verify(sub["secret"], requests[2])["id"] == sentinel["id"]
            assert len(receiver.requests) == 3
    finally:
        await notifier.stop(timeout=15)


async def test_webhooks_cli_drives_the_api(env: Env) -> None:
    base = str(env.http.base_url).rstrip("/")

    async def telex(*args: str) -> tuple[int, Any]:
        code, out, err = await run_telex("webhooks", "--url", base, *args)
        try:
            return code, orjson.loads(out or err)
        except orjson.JSONDecodeError:
            return code, out or err

    async with receiving() as receiver:
        code, created = await telex(
            "create", receiver.url, "--term", "NATO", "--source", "bbc", "--rate-limit", "5"
        )
        assert code == 0, created
        sub_id = created["id"]
        assert created["filter"] == {"sources": ["bbc"], "terms": ["NATO"]}
        assert created["rate_limit"] == 5
        code, listed = await telex("list")
        assert sub_id in {w["id"] for w in listed["webhooks"]}
        code, paused = await telex("pause", sub_id)
        assert paused["state"] == "paused"
        code, resumed = await telex("resume", sub_id)
        assert resumed["state"] == "active"
        code, tested = await telex("test", sub_id)
        assert tested["outcome"] == "success"
        assert verify(created["secret"], receiver.requests[-1])["type"] == "telex.webhook.test"
        code, rotated = await telex("rotate-secret", sub_id, "--grace", "60")
        assert rotated["secret"].startswith("whsec_")
        code, updated = await telex("update", sub_id, "--tag", "ukraine")
        assert updated["filter"] == {"tags": ["ukraine"]}
        code, attempts = await telex("attempts", sub_id)
        assert attempts["attempts"][0]["webhook_id"] == tested["webhook_id"]
        code, _ = await telex("delete", sub_id)
        assert code == 0
        code, missing = await telex("get", sub_id)
        assert code == 1 and missing["error"]["field"] == "id"
        code, refused = await telex("create", "http://10.0.0.1/hook")
        assert code == 1 and refused["error"]["field"] == "url"


async def test_rate_limit_spaces_deliveries(env: Env) -> None:
    src = source()
    async with receiving() as receiver:
        await env.subscribe(receiver.url, filter={"sources": [src]}, rate_limit=10)
        await env.send(*(wire_event(src, f"Burst {i}.") for i in range(5)))
        requests = await receiver.wait_for(5)
        # 10 per second: the five requests span at least four intervals of 0.1 s at the
        # notifier. Measured at the receiver, a late request can arrive close to the next one
        # on a busy machine, so the span is checked with one interval of slack (without a
        # limit the five arrive within milliseconds).
        span = requests[-1].at - requests[0].at
        assert span >= 0.3, [r.at for r in requests]


async def test_two_notifiers_split_the_wire_and_deliver_each_event_once(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    config = config_factory(broker.bootstrap, **notifier_env())
    sources = [source() for _ in range(6)]  # keys spread over the wire's partitions
    async with (
        started(config, roles=("notifier",)) as first,
        started(config, roles=("notifier",)) as second,
        receiving() as receiver,
        httpx.AsyncClient(base_url=str(first.http_url)) as http_first,
        httpx.AsyncClient(base_url=str(second.http_url)) as http_second,
    ):
        notifiers = [
            n
            for n in (first.components["notifier"], second.components["notifier"])
            if isinstance(n, Notifier)
        ]
        assert len(notifiers) == 2

        def assignments() -> list[set[Any]]:
            return [
                set(n.intake.group.assignment()) if n.intake.group else set() for n in notifiers
            ]

        partitions = config.topics.partitions * 2  # wire + retry
        await wait_for(
            lambda: (
                all(assignments())
                and sum(len(a) for a in assignments()) == partitions
                and not set.intersection(*assignments())
            ),
            timeout=60,
        )
        created = await http_first.post(
            "/v1/webhooks", json={"url": receiver.url, "filter": {"sources": sources}}
        )
        sub = created.json()
        # The other process learns the subscription from the compacted topic.
        async with asyncio.timeout(30):
            while (await http_second.get(f"/v1/webhooks/{sub['id']}")).status_code != 200:
                await asyncio.sleep(0.05)
        events = [wire_event(src, f"Update {i} from {src}.") for i in range(5) for src in sources]
        await produce(broker.bootstrap, config.topics.wire, *events)
        await receiver.wait_for(len(events))
        # A repeat of any event would come before the last event of its source.
        finals = [wire_event(src, f"Last from {src}.") for src in sources]
        await produce(broker.bootstrap, config.topics.wire, *finals)
        await receiver.wait_for(len(events) + len(finals))
        final_ids = {e["id"] for e in finals}
        last = [r for r in receiver.requests if verify(sub["secret"], r)["id"] in final_ids]
        assert len(last) == len(finals)
        requests = [r for r in receiver.requests if r not in last]
        ids = [r.headers["webhook-id"] for r in requests]
        assert len(ids) == len(set(ids)) == len(events)
        assert {verify(sub["secret"], r)["id"] for r in requests} == {e["id"] for e in events}


async def test_a_new_group_on_an_old_wire_sends_no_history_and_nothing_twice(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    env = notifier_env()
    config = config_factory(broker.bootstrap, **env)
    src = source()
    skipped = sample("telex_notifier_duplicates_skipped_total")
    async with receiving() as receiver:
        async with (
            started(config, roles=("notifier",)) as running,
            httpx.AsyncClient(base_url=str(running.http_url)) as http,
        ):
            old = wire_event(src, "Said before anyone subscribed.")
            await produce(broker.bootstrap, config.topics.wire, old)
            await asyncio.sleep(0.1)
            created = await http.post(
                "/v1/webhooks", json={"url": receiver.url, "filter": {"sources": [src]}}
            )
            sub = created.json()
            new = wire_event(src, "Said after.")
            await produce(broker.bootstrap, config.topics.wire, new)
            await receiver.wait_for(1)
        # A notifier in a new consumer group reads the wire from its beginning: the old event
        # predates the subscription and the new one was delivered already.
        fresh = config_factory(
            broker.bootstrap,
            **{**env, "TELEX_NOTIFIER_GROUP_ID": env["TELEX_NOTIFIER_GROUP_ID"] + "b"},
        )
        fresh = fresh.model_copy(update={"topics": config.topics})
        # News for the new group, after the other two in their partition: once it arrived,
        # whatever the new group would send of those came before it.
        last = wire_event(src, "Said last.")
        await produce(broker.bootstrap, config.topics.wire, last)
        async with started(fresh, roles=("notifier",)) as running:
            notifier = running.components["notifier"]
            await wait_for(lambda: notifier.ready, timeout=60)
            await wait_for(
                lambda: sample("telex_notifier_duplicates_skipped_total") > skipped, timeout=30
            )
            await receiver.wait_for(2, timeout=30)
        sent = [verify(sub["secret"], r)["id"] for r in receiver.requests]
        assert sent[-1] == last["id"]
        assert sent[:-1] == [new["id"]]


async def test_the_seed_blog_arrives_as_webhooks_end_to_end(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    """replay page -> poller -> processor -> wire -> notifier -> a real receiver."""
    env = notifier_env()
    env.pop("TELEX_NOTIFIER_MAX_QUEUED")
    config = config_factory(broker.bootstrap, **env)
    async with receiving() as receiver:
        # Subscribe first (the notifier alone), so that the whole blog is news to it.
        async with (
            started(config, roles=("notifier",)) as running,
            httpx.AsyncClient(base_url=str(running.http_url)) as http,
        ):
            created = await http.post(
                "/v1/webhooks",
                json={"url": receiver.url, "filter": {"sources": ["replay"], "terms": ["NATO"]}},
            )
            sub = created.json()
            everything = await http.post("/v1/webhooks", json={"url": receiver.url + "/all"})
            assert everything.status_code == 201
        async with started(config):
            requests = await receiver.wait_for(11, timeout=90)
            async with asyncio.timeout(90):
                while sum(r.path == "/hook/all" for r in receiver.requests) < 10:
                    await asyncio.sleep(0.05)
            # After the blog in its partition (the wire is keyed by source): once both
            # subscriptions have it, a repeat of any entry would have come before.
            last = wire_event("replay", "NATO: the last word of the desk.")
            await produce(broker.bootstrap, config.topics.wire, last)
            async with asyncio.timeout(60):
                while sum(orjson.loads(r.body)["id"] == last["id"] for r in receiver.requests) < 2:
                    await asyncio.sleep(0.05)
    finals = [r for r in receiver.requests if orjson.loads(r.body)["id"] == last["id"]]
    assert sorted(r.path for r in finals) == ["/hook", "/hook/all"]
    requests = [r for r in receiver.requests if r not in finals]
    mine = [verify(sub["secret"], r) for r in requests if r.path == "/hook"]
    everything_events = [r for r in requests if r.path == "/hook/all"]
    assert len(everything_events) == 10  # the ten entries of the seed blog, each once
    assert mine, requests
    assert all("NATO" in e["data"]["text"] for e in mine)
    assert len(mine) < 10 and len({e["id"] for e in mine}) == len(mine)


async def test_webhooks_declared_in_config_are_created_and_updated(
    broker: Broker, config_factory: Callable[..., Config]
) -> None:
    base = config_factory(broker.bootstrap, **notifier_env())
    src = source()
    first_secret, second_secret = new_secret(), new_secret()

    def with_webhook(url: str, secret: str, terms: list[str]) -> Config:
        declared = WebhookConfig(
            name="nato-desk", url=url, secret=secret, filter={"sources": [src], "terms": terms}
        )
        return base.model_copy(
            update={"notifier": base.notifier.model_copy(update={"webhooks": (declared,)})}
        )

    async with receiving() as receiver:
        config = with_webhook(receiver.url, first_secret, ["NATO"])
        async with (
            started(config, roles=("notifier",)) as running,
            httpx.AsyncClient(base_url=str(running.http_url)) as http,
        ):
            listed = (await http.get("/v1/webhooks")).json()["webhooks"]
            assert [w["id"] for w in listed] == [declared_id("nato-desk")]
            event = wire_event(src, "NATO allies meet.")
            await produce(broker.bootstrap, config.topics.wire, event)
            (request,) = await receiver.wait_for(1)
            assert verify(first_secret, request)["id"] == event["id"]
        # Restarted with a new secret and filter: the same subscription, updated; the old
        # secret still signs during the grace period.
        config = with_webhook(receiver.url, second_secret, ["Kremlin"])
        async with (
            started(config, roles=("notifier",)) as running,
            httpx.AsyncClient(base_url=str(running.http_url)) as http,
        ):
            got = (await http.get(f"/v1/webhooks/{declared_id('nato-desk')}")).json()
            assert got["filter"]["terms"] == ["Kremlin"] and len(got["secrets"]) == 2
            event = wire_event(src, "The Kremlin answered.")
            await produce(broker.bootstrap, config.topics.wire, event)
            requests = await receiver.wait_for(2)
            assert verify(second_secret, requests[1])["id"] == event["id"]
            assert verify(first_secret, requests[1])["id"] == event["id"]
