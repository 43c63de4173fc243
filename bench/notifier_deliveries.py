"""Webhook deliveries per second from one notifier process to 100 local receivers.

Baseline, same run, same receivers: a bare aiohttp loop (the notifier's HTTP client) posting
the same bodies with the same
per-endpoint concurrency and no Kafka, signing, filtering or bookkeeping: what the HTTP client
alone can do on this machine. The notifier number is measured from the first event produced to
the last delivery counted, through the embedded broker: consume, match 100 filters, sign,
POST, log each attempt to Kafka, commit.

    .venv/bin/python bench/notifier_deliveries.py [--events 50] [--receivers 100] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
from aiokafka import AIOKafkaProducer

from telex.config import load
from telex.events import cloudevent, content_hash, update_id
from telex.kafka.embedded import EmbeddedBroker
from telex.log import configure
from telex.notifier.signing import new_secret
from telex.outbound import tls_context
from telex.runtime import started

HERE = Path(__file__).resolve().parent
JSON = {"content-type": "application/json"}


def event(i: int) -> dict[str, Any]:
    text = f"Update {i}: Lavrov said NATO was escalating. " * 8
    data = {
        "id": update_id("bench", str(i)),
        "source_id": "bench",
        "source_url": "https://example.org/live",
        "entry_id": str(i),
        "url": None,
        "title": None,
        "text": text,
        "html": None,
        "time_raw": None,
        "published": "2024-01-18T10:46:00Z",
        "content_hash": content_hash(None, text + uuid.uuid4().hex),
        "previous_hash": None,
        "timings": {},
    }
    return cloudevent(
        "telex.update.created", data, time_iso="2024-01-18T10:46:00Z", source_id="bench"
    )


async def count(control: str, client: httpx.AsyncClient) -> int:
    return int((await client.get(control + "/count")).text)


async def wait_count(control: str, client: httpx.AsyncClient, target: int, limit: float) -> float:
    start = time.perf_counter()
    while (n := await count(control, client)) < target:
        if time.perf_counter() - start > limit:
            raise TimeoutError(f"only {n} of {target} deliveries after {limit:.0f}s")
        await asyncio.sleep(0.01)
    return time.perf_counter()


async def baseline(urls: list[str], bodies: list[bytes], control: str, per_endpoint: int) -> float:
    """Deliveries/s of a bare aiohttp sender: a client per endpoint (as the notifier has), with
    ``per_endpoint`` concurrent requests each."""
    tls = tls_context()  # shared, as in the notifier
    clients = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=per_endpoint, ssl=tls),
            timeout=aiohttp.ClientTimeout(total=30),
        )
        for _ in urls
    ]
    async with httpx.AsyncClient(timeout=10, trust_env=False) as ctl:
        await ctl.get(control + "/reset")

        async def endpoint(client: aiohttp.ClientSession, url: str) -> None:
            queue = list(bodies)

            async def worker() -> None:
                while queue:
                    body = queue.pop()
                    async with client.post(url, data=body, headers=JSON) as r:
                        await r.read()
                        assert r.status == 200

            await asyncio.gather(*(worker() for _ in range(per_endpoint)))

        try:
            start = time.perf_counter()
            await asyncio.gather(*(endpoint(c, u) for c, u in zip(clients, urls, strict=True)))
            elapsed = time.perf_counter() - start
        finally:
            for client in clients:
                await client.close()
        assert await count(control, ctl) == len(urls) * len(bodies)
    return len(urls) * len(bodies) / elapsed


async def run(args: argparse.Namespace) -> None:
    configure("warning", "text")
    broker = EmbeddedBroker()
    await broker.start()
    receivers = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HERE / "webhook_receivers.py"),
        str(args.receivers),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert receivers.stdout is not None
        line = await asyncio.wait_for(receivers.stdout.readline(), 20)
        control_port, *ports = (int(p) for p in line.split())
        control = f"http://127.0.0.1:{control_port}"
        urls = [f"http://127.0.0.1:{port}/hook" for port in ports]
        n = uuid.uuid4().hex[:8]
        config = load(
            None,
            {
                "TELEX_KAFKA_BOOTSTRAP": broker.bootstrap,
                "TELEX_KAFKA_IDEMPOTENCE": "off",
                "TELEX_KAFKA_SESSION_TIMEOUT_MS": "6000",
                "TELEX_TOPICS_RAW": f"b{n}.raw",
                "TELEX_TOPICS_WIRE": f"b{n}.wire",
                "TELEX_TOPICS_DLQ": f"b{n}.dlq",
                "TELEX_HTTP_PORT": "0",
                "TELEX_NOTIFIER_GROUP_ID": f"b{n}",
                "TELEX_NOTIFIER_TOPIC_WEBHOOKS": f"b{n}.webhooks",
                "TELEX_NOTIFIER_TOPIC_RETRY": f"b{n}.retry",
                "TELEX_NOTIFIER_TOPIC_DLQ": f"b{n}.wdlq",
                "TELEX_NOTIFIER_TOPIC_ATTEMPTS": f"b{n}.attempts",
                "TELEX_NOTIFIER_ALLOW_NETWORKS": "127.0.0.1/32",
                "TELEX_NOTIFIER_MAX_IN_FLIGHT": str(args.in_flight),
                "TELEX_LOG_LEVEL": "warning",
            },
        )
        async with (
            started(config, roles=("notifier",)) as running,
            httpx.AsyncClient(base_url=str(running.http_url), timeout=30) as api,
            httpx.AsyncClient(timeout=10, trust_env=False) as ctl,
        ):
            for url in urls:
                r = await api.post("/v1/webhooks", json={"url": url, "secret": new_secret()})
                assert r.status_code == 201, r.text
            while (await api.get("/readyz")).status_code != 200:
                await asyncio.sleep(0.1)
            producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
            await producer.start()
            base_rates, rates = [], []
            total = args.events * args.receivers
            delivered = 0
            try:
                for i in range(args.runs):
                    bodies = [orjson.dumps(event(i * 10_000 + j)) for j in range(args.events)]
                    base_rates.append(await baseline(urls, bodies, control, args.in_flight))
                    await ctl.get(control + "/reset")
                    start = time.perf_counter()
                    for body in bodies:
                        await producer.send(config.topics.wire, body, key=b"bench")
                    await producer.flush()
                    end = await wait_count(control, ctl, total, 300)
                    delivered += total
                    rates.append(total / (end - start))
                    print(
                        f"run {i + 1}: notifier {rates[-1]:,.0f}/s, aiohttp baseline "
                        f"{base_rates[-1]:,.0f}/s",
                        flush=True,
                    )
            finally:
                await producer.stop()
            notifier = running.components["notifier"]
            failed = sum(
                1
                for recent in notifier.attempts.recent.values()  # type: ignore[attr-defined]
                for a in recent
                if a["outcome"] != "success"
            )
        med, base = statistics.median(rates), statistics.median(base_rates)
        print(
            f"\n{args.receivers} receivers x {args.events} events = {total} deliveries per run, "
            f"{args.runs} runs, in-flight {args.in_flight}/endpoint, {os.cpu_count()} CPUs"
        )
        print(f"notifier median {med:,.0f} deliveries/s; aiohttp baseline median {base:,.0f}/s;")
        ratios = [r / b for r, b in zip(rates, base_rates, strict=True)]
        print(
            f"ratio of medians {med / base:.2f}; median of per-run ratios "
            f"{statistics.median(ratios):.2f} ({', '.join(f'{r:.2f}' for r in ratios)}); "
            f"failed attempts {failed}"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            receivers.terminate()
        await receivers.wait()
        await broker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--receivers", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=4)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
