"""Private Redis topologies for the store's tests: a Redis Cluster of a few masters, and a
Sentinel set-up (a master, a replica, three sentinels). Every process on a free port with its own
directory; ``remove()`` stops them all and deletes the directories, also after a failed start."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import redis
from redis.cluster import RedisCluster

from tests.support.polling import eventually, free_port
from tests.support.threader_run import RedisServer

MASTER_NAME = "lumen-master"


class RedisClusterServers:
    """``masters`` cluster-enabled ``redis-server`` processes (no replicas), every slot assigned
    with ``redis-cli --cluster create``; ``url`` is ``redis+cluster://`` with every node."""

    def __init__(self, masters: int = 3) -> None:
        options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        options += ["--cluster-node-timeout", "5000", "--appendfsync", "everysec"]
        self.nodes = [RedisServer(*options) for _ in range(masters)]
        for node in self.nodes:
            node.port = _cluster_port()
            node.url = f"redis://127.0.0.1:{node.port}/0"
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> RedisClusterServers:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                ["redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{node.port}" for node in self.nodes),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
            for node in self.nodes:
                eventually(partial(_cluster_ok, node.port), 60, f"cluster_state:ok on {node.port}")
        except BaseException:
            self.remove()
            raise
        return self

    def client(self) -> RedisCluster:
        return RedisCluster(host="127.0.0.1", port=self.nodes[0].port, decode_responses=True)

    def delete(self, pattern: str) -> None:
        """Delete the keys matching ``pattern`` on every node (a test's prefix), and no other."""
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            try:
                keys = list(client.scan_iter(match=pattern, count=1000))
                for key in keys:  # one by one: keys of several slots may match
                    client.delete(key)
            finally:
                client.close()

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is a port too, and free."""
    while True:
        port = free_port()
        if port + 10000 < 65536:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port + 10000)) != 0:
                    return port


def _cluster_ok(port: int) -> bool:
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        info = client.cluster("INFO")  # parsed into a dict by redis-py
        return bool(info.get("cluster_state") in ("ok", b"ok"))
    except redis.RedisError:
        return False
    finally:
        client.close()


class RedisSentinelSet:
    """A master, one replica and three sentinels watching the master as ``lumen-master``
    (quorum 2, down after 1 s, so a failover takes a few seconds). AOF on. With ``password``,
    the servers require it (``requirepass``, ``masterauth``) and so do the sentinels.
    ``failover_timeout_ms`` is also how long the sentinels leave a replica that follows another
    address than the master's (a proxy in between) before they point it at the master."""

    def __init__(
        self,
        password: str | None = None,
        master_options: tuple[str, ...] = (),
        *,
        failover_timeout_ms: int = 5000,
    ) -> None:
        self.password = password
        self.failover_timeout_ms = failover_timeout_ms
        auth = ("--requirepass", password, "--masterauth", password) if password else ()
        self.master = RedisServer(*auth, *master_options)
        self.replica = RedisServer(
            *auth, *master_options, "--replicaof", "127.0.0.1", str(self.master.port)
        )
        self._dir = Path(tempfile.mkdtemp(prefix="sentinels-"))
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        self.url = (
            "redis+sentinel://"
            + ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
            + f"/{MASTER_NAME}/0"
        )

    def start(self) -> RedisSentinelSet:
        try:
            self.master.start()
            self.replica.start()
            eventually(self._replicating, 60, "the replica in sync with the master")
            for port in self.sentinel_ports:
                self.sentinels.append(self._start_sentinel(port))
            # Ready when every sentinel knows the replica and the two other sentinels: only
            # then can they agree on a failover.
            eventually(self._sentinels_ready, 60, "three sentinels that see each other")
        except BaseException:
            self.remove()
            raise
        return self

    def _start_sentinel(self, port: int) -> subprocess.Popen[bytes]:
        directory = self._dir / str(port)
        directory.mkdir()
        lines = [
            f"port {port}",
            "bind 127.0.0.1",
            f'dir "{directory}"',
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2",
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000",
            f"sentinel failover-timeout {MASTER_NAME} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
        ]
        if self.password:
            lines += [
                f"sentinel auth-pass {MASTER_NAME} {self.password}",
                f"requirepass {self.password}",
                f"sentinel sentinel-pass {self.password}",
            ]
        config = directory / "sentinel.conf"
        config.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen(
            ["redis-server", str(config), "--sentinel"], stdout=subprocess.DEVNULL
        )
        return process

    def client(self, port: int, **options: Any) -> redis.Redis:
        return redis.Redis(port=port, password=self.password, socket_timeout=5, **options)

    def _info(self, port: int, section: str) -> dict[str, Any]:
        client = self.client(port)
        try:
            return dict(client.info(section))
        except redis.RedisError:
            return {}
        finally:
            client.close()

    def _replicating(self) -> bool:
        return (
            self._info(self.master.port, "replication").get("connected_slaves") == 1
            and self._info(self.replica.port, "replication").get("master_link_status") == "up"
        )

    def _sentinel_master(self, port: int) -> dict[str, Any]:
        client = self.client(port, decode_responses=True)
        try:
            master = client.sentinel_master(MASTER_NAME)
            return master if isinstance(master, dict) else {}
        except redis.RedisError:
            return {}
        finally:
            client.close()

    def _sentinels_ready(self) -> bool:
        for port in self.sentinel_ports:
            master = self._sentinel_master(port)
            if master.get("num-slaves") != 1 or master.get("num-other-sentinels") != 2:
                return False
        return True

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers names it."""
        for port in self.sentinel_ports:
            client = self.client(port, decode_responses=True)
            try:
                address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if isinstance(address, tuple):
                return int(address[1])
        return None

    def wait_for_promotion(self, timeout: float = 60) -> None:
        """Return once the sentinels name the replica as master and it takes writes."""

        def promoted() -> bool:
            return (
                self.master_port() == self.replica.port
                and self._info(self.replica.port, "replication").get("role") == "master"
            )

        eventually(promoted, timeout, f"the sentinels to promote {self.replica.port}")

    def delete(self, pattern: str) -> None:
        """Delete the keys matching ``pattern`` on the current master, and no other."""
        port = self.master_port()
        if port is None:
            return
        client = self.client(port)
        try:
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
        except redis.RedisError:
            pass  # the master is gone (a test killed it): nothing to clean there
        finally:
            client.close()

    def remove(self) -> None:
        for process in self.sentinels:
            if process.poll() is None:
                process.kill()
                process.wait(10)
        self.replica.remove()
        self.master.remove()
        shutil.rmtree(self._dir, ignore_errors=True)
