"""telex.testing: the environment a child gets, and what a start that fails says."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from telex.config import load
from telex.testing import TelexProcess, TelexProcessError, child_environ, run_telex

PASSWORD = "never-print-me-0c1d2e"


def test_the_child_gets_the_config_and_nothing_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEX_HTTP_PROT", "1")  # a typo in the developer's shell
    monkeypatch.setenv("TELEX_KAFKA_BOOTSTRAP", "elsewhere:9092")
    config = load(
        None,
        {
            "TELEX_KAFKA_BOOTSTRAP": "k:9092",
            "TELEX_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "TELEX_KAFKA_USERNAME": "desk",
            "TELEX_KAFKA_PASSWORD": PASSWORD,
        },
    )
    environ = child_environ(config, {"EXTRA": "1"})
    telex = {k: v for k, v in environ.items() if k.startswith("TELEX_")}
    assert telex == config.to_environ()
    assert environ["EXTRA"] == "1" and environ["PATH"]
    assert load(None, environ) == config
    proc = TelexProcess("processor", config)
    assert proc.env["TELEX_HTTP_PORT"] == str(proc.port) != "8000"
    assert PASSWORD not in repr(proc)


async def test_an_early_exit_is_an_error_that_shows_the_log(tmp_path: Path) -> None:
    proc = TelexProcess(["reference", "config"], log=tmp_path / "out.log", ready="never said")
    proc.start()
    with pytest.raises(TelexProcessError, match="exited with 0") as info:
        await proc.wait_ready(timeout=60)
    assert "In the environment: `TELEX_SOURCES`" in str(info.value)  # the log's tail
    assert await proc.stop() == 0
    proc.start()  # a restart appends to the same log; the message shows the current run
    with pytest.raises(TelexProcessError, match="exited with 0"):
        proc.wait_ready_sync(timeout=60)
    assert proc.starts == 2
    assert proc.log_text().count("# Configuration reference") == 2
    assert proc.log_text(current_run=True).count("# Configuration reference") == 1


async def test_a_one_shot_command_gives_its_code_and_output() -> None:
    code, out, err = await run_telex("extract", "/nonexistent/page.html")
    assert code != 0 and out == ""
    assert "nonexistent" in err


async def test_a_first_start_on_a_port_taken_meanwhile_moves_to_another(tmp_path: Path) -> None:
    proc = TelexProcess("gateway", log=tmp_path / "gateway.log", env={"TELEX_LOG_LEVEL": "info"})
    taken = proc.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        proc.start()
        try:
            await proc.wait_ready(timeout=120)
            assert proc.port != taken and proc.starts == 1
            assert "address already in use" in proc.log_text()
        finally:
            await proc.stop()
