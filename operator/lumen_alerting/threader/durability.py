"""Whether the store keeps what the threader acknowledged: Redis' ``INFO persistence`` and
``INFO memory``, PostgreSQL's ``fsync`` and ``synchronous_commit``.

A 200 to Alertmanager promises the alert is kept. Redis keeps it across a crash only with the
append-only file on (RDB snapshots alone lose everything since the last snapshot, minutes of
alerts), and only while it never evicts keys (an evicted outbox entry is an alert
silently dropped, an evicted idempotency or thread key a duplicate message). PostgreSQL keeps it
only when a commit is flushed before it returns (``synchronous_commit`` not ``off``) and flushes
reach the disk (``fsync`` on). Without those the threader is not ready, unless
``--allow-volatile-store`` accepts the loss.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .store.contract import InfoRefused, StoreUnavailable

log = logging.getLogger("lumen.threader.durability")

# /ready asks at most this often; Redis' settings change rarely (CONFIG SET, a failover).
CACHE_SECONDS = 5.0
ALLOW_FLAG = "--allow-volatile-store"


@dataclass(frozen=True)
class Durability:
    """What Redis' settings mean for acknowledged alerts."""

    durable: bool
    # One line for the log and /ready: what was found and what it risks.
    detail: str
    verified: bool = True  # False: INFO was refused, so nothing is known


@dataclass(frozen=True)
class Readiness:
    ready: bool
    message: str


def redis_durability(info: Mapping[str, Any]) -> Durability:
    """The verdict on ``INFO persistence`` and ``INFO memory`` (merged)."""
    problems = []
    if str(info.get("aof_enabled", "0")) != "1":
        problems.append(
            "AOF is off (appendonly no): a restart of Redis loses every alert accepted since "
            "its last RDB snapshot, if it takes any; set appendonly yes"
        )
    elif str(info.get("aof_last_write_status", "ok")) != "ok":
        problems.append("the last AOF write failed (a full disk?): Redis refuses writes")
    policy = str(info.get("maxmemory_policy", "noeviction"))
    if policy != "noeviction":
        problems.append(
            f"maxmemory-policy is {policy}: a full Redis evicts queued alerts and thread keys; "
            "set maxmemory-policy noeviction"
        )
    if problems:
        return Durability(False, "Redis persistence: " + "; ".join(problems))
    return Durability(True, "Redis persistence: AOF on, no eviction")


def postgresql_durability(settings: Mapping[str, Any]) -> Durability:
    """The verdict on PostgreSQL's ``fsync`` and ``synchronous_commit`` settings."""
    problems = []
    if str(settings.get("fsync", "on")) != "on":
        problems.append("fsync is off: a crash of the server's machine can lose any commit")
    if str(settings.get("synchronous_commit", "on")) == "off":
        problems.append(
            "synchronous_commit is off: a crash loses the commits of the last moments, "
            "acknowledged alerts among them; set synchronous_commit on for the threader's user"
        )
    if problems:
        return Durability(False, "PostgreSQL durability: " + "; ".join(problems))
    return Durability(True, "PostgreSQL durability: fsync on, synchronous_commit on")


class DurabilityCheck:
    """The store's durability for ``/ready`` and the start-up log, cached for a few seconds."""

    def __init__(
        self,
        read_info: Callable[[], Awaitable[Mapping[str, Any]]],
        *,
        allow_volatile: bool,
        verdict: Callable[[Mapping[str, Any]], Durability] = redis_durability,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read_info = read_info
        self._verdict = verdict
        self._allow_volatile = allow_volatile
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cached: tuple[float, Durability] | None = None

    async def durability(self) -> Durability:
        """Raises StoreUnavailable when Redis does not answer (not cached: /ready says so)."""
        now = self._clock()
        if self._cached is not None and now - self._cached[0] < self._cache_seconds:
            return self._cached[1]
        try:
            verdict = self._verdict(await self._read_info())
        except InfoRefused as refused:
            verdict = Durability(
                False,
                f"cannot verify Redis persistence: INFO was refused ({refused}); allow INFO to "
                "this user or check appendonly yes and maxmemory-policy noeviction by hand",
                verified=False,
            )
        self._cached = (now, verdict)
        return verdict

    async def readiness(self) -> Readiness:
        durability = await self.durability()
        if durability.durable:
            return Readiness(True, durability.detail)
        if self._allow_volatile:
            return Readiness(True, f"{durability.detail} (accepted by {ALLOW_FLAG})")
        return Readiness(
            False,
            f"{durability.detail}; acknowledged alerts could be lost, so not ready (start with "
            f"{ALLOW_FLAG} to accept that)",
        )

    async def log_at_start(self) -> None:
        """One line: INFO when durable, WARNING when volatile and allowed, ERROR otherwise."""
        try:
            readiness = await self.readiness()
            durable = (await self.durability()).durable
        except StoreUnavailable as error:
            log.warning("Cannot check the store's persistence yet, /ready will: %s", error)
            return
        if durable:
            log.info("%s.", readiness.message)
        elif readiness.ready:
            log.warning("%s.", readiness.message)
        else:
            log.error("%s.", readiness.message)
