"""The base of the test doubles that serve HTTP from their own event loop in a daemon thread,
so that synchronous tests (no pytest-asyncio) can use them: the emulated Kubernetes API server
and the Slack double."""

from __future__ import annotations

import asyncio
import threading
from typing import Self


class BackgroundLoop:
    """Runs ``_main()`` on a new event loop in a daemon thread.

    ``_main`` must create ``self._stopped``, set ``self._url`` and ``self._ready`` once it
    serves, and return after ``self._stopped`` is set.
    """

    thread_name = "background-loop"
    title = "The server"  # for error messages

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._failure: BaseException | None = None
        self._url: str | None = None

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError(f"{self.title} is already started")
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        self._ready.wait(timeout=10)
        if self._failure is not None:
            raise RuntimeError(f"{self.title} failed to start") from self._failure
        if self._url is None:
            raise RuntimeError(f"{self.title} did not start in time")
        return self

    def stop(self) -> None:
        loop, thread, stopped = self._loop, self._thread, self._stopped
        if loop is None or thread is None or stopped is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout=10)
        if thread.is_alive():
            raise RuntimeError(f"{self.title} did not stop in time")
        if self._failure is not None:
            raise RuntimeError(f"{self.title} failed while running") from self._failure

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError(f"{self.title} is not running")
        return self._url

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:
            self._failure = e
        finally:
            self._ready.set()
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                loop.close()

    async def _main(self) -> None:
        raise NotImplementedError
