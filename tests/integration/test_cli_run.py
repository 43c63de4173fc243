"""`telex run` as a user runs it: its own embedded broker, the replay, the dashboard, Ctrl-C."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from telex.config import load
from telex.testing import TelexProcess

# What the embedded broker itself does: it keeps running on Tansu.
pytestmark = pytest.mark.embedded_broker


async def test_telex_run_serves_dashboard_and_stream_then_stops_cleanly(tmp_path: Path) -> None:
    config = load(
        None,
        {
            "TELEX_REPLAY_INTERVAL": "0.3",
            "TELEX_POLLER_INTERVAL": "0.3",
            "TELEX_KAFKA_SESSION_TIMEOUT_MS": "6000",
        },
    )
    proc = TelexProcess("run", config, log=tmp_path / "telex.log", ready="Press Ctrl-C")
    port = proc.port
    proc.start()
    try:
        await proc.wait_ready(timeout=60)
        assert proc.running, proc.log_text()
        assert f"http://127.0.0.1:{port}/" in proc.log_text()

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            page = await client.get("/")
            assert page.status_code == 200
            assert "telex" in page.text and "/static/app.js" in page.text
            script = await client.get("/static/app.js")
            assert script.status_code == 200 and "WebSocket" in script.text

            async with websockets.connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
                published = []
                async with asyncio.timeout(60):
                    while len(published) < 10:
                        frame = orjson.loads(await ws.recv())
                        published.append(frame["event"]["data"]["published"])
            # Revealed oldest first, as the page grew on the day.
            assert published == sorted(published)
            assert len(set(published)) == 10

            # Every stage becomes ready (consumer groups take a few seconds to join).
            async with asyncio.timeout(60):
                while (ready := await client.get("/readyz")).status_code != 200:
                    assert ready.status_code == 503, ready.text
                    await asyncio.sleep(0.2)
            assert set(ready.json()["components"]) == {"poller", "processor", "gateway", "notifier"}
            exposition = (await client.get("/metrics")).text
            assert "telex_end_to_end_latency_seconds_count" in exposition
            assert "telex_processor_events_produced_total" in exposition
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C, as a user stops it
        try:
            code = await proc.wait(timeout=15)
        finally:
            await proc.kill()  # only if it did not stop
    log = proc.log_text()
    assert code == 0, log
    assert "Traceback" not in log, log
    assert "telex.started" in log and "telex.stopped" in log
    # The start-up heap is frozen out of the collector's full collections once serving.
    assert "heap.settled" in log
    # On uvloop where it is installed (it is, on Linux, with uvicorn[standard]).
    started = next(line for line in log.splitlines() if "telex.started" in line)
    assert "uvloop" in started, started
    assert proc.starts == 1
