"""Where the threader's Redis is: one server, a Sentinel-managed master, or a Redis Cluster.

``parse_redis_url`` reads a store URL into a ``RedisTopology``:

- ``redis://[user[:password]@]host[:port][/db]`` and ``rediss://…`` (TLS): one server;
- ``redis+sentinel://[user[:password]@]host[:port][,host[:port]…]/MASTER[/db]``: the sentinels
  (port 26379 unless given) and the name of the master they watch;
- ``redis+cluster://[user[:password]@]host[:port][,host[:port]…]``: seed nodes of a cluster (no
  database; ``/0`` is accepted).

``?ssl=true`` turns on TLS for the ``+`` schemes. A bad URL is a ``ValueError`` with one line that
never holds the password, nor any other part of the URL that could be one: the messages name the
problem and the position, not the text.

Pure parsing: importing this module imports no Redis client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote

Mode = Literal["standalone", "sentinel", "cluster"]

SCHEMES: dict[str, tuple[Mode, bool]] = {
    "redis": ("standalone", False),
    "rediss": ("standalone", True),
    "redis+sentinel": ("sentinel", False),
    "redis+cluster": ("cluster", False),
}
DEFAULT_PORTS: dict[Mode, int] = {"standalone": 6379, "sentinel": 26379, "cluster": 6379}
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class RedisTopology:
    """A parsed store URL. ``nodes`` are the server, the sentinels or the cluster's seeds."""

    mode: Mode
    nodes: tuple[tuple[str, int], ...]
    master: str | None  # sentinel: the master's name
    db: int  # 0 for cluster
    tls: bool
    username: str | None
    password: str | None

    def __repr__(self) -> str:
        # Never a password in a log line or a traceback's locals.
        shown = "***" if self.password else None
        return (
            f"RedisTopology(mode={self.mode!r}, nodes={self.nodes!r}, master={self.master!r}, "
            f"db={self.db}, tls={self.tls}, username={self.username!r}, password={shown!r})"
        )


def parse_redis_url(url: str) -> RedisTopology:
    """The topology of a ``redis://``, ``rediss://``, ``redis+sentinel://`` or
    ``redis+cluster://`` URL; ``ValueError`` (one line, no password) when it is not one."""
    scheme, separator, rest = url.partition("://")
    if not separator or scheme.lower() not in SCHEMES:
        # Not even the scheme is echoed: without "://" the whole string may be a secret.
        raise ValueError(
            "redis URL: the scheme must be redis://, rediss://, redis+sentinel:// or "
            "redis+cluster://"
        )
    mode, tls = SCHEMES[scheme.lower()]
    where = f"{scheme.lower()} URL"
    rest, _, query = rest.partition("?")
    if "#" in query or "#" in rest:
        raise ValueError(f"{where}: a fragment (#…) is not allowed")
    netloc, slash, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        password = password or None
    nodes = tuple(
        _node(part, DEFAULT_PORTS[mode], where, index)
        for index, part in enumerate(hosts.split(","), 1)
    )
    if mode == "standalone" and len(nodes) != 1:
        raise ValueError(f"{where}: one host:port only (use redis+sentinel:// or redis+cluster://)")
    segments = [unquote(s) for s in path.split("/")] if slash and path else []
    if segments and segments[-1] == "":
        segments.pop()  # a trailing slash
    master: str | None = None
    if mode == "sentinel":
        if not segments or not segments[0]:
            raise ValueError(f"{where}: the master's name is missing (…/MASTER[/db])")
        master = segments.pop(0)
    if len(segments) > 1:
        raise ValueError(
            f"{where}: too many path segments (…{'/MASTER' * (mode == 'sentinel')}/db)"
        )
    db = _db(segments[0], where) if segments else 0
    if mode == "cluster" and db != 0:
        raise ValueError(f"{where}: a cluster has database 0 only")
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in ("ssl", "tls"):
            raise ValueError(f"{where}: unknown query parameter (only ssl=true|false)")
        if value.lower() in _TRUE:
            tls = True
        elif value.lower() in _FALSE:
            tls = tls and scheme.lower() == "rediss"
        else:
            raise ValueError(f"{where}: ssl must be true or false")
    return RedisTopology(mode, nodes, master, db, tls, username, password)


def _node(text: str, default_port: int, where: str, index: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port``; the error names the position, not the text."""
    if text.startswith("["):
        host, bracket, tail = text[1:].partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            raise ValueError(f"{where}: address #{index} has a bad [IPv6] host")
        port_text = tail[1:] if tail else ""
    else:
        host, _, port_text = text.partition(":")
    if not host or any(c in host for c in " /\\@"):
        raise ValueError(f"{where}: address #{index} has no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{where}: address #{index} has a bad port (a number 1-65535)")
    return host, int(port_text)


def _db(text: str, where: str) -> int:
    if not text.isdigit():
        raise ValueError(f"{where}: the database must be a whole number")
    return int(text)
