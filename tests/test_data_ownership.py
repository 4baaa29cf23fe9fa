"""Tests and benchmarks own their data (#8 item 14): whatever talks to the machine's shared Redis
(127.0.0.1:6379) works under a key prefix of its own and deletes only its own keys; emptying a
whole database is only done on the private redis-servers tests start (``RedisServer``)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_REDIS = re.compile(r"(127\.0\.0\.1|localhost):6379")
# The two commands that empty a whole database or server, in any case.
WIPES = re.compile(r"\bflush(db|all)\b", re.IGNORECASE)


def test_nothing_wipes_a_database_of_the_shared_redis() -> None:
    offenders = []
    for path in sorted([*REPO.glob("tests/**/*.py"), *REPO.glob("bench/**/*.py")]):
        if path == Path(__file__):
            continue
        text = path.read_text(encoding="utf-8")
        if SHARED_REDIS.search(text) and WIPES.search(text):
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], "these talk to the shared Redis and empty whole databases"
