"""Patterns of the threader store's fields (``spec.threader.store``) and the words the loader
says of a value that fails one, as ``durations`` does for durations."""

from __future__ import annotations

# Redis URLs the threader takes (`--store`): one server, TLS, Sentinel, Cluster.
REDIS_URL = r"^((rediss?|redis\+sentinel|redis\+cluster)://\S+)?$"
REDIS_URL_HINT = (
    "is not a Redis URL (redis://, rediss://, redis+sentinel:// or redis+cluster://; a "
    "PostgreSQL store's URL goes in store.databaseURL, a Secret)"
)
# A password in a URL's user info (`user:password@`, `:password@`) or its query (`?password=`).
# No backslash and no quote: it is written into a CEL string literal as it is.
URL_PASSWORD = "^[a-z+]+://[^/@?]*:[^/@?]*@|[?&]password="
# `auto`, or how many replicas must confirm a write (`0`: none, the wait is off).
REPLICA_ACKS = r"^(auto|0|[1-9][0-9]?)$"
REPLICA_ACKS_HINT = "is not `auto` nor a whole number of replicas (`0` turns the wait off)"
