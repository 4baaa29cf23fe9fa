"""Where the threader keeps what must survive it. Which store for which scale:

- ``MemoryStore`` (``--store memory``; ``store.memory``): one process, nothing survives a restart.
  Tests, and the reference semantics every other store follows.
- ``SQLiteStore`` (``--store sqlite:PATH``; ``store.sqlite``): one replica, on a persistent
  volume. One file, one fsync per group of notifications.
- ``RedisStore`` (``--store redis://HOST:PORT/DB``, ``redis+sentinel://…``, ``redis+cluster://…``;
  ``store.redis``): several replicas sharing one Redis (with AOF and ``noeviction``), each
  threader under its own key prefix; with Sentinel or replicas, each accept waits for a replica.
- ``PostgreSQLStore`` (``--store postgresql://…``; ``store.postgresql``): several replicas
  sharing one PostgreSQL database, which also holds their incidents; each threader's rows under
  its own scope (the key prefix).

The contract they share (``ThreadStore`` for the request handler and the delivery worker,
``StoreAdmin`` for ``/stats`` and ``/cache``, the records and errors) is in ``store.contract``.
Only it and ``MemoryStore`` are re-exported here, so that importing the contract never imports
``sqlite3`` or ``redis``; ``service.open_store`` imports the store it opens.
"""

from .contract import (
    DEFAULT_LIMITS,
    IDEMPOTENCY_TTL,
    THREAD_TTL,
    Acceptance,
    Delivery,
    DeliveryKind,
    Disposition,
    InfoRefused,
    OutboxEntry,
    OutboxFull,
    OutboxLimits,
    OutboxSize,
    ReplicaAcks,
    ReplicaAckTimeout,
    StoreAdmin,
    StoreStats,
    StoreUnavailable,
    ThreadListing,
    ThreadRecord,
    ThreadState,
    ThreadStore,
    alert_bytes,
)
from .memory import MemoryStore

__all__ = [
    "DEFAULT_LIMITS",
    "IDEMPOTENCY_TTL",
    "THREAD_TTL",
    "Acceptance",
    "Delivery",
    "DeliveryKind",
    "Disposition",
    "InfoRefused",
    "MemoryStore",
    "OutboxEntry",
    "OutboxFull",
    "OutboxLimits",
    "OutboxSize",
    "ReplicaAckTimeout",
    "ReplicaAcks",
    "StoreAdmin",
    "StoreStats",
    "StoreUnavailable",
    "ThreadListing",
    "ThreadRecord",
    "ThreadState",
    "ThreadStore",
    "alert_bytes",
]
