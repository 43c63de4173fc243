"""The fan-out benchmark, tiny, so that it cannot rot (the real runs are by hand: RESULTS.md)."""

from __future__ import annotations

import asyncio
import sys

import orjson

from telex.bus import EmbeddedBroker

from ..conftest import ROOT


async def test_fanout_benchmark_runs_every_server(broker: EmbeddedBroker) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "bench" / "fanout.py"),
        "--subscribers", "20",
        "--runs", "1",
        "--deliveries", "400",
        "--latency-deliveries", "400",
        "--latency-seconds", "0.5",
        "--bootstrap", broker.bootstrap,
        "--no-pin",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(150):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    rows = [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    assert [r["server"] for r in rows] == ["floor", "floor_batch", "naive", "telex"]
    for row in rows:
        assert row["complete"] and row["lost"] == 0 and row["duplicates_seen"] == 0, row
        assert row["deliveries_per_s"] > 0 and row["p99_ms"] >= row["p50_ms"] > 0, row
    assert b"| 20 | telex |" in out
