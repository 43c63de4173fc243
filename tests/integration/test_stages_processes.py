"""The docs' multi-process layout as a new user tries it: ``telex broker`` in one terminal and
each stage in another, with default settings (only the HTTP port differs, as it must on one
machine). The broker is the embedded one, which refuses idempotent producers: the stages find
that out, say so once, and run. A broker that is absent or refuses the credentials stops a
stage with one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson

from telex.kafka.embedded import free_port

TELEX = str(Path(sys.executable).with_name("telex"))
STAGES = ("processor", "poller", "notifier", "gateway")
PASSWORD = "never-print-me-5d1c9a"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELEX_")}
    return {**env, "TELEX_LOG_FORMAT": "json", **extra}


@contextlib.asynccontextmanager
async def broker_process(tmp_path: Path) -> AsyncIterator[str]:
    """``telex broker``, as a user starts it; yields its bootstrap address."""
    out = tmp_path / "broker.out"
    with out.open("wb") as sink:
        proc = await asyncio.create_subprocess_exec(
            TELEX, "broker", env=clean_env(), stdout=asyncio.subprocess.PIPE, stderr=sink
        )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = (await proc.stdout.readline()).decode()
        found = re.search(r"broker on (\S+) ", line)
        assert found, f"no address in {line!r}: {out.read_text()}"
        yield found.group(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            await proc.wait()


async def ready(url: str) -> None:
    async with httpx.AsyncClient() as client:
        async with asyncio.timeout(90):
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url + "/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.3)


async def test_each_stage_starts_on_a_telex_broker_with_one_warning(tmp_path: Path) -> None:
    async with broker_process(tmp_path) as bootstrap:
        procs: dict[str, asyncio.subprocess.Process] = {}
        logs = {stage: tmp_path / f"{stage}.log" for stage in STAGES}
        try:
            for stage in STAGES:
                port = free_port()
                with logs[stage].open("wb") as sink:
                    procs[stage] = await asyncio.create_subprocess_exec(
                        TELEX,
                        stage,
                        "--bootstrap",
                        bootstrap,
                        env=clean_env(TELEX_HTTP_PORT=str(port)),
                        stdout=sink,
                        stderr=asyncio.subprocess.STDOUT,
                    )
                await ready(f"http://127.0.0.1:{port}")
            for stage, proc in procs.items():
                assert proc.returncode is None, f"{stage} exited: {logs[stage].read_text()}"
        finally:
            for proc in procs.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            for proc in procs.values():
                async with asyncio.timeout(30):
                    await proc.wait()
    for stage, proc in procs.items():
        text = logs[stage].read_text()
        assert proc.returncode == 0, f"{stage} stopped with {proc.returncode}: {text}"
        assert "Traceback" not in text, f"{stage}: {text}"
        events = [orjson.loads(line) for line in text.splitlines() if line.startswith('{"ts"')]
        warnings = [e for e in events if e["level"] in ("warning", "error", "critical")]
        assert [e["event"] for e in warnings] == ["kafka.idempotence.unavailable"], (
            f"{stage}: {warnings}"
        )
        connected = [e for e in events if e["event"] == "kafka.connected"]
        assert connected and connected[0]["idempotence"] is False
        assert connected[0]["memory_only"] is True


async def run_stage(*args: str, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        TELEX,
        *args,
        env=clean_env(**env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_an_absent_broker_is_one_line_and_a_failure() -> None:
    code, output = await run_stage(
        "processor",
        "--bootstrap",
        f"127.0.0.1:{free_port()}",
        TELEX_KAFKA_EMBEDDED_START_TIMEOUT_S="2",
        TELEX_HTTP_PORT="0",
    )
    assert code == 1
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("telex: Kafka at 127.0.0.1:"), output
    assert "did not answer within 2s" in lines[0]


async def test_refused_credentials_and_a_tls_mismatch_are_one_line_each(tmp_path: Path) -> None:
    async with broker_process(tmp_path) as bootstrap:
        code, output = await run_stage(
            "notifier",
            "--bootstrap",
            bootstrap,
            TELEX_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
            TELEX_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
            TELEX_KAFKA_USERNAME="newsroom",
            TELEX_KAFKA_PASSWORD=PASSWORD,
            TELEX_HTTP_PORT="0",
        )
        assert code == 1
        assert PASSWORD not in output
        lines = output.strip().splitlines()
        assert len(lines) == 1, output
        assert "refused user 'newsroom' (SCRAM-SHA-512)" in lines[0]

        code, output = await run_stage(
            "gateway",
            "--bootstrap",
            bootstrap,
            TELEX_KAFKA_SECURITY_PROTOCOL="SSL",
            TELEX_KAFKA_EMBEDDED_START_TIMEOUT_S="3",
            TELEX_HTTP_PORT="0",
        )
        assert code == 1
        lines = output.strip().splitlines()
        assert len(lines) == 1, output
        assert "is the listener at" in lines[0] and "TLS?" in lines[0]
