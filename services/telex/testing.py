"""telex as a child process, the one way the tests and the benchmarks start it.

:class:`TelexProcess` runs ``python -m telex <command>`` with a :class:`~telex.config.Config`
as its whole ``TELEX_*`` environment (:meth:`Config.to_environ`; variables the parent inherited
are dropped, so a developer's shell cannot change what a test runs), its output in a log file,
on an HTTP port chosen once so that a restarted process is found where the old one was. It
waits until ``/readyz`` answers 200 (or a line shows in the log), stops with SIGTERM and a
SIGKILL fallback, kills and restarts. Its waits are coroutines, for code on an event loop; a
start's and a stop's have ``_sync`` forms (and ``with``) for code without one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from telex.config import ENV_PREFIX, Config
from telex.kafka.embedded import free_port

TELEX = (sys.executable, "-m", "telex")
# How often a wait looks again: short next to any start-up, long next to a loopback request.
_POLL_S = 0.1
_LOG_TAIL = 4000
_TAKEN = "address already in use"


class TelexProcessError(RuntimeError):
    """A telex process exited early or was not ready in time; the message ends with its log."""


def child_environ(
    config: Config | None = None, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a telex child: this one's without ``TELEX_*``, then ``config`` as
    variables, then ``env``. Holds secrets in clear: never log it."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return {**base, **(config or Config()).to_environ(), **(env or {})}


async def run_command(
    *argv: str, env: Mapping[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, str, str]:
    """Run a command to its end (killed after ``timeout`` seconds): its exit code, stdout and
    stderr. ``env`` is its whole environment; without it, this process's."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=None if env is None else dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def run_telex(
    *args: str,
    config: Config | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
) -> tuple[int, str, str]:
    """Run a one-shot ``telex`` command (``webhooks list``, ``extract URL``) to its end:
    its exit code, stdout and stderr."""
    return await run_command(*TELEX, *args, env=child_environ(config, env), timeout=timeout)


