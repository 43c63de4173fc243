"""`telex run` as a user runs it: its own embedded broker, the replay, the dashboard, Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import orjson
import pytest
import websockets

from telex.kafka.embedded import free_port

# What the embedded broker itself does: it keeps running on Tansu.
pytestmark = pytest.mark.embedded_broker

TELEX = str(Path(sys.executable).with_name("telex"))


async def test_telex_run_serves_dashboard_and_stream_then_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TELEX_HTTP_PORT": str(port),
        "TELEX_REPLAY_INTERVAL": "0.3",
        "TELEX_POLLER_INTERVAL": "0.3",
        "TELEX_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    env.pop("TELEX_KAFKA_BOOTSTRAP", None)
    stderr = (tmp_path / "stderr.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        TELEX, "run", env=env, stdout=asyncio.subprocess.PIPE, stderr=stderr
    )
    try:
        assert proc.stdout is not None
        banner = b""
        async with asyncio.timeout(60):
            while b"Press Ctrl-C" not in banner:
                line = await proc.stdout.readline()
                assert line, f"telex run exited early: {(tmp_path / 'stderr.log').read_text()}"
                banner += line
        assert f"http://127.0.0.1:{port}/".encode() in banner

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
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            code = await proc.wait()
        stderr.close()
    log = (tmp_path / "stderr.log").read_text()
    assert code == 0, log
    assert "Traceback" not in log, log
    assert "telex.stopped" in log
