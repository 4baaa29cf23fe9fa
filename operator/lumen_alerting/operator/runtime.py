"""Run the operator: kopf with Lumen's registry, liveness endpoint and peering settings, and
the log lines kopf writes when the API server cannot be reached."""

from __future__ import annotations

import logging
import random
import re
import sys
import threading
import time
from collections.abc import Sequence

import kopf

from .config import OperatorConfig
from .handlers import QUIET_SUCCESSES, build_registry
from .kube import ClusterAccess, connection_problem
from .metrics import OperatorMetrics

# kopf's line for each failed attempt of an API request (kopf._cogs.clients.api.request); the
# exception itself is only in its repr at the end, but it is being handled while kopf logs.
_KOPF_ATTEMPT = re.compile(
    r"^Request attempt #(?P<attempt>\d+)(?:/(?P<attempts>\d+))? failed; "
    r"(?P<next>will retry|escalating): "
)


async def run_operator(
    config: OperatorConfig,
    access: ClusterAccess,
    metrics: OperatorMetrics,
    *,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
) -> None:
    """Run until SIGTERM/SIGINT (in the main thread) or until ``stop_flag`` is set."""
    liveness = f"http://0.0.0.0:{config.liveness_port}/healthz" if config.liveness_port else None
    # Replicas with equal priorities would both work; a random one makes exactly one the leader.
    priority = config.priority if config.priority is not None else random.randint(1, 2**30)
    await kopf.operator(
        registry=build_registry(config, access, metrics),
        standalone=config.standalone,
        priority=priority,
        clusterwide=config.clusterwide,
        namespaces=list(config.namespaces),
        liveness_endpoint=liveness,
        stop_flag=stop_flag,
        ready_flag=ready_flag,
    )


class ApiOutageLines(logging.Filter):
    """One plain line per back-off while the API server cannot be reached, not aiohttp's
    internals; goes on the operator's log handler (``cli.operator.configure_logging``).

    - kopf's ``Request attempt #2/7 failed; will retry: GET https://…/api ->
      ClientConnectorError(ConnectionKey(…), ConnectionRefusedError(…))`` becomes the warning
      ``Cannot reach the Kubernetes API at https://…: connection refused; retrying in 2 s
      (attempt 2 of 7).``; its last attempt, an error ending ``no retry left``. Requests failing
      together (kopf discovers ``/api`` and ``/apis`` at once; each watch retries on its own)
      would repeat the same line: a line equal to one logged during the back-off it announced
      is dropped.
    - A line kopf logs with the traceback of such an error (a task or an event that failed on
      it) keeps its message, the error said as above, without the traceback.
    - kopf's line for every successful run of a handler in ``QUIET_SUCCESSES`` becomes debug.

    At debug level nothing is dropped and the tracebacks stay, under the rewritten lines.
    """

    def __init__(self, server: str, retry_delays: Sequence[float]) -> None:
        super().__init__()
        self._server = server
        self._retry_delays = tuple(retry_delays)
        self._quiet = {f"Handler {name!r} succeeded." for name in QUIET_SUCCESSES}
        self._repeat_until: dict[str, float] = {}  # line -> when it may be logged again

    def filter(self, record: logging.LogRecord) -> bool:
        debug = logging.getLogger().isEnabledFor(logging.DEBUG)
        message = record.getMessage()
        if message in self._quiet and record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return debug
        attempt = _KOPF_ATTEMPT.match(message)
        # kopf logs each attempt inside its ``except`` block: the error is the one in flight.
        error = record.exc_info[1] if record.exc_info else sys.exc_info()[1] if attempt else None
        why = connection_problem(error) if error is not None else None
        if error is None or why is None:
            return True
        unreachable = f"the Kubernetes API at {self._server}: {why}"
        pause = 1.0  # seconds a repeated line is dropped when no back-off is known
        if attempt is None:
            said = f"cannot reach {unreachable}"
            line = message.replace(repr(error), said).replace(str(error), said)
            line = line if line != message else f"{message}: {said}"
        elif attempt["next"] == "escalating":
            line = f"Cannot reach {unreachable}; no retry left after {attempt['attempt']} attempts."
        else:
            number, attempts = int(attempt["attempt"]), attempt["attempts"]
            delay = self._delay(number, attempts)
            pause = delay if delay is not None else pause
            retrying = f"retrying in {delay:g} s" if delay is not None else "retrying"
            of = f" of {attempts}" if attempts else ""
            line = f"Cannot reach {unreachable}; {retrying} (attempt {number}{of})."
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = line, None
        record.exc_info = (type(error), error, error.__traceback__) if debug else None
        record.exc_text = None
        if debug:
            return True
        now = time.monotonic()
        if self._repeat_until.get(line, 0.0) > now:
            return False
        self._repeat_until = {k: t for k, t in self._repeat_until.items() if t > now}
        self._repeat_until[line] = now + pause
        return True

    def _delay(self, attempt: int, attempts: str | None) -> float | None:
        """The back-off after ``attempt``: the operator's retry delays, which kopf uses for
        every API request but for posting events (which has its own, of another length)."""
        delays = self._retry_delays
        if attempts is None or int(attempts) != len(delays) + 1 or attempt > len(delays):
            return None
        return delays[attempt - 1]
