"""The API emulator as a process of its own, for ``make demo``'s Kubernetes half::

    python -m tests.support.kube_api_serve --port 6443

run from the repository's root. It serves :class:`~tests.support.kube_api.ApiServer` on
``http://127.0.0.1:<port>`` as a cluster fresh from its installer would: built-in kinds only
(a CRD must be applied to serve Lumen's and prometheus-operator's kinds) and objects refused in
namespaces that do not exist. ``/readyz`` answers once it serves; SIGTERM or SIGINT stops it,
after closing the watch streams so that clients see their end: exit 0, or 1 when the emulator
failed internally (an emulator bug answered with HTTP 500, printed on stderr). Its state lives
in memory and goes with it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from tests.support.kube_api import ApiServer, _LocalServer


async def serve(port: int) -> list[str]:
    """Serve on 127.0.0.1:``port`` until SIGTERM or SIGINT; the emulator's internal errors."""
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    server = ApiServer(strict_namespaces=True, declare_defaults=False)
    async with server, _LocalServer(server, port=port, user_agent="") as http:
        print(f"the API emulator serves {str(http.url).rstrip('/')}", flush=True)
        await stopped.wait()
        server.close_watches()
        await asyncio.sleep(0)  # let the watch streams see the end and finish
    for error in server.internal_errors:
        print(f"the API emulator failed internally: {error}", file=sys.stderr, flush=True)
    return server.internal_errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.support.kube_api_serve",
        description="Serve the project's Kubernetes API emulator on 127.0.0.1 until SIGTERM.",
    )
    parser.add_argument(
        "--port", type=int, required=True, help="the TCP port to listen on, on 127.0.0.1"
    )
    args = parser.parse_args(argv)
    return 1 if asyncio.run(serve(args.port)) else 0


if __name__ == "__main__":
    sys.exit(main())