class TelexProcess:
    """One ``telex <command>`` child process (``processor``, ``run``, ``replay --port N``...).

    ``config`` is its whole configuration but for the HTTP port; ``env`` adds variables
    beyond it. The port is ``port``, or a free one chosen here, once (never the config's, whose
    default 8000 two processes would share): :attr:`url` is known before the start and stays
    the same across restarts. ``ready`` is how readiness shows: ``"/readyz"``
    (an HTTP path answering 200) or any other text, a line the process writes to its log.
    ``log`` gets stdout and stderr of every run, appended; without one they are discarded.
    Use it as a context manager (``async with`` or ``with``) to start it, wait until ready,
    and stop it at the end.
    """

    def __init__(
        self,
        command: str | Sequence[str],
        config: Config | None = None,
        *,
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
        ready: str = "/readyz",
        port: int | None = None,
    ) -> None:
        self.args = (command,) if isinstance(command, str) else tuple(command)
        self.config = config or Config()
        self._extra_env = dict(env or {})
        self._port_chosen = port is None
        self._use_port(port or free_port())
        self.log = log
        self.ready = ready
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_from = 0  # where the current run's output starts in the log

    def _use_port(self, port: int) -> None:
        self.port = port
        host = self.config.http.host
        self.url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
        self.env = child_environ(
            self.config, {f"{ENV_PREFIX}HTTP_PORT": str(port), **self._extra_env}
        )

    def __repr__(self) -> str:  # never the environment: it holds secrets
        return f"TelexProcess({' '.join(self.args)!r}, pid={self.pid}, url={self.url!r})"

    @property
    def name(self) -> str:
        """The command, for messages."""
        return " ".join(self.args)

    @property
    def pid(self) -> int | None:
        """The current run's process id."""
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit code of the current run; ``None`` while it runs (or before any)."""
        return None if self._proc is None else self._proc.poll()

    @property
    def running(self) -> bool:
        """True between a start and the process's end."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> TelexProcess:
        """Spawn the process (without waiting for it to be ready)."""
        if self.running:
            raise TelexProcessError(f"telex {self.name} is already running")
        out: IO[bytes] | int = subprocess.DEVNULL
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            out = self.log.open("ab")
            self._log_from = out.tell()
        try:
            self._proc = subprocess.Popen(
                [*TELEX, *self.args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            if not isinstance(out, int):
                out.close()  # the child has its own descriptor
        self.starts += 1
        return self

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the current run, if it still runs."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)

    def log_text(self, current_run: bool = False) -> str:
        """What the process wrote (of every run, or of the current one only)."""
        if self.log is None or not self.log.exists():
            return ""
        with self.log.open("rb") as file:
            file.seek(self._log_from if current_run else 0)
            return file.read().decode(errors="replace")

    def _failure(self, what: str) -> TelexProcessError:
        return TelexProcessError(
            f"telex {self.name} {what}; its log:\n{self.log_text(True)[-_LOG_TAIL:]}"
        )

    def _check_alive(self) -> None:
        code = self.returncode
        if self._proc is None:
            raise TelexProcessError(f"telex {self.name} was never started")
        if code is None:
            return
        if self._port_chosen and self.starts == 1 and _TAKEN in self.log_text(current_run=True):
            # The free port chosen at construction was taken since (by any process of the
            # machine): a first start may move to another one; a restart must keep its port.
            self._use_port(free_port())
            self.starts = 0
            self.start()
            return
        raise self._failure(f"exited with {code}")

    def _logged(self, needle: str) -> bool:
        return needle in self.log_text(current_run=True)

    # Waits, for an event loop ----------------------------------------------------------

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Until the process is ready; :class:`TelexProcessError` if it exits or is not ready
        within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=5) as client:
                while True:
                    self._check_alive()
                    if self.ready.startswith("/"):
                        try:
                            if (await client.get(self.url + self.ready)).status_code == 200:
                                return
                        except httpx.TransportError:
                            pass
                    elif self._logged(self.ready):
                        return
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            raise self._failure(f"not ready within {timeout} s") from None

    async def wait_for_log(self, needle: str, timeout: float = 60.0) -> None:
        """Until the current run has written ``needle`` to its log."""
        try:
            async with asyncio.timeout(timeout):
                while not self._logged(needle):
                    self._check_alive()
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            raise self._failure(f"wrote no {needle!r} within {timeout} s") from None

    async def wait(self, timeout: float | None = None) -> int:
        """Until the process ends; its exit code (``TimeoutError`` after ``timeout``)."""
        async with asyncio.timeout(timeout):
            while (code := self.returncode) is None:
                await asyncio.sleep(_POLL_S / 2)
        return code

    async def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not ended within ``timeout`` seconds; the exit
        code (``None`` if it was never started)."""
        if self._proc is None:
            return None
        self.send_signal(signal.SIGTERM)
        try:
            return await self.wait(timeout)
        except TimeoutError:
            return await self.kill()

    async def kill(self) -> int:
        """SIGKILL: no drain, no goodbye; the exit code."""
        self.send_signal(signal.SIGKILL)
        return await self.wait()

    async def restart(self, timeout: float = 60.0, kill: bool = False) -> None:
        """Stop (or SIGKILL) the current run, start a new one and wait until it is ready."""
        await (self.kill() if kill else self.stop())
        self.start()
        await self.wait_ready(timeout)

    async def __aenter__(self) -> TelexProcess:
        self.start()
        try:
            await self.wait_ready()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # Waits, without an event loop --------------------------------------------------------

    def wait_ready_sync(self, timeout: float = 60.0) -> None:
        """:meth:`wait_ready` for code without an event loop."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=5) as client:
            while time.monotonic() < deadline:
                self._check_alive()
                if self.ready.startswith("/"):
                    try:
                        if client.get(self.url + self.ready).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                elif self._logged(self.ready):
                    return
                time.sleep(_POLL_S)
        raise self._failure(f"not ready within {timeout} s")

    def stop_sync(self, timeout: float = 30.0) -> int | None:
        """:meth:`stop` for code without an event loop."""
        if self._proc is None:
            return None
        self.send_signal(signal.SIGTERM)
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill_sync()

    def kill_sync(self) -> int:
        """:meth:`kill` for code without an event loop."""
        if self._proc is None:
            raise TelexProcessError(f"telex {self.name} was never started")
        self.send_signal(signal.SIGKILL)
        return self._proc.wait()

    def __enter__(self) -> TelexProcess:
        self.start()
        try:
            self.wait_ready_sync()
        except BaseException:
            self.stop_sync()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop_sync()
