"""The docs' multi-process layout as a new user tries it: ``telex broker`` in one terminal and
each stage in another, with default settings (only the HTTP port differs, as it must on one
machine). The broker is the embedded one, which refuses idempotent producers: the stages find
that out, say so once, and run. A broker that is absent or refuses the credentials stops a
stage with one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

from telex.kafka.embedded import free_port
from telex.testing import TelexProcess, run_telex

STAGES = ("processor", "poller", "notifier", "gateway")
PASSWORD = "never-print-me-5d1c9a"
# Default settings but for JSON logs, which the test reads.
JSON_LOGS = {"TELEX_LOG_FORMAT": "json"}


@contextlib.asynccontextmanager
async def broker_process(tmp_path: Path) -> AsyncIterator[str]:
    """``telex broker``, as a user starts it; yields its bootstrap address."""
    proc = TelexProcess("broker", log=tmp_path / "broker.out", env=JSON_LOGS, ready=" broker on ")
    proc.start()
    try:
        await proc.wait_ready(timeout=60)
        assert proc.running, proc.log_text()
        found = re.search(r"broker on (\S+) ", proc.log_text())
        assert found, proc.log_text()
        yield found.group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            await proc.wait(timeout=30)
        finally:
            await proc.kill()  # only if it did not stop


async def test_each_stage_starts_on_a_telex_broker_with_one_warning(tmp_path: Path) -> None:
    async with broker_process(tmp_path) as bootstrap:
        procs = {
            stage: TelexProcess(
                [stage, "--bootstrap", bootstrap], log=tmp_path / f"{stage}.log", env=JSON_LOGS
            )
            for stage in STAGES
        }
        try:
            for proc in procs.values():
                proc.start()
                await proc.wait_ready(timeout=90)
            for stage, proc in procs.items():
                assert proc.running, f"{stage} exited: {proc.log_text()}"
            # Each readiness answer came from its own stage.
            assert len({proc.url for proc in procs.values()}) == len(STAGES)
        finally:
            codes = await asyncio.gather(*(proc.stop(timeout=30) for proc in procs.values()))
    for (stage, proc), code in zip(procs.items(), codes, strict=True):
        text = proc.log_text()
        assert code == 0, f"{stage} stopped with {code}: {text}"
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
    code, out, err = await run_telex(*args, env={**JSON_LOGS, **env})
    return code, out + err


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
