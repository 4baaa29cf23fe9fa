"""The probe scheduler: every probe on its own interval, spread out, a bounded number at once.

Probes run in the background and only ever write ``ExporterMetrics``; scrapes read the last
results and never wait for a target. A probe's first run is offset into its interval by a hash
of its name, so probes sharing an interval do not all fire at the same instant (and the offset
is the same on every restart); after that it keeps to its grid (start + offset + k * interval).
A run that overruns skips the slots it missed rather than firing several times to catch up, and
a probe never overlaps itself. At most ``max_concurrent`` probes are in flight; the rest wait.

Fields are read from a small body on the event loop (a few milliseconds at most), from a bigger
one (over ``INLINE_BODY``) in a process of its own: parsing 4 MiB of JSON takes a quarter of a
second and more, and a thread cannot be relied on, since the parser holds the GIL while it runs
and a scrape may wait for all of it (the scrapes are measured in ``tests/exporter/test_probes.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp

from .body_reader import decode_reading, encode_request
from .config import ExporterConfig, ProbeConfig
from .metrics import ExporterMetrics, ProbeResult
from .values import BodyFields, FieldProblem, FieldReading, compiled, read_fields

log = logging.getLogger("lumen.exporter.probes")

# A health answer is small; a bigger body is cut off here rather than held in memory.
MAX_BODY = 4 * 1024 * 1024
# Bodies up to this size are read on the event loop, bigger ones in a reader process (0.1 s to
# start, and 0.1 s more of the machine's time). Measured here (read_fields, median of 15, on a
# shared 2-core machine): a typical health answer (records of strings and numbers) takes 0.4 ms
# at 64 KiB, 1.7 ms at 256 KiB, 8.8 ms at 1 MiB; the densest JSON (tiny nested values, the most
# work per byte) 1.1, 4.9 and 39 ms. At 256 KiB a scrape waits a few ms at most.
INLINE_BODY = 256 * 1024
# Big bodies read at once, each in a process of its own: one, as a 4 MiB body of small values
# takes some 100 MB to parse (the exporter's pod has a memory limit); the others queue.
BODY_READERS = 1
# A reader taking longer is killed and its run recorded as failed (4 MiB parse in under a second).
READ_TIMEOUT = 60.0
USER_AGENT = "lumen-exporter"


def first_run_offset(name: str, interval: float) -> float:
    """Seconds into its interval at which probe ``name`` first runs: in [0, interval), the same
    for the same name on every start, and spread evenly over many names."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * interval


