"""PostgreSQL for tests: a new database on the machine's server (``fresh_database``), or a private
server of a test's own that it can crash and start again (``PostgresServer``)."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Generator

import psycopg

from tests.support.polling import eventually, free_port

POSTGRES = "127.0.0.1:5432"  # the machine's server: user postgres, trust
BIN = "/usr/lib/postgresql/15/bin"


def fresh_database() -> Generator[str, None, None]:
    """A new, empty database on the machine's PostgreSQL for as long as the generator runs (a
    fixture yields from it); dropped afterwards, connections and all."""
    name = f"lumen_t_{uuid.uuid4().hex[:12]}"
    dsn = f"postgresql://postgres@{POSTGRES}/postgres"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@{POSTGRES}/{name}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PostgresServer:
    """A private PostgreSQL: its own data directory (initdb), a free port on 127.0.0.1 and its
    unix socket in its directory. ``kill`` is a crash (SIGKILL to the postmaster); ``start``
    again runs on the same data, which recovers from its WAL. PostgreSQL refuses to run as
    root: under root the server runs as the ``postgres`` user."""

    def __init__(self, *options: str) -> None:
        self._options = options  # more ``postgres -c name=value`` settings
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._dir = tempfile.mkdtemp(prefix="postgres-")
        self._data = os.path.join(self._dir, "data")
        self._user: str | None = "postgres" if os.geteuid() == 0 else None
        if self._user is not None:
            account = pwd.getpwnam(self._user)
            os.chown(self._dir, account.pw_uid, account.pw_gid)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PostgresServer:
        if not os.path.exists(self._data):
            subprocess.run(
                [f"{BIN}/initdb", "-D", self._data, "-U", "postgres", "--auth=trust",
                 "--no-sync", "-E", "UTF8", "--locale=C"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, user=self._user,
            )  # fmt: skip
        with open(os.path.join(self._dir, "log"), "ab") as log:  # the server keeps its copy
            self.process = subprocess.Popen(
                [f"{BIN}/postgres", "-D", self._data, "-p", str(self.port), "-h", "127.0.0.1",
                 "-k", self._dir, "-c", "fsync=on", "-c", "max_connections=100",
                 *(arg for option in self._options for arg in ("-c", option))],
                stdout=subprocess.DEVNULL, stderr=log, user=self._user,
            )  # fmt: skip
        eventually(self._up, 60, f"postgres on port {self.port}")
        return self

    def _up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"postgres exited: {self.log()[-2000:]}")
        try:
            with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as connection:
                connection.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def log(self) -> str:
        with contextlib.suppress(OSError), open(os.path.join(self._dir, "log")) as log:
            return log.read()
        return ""

    def kill(self) -> None:
        """A crash: SIGKILL to the postmaster. Its backends notice it gone and exit; ``kill``
        waits for them, since a new postmaster refuses to start beside them."""
        assert self.process is not None
        children = _children(self.process.pid)
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        eventually(
            lambda: not any(os.path.exists(f"/proc/{pid}") for pid in children),
            30,
            "the killed postmaster's backends to exit",
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            self.process.wait(30)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _children(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (from /proc)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as stat:
                # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
                if int(stat.read().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(pid))
    return found
