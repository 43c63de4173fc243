"""Poller benchmark: 1,000 local sources at a 10 s interval, most answering 304.

Measures the CPU use of a real ``telex poller`` process (embedded broker, sources declared in
a TOML file, the full path: schedule, SSRF check, conditional GET, extraction of the pages that
changed, produce to Kafka, metrics) and the requests per second it makes, against a baseline
measured in the same run on the same site: a bare asyncio + aiohttp loop (the poller's HTTP
client) making the same conditional GETs at the same rate and doing nothing else (the floor for
this HTTP client).
The site runs in a third process, so its CPU is not counted.

    .venv/bin/python bench/poller_bench.py [--sources 1000] [--interval 10] [--runs 3]

Prints one line per measurement and a summary with medians and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from telex.config import load
from telex.kafka.embedded import EmbeddedBroker, free_port
from telex.testing import TelexProcess

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def site_hits(client: httpx.AsyncClient, base: str) -> int:
    return int((await client.get(f"{base}/_stats")).json()["total"])


async def measure(
    pid: int, client: httpx.AsyncClient, base: str, warmup: float, window: float
) -> tuple[float, float]:
    """(CPU cores used, requests per second) of ``pid`` over ``window`` after ``warmup``."""
    await asyncio.sleep(warmup)
    cpu0, hits0, t0 = cpu_seconds(pid), await site_hits(client, base), time.monotonic()
    await asyncio.sleep(window)
    cpu1, hits1, t1 = cpu_seconds(pid), await site_hits(client, base), time.monotonic()
    return (cpu1 - cpu0) / (t1 - t0), (hits1 - hits0) / (t1 - t0)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def baseline_worker(base: str, sources: int, interval: float) -> None:
    """The floor: conditional GETs of every source at ``interval``, nothing else.

    With the poller's default per-host limit (4 in flight), so that requests do not queue in
    the client's own pool.
    """
    slot = asyncio.Semaphore(4)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as client:

        async def loop(i: int) -> None:
            etag: str | None = None
            await asyncio.sleep(random.uniform(0, interval))
            while True:
                headers = {"If-None-Match": etag} if etag else {}
                try:
                    async with slot, client.get(f"{base}/p/{i}", headers=headers) as response:
                        await response.read()
                        etag = response.headers.get("etag") or etag
                except aiohttp.ClientError as exc:
                    print(f"baseline: {exc!r}", file=sys.stderr)
                await asyncio.sleep(interval * random.uniform(0.9, 1.1))

        await asyncio.gather(*(loop(i) for i in range(sources)))


def poller_config(path: Path, base: str, sources: int, interval: float) -> None:
    lines = [
        "[poller]",
        f"interval = {interval}",
        "adaptive_min = 1.0",  # hold the interval at 10 s: the target is stated at 10 s
        "adaptive_max = 1.0",
        'allow_networks = ["127.0.0.0/8"]',
        "[log]",
        'level = "warning"',
    ]
    for i in range(sources):
        lines += ["[[sources]]", f'id = "p{i:04d}"', f'url = "{base}/p/{i}"']
    path.write_text("\n".join(lines) + "\n")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--baseline-worker", metavar="BASE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        await baseline_worker(args.baseline_worker, args.sources, args.interval)
        return

    broker = EmbeddedBroker()
    await broker.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    site = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "poller_site.py"), str(port), "--pages", str(args.sources)
    )
    results: dict[str, list[tuple[float, float]]] = {"baseline": [], "poller": []}
    workdir = Path(tempfile.mkdtemp(prefix="telex-bench-"))
    config = workdir / "poller.toml"
    poller_config(config, base, args.sources, args.interval)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for _ in range(100):
                try:
                    await site_hits(client, base)
                    break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            for run in range(args.runs):
                worker = await asyncio.create_subprocess_exec(
                    sys.executable,
                    __file__,
                    "--baseline-worker",
                    base,
                    "--sources",
                    str(args.sources),
                    "--interval",
                    str(args.interval),
                )
                try:
                    cores, rps = await measure(worker.pid, client, base, args.warmup, args.window)
                finally:
                    await stop(worker)
                results["baseline"].append((cores, rps))
                print(f"run {run + 1} baseline: {cores * 100:5.1f}% CPU  {rps:6.1f} req/s")

                settings = load(
                    None,
                    {
                        "TELEX_KAFKA_BOOTSTRAP": broker.bootstrap,
                        "TELEX_KAFKA_IDEMPOTENCE": "off",
                        "TELEX_KAFKA_SESSION_TIMEOUT_MS": "6000",
                        "TELEX_TOPICS_RAW": f"b{run}.updates.raw",
                        "TELEX_TOPICS_WIRE": f"b{run}.updates",
                        "TELEX_TOPICS_DLQ": f"b{run}.dlq",
                        "TELEX_TOPICS_SOURCES": f"b{run}.sources",
                        "TELEX_POLLER_GROUP_ID": f"b{run}-poller",
                    },
                )
                poller = TelexProcess(
                    ["poller", "--config", str(config)], settings, log=workdir / f"poller{run}.log"
                ).start()
                try:
                    assert poller.pid is not None
                    cores, rps = await measure(poller.pid, client, base, args.warmup, args.window)
                finally:
                    await poller.stop(timeout=15)
                results["poller"].append((cores, rps))
                print(f"run {run + 1} poller:   {cores * 100:5.1f}% CPU  {rps:6.1f} req/s")
    finally:
        await stop(site)
        await broker.stop()

    def median(name: str, index: int) -> float:
        return statistics.median(r[index] for r in results[name])

    base_cpu, poll_cpu = median("baseline", 0), median("poller", 0)
    print(
        f"\n{args.sources} sources, {args.interval:g} s interval, {args.runs} runs, "
        f"{args.window:g} s windows (medians)\n"
        f"  baseline (aiohttp loop): {base_cpu * 100:5.1f}% of a core, "
        f"{median('baseline', 1):6.1f} req/s\n"
        f"  telex poller:          {poll_cpu * 100:5.1f}% of a core, "
        f"{median('poller', 1):6.1f} req/s\n"
        f"  poller / baseline CPU: {poll_cpu / base_cpu:.2f}x; "
        f"CPU per request: {poll_cpu / median('poller', 1) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
