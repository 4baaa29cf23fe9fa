"""The demo's own HTTP servers (the stand-in ION API, the Slack sink): an aiohttp application on
127.0.0.1, on the free port the demo picks, stopped with the rest at the end."""

from __future__ import annotations

import aiohttp.web


class LoopbackServer:
    """Subclasses build their routes in ``application``; ``url`` is set once started."""

    def __init__(self) -> None:
        self.url = ""
        self._runner: aiohttp.web.AppRunner | None = None

    def application(self) -> aiohttp.web.Application:
        raise NotImplementedError

    async def start(self, port: int) -> str:
        """Serve on 127.0.0.1:``port``; the base URL."""
        self._runner = aiohttp.web.AppRunner(self.application(), access_log=None)
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