def next_slot(start: float, offset: float, interval: float, now: float) -> float:
    """The first time on the grid ``start + offset + k * interval`` (k >= 0) after ``now``."""
    first = start + offset
    if now < first:
        return first
    return first + (int((now - first) // interval) + 1) * interval


class ProbeScheduler:
    """Runs the probes of ``config`` until ``stop()``; results go to ``metrics``."""

    def __init__(
        self,
        config: ExporterConfig,
        metrics: ExporterMetrics,
        *,
        max_concurrent: int,
        headers: Mapping[str, Mapping[str, str]] | None = None,
        on_result: Callable[[str, ProbeResult], None] | None = None,
    ) -> None:
        self._config = config
        self._metrics = metrics
        # Told every result after the metrics have it (the CSV log); must not block the loop.
        self._on_result = on_result
        self._slots = asyncio.Semaphore(max_concurrent)
        self._max_concurrent = max_concurrent
        self._headers = headers or {}
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._wanted = {probe.name: body_fields(probe) for probe in config.probes}
        for wanted in self._wanted.values():  # compiled once, here, rather than at a first run
            for path in (*wanted.gauges.values(), *wanted.counted.values()):
                compiled(path)
        self._readers = BodyReaders()
        self._failing: set[str] = set()  # to log a change of state once, not every run

    @property
    def running(self) -> bool:
        return bool(self._tasks) or not self._config.probes

    async def start_session(self) -> None:
        """Open the HTTP client the probes share (``start()`` does it too)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # One connection per probe in flight; keep-alive spares a handshake per run.
                connector=aiohttp.TCPConnector(limit=self._max_concurrent),
                headers={"User-Agent": USER_AGENT},
            )

    async def start(self) -> None:
        """Schedule every probe: its first run at its offset into its interval from now."""
        await self.start_session()
        loop = asyncio.get_running_loop()
        start = loop.time()
        for probe in self._config.probes:
            offset = first_run_offset(probe.name, probe.interval_seconds)
            self._tasks.append(
                asyncio.create_task(self._keep_probing(probe, start, offset), name=probe.name)
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _keep_probing(self, probe: ProbeConfig, start: float, offset: float) -> None:
        loop = asyncio.get_running_loop()
        interval = probe.interval_seconds
        due = start + offset
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            begun = loop.time()
            try:
                await self.run_gated(probe)
            except Exception as error:  # a bug in one run must not end the probe's schedule
                self._record_unexpected(probe, error, begun, loop.time())
            due = next_slot(start, offset, interval, loop.time())

    async def run_gated(self, probe: ProbeConfig) -> ProbeResult:
        """``run_once`` when one of the ``max_concurrent`` slots is free."""
        async with self._slots:
            return await self.run_once(probe)

    async def run_once(self, probe: ProbeConfig) -> ProbeResult:
        """Probe once now, record the result and return it."""
        assert self._session is not None, "start() first"
        started = time.perf_counter()
        try:
            result, problems = await self._probe(self._session, probe)
        except Exception as error:  # a bug, or a body no check foresaw: a failure, not stale
            return self._record_unexpected(probe, error, started, time.perf_counter())
        self._metrics.record(probe.name, result, problems)
        self._log_change(probe, result)
        self._tell(probe, result)
        return result

    def _record_unexpected(
        self, probe: ProbeConfig, error: Exception, started: float, finished: float
    ) -> ProbeResult:
        """Record a failed run (success 0, no fields) for a run that raised ``error``, so the
        previous result does not stay; logged once, by probe name and exception type only (its
        message could quote a header or the URL's credentials)."""
        reason = f"unexpected {type(error).__name__}"
        result = ProbeResult(False, max(0.0, finished - started), time.time(), error=reason)
        if probe.name not in self._failing:
            log.error("Probe %s failed: %s; recorded as a failure.", probe.name, reason)
        self._failing.add(probe.name)
        with contextlib.suppress(Exception):  # recording is what failed: nothing more to do
            self._metrics.record(probe.name, result)
        self._tell(probe, result)
        return result

    def _tell(self, probe: ProbeConfig, result: ProbeResult) -> None:
        if self._on_result is None:
            return
        try:
            self._on_result(probe.name, result)
        except Exception:  # a failing listener must not end the probe's schedule
            log.exception("Recording probe %s's result failed.", probe.name)

    async def _probe(
        self, session: aiohttp.ClientSession, probe: ProbeConfig
    ) -> tuple[ProbeResult, dict[str, FieldProblem]]:
        started = time.perf_counter()
        status: int | None = None
        try:
            # asyncio.timeout bounds everything (connect, headers, body), whatever the target does.
            async with asyncio.timeout(probe.timeout_seconds):
                async with session.request(
                    probe.method,
                    probe.url,
                    headers=self._headers.get(probe.name),
                    # aiohttp would send the secret headers on to wherever a redirect points
                    # (it strips only Authorization and cookies): such probes take no redirect.
                    allow_redirects=not self._headers.get(probe.name),
                ) as response:
                    status = response.status
                    body = await _read_body(response)
        except TimeoutError:
            return self._failure(probe, started, status, f"no answer within {probe.timeout}")
        except (aiohttp.ClientError, OSError, ValueError) as error:
            return self._failure(probe, started, status, _describe(error))
        duration = time.perf_counter() - started
        finished = time.time()
        if not probe.answers_as_expected(status):
            result = ProbeResult(False, duration, finished, status, error=f"HTTP {status}")
            return result, {}
        # A body past MAX_BODY (None) was not read whole: as unusable as one that is not JSON.
        try:
            reading = await self._readers.read(body, self._wanted[probe.name])
        except BodyReaderFailed as error:  # killed, or out of time: this run has no fields
            return ProbeResult(False, duration, finished, status, error=str(error)), {}
        result = ProbeResult(
            True, duration, finished, status, reading.numbers, counted=reading.counted
        )
        return result, reading.problems

    @staticmethod
    def _failure(
        probe: ProbeConfig, started: float, status: int | None, error: str
    ) -> tuple[ProbeResult, dict[str, FieldProblem]]:
        # No body to read fields from: they disappear with the failure, which
        # lumen_probe_success already reports (so they are not counted as field errors).
        duration = time.perf_counter() - started
        return ProbeResult(False, duration, time.time(), status, error=error), {}

    def _log_change(self, probe: ProbeConfig, result: ProbeResult) -> None:
        if not result.success and probe.name not in self._failing:
            self._failing.add(probe.name)
            log.warning("Probe %s failed: %s.", probe.name, result.error)
        elif result.success and probe.name in self._failing:
            self._failing.discard(probe.name)
            log.info("Probe %s succeeds again.", probe.name)


def body_fields(probe: ProbeConfig) -> BodyFields:
    """What to read from ``probe``'s answers (plain data: it may go to a worker process)."""
    return BodyFields(
        gauges=dict(probe.fields),
        value_maps={name: dict(mapping) for name, mapping in probe.value_maps.items()},
        counted=dict(probe.count_values),
    )


class BodyReaderFailed(Exception):
    """The process reading a big body did not give its reading (killed, or out of time)."""


class BodyReaders:
    """Reads the fields of a body: on the event loop up to ``INLINE_BODY``, else in a process of
    its own (``python -m lumen_alerting.exporter.body_reader``), at most ``BODY_READERS`` at
    once, each given ``READ_TIMEOUT`` seconds.

    A process per big body rather than a pool: it imports ``values`` and the ``json_paths``
    leaf, not the ``policy`` package nor anything of the service (0.1 s, 15 MB), and the memory
    a big document takes (100 MB for 4 MiB of small values) goes back to the system when it
    exits, where a long-lived worker would keep it. A reader that fails (killed for memory, or
    out of time) fails that one run, recorded as such; the next big body starts a new one."""

    def __init__(self, readers: int = BODY_READERS) -> None:
        self._slots = asyncio.Semaphore(readers)
        self.command = [sys.executable, "-m", "lumen_alerting.exporter.body_reader"]
        # The reader imports this package wherever it is, installed or not (tests run it from
        # the source tree).
        package_root = str(Path(__file__).resolve().parents[2])
        path = os.environ.get("PYTHONPATH")
        self._environment = os.environ | {
            "PYTHONPATH": package_root if not path else f"{package_root}{os.pathsep}{path}"
        }

    async def read(self, body: bytes | None, wanted: BodyFields) -> FieldReading:
        if body is None or len(body) <= INLINE_BODY or not (wanted.gauges or wanted.counted):
            return read_fields(body, wanted)
        async with self._slots:
            return await self._read_elsewhere(body, wanted)

    async def _read_elsewhere(self, body: bytes, wanted: BodyFields) -> FieldReading:
        reader = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,  # a traceback could quote the body
            env=self._environment,
        )
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                out, _ = await reader.communicate(encode_request(body, wanted))
        except BaseException as error:  # out of time, or the run cancelled: the reader goes too
            with contextlib.suppress(ProcessLookupError):
                reader.kill()
            await reader.wait()  # reaped: no zombie left
            if isinstance(error, TimeoutError):
                raise BodyReaderFailed(
                    f"the body reader gave no reading within {READ_TIMEOUT:g} s"
                ) from None
            raise
        if reader.returncode != 0:
            raise BodyReaderFailed(f"the body reader exited with status {reader.returncode}")
        return decode_reading(out)


async def _read_body(response: aiohttp.ClientResponse) -> bytes | None:
    """The body, or None past MAX_BODY (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await response.content.read(64 * 1024):
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# A failure's text (the CSV log's error column, the log line) is kept this short at most.
MAX_ERROR_TEXT = 200


def _describe(error: BaseException) -> str:
    """``ClientConnectorError: Cannot connect to host ...``: one line, at most MAX_ERROR_TEXT
    characters, encodable as UTF-8 (a message may quote what the target sent). The URL it may
    quote carries no credentials: the config refuses a URL with userinfo."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    text = " ".join(text.split())
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"
