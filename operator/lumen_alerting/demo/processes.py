"""The demo's child processes: started with their output in a log file, waited on until they
answer, stopped with SIGTERM (SIGKILL after a grace period), and shown by the tail of their log
when something goes wrong."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import httpx

T = TypeVar("T")

# How often a condition is looked at again; the only fixed wait in the demo.
POLL_SECONDS = 0.25
STOP_GRACE_SECONDS = 15.0


class DemoFailed(Exception):
    """A step did not come true in time, or a process could not start; the message says which."""


class MissingTool(DemoFailed):
    """A program the demo runs is not installed."""


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it; the child binds it moments later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(
    what: str,
    probe: Callable[[], Awaitable[T | None]],
    timeout: float,
    *,
    watch: Sequence[Child] = (),
) -> T:
    """Look at ``probe`` every ``POLL_SECONDS`` until it gives something truthy; that. Fails
    after ``timeout`` seconds, or as soon as one of ``watch`` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        for child in watch:
            child.check_running()
        found = await probe()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise DemoFailed(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(POLL_SECONDS)


async def answers(url: str, client: httpx.AsyncClient) -> bool:
    """Whether ``url`` answers 200 now."""
    try:
        return (await client.get(url, timeout=2)).status_code == 200
    except httpx.HTTPError:
        return False


class Child:
    """One process of the demo: ``command`` with its output in ``log``."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log: Path,
        *,
        env: Mapping[str, str] | None = None,
        ready_url: str,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.ready_url = ready_url
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, client: httpx.AsyncClient, timeout: float = 60) -> None:
        """Start it and wait until ``ready_url`` answers 200."""
        with open(self.log, "ab") as log:
            # A session of its own: Ctrl-C in the terminal reaches the demo, which stops the
            # children in order, not every child at once.
            self.process = await asyncio.create_subprocess_exec(
                *self.command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        await until(
            f"{self.name} answers on {self.ready_url}",
            lambda: answers(self.ready_url, client),
            timeout,
            watch=[self],
        )

    def check_running(self) -> None:
        """Raise ``DemoFailed`` with the end of its log if it has exited."""
        if self.process is not None and self.process.returncode is not None:
            raise DemoFailed(
                f"{self.name} exited with {self.process.returncode}; the end of its log:\n"
                + self.log_tail()
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:])

    async def kill(self) -> int | None:
        """SIGKILL, as the kernel's OOM killer or a node failure would: no chance to clean up;
        its exit status (-9). The fault tests restart a child after this."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
        return process.returncode

    async def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``STOP_GRACE_SECONDS``; its exit status."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        return process.returncode


def child_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The demo's environment for a child, without ``LUMEN_*`` settings (they would change the
    flags the demo passes) and without Slack credentials unless ``extra`` sets them."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LUMEN_") and k not in ("SLACK_BOT_TOKEN", "SLACK_CHANNEL")
    }
    env.update(extra)
    return env
